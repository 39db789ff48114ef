"""The lightgbm flavor: text-format Boosters, pickled scikit-learn API models, MLflow's fields, float rows, serving."""

from __future__ import annotations

import warnings
from importlib import metadata

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.descriptor import ModelDescriptor
from modelpack.float_rows import FloatRows

lgb = pytest.importorskip("lightgbm")

from modelpack.flavors import lightgbm as lgb_flavor  # noqa: E402  # after the skip

PARAMS = {"num_leaves": 7, "verbose": -1, "num_threads": 1}


@pytest.fixture(scope="module")
def data(diabetes):
    X, y = diabetes
    return X, y, (y > y.median()).astype(int), pd.cut(y, 3, labels=False)


@pytest.fixture(scope="module")
def models(data):
    X, y, binary, three = data
    return {
        "booster": lgb.train(PARAMS, lgb.Dataset(X, label=y), 20),
        "booster_binary": lgb.train({**PARAMS, "objective": "binary"}, lgb.Dataset(X, label=binary), 20),
        "booster_unnamed": lgb.train(PARAMS, lgb.Dataset(X.to_numpy(), label=y), 20),
        "regressor": lgb.LGBMRegressor(n_estimators=20, **PARAMS).fit(X, y),
        "classifier": lgb.LGBMClassifier(n_estimators=20, **PARAMS).fit(X, binary),
        "multiclass": lgb.LGBMClassifier(n_estimators=10, **PARAMS).fit(X, three),
    }


KINDS = [("booster", lgb.Booster), ("booster_binary", lgb.Booster), ("booster_unnamed", lgb.Booster),
         ("regressor", lgb.LGBMRegressor), ("classifier", lgb.LGBMClassifier), ("multiclass", lgb.LGBMClassifier)]


@pytest.mark.parametrize("kind, cls", KINDS)
def test_round_trip(tmp_path, data, models, kind, cls):
    X = data[0]
    model = models[kind]
    descriptor = modelpack.save_model(model, tmp_path / "m", input_example=X.head(3))
    assert set(descriptor.flavors) == {"lightgbm", "python_function"}  # chosen over sklearn's flavor
    native = lgb_flavor.load_model(tmp_path / "m")
    assert type(native) is cls
    np.testing.assert_array_equal(native.predict(X), model.predict(X))
    loaded = modelpack.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))  # labels for a classifier, as MLflow
    assert isinstance(loaded.predict(X.head(2)), np.ndarray)


@pytest.mark.parametrize("kind, file_name, model_class", [
    ("booster", "model.lgb", "lightgbm.basic.Booster"),
    ("classifier", "model.pkl", "lightgbm.sklearn.LGBMClassifier"),
])
def test_mlmodel_has_mlflow_fields(tmp_path, models, kind, file_name, model_class):
    lgb_flavor.save_model(models[kind], tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    pickled = {"serialization_format": "cloudpickle"} if file_name == "model.pkl" else {}
    assert mlmodel["flavors"]["lightgbm"] == {
        "lgb_version": lgb.__version__, "data": file_name, "model_class": model_class, "code": None, **pickled,
    }
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.lightgbm" and pyfunc["data"] == file_name  # MLflow reads it
    if file_name == "model.lgb":  # LightGBM's text model format
        assert (tmp_path / "m" / file_name).read_text().startswith("tree\n")


def test_requirements(tmp_path, models):
    lgb_flavor.save_model(models["booster"], tmp_path / "b")
    lgb_flavor.save_model(models["regressor"], tmp_path / "r")
    booster_reqs = (tmp_path / "b" / "requirements.txt").read_text().splitlines()
    regressor_reqs = (tmp_path / "r" / "requirements.txt").read_text().splitlines()
    assert f"lightgbm=={lgb.__version__}" in booster_reqs and f"lightgbm=={lgb.__version__}" in regressor_reqs
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in regressor_reqs
    assert not any(r.startswith("scikit-learn") for r in booster_reqs)


def test_signature_inferred_from_input_example(tmp_path, data, models):
    X = data[0]
    lgb_flavor.save_model(models["classifier"], tmp_path / "c", input_example=X.head(5))
    lgb_flavor.save_model(models["booster"], tmp_path / "b", input_example=X.head(5))
    signature = modelpack.load_model(tmp_path / "c").signature
    assert signature.inputs.input_names == list(X.columns)
    assert {s.type for s in signature.inputs.inputs} == {"double"}
    assert [s.type for s in signature.outputs.inputs] == ["long"]
    assert [s.type for s in modelpack.load_model(tmp_path / "b").signature.outputs.inputs] == ["double"]


@pytest.mark.parametrize("kind", [k for k, _ in KINDS])
def test_float_rows_path_is_taken_and_matches_dataframe_path(tmp_path, data, models, kind):
    X = data[0]
    lgb_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    model = modelpack.load_model(tmp_path / "m")
    assert model.float_rows_columns == list(X.columns)
    impl = model.unwrap_python_model()
    rows = FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns))
    frame_calls: list[int] = []
    real_predict = impl.predict
    impl.predict = lambda *a, **kw: frame_calls.append(1) or real_predict(*a, **kw)
    with warnings.catch_warnings(record=True) as caught:
        fast = model.predict(rows)
    assert not [w for w in caught if "feature names" in str(w.message)]  # names were matched before
    assert frame_calls == []  # the array went straight to LightGBM
    slow = model.predict(rows.to_frame())
    assert frame_calls == [1]
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, models[kind].predict(X))


