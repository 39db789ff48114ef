"""Fork safety: models whose libraries keep an OpenMP pool answer under any number of workers, and /ping is
never 200 from a worker whose model cannot answer.

A forked gunicorn worker has only the thread that forked it. GNU OpenMP keeps its pool per calling thread
and has no fork handler: a master that ran a parallel region (xgboost and lightgbm do while loading a
booster; scikit-learn's HistGradientBoosting when it predicts) forks workers whose first parallel region
waits forever for threads that do not exist. Every test here hung (request timeout) before the server
decided where to load the model (modelpack/server/__main__.py; docs/performance.md, "Fork safety").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers import Server, free_port

import modelpack

TIMEOUT = 20  # seconds per request: a hang fails the test instead of stalling the run
PARALLEL = 8  # requests sent at once, the moment /ping is 200


@pytest.fixture
def start(tmp_path):
    """Like conftest's ``serve``, but a /ping that times out means "not ready yet": a server loading the model in
    each worker listens before its workers can answer (helpers.start_server only waits out refused connections)."""
    servers: list[Server] = []

    def _start(model_dir: Path, *extra: str, env: dict | None = None, wait: float = 60) -> Server:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-m", str(model_dir), "-p", str(port), *extra,
               "--env-manager", "local"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        server = Server(f"http://127.0.0.1:{port}", proc, log)
        servers.append(server)
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{server.log()}"
            try:
                if requests.get(f"{server.url}/ping", timeout=1).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            time.sleep(0.05)
        assert not wait, f"no /ping 200 within {wait}s:\n{server.log()}"
        return server

    yield _start
    for server in servers:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


@pytest.fixture(scope="module")
def data(diabetes):
    X, y = diabetes
    return X, y, X.sample(40, random_state=0)


def _save(model, path: Path, X) -> Path:
    modelpack.save_model(model, path, input_example=X.head(3))
    return path


@pytest.fixture(scope="module")
def fork_model(tmp_path_factory, data):
    """name -> (model directory, in-process predictions on the test rows), each built once when first asked."""
    X, y, rows = data
    root = tmp_path_factory.mktemp("fork_models")
    built: dict[str, tuple[Path, np.ndarray]] = {}

    def get(name: str) -> tuple[Path, np.ndarray]:
        if name not in built:
            path = _save(BUILDERS[name](X, y), root / name, X)
            built[name] = path, np.asarray(modelpack.load_model(path).predict(rows), dtype=float)
        return built[name]

    return get


def _hgb(X, y):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X, y)


def _hgb_warm(X, y):
    """A custom model that warms its HistGradientBoostingRegressor up in load_context: an OpenMP pool at load."""
    model = _hgb(X, y)
    warm_rows = X.head(2)

    class WarmHGB(modelpack.PythonModel):  # defined here so cloudpickle stores it by value
        def __init__(self):
            self.model, self.warm_rows = model, warm_rows

        def load_context(self, context):
            self.model.predict(self.warm_rows)

        def predict(self, context, model_input, params=None):
            return self.model.predict(model_input)

    return WarmHGB()


def _xgboost(X, y):
    xgb = pytest.importorskip("xgboost", reason="xgboost is not installed (it is in the 'test' extra)")
    raw = bytes(xgb.train({"max_depth": 3}, xgb.DMatrix(X, y), num_boost_round=20).save_raw("ubj"))

    class XGBBooster(modelpack.PythonModel):  # what a flavor does: load the booster, predict through a DMatrix
        def __init__(self):
            self.raw = raw

        def load_context(self, context):
            import xgboost

            self.booster = xgboost.Booster()
            self.booster.load_model(bytearray(self.raw))

        def predict(self, context, model_input, params=None):
            import xgboost

            return self.booster.predict(xgboost.DMatrix(model_input))

    return XGBBooster()


def _lightgbm(X, y):
    lgb = pytest.importorskip("lightgbm", reason="lightgbm is not installed (it is in the 'test' extra)")
    text = lgb.train({"verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), num_boost_round=20).model_to_string()

    class LGBBooster(modelpack.PythonModel):
        def __init__(self):
            self.text = text

        def load_context(self, context):
            import lightgbm

            self.booster = lightgbm.Booster(model_str=self.text)

        def predict(self, context, model_input, params=None):
            return self.booster.predict(model_input)

    return LGBBooster()


def _catboost(X, y):
    """Through the catboost flavor itself (its native .cbm file)."""
    catboost = pytest.importorskip("catboost", reason="catboost is not installed (it is in the 'test' extra)")
    return catboost.CatBoostRegressor(iterations=30, depth=4, verbose=False, thread_count=2,
                                      allow_writing_files=False).fit(X, y)


def _pytorch(X, y):
    """Through the pytorch flavor (a pickled module): torch's intra-op pool is started by the first forward."""
    torch = pytest.importorskip("torch", reason="torch is not installed (it is in the 'test' extra)")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(X.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))


BUILDERS = {"hgb": _hgb, "hgb_warm": _hgb_warm, "xgboost": _xgboost, "lightgbm": _lightgbm, "catboost": _catboost,
            "pytorch": _pytorch}
