"""Real MLflow 3.17 and modelpack read each other's xgboost, lightgbm, catboost and statsmodels directories.

- MLflow -> modelpack: ``mlflow.<flavor>.save_model`` writes each model in the MLflow virtualenv (trained there at
  test time, with MLflow's own pyfunc predictions recorded); this process, which has modelpack but not MLflow, loads
  and serves the directory with predictions equal to MLflow's.
- modelpack -> MLflow: modelpack writes each model here; ``mlflow.pyfunc.load_model`` and
  ``mlflow models serve --env-manager local`` in the MLflow virtualenv (which has no modelpack) read it, because
  modelpack names MLflow's own loader (``loader_module: mlflow.<flavor>``), with predictions equal to modelpack's.

Both sides train the same table of cases from the same source text, so one entry below covers both directions.
Predictions are compared exactly: in process with the same dtype and shape; over HTTP after casting the JSON
numbers to the other side's dtype (a float32 written as its shortest decimal reads back to the same float32).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow_interop import load_predictions, mlflow_serve, pins, run_mlflow_script, split_body, write_frame

import modelpack

pytestmark = pytest.mark.slow

for _library in ("xgboost", "lightgbm", "catboost", "statsmodels"):
    pytest.importorskip(_library)

#: The data, run both here and in the MLflow virtualenv (scikit-learn is pinned to the same version there).
SETUP = """
import catboost as cb
import lightgbm as lgb
import pandas as pd
import statsmodels.api as sm
import xgboost as xgb
from sklearn.datasets import load_diabetes

features, y = load_diabetes(return_X_y=True, as_frame=True)
binary = (y > y.median()).astype(int)
three = pd.cut(y, 3, labels=False)
FRAMES = {"plain": features, "const": sm.add_constant(features)}
# statsmodels pickles its training frames, and pandas 3 backs their string column labels with pyarrow where pyarrow
# is installed (the MLflow side): such a pickle loads only where pyarrow is (test_statsmodels_pickle_needing_pyarrow).
# The cases keep the labels as Python objects, which load everywhere.
FRAMES["pandas_strings"] = FRAMES["const"].copy()
FRAMES["const"].columns = FRAMES["const"].columns.astype(object)
ROWS = slice(None, None, 7)  # the 64 rows both sides predict on
"""


@dataclass(frozen=True)
class Case:
    flavor: str
    #: the class each side's native ``load_model`` returns (module and name)
    native_class: str
    #: Python expression training the model, with ``X`` (the frame named by ``frame``), ``y``, ``binary``, ``three``
    #: and the libraries as ``xgb``, ``lgb``, ``cb``, ``sm`` in scope
    train: str
    frame: str = "plain"


XGB = "'max_depth': 3, 'nthread': 1"
LGB = "'num_leaves': 7, 'verbose': -1, 'num_threads': 1"
LGBM = "num_leaves=7, verbose=-1, n_jobs=1"
CB = "iterations=30, depth=4, thread_count=1, verbose=False, allow_writing_files=False"

CASES = {
    "xgboost-booster": Case("xgboost", "xgboost.core.Booster", f"xgb.train({{{XGB}}}, xgb.DMatrix(X, label=y), 20)"),
    "xgboost-booster-softprob": Case(
        "xgboost", "xgboost.core.Booster",
        f"xgb.train({{{XGB}, 'objective': 'multi:softprob', 'num_class': 3}}, xgb.DMatrix(X, label=three), 10)"),
    "xgboost-regressor": Case("xgboost", "xgboost.sklearn.XGBRegressor",
                              "xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)"),
    "xgboost-classifier": Case("xgboost", "xgboost.sklearn.XGBClassifier",
                               "xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(X, three)"),
    "lightgbm-booster": Case("lightgbm", "lightgbm.basic.Booster",
                             f"lgb.train({{{LGB}}}, lgb.Dataset(X, label=y), 20)"),
    "lightgbm-booster-multiclass": Case(
        "lightgbm", "lightgbm.basic.Booster",
        f"lgb.train({{{LGB}, 'objective': 'multiclass', 'num_class': 3}}, lgb.Dataset(X, label=three), 10)"),
    "lightgbm-regressor": Case("lightgbm", "lightgbm.sklearn.LGBMRegressor",
                               f"lgb.LGBMRegressor(n_estimators=20, {LGBM}).fit(X, y)"),
    "lightgbm-classifier": Case("lightgbm", "lightgbm.sklearn.LGBMClassifier",
                                f"lgb.LGBMClassifier(n_estimators=10, {LGBM}).fit(X, three)"),
    "catboost-regressor": Case("catboost", "catboost.core.CatBoostRegressor", f"cb.CatBoostRegressor({CB}).fit(X, y)"),
    "catboost-classifier": Case("catboost", "catboost.core.CatBoostClassifier",
                                f"cb.CatBoostClassifier({CB}).fit(X, binary)"),
    "catboost-multiclass": Case("catboost", "catboost.core.CatBoostClassifier",
                                f"cb.CatBoostClassifier({CB}, loss_function='MultiClass').fit(X, three)"),
    "statsmodels-ols": Case("statsmodels", "statsmodels.regression.linear_model.RegressionResultsWrapper",
                            "sm.OLS(y, X).fit()", frame="const"),
    "statsmodels-logit": Case("statsmodels", "statsmodels.discrete.discrete_model.BinaryResultsWrapper",
                              "sm.Logit(binary, X).fit(disp=0)", frame="const"),
    "statsmodels-glm": Case("statsmodels", "statsmodels.genmod.generalized_linear_model.GLMResultsWrapper",
                            "sm.GLM(y, X, family=sm.families.Gamma(sm.families.links.Log())).fit()", frame="const"),
}

#: Saved by MLflow from frames with pandas' default string labels (pyarrow-backed there); only
#: test_statsmodels_pickle_needing_pyarrow reads it.
PYARROW_CASE = Case("statsmodels", "statsmodels.regression.linear_model.RegressionResultsWrapper",
                    "sm.OLS(y, X).fit()", frame="pandas_strings")

#: In the MLflow virtualenv: train every case, save it with mlflow.<flavor>.save_model and record MLflow's own pyfunc
#: predictions on the rows (what mlflow_interop.mlflow_predict gives, without a process per directory).
MLFLOW_SAVE = SETUP + r"""
import importlib
from pathlib import Path
import mlflow.pyfunc

