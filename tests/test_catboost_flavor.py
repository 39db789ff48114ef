"""The catboost flavor: native format round trips, MLflow's MLmodel fields, the float-rows path and serving."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.float_rows import FloatRows

cb = pytest.importorskip("catboost")

from modelpack.flavors import catboost as cb_flavor  # noqa: E402  # after the skip

PARAMS = {"iterations": 50, "depth": 4, "thread_count": 1, "verbose": False, "allow_writing_files": False}


@pytest.fixture(scope="module")
def data(diabetes):
    X, y = diabetes
    return X, y, (y > y.median()).astype(int), pd.cut(y, 3, labels=False)


@pytest.fixture(scope="module")
def models(data):
    X, y, binary, three = data
    return {
        "core": cb.CatBoost(dict(PARAMS, loss_function="RMSE")).fit(X, y),
        "regressor": cb.CatBoostRegressor(**PARAMS).fit(X, y),
        "classifier": cb.CatBoostClassifier(**PARAMS).fit(X, binary),
        "multiclass": cb.CatBoostClassifier(**PARAMS, loss_function="MultiClass").fit(X, three),
    }


@pytest.mark.parametrize("kind, cls", [
    ("core", cb.CatBoost), ("regressor", cb.CatBoostRegressor), ("classifier", cb.CatBoostClassifier),
    ("multiclass", cb.CatBoostClassifier),
])
def test_round_trip(tmp_path, data, models, kind, cls):
    X = data[0]
    model = models[kind]
    descriptor = modelpack.save_model(model, tmp_path / "m", input_example=X.head(3))
    assert set(descriptor.flavors) == {"catboost", "python_function"}
    native = cb_flavor.load_model(tmp_path / "m")
    assert type(native) is cls
    np.testing.assert_array_equal(native.predict(X), model.predict(X))
    if cls is cb.CatBoostClassifier:
        np.testing.assert_array_equal(native.classes_, model.classes_)
        np.testing.assert_array_equal(native.predict_proba(X), model.predict_proba(X))
    loaded = modelpack.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert isinstance(loaded.predict(X.head(2)), np.ndarray)


def test_mlmodel_has_mlflow_fields(tmp_path, models):
    cb_flavor.save_model(models["classifier"], tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["flavors"]["catboost"] == {
        "catboost_version": cb.__version__, "model_type": "CatBoostClassifier", "save_format": "cbm",
        "data": "model.cb", "code": None,
    }
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.catboost" and pyfunc["data"] == "model.cb"  # MLflow reads it
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.name.startswith("model.")) == ["model.cb"]
    assert (tmp_path / "m" / "model.cb").read_bytes()[:4] == b"CBM1"  # CatBoost's binary format, not a pickle


def test_subclass_is_saved_as_its_catboost_class(tmp_path, data):
    X, y = data[0], data[1]

    class MyRegressor(cb.CatBoostRegressor):
        pass

    model = MyRegressor(**PARAMS).fit(X, y)
    cb_flavor.save_model(model, tmp_path / "m")
    assert yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]["catboost"]["model_type"] \
        == "CatBoostRegressor"
    native = cb_flavor.load_model(tmp_path / "m")
    assert type(native) is cb.CatBoostRegressor
    np.testing.assert_array_equal(native.predict(X), model.predict(X))


def test_requirements_pin_catboost(tmp_path, models):
    cb_flavor.save_model(models["regressor"], tmp_path / "m")
    reqs = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert f"catboost=={metadata.version('catboost')}" in reqs
    assert not any(r.startswith("scikit-learn") for r in reqs)


def test_signature_inferred_from_input_example(tmp_path, data, models):
    X = data[0]
    cb_flavor.save_model(models["classifier"], tmp_path / "m", input_example=X.head(5))
    signature = modelpack.load_model(tmp_path / "m").signature
    assert signature.inputs.input_names == list(X.columns)
    assert {s.type for s in signature.inputs.inputs} == {"double"}
    assert [s.type for s in signature.outputs.inputs] == ["long"]  # labels, as MLflow's pyfunc predicts


@pytest.mark.parametrize("kind", ["core", "regressor", "classifier", "multiclass"])
def test_float_rows_path_is_taken_and_matches_dataframe_path(tmp_path, data, models, kind):
    X = data[0]
    cb_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    model = modelpack.load_model(tmp_path / "m")
    assert model.float_rows_columns == list(X.columns)
    impl = model.unwrap_python_model()
    rows = FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns))
    frame_calls: list[int] = []
    real_predict = impl.predict
    impl.predict = lambda *a, **kw: frame_calls.append(1) or real_predict(*a, **kw)
    fast = model.predict(rows)
    assert frame_calls == []  # the array went straight to CatBoost
    slow = model.predict(rows.to_frame())
    assert frame_calls == [1]
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, models[kind].predict(X))


def test_float_rows_with_other_columns_take_the_frame_path(tmp_path, data, models):
    X = data[0]
    cb_flavor.save_model(models["regressor"], tmp_path / "m", input_example=X.head(3))
    impl = modelpack.load_model(tmp_path / "m").unwrap_python_model()
    shuffled = list(reversed(X.columns))
    rows = FloatRows(np.asfortranarray(X[shuffled].head(5).to_numpy()), shuffled)
    calls: list[int] = []
    real_predict = impl.predict
    impl.predict = lambda *a, **kw: calls.append(1) or real_predict(*a, **kw)
    impl.predict_float_rows(rows)
    assert calls == [1]


def test_categorical_features_take_the_frame_path(tmp_path, data):
    X, y = data[0], data[1]
    frame = X.assign(group=np.where(X["sex"] > 0, "a", "b"))
    model = cb.CatBoostRegressor(**PARAMS, cat_features=["group"]).fit(frame, y)
    cb_flavor.save_model(model, tmp_path / "m")
    impl = modelpack.load_model(tmp_path / "m").unwrap_python_model()
    assert impl._array_ok is False
    np.testing.assert_array_equal(impl.predict(frame), model.predict(frame))


def test_params_go_to_predict(tmp_path, data, models):
    X = data[0]
    cb_flavor.save_model(models["classifier"], tmp_path / "m")
    impl = modelpack.load_model(tmp_path / "m").unwrap_python_model()
    proba = impl.predict(X.head(5), params={"prediction_type": "Probability", "unknown": 1})
    np.testing.assert_array_equal(proba, models["classifier"].predict_proba(X.head(5)))


def test_refuses_a_model_type_outside_catboost(tmp_path, models):
    cb_flavor.save_model(models["regressor"], tmp_path / "m")
    mlmodel = tmp_path / "m" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("model_type: CatBoostRegressor", "model_type: Pool"))
    with pytest.raises(modelpack.ModelpackError, match="is not one of"):
        modelpack.load_model(tmp_path / "m")


def test_mlflow_loader_hook(tmp_path, data, models):
    X = data[0]
    cb_flavor.save_model(models["regressor"], tmp_path / "m")
    impl = cb_flavor._load_pyfunc(str(tmp_path / "m" / "model.cb"))
    np.testing.assert_array_equal(impl.predict(X), models["regressor"].predict(X))


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_served_predictions_equal_in_process(tmp_path, serve, data, models, kind, workers):
    X = data[0]
    cb_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    expected = modelpack.load_model(tmp_path / "m").predict(X.head(50))
    server = serve(tmp_path / "m", "-w", workers)
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(50).values.tolist()}})
    for _ in range(4):  # reach more than one worker
        response = server.post(body)
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(np.asarray(response.json()["predictions"]), expected)