def test_float_rows_with_other_columns_take_the_frame_path(tmp_path, data, models):
    X = data[0]
    lgb_flavor.save_model(models["regressor"], tmp_path / "m", input_example=X.head(3))
    impl = modelpack.load_model(tmp_path / "m").unwrap_python_model()
    shuffled = list(reversed(X.columns))
    rows = FloatRows(np.asfortranarray(X[shuffled].head(5).to_numpy()), shuffled)
    frames: list = []
    real_predict = impl.predict
    impl.predict = lambda frame, params=None: frames.append(frame) or real_predict(frame, params)
    np.testing.assert_array_equal(impl.predict_float_rows(rows), real_predict(rows.to_frame()))
    assert [list(f.columns) for f in frames] == [shuffled]  # whatever LightGBM makes of the frame, it decides


def test_reads_mlflow_cloudpickle_directories(tmp_path, data, models):
    """A scikit-learn API model as mlflow.lightgbm writes it with serialization_format='cloudpickle' (MLflow 3's
    default, skops, and Boosters are read from real MLflow directories in tests/test_mlflow_flavors.py)."""
    import cloudpickle

    X = data[0]
    model_dir = tmp_path / "mlflow_model"
    model_dir.mkdir()
    (model_dir / "model.pkl").write_bytes(cloudpickle.dumps(models["regressor"]))
    (model_dir / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {
            "python_function": {"loader_module": "mlflow.lightgbm", "data": "model.pkl", "python_version": "3.11.7",
                                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}},
            "lightgbm": {"lgb_version": lgb.__version__, "data": "model.pkl", "code": None,
                         "model_class": "lightgbm.sklearn.LGBMRegressor", "serialization_format": "cloudpickle"},
        },
        "mlflow_version": "3.17.2",
    }))
    np.testing.assert_array_equal(modelpack.load_model(model_dir).predict(X), models["regressor"].predict(X))
    assert type(lgb_flavor.load_model(model_dir)) is lgb.LGBMRegressor


def _skops_dir(model_dir, model, trusted):
    """A scikit-learn API model in the skops format, as mlflow.lightgbm writes it by default."""
    sio = pytest.importorskip("skops.io")
    model_dir.mkdir()
    sio.dump(model, model_dir / "model.skops")
    cls = type(model)
    (model_dir / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {
            "python_function": {"loader_module": "mlflow.lightgbm", "data": "model.skops"},
            "lightgbm": {"lgb_version": lgb.__version__, "data": "model.skops", "code": None,
                         "model_class": f"{cls.__module__}.{cls.__qualname__}", "serialization_format": "skops",
                         "skops_trusted_types": trusted},
        },
    }))


def test_skops_constructs_only_trusted_types(tmp_path, data, models):
    X = data[0]
    trusted = ["collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"]
    _skops_dir(tmp_path / "ok", models["classifier"], trusted)
    np.testing.assert_array_equal(modelpack.load_model(tmp_path / "ok").predict(X), models["classifier"].predict(X))
    _skops_dir(tmp_path / "short", models["classifier"], trusted[:2])
    with pytest.raises(modelpack.ModelpackError, match=r"not trusted: \['lightgbm.sklearn.LGBMClassifier'\]"):
        modelpack.load_model(tmp_path / "short")
    _skops_dir(tmp_path / "bad", models["classifier"], "lightgbm.sklearn.LGBMClassifier")
    with pytest.raises(modelpack.ModelpackError, match="skops_trusted_types must be a list"):
        modelpack.load_model(tmp_path / "bad")


def test_unknown_serialization_format_is_refused(tmp_path, models):
    lgb_flavor.save_model(models["regressor"], tmp_path / "m")
    descriptor = ModelDescriptor.read(tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    mlmodel["flavors"]["lightgbm"]["serialization_format"] = "joblib"
    (tmp_path / "m" / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    assert descriptor.flavors["lightgbm"]["data"] == "model.pkl"
    with pytest.raises(modelpack.ModelpackError, match="serialization_format 'joblib' is not supported"):
        modelpack.load_model(tmp_path / "m")


def test_mlflow_loader_hook(tmp_path, data, models):
    X = data[0]
    lgb_flavor.save_model(models["booster"], tmp_path / "m")
    impl = lgb_flavor._load_pyfunc(str(tmp_path / "m" / "model.lgb"))
    np.testing.assert_array_equal(impl.predict(X), models["booster"].predict(X))


@pytest.mark.parametrize("kind", ["booster", "classifier"])
def test_served_predictions_equal_in_process(tmp_path, serve, data, models, kind):
    X = data[0]
    lgb_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    expected = modelpack.load_model(tmp_path / "m").predict(X.head(50))
    server = serve(tmp_path / "m", "-w", "1")
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(50).values.tolist()}})
    response = server.post(body)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(np.asarray(response.json()["predictions"]), expected, rtol=1e-6)