out, cases = Path(sys.argv[1]), json.loads(sys.argv[2])
for name, case in cases.items():
    X = FRAMES[case["frame"]]
    model = eval(case["train"])
    importlib.import_module("mlflow." + case["flavor"]).save_model(model, str(out / name), input_example=X.head(3))
    save_predictions(mlflow.pyfunc.load_model(str(out / name)).predict(X[ROWS]), str(out / f"{name}.npz"))
"""

#: In the MLflow virtualenv: MLflow's pyfunc predictions and native classes of modelpack's directories.
MLFLOW_LOAD = r"""
import importlib
from pathlib import Path
import mlflow.pyfunc

out, cases = Path(sys.argv[1]), json.loads(sys.argv[2])
classes = {}
for name, case in cases.items():
    model_dir = str(out / name)
    save_predictions(mlflow.pyfunc.load_model(model_dir).predict(read_frame(case["rows"])), str(out / f"{name}.npz"))
    native = importlib.import_module("mlflow." + case["flavor"]).load_model(model_dir)
    classes[name] = type(native).__module__ + "." + type(native).__qualname__
print(json.dumps(classes))
"""


def _setup() -> dict:
    namespace: dict = {}
    exec(SETUP, namespace)  # the same text the MLflow side runs
    return namespace


def _qualified(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _mlmodel(model_dir: Path) -> dict:
    return yaml.safe_load((model_dir / "MLmodel").read_text())


def _assert_equal(got, expected: np.ndarray) -> None:
    """``got`` (a prediction in process, or a response's JSON list) equals ``expected``: same shape, same values
    in ``expected``'s dtype (exactly: a JSON number cast back to float32 is the float32 it was written from)."""
    array = np.asarray(got)
    assert array.shape == expected.shape, f"shape {array.shape} != {expected.shape}"
    np.testing.assert_array_equal(array.astype(expected.dtype), expected)


@pytest.fixture(scope="module", autouse=True)
def _no_mlflow_here():
    assert importlib.util.find_spec("mlflow") is None, "this side must run without MLflow"


@pytest.fixture(scope="module")
def mlflow_py() -> Path:
    from mlflow_env import mlflow_python

    xgboost_dist = next(d for d in ("xgboost", "xgboost-cpu") if d in metadata.packages_distributions()["xgboost"])
    return mlflow_python(pins(xgboost_dist, "lightgbm", "catboost", "statsmodels"))


@pytest.fixture(scope="module")
def data() -> dict:
    return _setup()


@pytest.fixture(scope="module")
def mlflow_dirs(mlflow_py, tmp_path_factory) -> Path:
    """Every case saved by MLflow in its virtualenv, with ``<name>.npz``: MLflow's pyfunc predictions on the rows."""
    out = tmp_path_factory.mktemp("mlflow_dirs")
    cases = {name: {"flavor": c.flavor, "train": c.train, "frame": c.frame}
             for name, c in {**CASES, "statsmodels-pyarrow": PYARROW_CASE}.items()}
    run_mlflow_script(mlflow_py, MLFLOW_SAVE, str(out), json.dumps(cases), cwd=out)
    return out


@dataclass
class ModelpackSide:
    root: Path
    #: modelpack's own pyfunc predictions on the rows, per case
    predictions: dict[str, np.ndarray]
    #: MLflow's pyfunc predictions of modelpack's directories, per case
    mlflow_predictions: dict[str, np.ndarray]
    #: the class mlflow.<flavor>.load_model returned, per case
    mlflow_classes: dict[str, str]


@pytest.fixture(scope="module")
def modelpack_dirs(mlflow_py, data, tmp_path_factory) -> ModelpackSide:
    """Every case trained and saved by modelpack here, then loaded by MLflow in one run of its virtualenv."""
    root = tmp_path_factory.mktemp("modelpack_dirs")
    rows_files = {kind: write_frame(frame[data["ROWS"]], root / f"rows-{kind}.json")
                  for kind, frame in data["FRAMES"].items()}
    predictions = {}
    for name, case in CASES.items():
        X = data["FRAMES"][case.frame]
        model = eval(case.train, {**data, "X": X})
        modelpack.save_model(model, root / name, input_example=X.head(3))
        predictions[name] = np.asarray(modelpack.load_model(root / name).predict(X[data["ROWS"]]))
    cases = {name: {"flavor": c.flavor, "rows": str(rows_files[c.frame])} for name, c in CASES.items()}
    printed = run_mlflow_script(mlflow_py, MLFLOW_LOAD, str(root), json.dumps(cases), cwd=root)
    mlflow_predictions = {name: load_predictions(root / f"{name}.npz")["prediction"] for name in CASES}
    return ModelpackSide(root, predictions, mlflow_predictions, json.loads(printed.strip().splitlines()[-1]))


def _rows(data: dict, case: Case) -> pd.DataFrame:
    return data["FRAMES"][case.frame][data["ROWS"]]


# MLflow -> modelpack (this process has no MLflow)

@pytest.mark.parametrize("name", list(CASES))
def test_modelpack_loads_mlflow_directory(mlflow_dirs, data, name):
    case = CASES[name]
    model_dir = mlflow_dirs / name
    assert _mlmodel(model_dir)["flavors"]["python_function"]["loader_module"] == f"mlflow.{case.flavor}"
    expected = load_predictions(mlflow_dirs / f"{name}.npz")["prediction"]
    got = np.asarray(modelpack.load_model(model_dir).predict(_rows(data, case)))
    assert got.dtype == expected.dtype
    _assert_equal(got, expected)
    native = importlib.import_module(f"modelpack.flavors.{case.flavor}").load_model(model_dir)
    assert _qualified(native) == case.native_class


@pytest.mark.parametrize("name", list(CASES))
def test_modelpack_serves_mlflow_directory(serve, mlflow_dirs, data, name):
    expected = load_predictions(mlflow_dirs / f"{name}.npz")["prediction"]
    response = serve(mlflow_dirs / name, "-w", "1").post(split_body(_rows(data, CASES[name])))
    assert response.status_code == 200, response.text
    _assert_equal(_served_values(response.json()["predictions"], CASES[name].flavor), expected)


# modelpack -> MLflow (the MLflow virtualenv has no modelpack: PRELUDE checks it)

@pytest.mark.parametrize("name", list(CASES))
def test_mlflow_loads_modelpack_directory(modelpack_dirs, name):
    case = CASES[name]
    assert _mlmodel(modelpack_dirs.root / name)["flavors"]["python_function"]["loader_module"] \
        == f"mlflow.{case.flavor}"
    expected = modelpack_dirs.predictions[name]
    got = modelpack_dirs.mlflow_predictions[name]
    assert got.dtype == expected.dtype
    _assert_equal(got, expected)
    assert modelpack_dirs.mlflow_classes[name] == case.native_class


@pytest.mark.parametrize("name", list(CASES))
def test_mlflow_serves_modelpack_directory(mlflow_py, modelpack_dirs, data, tmp_path, name):
    server = mlflow_serve(mlflow_py, modelpack_dirs.root / name, tmp_path)
    try:
        response = server.post(split_body(_rows(data, CASES[name])))
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    _assert_equal(_served_values(response.json()["predictions"], CASES[name].flavor), modelpack_dirs.predictions[name])


def _served_values(served: list, flavor: str) -> list:
    """The values of a served prediction. statsmodels predicts a pandas Series, which both servers write as the
    records of a one-column frame named by the Series, ``[{"0": value}, ...]`` for an unnamed one; the other
    flavors predict arrays, written as lists."""
    assert isinstance(served[0], dict) == (flavor == "statsmodels")
    if flavor != "statsmodels":
        return served
    assert {tuple(record) for record in served} == {("0",)}
    return [record["0"] for record in served]


def test_statsmodels_pickle_needing_pyarrow(mlflow_dirs, data):
    """pandas 3 backs string labels with pyarrow where it is installed (MLflow's side, whose requirements.txt then
    lists pyarrow), and statsmodels pickles its training frames: modelpack loads such a directory where pyarrow is
    installed and otherwise says which module the pickle needs."""
    model_dir = mlflow_dirs / "statsmodels-pyarrow"
    assert any(r.startswith("pyarrow==") for r in (model_dir / "requirements.txt").read_text().splitlines())
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(modelpack.ModelpackError, match="the pickle needs the module 'pyarrow'"):
            modelpack.load_model(model_dir)
    else:
        expected = load_predictions(mlflow_dirs / "statsmodels-pyarrow.npz")["prediction"]
        got = modelpack.load_model(model_dir).predict(_rows(data, PYARROW_CASE))
        # not exactly: with pyarrow here (it is in the test extra), even statsmodels' own predict on this pickle
        # differs from the MLflow side's in the last bit of some rows (5.7e-14 on values near 200)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=0)
