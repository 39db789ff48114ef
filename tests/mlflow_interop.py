"""MLflow compatibility in both directions, for every flavor's tests.

The MLflow side runs in the cached virtualenv of :mod:`mlflow_env` (MLflow 3.17 without modelpack):

- ``pins("xgboost-cpu")`` names this process's versions of the model libraries, so both sides hold the same ones;
- ``mlflow_predict(python, model_dir, frame, tmp_path)`` is what ``mlflow.pyfunc.load_model(dir).predict(frame)``
  gives there (on a directory MLflow wrote, or one modelpack wrote);
- ``mlflow_serve(python, model_dir, tmp_path)`` runs ``mlflow models serve --env-manager local`` there and returns
  a :class:`helpers.Server` (stop it at teardown);
- ``read_frame``/``write_frame`` carry a DataFrame between the two interpreters (JSON with dtypes: no pickle
  crosses library versions).

Predictions come back as a dict of arrays: ``{"prediction": array}`` for one output, the keys of a dict or the
columns of a DataFrame for several.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Server, free_port, wait_until_ready
from mlflow_env import child_env, run_python

#: Shared by the scripts run in the MLflow virtualenv (prepended to each): frames in and predictions out.
PRELUDE = r'''
import importlib.util, json, sys
import numpy as np
import pandas as pd
assert importlib.util.find_spec("modelpack") is None, "the MLflow virtualenv must not see modelpack"

def read_frame(path):
    doc = json.loads(open(path).read())
    frame = pd.DataFrame(doc["data"], columns=doc["columns"])
    return frame.astype(doc["dtypes"]) if doc["dtypes"] else frame

def save_predictions(pred, path):
    if isinstance(pred, dict):
        arrays = {str(k): np.asarray(v) for k, v in pred.items()}
    elif isinstance(pred, pd.DataFrame):
        arrays = {str(c): pred[c].to_numpy() for c in pred.columns}
    else:
        arrays = {"prediction": np.asarray(pred)}
    np.savez(path, **arrays)
'''

PREDICT = PRELUDE + r'''
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
save_predictions(model.predict(read_frame(sys.argv[2])), sys.argv[3])
'''


def pins(*distributions: str) -> list[str]:
    """``name==version`` of each installed distribution, for :func:`mlflow_env.mlflow_python`."""
    return [f"{name}=={version(name)}" for name in distributions]


def json_rows(frame: pd.DataFrame) -> list[list]:
    """The rows of ``frame`` as JSON values, floats exactly: pandas' ``to_json`` rounds them to 10 decimal places
    (0.0380759064334241 becomes 0.0380759064), enough to move a row across a tree's split. Python's ``json`` writes
    the shortest text that reads back to the same float64; NaN becomes null, as ``to_json`` writes it."""
    data = json.loads(frame.to_json(orient="split", index=False))["data"]
    for j, (_, column) in enumerate(frame.items()):
        if column.dtype.kind == "f":
            for i, value in enumerate(column.tolist()):
                data[i][j] = None if value != value else value
    return data


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` for :data:`PRELUDE`'s ``read_frame`` (numeric, bool, string and category columns)."""
    dtypes = {str(c): str(t) for c, t in frame.dtypes.items()}
    data = json_rows(frame)
    path.write_text(json.dumps({"columns": [str(c) for c in frame.columns], "data": data, "dtypes": dtypes}))
    return path


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files}


def mlflow_predict(python: Path, model_dir: Path, frame: pd.DataFrame, tmp_path: Path) -> dict[str, np.ndarray]:
    """MLflow's own python_function prediction of ``model_dir`` on ``frame`` (in the MLflow virtualenv)."""
    rows = write_frame(frame, tmp_path / "mlflow-rows.json")
    out = tmp_path / "mlflow-pred.npz"
    run_python(python, PREDICT, str(model_dir), str(rows), str(out), cwd=tmp_path)
    return load_predictions(out)


def run_mlflow_script(python: Path, code: str, *args: str, cwd: Path, timeout: float = 600) -> str:
    """Run ``code`` (after :data:`PRELUDE`) in the MLflow virtualenv; its stdout."""
    return run_python(python, PRELUDE + code, *args, cwd=cwd, timeout=timeout)


def mlflow_serve(python: Path, model_dir: Path, tmp_path: Path, timeout: float = 180) -> Server:
    """``mlflow models serve --env-manager local`` on a free loopback port, ready (its /ping answered 200)."""
    port = free_port()
    cmd = [str(python), "-m", "mlflow", "models", "serve", "-m", str(model_dir), "-h", "127.0.0.1",
           "-p", str(port), "--env-manager", "local", "-w", "1"]
    env = child_env()
    env["PATH"] = f"{module_shims(python, tmp_path / 'mlflow-bin', 'uvicorn')}{os.pathsep}{env.get('PATH', '')}"
    # cwd: never the repository, whose modelpack/ would be importable there
    return wait_until_ready(cmd, port, tmp_path / f"mlflow-server-{port}.log", env, timeout, cwd=tmp_path)


def module_shims(python: Path, directory: Path, *modules: str) -> Path:
    """``directory`` holding one executable per module that runs ``python -m <module>``, to put first on PATH.

    ``mlflow models serve --env-manager local`` starts its server as the command ``uvicorn`` found on PATH, and the
    virtualenv's own console scripts cannot run: they name its build path (see :mod:`mlflow_env`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for module in modules:
        shim = directory / module
        shim.write_text(f'#!/bin/sh\nexec "{python}" -m {module} "$@"\n')
        shim.chmod(0o755)
    return directory


def split_body(frame: pd.DataFrame) -> str:
    """A ``dataframe_split`` request body for ``frame`` (floats exactly, see :func:`json_rows`)."""
    data = json_rows(frame)
    return json.dumps({"dataframe_split": {"columns": [str(c) for c in frame.columns], "data": data}})
