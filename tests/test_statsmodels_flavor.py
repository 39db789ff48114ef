"""The statsmodels flavor: pickle round trips, MLflow's MLmodel fields and layout, time series, serving."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.descriptor import ModelDescriptor

sm = pytest.importorskip("statsmodels.api")

from statsmodels.base.wrapper import ResultsWrapper  # noqa: E402  # after the skip

from modelpack.flavors import statsmodels as sm_flavor  # noqa: E402  # after the skip


@pytest.fixture(scope="module")
def data(diabetes):
    X, y = diabetes
    return sm.add_constant(X), y, (y > y.median()).astype(int)


@pytest.fixture(scope="module")
def models(data):
    X, y, binary = data
    return {
        "ols": sm.OLS(y, X).fit(),
        "glm": sm.GLM(y, X, family=sm.families.Gaussian()).fit(),
        "logit": sm.Logit(binary, X).fit(disp=0),
    }


@pytest.mark.parametrize("kind", ["ols", "glm", "logit"])
def test_round_trip(tmp_path, data, models, kind):
    X = data[0]
    model = models[kind]
    descriptor = modelpack.save_model(model, tmp_path / "m", input_example=X.head(3))
    assert set(descriptor.flavors) == {"statsmodels", "python_function"}
    native = sm_flavor.load_model(tmp_path / "m")
    assert type(native) is type(model) and isinstance(native, ResultsWrapper)
    np.testing.assert_array_equal(native.params, model.params)
    np.testing.assert_array_equal(native.predict(X), model.predict(X))
    loaded = modelpack.load_model(tmp_path / "m")
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), np.asarray(model.predict(X)))


def test_mlmodel_has_mlflow_fields(tmp_path, models):
    import statsmodels

    sm_flavor.save_model(models["ols"], tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["flavors"]["statsmodels"] == {
        "statsmodels_version": statsmodels.__version__, "data": "model.statsmodels", "code": None,
    }
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.statsmodels" and pyfunc["data"] == "model.statsmodels"
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.name.startswith("model.")) == ["model.statsmodels"]


def test_remove_data(tmp_path, data, models):
    X = data[0]
    sm_flavor.save_model(models["ols"], tmp_path / "full")
    sm_flavor.save_model(models["ols"], tmp_path / "small", remove_data=True)
    full, small = (tmp_path / "full" / "model.statsmodels"), (tmp_path / "small" / "model.statsmodels")
    assert small.stat().st_size < full.stat().st_size
    assert sm_flavor.load_model(tmp_path / "full").model.exog is not None
    assert sm_flavor.load_model(tmp_path / "small").model.exog is None
    np.testing.assert_array_equal(np.asarray(modelpack.load_model(tmp_path / "small").predict(X)),
                                  np.asarray(models["ols"].predict(X)))


def test_requirements_pin_statsmodels(tmp_path, models):
    sm_flavor.save_model(models["logit"], tmp_path / "m")
    reqs = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert f"statsmodels=={metadata.version('statsmodels')}" in reqs


def test_refuses_unfitted_models(tmp_path, data):
    X, y, _ = data
    unfitted = sm.OLS(y, X)
    with pytest.raises(modelpack.ModelpackError):
        modelpack.save_model(unfitted, tmp_path / "auto")  # no flavor takes it (no save method)
    with pytest.raises(modelpack.ModelpackError, match="not a fitted statsmodels results object"):
        sm_flavor.save_model(unfitted, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_signature_inferred_from_input_example(tmp_path, data, models):
    X = data[0]
    assert X.columns[0] == "const"
    sm_flavor.save_model(models["ols"], tmp_path / "m", input_example=X.head(5))
    signature = modelpack.load_model(tmp_path / "m").signature
    assert signature.inputs.input_names == list(X.columns)
    assert {s.type for s in signature.inputs.inputs} == {"double"}
    assert [s.type for s in signature.outputs.inputs] == ["double"]


def test_mlflow_loader_hook(tmp_path, data, models):
    X = data[0]
    sm_flavor.save_model(models["ols"], tmp_path / "m")
    impl = sm_flavor._load_pyfunc(str(tmp_path / "m" / "model.statsmodels"))
    np.testing.assert_array_equal(np.asarray(impl.predict(X)), np.asarray(models["ols"].predict(X)))


def test_time_series_models_take_start_and_end(tmp_path):
    from statsmodels.tsa.arima.model import ARIMA

    series = np.sin(np.arange(60) / 5.0) + np.random.default_rng(0).normal(0, 0.1, 60)
    results = ARIMA(series, order=(1, 0, 0)).fit()
    sm_flavor.save_model(results, tmp_path / "m")
    loaded = modelpack.load_model(tmp_path / "m")
    got = loaded.predict(pd.DataFrame({"start": [55], "end": [64]}))
    np.testing.assert_allclose(np.asarray(got), results.predict(start=55, end=64))
    with pytest.raises(modelpack.ModelpackError, match="'start' and 'end'"):
        loaded.predict(pd.DataFrame({"start": [1, 2], "end": [3, 4]}))
    with pytest.raises(modelpack.ModelpackError, match="'start' and 'end'"):
        loaded.predict(pd.DataFrame({"x": [1.0]}))


@pytest.mark.parametrize("kind", ["ols", "logit"])
def test_served_predictions_equal_in_process(tmp_path, serve, data, models, kind):
    X = data[0]
    sm_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    assert ModelDescriptor.read(tmp_path / "m").flavors["python_function"]["loader_module"] == "mlflow.statsmodels"
    expected = np.asarray(modelpack.load_model(tmp_path / "m").predict(X.head(50)))
    server = serve(tmp_path / "m", "-w", "1")
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(50).values.tolist()}})
    response = server.post(body)
    assert response.status_code == 200, response.text
    served = response.json()["predictions"]  # a pandas Series: the records of a one-column frame, as MLflow writes it
    assert {tuple(record) for record in served} == {("0",)}
    np.testing.assert_allclose(np.asarray([record["0"] for record in served]), expected, rtol=1e-12)
