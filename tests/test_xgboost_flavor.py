"""The xgboost flavor: native format round trips, MLflow's MLmodel fields, the float-rows path and serving."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.descriptor import ModelDescriptor
from modelpack.float_rows import FloatRows

xgb = pytest.importorskip("xgboost")

from modelpack.flavors import xgboost as xgb_flavor  # noqa: E402  # after the skip


@pytest.fixture(scope="module")
def data(diabetes):
    X, y = diabetes
    return X, y, (y > y.median()).astype(int), pd.cut(y, 3, labels=False)


@pytest.fixture(scope="module")
def models(data):
    X, y, binary, three = data
    return {
        "booster": xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=y), 20),
        "booster_logistic": xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                                      xgb.DMatrix(X, label=binary), 20),
        "booster_linear": xgb.train({"booster": "gblinear", "nthread": 1}, xgb.DMatrix(X, label=y), 20),
        "regressor_linear": xgb.XGBRegressor(booster="gblinear", n_estimators=20, n_jobs=1).fit(X, y),
        "regressor": xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y),
        "classifier": xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, binary),
        "multiclass": xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(X, three),
    }


def _expected(model, frame):
    """What MLflow's python_function gives: Booster on a DMatrix, the scikit-learn API's predict (labels)."""
    if isinstance(model, xgb.Booster):
        return model.predict(xgb.DMatrix(frame), validate_features=True)
    return model.predict(frame)


@pytest.mark.parametrize("kind, cls", [
    ("booster", xgb.Booster), ("booster_logistic", xgb.Booster), ("regressor", xgb.XGBRegressor),
    ("classifier", xgb.XGBClassifier), ("multiclass", xgb.XGBClassifier),
])
def test_round_trip(tmp_path, data, models, kind, cls):
    X = data[0]
    model = models[kind]
    descriptor = modelpack.save_model(model, tmp_path / "m", input_example=X.head(3))
    assert set(descriptor.flavors) == {"xgboost", "python_function"}  # chosen over sklearn's flavor
    native = xgb_flavor.load_model(tmp_path / "m")
    assert type(native) is cls
    np.testing.assert_array_equal(_expected(native, X), _expected(model, X))
    if cls is xgb.XGBClassifier:
        np.testing.assert_array_equal(native.classes_, model.classes_)
    loaded = modelpack.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), _expected(model, X))
    assert isinstance(loaded.predict(X.head(2)), np.ndarray)


def test_mlmodel_has_mlflow_fields(tmp_path, models):
    xgb_flavor.save_model(models["classifier"], tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["flavors"]["xgboost"] == {
        "xgb_version": xgb.__version__, "data": "model.ubj", "model_class": "xgboost.sklearn.XGBClassifier",
        "model_format": "ubj", "code": None,
    }
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.xgboost" and pyfunc["data"] == "model.ubj"  # MLflow reads it
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.name.startswith("model.")) == ["model.ubj"]


def test_json_format(tmp_path, data, models):
    X = data[0]
    xgb_flavor.save_model(models["booster"], tmp_path / "m", model_format="json")
    conf = ModelDescriptor.read(tmp_path / "m").flavors["xgboost"]
    assert conf["data"] == "model.json" and conf["model_format"] == "json"
    assert orjson.loads((tmp_path / "m" / "model.json").read_bytes())["learner"]  # XGBoost's JSON model
    np.testing.assert_array_equal(modelpack.load_model(tmp_path / "m").predict(X), _expected(models["booster"], X))
    with pytest.raises(modelpack.ModelpackError, match="model_format"):
        xgb_flavor.save_model(models["booster"], tmp_path / "bad", model_format="pickle")
    assert not (tmp_path / "bad").exists()


def test_requirements_pin_the_installed_distribution(tmp_path, models):
    xgb_flavor.save_model(models["booster"], tmp_path / "b")
    xgb_flavor.save_model(models["regressor"], tmp_path / "r")
    booster_reqs = (tmp_path / "b" / "requirements.txt").read_text().splitlines()
    regressor_reqs = (tmp_path / "r" / "requirements.txt").read_text().splitlines()
    dist = next(d for d in ("xgboost", "xgboost-cpu") if d in metadata.packages_distributions()["xgboost"])
    assert f"{dist}=={xgb.__version__}" in booster_reqs
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in regressor_reqs
    assert not any(r.startswith("scikit-learn") for r in booster_reqs)


def test_signature_inferred_from_input_example(tmp_path, data, models):
    X = data[0]
    xgb_flavor.save_model(models["classifier"], tmp_path / "m", input_example=X.head(5))
    signature = modelpack.load_model(tmp_path / "m").signature
    assert signature.inputs.input_names == list(X.columns)
    assert {s.type for s in signature.inputs.inputs} == {"double"}
    assert [s.type for s in signature.outputs.inputs] == ["long"]  # labels, as MLflow's pyfunc predicts


@pytest.mark.parametrize("kind", [
    "booster", "booster_logistic", "booster_linear", "regressor", "regressor_linear", "classifier", "multiclass",
])
def test_float_rows_path_is_taken_and_matches_dataframe_path(tmp_path, data, models, kind):
    X = data[0]
    xgb_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    model = modelpack.load_model(tmp_path / "m")
    assert model.float_rows_columns == list(X.columns)
    impl = model.unwrap_python_model()
    rows = FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns))
    frame_calls: list[int] = []
    real_predict = impl.predict
    impl.predict = lambda *a, **kw: frame_calls.append(1) or real_predict(*a, **kw)
    fast = model.predict(rows)
    assert frame_calls == ([1] if kind == "regressor_linear" else [])  # the array went straight to XGBoost
    frame_calls.clear()
    slow = model.predict(rows.to_frame())
    assert frame_calls == [1]
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, _expected(models[kind], X))


def test_float_rows_with_other_columns_take_the_frame_path(tmp_path, data, models):
    X = data[0]
    xgb_flavor.save_model(models["booster"], tmp_path / "m", input_example=X.head(3))
    impl = modelpack.load_model(tmp_path / "m").unwrap_python_model()
    shuffled = list(reversed(X.columns))
    rows = FloatRows(np.asfortranarray(X[shuffled].head(5).to_numpy()), shuffled)
    with pytest.raises(ValueError, match="feature_names mismatch"):  # what XGBoost says about the frame
        impl.predict_float_rows(rows)


def test_params_go_to_predict(tmp_path, data, models):
    X = data[0]
    xgb_flavor.save_model(models["booster_logistic"], tmp_path / "m")
    impl = modelpack.load_model(tmp_path / "m").unwrap_python_model()
    margin = impl.predict(X.head(5), params={"output_margin": True, "unknown": 1})
    np.testing.assert_array_equal(margin, models["booster_logistic"].predict(xgb.DMatrix(X.head(5)),
                                                                              output_margin=True))


def test_refuses_a_model_class_outside_xgboost(tmp_path, models):
    xgb_flavor.save_model(models["booster"], tmp_path / "m")
    mlmodel = tmp_path / "m" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("xgboost.core.Booster", "os.system"))
    with pytest.raises(modelpack.ModelpackError, match="not a class of the xgboost package"):
        modelpack.load_model(tmp_path / "m")


def test_mlflow_loader_hook(tmp_path, data, models):
    X = data[0]
    xgb_flavor.save_model(models["booster"], tmp_path / "m")
    impl = xgb_flavor._load_pyfunc(str(tmp_path / "m" / "model.ubj"))
    np.testing.assert_array_equal(impl.predict(X), _expected(models["booster"], X))


@pytest.mark.parametrize("kind", ["booster", "classifier"])
def test_served_predictions_equal_in_process(tmp_path, serve, data, models, kind):
    X = data[0]
    xgb_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    expected = modelpack.load_model(tmp_path / "m").predict(X.head(50))
    server = serve(tmp_path / "m", "-w", "1")
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(50).values.tolist()}})
    response = server.post(body)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(np.asarray(response.json()["predictions"]), expected, rtol=1e-6)
