"""The sklearn flavor's skops format: modelpack writes and reads it, reads what MLflow 3.17 writes in all three
formats, MLflow reads what modelpack writes, and an untrusted type is a clear error (docs/trust.md).

The MLflow side runs in a cached virtualenv (tests/mlflow_env.py) without modelpack; models are trained there and
here at test time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.errors import FlavorError, ModelLoadError
from modelpack.flavors.sklearn import SklearnPyFunc
from modelpack.flavors.sklearn import load_model as load_native_sklearn
from modelpack.float_rows import FloatRows

pytest.importorskip("skops", reason="skops is a test requirement: pip install -e '.[test]'")

TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _split_body(frame: pd.DataFrame) -> str:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}})


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def scaled_logreg(iris):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)


@pytest.fixture(scope="module")
def hgb(diabetes):
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = diabetes
    return HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def skops_dir(tmp_path_factory, iris, scaled_logreg) -> Path:
    X, _ = iris
    path = tmp_path_factory.mktemp("skops") / "logreg"
    modelpack.save_model(scaled_logreg, path, serialization_format="skops", predict_fn="predict_proba",
                         input_example=X.head(3))
    return path


# -- modelpack writes skops, modelpack reads it ------------------------------------------------------------------

def test_skops_round_trip_and_mlmodel_fields(skops_dir, iris, scaled_logreg):
    from importlib.metadata import version

    X, _ = iris
    assert (skops_dir / "model.skops").is_file() and not (skops_dir / "model.pkl").exists()
    flavors = _mlmodel(skops_dir)["flavors"]
    assert flavors["sklearn"]["serialization_format"] == "skops"
    assert flavors["sklearn"]["pickled_model"] == "model.skops"
    assert flavors["sklearn"]["skops_trusted_types"] is None
    assert flavors["python_function"]["model_path"] == "model.skops"
    assert f"skops=={version('skops')}" in (skops_dir / "requirements.txt").read_text().splitlines()

    model = modelpack.load_model(skops_dir)
    np.testing.assert_array_equal(model.predict(X), scaled_logreg.predict_proba(X))
    native = load_native_sklearn(skops_dir)
    assert type(native).__name__ == "Pipeline"


def test_skops_model_keeps_the_float_rows_fast_path(skops_dir, iris, scaled_logreg):
    X, _ = iris
    model = modelpack.load_model(skops_dir)
    impl = model.unwrap_python_model()
    assert isinstance(impl, SklearnPyFunc) and impl._array_ok
    assert model.float_rows_columns == list(X.columns)
    rows = FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns))
    np.testing.assert_allclose(model.predict(rows), scaled_logreg.predict_proba(X), rtol=1e-12)


def test_skops_model_serves(serve, skops_dir, iris, scaled_logreg):
    X, _ = iris
    reply = serve(skops_dir).post(_split_body(X.head(20)))
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], scaled_logreg.predict_proba(X.head(20)), rtol=1e-12)


def test_pickle_formats_do_not_pin_skops(tmp_path, elasticnet):
    modelpack.save_model(elasticnet, tmp_path / "m", serialization_format="pickle")
    assert "skops" not in (tmp_path / "m" / "requirements.txt").read_text()
    assert "skops_trusted_types" not in _mlmodel(tmp_path / "m")["flavors"]["sklearn"]


# -- trust ----------------------------------------------------------------------------------------------------------

def test_untrusted_type_at_save_names_it(tmp_path, hgb):
    with pytest.raises(FlavorError, match=TREE_PREDICTOR.replace(".", r"\.")) as info:
        modelpack.save_model(hgb, tmp_path / "m", serialization_format="skops")
    assert "skops_trusted_types" in str(info.value)
    assert not (tmp_path / "m").exists()


def test_trusted_types_are_recorded_and_honoured(tmp_path, hgb, diabetes):
    X, _ = diabetes
    path = tmp_path / "m"
    modelpack.save_model(hgb, path, serialization_format="skops", skops_trusted_types=[TREE_PREDICTOR])
    assert _mlmodel(path)["flavors"]["sklearn"]["skops_trusted_types"] == [TREE_PREDICTOR]
    np.testing.assert_array_equal(modelpack.load_model(path).predict(X), hgb.predict(X))


def _drop_trusted_types(path: Path) -> None:
    """Edit MLmodel as if the extra types had never been granted."""
    doc = _mlmodel(path)
    doc["flavors"]["sklearn"]["skops_trusted_types"] = None
    (path / "MLmodel").write_text(yaml.safe_dump(doc))


def test_untrusted_type_at_load_is_a_clear_error(tmp_path, hgb):
    path = tmp_path / "m"
    modelpack.save_model(hgb, path, serialization_format="skops", skops_trusted_types=[TREE_PREDICTOR])
    _drop_trusted_types(path)
    with pytest.raises(ModelLoadError, match="not trusted") as info:
        modelpack.load_model(path)
    assert TREE_PREDICTOR in str(info.value)


def test_untrusted_foreign_type_is_refused_by_the_cli(tmp_path, elasticnet, diabetes):
    import subprocess
    from fractions import Fraction

    X, _ = diabetes
    model = elasticnet.__class__(**elasticnet.get_params()).fit(X, diabetes[1])
    model.note_ = Fraction(1, 3)  # not a scikit-learn type: skops constructs it only when listed
    path = tmp_path / "m"
    modelpack.save_model(model, path, serialization_format="skops", skops_trusted_types=["fractions.Fraction"])
    assert modelpack.load_model(path).predict(X.head(2)) is not None
    _drop_trusted_types(path)
    (tmp_path / "in.json").write_text(_split_body(X.head(2)))
    proc = subprocess.run([sys.executable, "-m", "modelpack.cli", "predict", "-m", str(path), "-i",
                           str(tmp_path / "in.json"), "--env-manager", "local"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == ModelLoadError.exit_code, proc.stdout + proc.stderr
    assert "fractions.Fraction" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("bad", ["sklearn.tree._tree.Tree", [1, 2]])
def test_malformed_trusted_types_are_refused(tmp_path, skops_dir, bad):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(skops_dir, path)
    doc = _mlmodel(path)
    doc["flavors"]["sklearn"]["skops_trusted_types"] = bad
    (path / "MLmodel").write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelLoadError, match="list of fully qualified type names"):
        modelpack.load_model(path)


def test_trusted_types_need_the_skops_format(tmp_path, elasticnet):
    with pytest.raises(FlavorError, match="only to serialization_format='skops'"):
        modelpack.save_model(elasticnet, tmp_path / "m", skops_trusted_types=[TREE_PREDICTOR])


def test_missing_skops_names_the_extra(tmp_path, monkeypatch, skops_dir, elasticnet):
    for name in [n for n in sys.modules if n == "skops" or n.startswith("skops.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "skops", None)  # import skops raises ImportError
    with pytest.raises(ModelLoadError, match=r"pip install 'modelpack\[skops\]'"):
        modelpack.load_model(skops_dir)
    with pytest.raises(FlavorError, match=r"pip install 'modelpack\[skops\]'"):
        modelpack.save_model(elasticnet, tmp_path / "m", serialization_format="skops")


# -- MLflow 3.17 in its own virtualenv ------------------------------------------------------------------------------

#: Run in the MLflow venv: train two models, save them as MLflow does by default (skops) and in the pickle
#: formats, and record MLflow's own pyfunc predictions on the rows the test scores.
MLFLOW_SAVE = """
import json, sys, importlib.util
from pathlib import Path
import numpy as np
import mlflow, mlflow.pyfunc, mlflow.sklearn
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