#: where the server is expected to load each model (the sharing we keep, the pools we avoid)
LOADED = {"hgb": "before fork", "hgb_warm": "in each worker", "xgboost": "in each worker", "lightgbm": "in each worker",
          "catboost": "before fork", "pytorch": "before fork"}


def _flat(predictions: list) -> list[float]:
    """One value per row, whether the server sent values, one-value lists or one-column records."""
    return [next(iter(p.values())) if isinstance(p, dict) else p[0] if isinstance(p, list) else p
            for p in predictions]


@pytest.mark.parametrize("workers", ["1", "4"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_requests_right_after_ping_answer(start, fork_model, data, name, workers):
    path, expected = fork_model(name)
    rows = data[2]
    # Each worker's OpenMP pool gets 2 threads whatever the worker count (the server would give each worker
    # cores // workers, and with 1 thread libgomp starts no pool): the master's load starts a pool to survive.
    server = start(path, "-w", workers, env={"OMP_NUM_THREADS": "2"})  # returns at the first /ping 200
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}

    def post(_):
        return requests.post(f"{server.url}/invocations", json=body, timeout=TIMEOUT)

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(post, range(PARALLEL)))
    for resp in answers:
        assert resp.status_code == 200, resp.text
        assert _flat(resp.json()["predictions"]) == pytest.approx(expected.ravel().tolist(), rel=1e-5)
    assert f"model loaded {LOADED[name]}" in server.log()
    assert requests.get(f"{server.url}/ping", timeout=TIMEOUT).json() == {"status": "ok"}


def test_ping_is_503_until_the_model_answers_its_example(tmp_path, data, monkeypatch):
    """The readiness check scores the saved serving example; a model that fails it is not ready."""
    from modelpack.config import ServeConfig
    from modelpack.server.app import create_app

    X = data[0]

    class FailsInServer(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            if os.environ.get("FORK_SAFETY_TEST_BROKEN"):
                raise RuntimeError("broken at serving time")
            return model_input["bmi"].to_numpy()

    path = _save(FailsInServer(), tmp_path / "fails", X)
    monkeypatch.setenv("FORK_SAFETY_TEST_BROKEN", "1")
    client = create_app(modelpack.load_model(path), ServeConfig(path)).test_client()
    resp = client.get("/ping")
    assert resp.status_code == 503
    assert resp.json["error_code"] == "MODEL_NOT_READY" and "MODEL_ERROR" in resp.json["message"]
    assert client.get("/health").status_code == 503
    monkeypatch.delenv("FORK_SAFETY_TEST_BROKEN")
    assert client.get("/ping").status_code == 200  # retried: ready once the example answers
    assert client.get("/ping").json == {"status": "ok"}

    (path / "serving_input_example.json").write_text('{"not_a_format": 1}')  # a 400: it cannot tell, no block
    monkeypatch.setenv("FORK_SAFETY_TEST_BROKEN", "1")
    assert create_app(modelpack.load_model(path), ServeConfig(path)).test_client().get("/ping").status_code == 200


def test_a_worker_that_cannot_predict_never_says_200(start, fork_model):
    """Forced to preload a model that started an OpenMP pool, workers hang in their warm-up: /ping must not
    answer 200 (nobody accepts), the log says why, and gunicorn replaces the worker after --timeout."""
    path, _ = fork_model("hgb_warm")
    server = start(path, "-w", "2", "-t", "2", env={"MODELPACK_PRELOAD": "always", "OMP_NUM_THREADS": "2"}, wait=0)
    statuses = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            statuses.append(requests.get(f"{server.url}/ping", timeout=0.5).status_code)
        except requests.RequestException as exc:
            statuses.append(type(exc).__name__)
        time.sleep(0.1)
    text = server.log()
    assert 200 not in statuses, text
    assert "has not answered its serving example" in text and "WORKER TIMEOUT" in text


def test_preload_setting_is_checked(monkeypatch):
    from modelpack.config import ServeConfig
    from modelpack.errors import ModelpackError

    monkeypatch.setenv("MODELPACK_PRELOAD", "Never")
    assert ServeConfig.from_env(Path("m")).preload == "never"
    monkeypatch.setenv("MODELPACK_PRELOAD", "sometimes")
    with pytest.raises(ModelpackError, match="MODELPACK_PRELOAD"):
        ServeConfig.from_env(Path("m"))


@pytest.fixture(scope="module")
def omp_echo_dir(tmp_path_factory) -> Path:
    """A model that answers with the OMP_NUM_THREADS its worker was started with."""

    class OmpEcho(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import os

            return [os.environ.get("OMP_NUM_THREADS", "unset")] * len(model_input)

    path = tmp_path_factory.mktemp("models") / "omp_echo"
    modelpack.save_model(OmpEcho(), path)
    return path


@pytest.mark.parametrize("workers, user_value, expected", [
    (2, None, str(max(1, len(os.sched_getaffinity(0)) // 2))),
    (1, None, str(len(os.sched_getaffinity(0)))),
    (2, "3", "3"),
])
def test_workers_share_the_cores_in_openmp_pools(omp_echo_dir, serve, monkeypatch, workers, user_value, expected):
    if user_value is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", user_value)
    else:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    server = serve(omp_echo_dir, "-w", str(workers))
    response = server.post(b'{"inputs": [1]}')
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [expected]