assert importlib.util.find_spec("modelpack") is None, "the MLflow venv must not see modelpack"
out = Path(sys.argv[1])
Xi, yi = load_iris(return_X_y=True, as_frame=True)
Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(Xi, yi)
hgb = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(Xd, yd)
saves = {
    "logreg_skops": (logreg, Xi, dict(pyfunc_predict_fn="predict_proba")),
    "hgb_skops": (hgb, Xd, dict(skops_trusted_types=[sys.argv[2]])),
    "logreg_pickle": (logreg, Xi, dict(serialization_format="pickle", pyfunc_predict_fn="predict_proba")),
    "hgb_cloudpickle": (hgb, Xd, dict(serialization_format="cloudpickle")),
}
for name, (model, X, kw) in saves.items():
    mlflow.sklearn.save_model(model, str(out / name), input_example=X.head(3), **kw)
    np.save(out / f"{name}.rows.npy", X.head(50).to_numpy())
    np.save(out / f"{name}.pred.npy", np.asarray(mlflow.pyfunc.load_model(str(out / name)).predict(X.head(50))))
print(mlflow.__version__)
"""

#: Run in the MLflow venv on a modelpack directory: the native loader, then the pyfunc loader.
MLFLOW_LOAD = """
import sys
import numpy as np
import mlflow.pyfunc, mlflow.sklearn
rows = np.load(sys.argv[2])
frame = __import__("pandas").DataFrame(rows, columns=sys.argv[3].split(","))
loader = mlflow.sklearn.load_model if sys.argv[4] == "native" else mlflow.pyfunc.load_model
model = loader(sys.argv[1])
pred = model.predict_proba(frame) if sys.argv[4] == "native" else model.predict(frame)
np.save(sys.argv[5], np.asarray(pred))
"""


@pytest.fixture(scope="module")
def mlflow_py() -> Path:
    from mlflow_env import mlflow_python

    return mlflow_python(["skops>=0.10"])


@pytest.fixture(scope="module")
def mlflow_dirs(mlflow_py, tmp_path_factory) -> Path:
    from mlflow_env import run_python

    out = tmp_path_factory.mktemp("mlflow")
    printed = run_python(mlflow_py, MLFLOW_SAVE, str(out), TREE_PREDICTOR, cwd=out)
    assert printed.strip().splitlines()[-1].startswith("3.17."), printed
    return out


@pytest.mark.slow
def test_mlflow_default_format_is_skops(mlflow_dirs):
    for name in ("logreg_skops", "hgb_skops"):
        conf = _mlmodel(mlflow_dirs / name)["flavors"]
        assert conf["sklearn"]["serialization_format"] == "skops"
        assert conf["sklearn"]["pickled_model"] == conf["python_function"]["model_path"] == "model.skops"
        assert conf["python_function"]["loader_module"] == "mlflow.sklearn"
    assert _mlmodel(mlflow_dirs / "hgb_skops")["flavors"]["sklearn"]["skops_trusted_types"] == [TREE_PREDICTOR]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logreg_skops", "hgb_skops", "logreg_pickle", "hgb_cloudpickle"])
def test_modelpack_loads_mlflow_dirs(mlflow_dirs, name):
    model = modelpack.load_model(mlflow_dirs / name)
    assert isinstance(model.unwrap_python_model(), SklearnPyFunc)
    assert model.float_rows_columns is not None  # MLflow's signature: every column a double
    frame = pd.DataFrame(np.load(mlflow_dirs / f"{name}.rows.npy"), columns=model.float_rows_columns)
    np.testing.assert_allclose(model.predict(frame), np.load(mlflow_dirs / f"{name}.pred.npy"), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logreg_skops", "hgb_skops"])
def test_modelpack_serves_mlflow_skops_dirs(serve, mlflow_dirs, name):
    model = modelpack.load_model(mlflow_dirs / name)
    assert model.float_rows_columns is not None  # so the server takes the fast path
    frame = pd.DataFrame(np.load(mlflow_dirs / f"{name}.rows.npy"), columns=model.float_rows_columns)
    reply = serve(mlflow_dirs / name).post(_split_body(frame))
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], np.load(mlflow_dirs / f"{name}.pred.npy"), rtol=1e-12)


def _mlflow_predicts(mlflow_py: Path, model_dir: Path, frame: pd.DataFrame, how: str, tmp_path: Path) -> np.ndarray:
    from mlflow_env import run_python

    np.save(tmp_path / "rows.npy", frame.to_numpy())
    run_python(mlflow_py, MLFLOW_LOAD, str(model_dir), str(tmp_path / "rows.npy"), ",".join(frame.columns), how,
               str(tmp_path / "pred.npy"), cwd=tmp_path)
    return np.load(tmp_path / "pred.npy")


@pytest.mark.slow
def test_mlflow_native_loader_reads_modelpack_skops_dir(mlflow_py, skops_dir, iris, scaled_logreg, tmp_path):
    X, _ = iris
    pred = _mlflow_predicts(mlflow_py, skops_dir, X.head(30), "native", tmp_path)
    np.testing.assert_array_equal(pred, scaled_logreg.predict_proba(X.head(30)))


@pytest.mark.slow
def test_mlflow_pyfunc_reads_modelpack_skops_dir_without_modelpack(mlflow_py, skops_dir, iris, scaled_logreg,
                                                                   tmp_path):
    X, _ = iris
    assert _mlmodel(skops_dir)["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    pred = _mlflow_predicts(mlflow_py, skops_dir, X.head(30), "pyfunc", tmp_path)
    np.testing.assert_array_equal(pred, scaled_logreg.predict_proba(X.head(30)))
