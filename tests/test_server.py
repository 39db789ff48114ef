"""The scoring server as users meet it: `modelpack serve` -> gunicorn subprocess -> real HTTP."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests
from helpers import start_server

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW = [0.038076, 0.050680, 0.061696, 0.021872, -0.044223, -0.034821, -0.043401, -0.002592, 0.019908, -0.017646]
# The seed's curl body, byte for byte.
SEED_BODY = (
    '{"columns":["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],"data":[[0.038076,0.050680,0.061696,'
    '0.021872,-0.044223,-0.034821,-0.043401,-0.002592,0.019908,-0.017646]]}'
)


@pytest.fixture(scope="module")
def diabetes_server(diabetes_model_dir, tmp_path_factory):
    server = start_server(diabetes_model_dir, tmp_path_factory.mktemp("srv"), "-w", "2")
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def custom_server(custom_model_dir, tmp_path_factory):
    server = start_server(custom_model_dir, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(elasticnet, diabetes):
    import pandas as pd

    X, _ = diabetes
    return {
        "seed": elasticnet.predict(pd.DataFrame([ROW], columns=COLUMNS)).tolist(),
        "head": elasticnet.predict(X.head(5)).tolist(),
    }


def _preds(resp: requests.Response) -> list:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()["predictions"]


# -- health and metadata routes -------------------------------------------------------

@pytest.mark.parametrize("route", ["/ping", "/health"])
def test_health_routes(diabetes_server, route):
    resp = requests.get(diabetes_server.url + route, timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_version_route(diabetes_server):
    """The bare version, as MLflow's scoring server answers (its client returns the text as it is)."""
    import modelpack

    resp = requests.get(diabetes_server.url + "/version", timeout=5)
    assert resp.status_code == 200 and resp.text == modelpack.__version__


# -- every request format ------------------------------------------------------------

def test_seed_curl_body_bare_split(diabetes_server, expected):
    assert _preds(diabetes_server.post(SEED_BODY)) == pytest.approx(expected["seed"], rel=1e-12)


def test_dataframe_split(diabetes_server, diabetes, expected):
    X, _ = diabetes
    body = {"dataframe_split": {"columns": COLUMNS, "data": X.head(5).values.tolist()}}
    assert _preds(diabetes_server.post(orjson.dumps(body))) == pytest.approx(expected["head"], rel=1e-12)


def test_dataframe_split_with_index(diabetes_server, diabetes, expected):
    X, _ = diabetes
    body = {"dataframe_split": {"columns": COLUMNS, "index": list(range(5)), "data": X.head(5).values.tolist()}}
    assert _preds(diabetes_server.post(orjson.dumps(body))) == pytest.approx(expected["head"], rel=1e-12)


def test_dataframe_records(diabetes_server, diabetes, expected):
    X, _ = diabetes
    body = {"dataframe_records": X.head(5).to_dict(orient="records")}
    assert _preds(diabetes_server.post(orjson.dumps(body))) == pytest.approx(expected["head"], rel=1e-12)


def test_instances_records(diabetes_server, diabetes, expected):
    X, _ = diabetes
    body = {"instances": X.head(5).to_dict(orient="records")}
    assert _preds(diabetes_server.post(orjson.dumps(body))) == pytest.approx(expected["head"], rel=1e-12)


def test_inputs_columns(diabetes_server, diabetes, expected):
    X, _ = diabetes
    body = {"inputs": {c: X[c].head(5).tolist() for c in COLUMNS}}
    assert _preds(diabetes_server.post(orjson.dumps(body))) == pytest.approx(expected["head"], rel=1e-12)


def test_csv(diabetes_server, diabetes, expected):
    X, _ = diabetes
    body = X.head(5).to_csv(index=False, float_format="%.17g")
    assert _preds(diabetes_server.post(body, "text/csv")) == pytest.approx(expected["head"], rel=1e-12)


def test_json_with_charset(diabetes_server, expected):
    resp = diabetes_server.post(SEED_BODY, "application/json; charset=utf-8")
    assert _preds(resp) == pytest.approx(expected["seed"], rel=1e-12)


def test_tensor_inputs_and_params(custom_server):
    assert _preds(custom_server.post(b'{"inputs": [[1, 2], [3, 4]]}')) == [[2, 4], [6, 8]]
    assert _preds(custom_server.post(b'{"instances": [1, 2, 3], "params": {"scale": 10}}')) == [20, 40, 60]
    assert _preds(custom_server.post(b'{"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}, '
                                     b'"params": {"scale": 3}}')) == [6, 12]


def test_concurrent_requests_all_answered(diabetes_server, expected):
    results: list[int] = []

    def worker() -> None:
        for _ in range(10):
            results.append(diabetes_server.post(SEED_BODY).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 80


# -- the error contract ---------------------------------------------------------------

def _error(resp: requests.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code
    assert "Traceback" not in body["message"]
    return body["message"]


@pytest.mark.parametrize(
    "body, status, code, fragment",
    [
        (b'{"columns": ["age"', 400, "BAD_REQUEST", "not valid JSON"),
        (b"", 400, "BAD_REQUEST", "not valid JSON"),
        (b"[1, 2, 3]", 400, "BAD_REQUEST", "must be an object"),
        (b'{"foo": 1}', 400, "BAD_REQUEST", "got keys ['foo']"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}, "inputs": [1]}', 400, "BAD_REQUEST",
         "several input formats"),
        (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}', 400, "BAD_REQUEST",
         "row 0 has 1 values; expected 2"),
        (b'{"dataframe_split": [1, 2]}', 400, "BAD_REQUEST", "'dataframe_split' must be an object"),
        (b'{"dataframe_records": [1, 2]}', 400, "BAD_REQUEST", "list of objects"),
        (b'{"inputs": [[1, 2], [3]]}', 400, "BAD_REQUEST", "non-ragged"),
        (b'{"inputs": [1], "params": [1]}', 400, "BAD_REQUEST", "'params' must be an object"),
    ],
)
def test_bad_json_bodies(custom_server, body, status, code, fragment):
    message = _error(custom_server.post(body), status, code)
    assert fragment in message


def test_bad_csv(custom_server):
    assert "CSV body is empty" in _error(custom_server.post(b"  \n", "text/csv"), 400, "BAD_REQUEST")
    message = _error(custom_server.post(b'x,y\n1,2\n"3,4\n', "text/csv"), 400, "BAD_REQUEST")
    assert "CSV body cannot be parsed" in message


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_unsupported_content_type_is_json_415(custom_server, content_type):
    message = _error(custom_server.post(b'{"inputs": [1]}', content_type), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in message and "text/csv" in message


def test_oversized_body_is_413(custom_model_dir, serve):
    server = serve(custom_model_dir, env={"MODELPACK_MAX_BODY_BYTES": "1000"})
    body = b'{"inputs": [' + b",".join([b"1"] * 2000) + b"]}"
    message = _error(server.post(body), 413, "PAYLOAD_TOO_LARGE")
    assert "larger than the server's limit of 1000 bytes (MODELPACK_MAX_BODY_BYTES)" in message
    # A chunked body has no Content-Length to check first: it is refused as it is read.
    chunked = server.post(iter([body[:600], body[600:]]))
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert "larger than the server's limit of 1000 bytes" in _error(chunked, 413, "PAYLOAD_TOO_LARGE")
    assert _preds(server.post(b'{"inputs": [1]}')) == [2]  # and it keeps serving
    exact = b'{"inputs": [1]}'.ljust(1000)  # a body of exactly the limit is fine, either way
    assert _preds(server.post(exact)) == [2]
    assert _preds(server.post(iter([exact[:600], exact[600:]]))) == [2]


def test_model_exception_is_500_and_server_keeps_serving(custom_server):
    body = b'{"dataframe_split": {"columns": ["x"], "data": [[-1]]}}'
    message = _error(custom_server.post(body), 500, "MODEL_ERROR")
    assert "ValueError" in message and "error id" in message
    assert "so sending it again fails the same way" in message  # what the client can do: not retry
    assert "secret-row-value" not in message  # model error details stay in the server log
    error_id = message.rsplit(" ", 1)[-1]
    assert _preds(custom_server.post(b'{"inputs": [1]}')) == [2]
    log = custom_server.log()
    assert error_id in log and "secret-row-value" in log and "Traceback" in log


def test_a_bug_in_modelpack_is_500_internal_error_with_an_id(caplog):
    from modelpack.server.errors import to_response

    with caplog.at_level(logging.ERROR, logger="modelpack.server"):
        try:
            raise KeyError("secret-row-value")
        except KeyError as exc:
            status, body = to_response(exc)
    assert status == 500
    error = orjson.loads(body)
    assert error["error_code"] == "INTERNAL_ERROR" and "KeyError" in error["message"]
    assert "secret-row-value" not in error["message"] and "Traceback" not in error["message"]
    assert error["message"].rsplit(" ", 1)[-1] in caplog.text
    assert "secret-row-value" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("method, route, status, code", [
    ("get", "/nope", 404, "ENDPOINT_NOT_FOUND"),
    ("get", "/invocations", 405, "METHOD_NOT_ALLOWED"),
    ("post", "/ping", 405, "METHOD_NOT_ALLOWED"),
])
def test_routing_errors_are_json(custom_server, method, route, status, code):
    _error(getattr(requests, method)(custom_server.url + route, timeout=5), status, code)


def test_wrong_column_without_signature_is_500_not_crash(custom_server):
    # The custom model has no signature, so the model itself meets the bad column.
    _error(custom_server.post(b'{"dataframe_split": {"columns": ["y"], "data": [[1]]}}'), 500, "MODEL_ERROR")
    assert _preds(custom_server.post(b'{"inputs": [5]}')) == [10]


# -- lifecycle -----------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(custom_model_dir, serve, sig):
    server = serve(custom_model_dir, "-w", "2")
    assert _preds(server.post(b'{"inputs": [1]}')) == [2]
    assert server.stop(sig) == 0
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory) -> Path:
    """A custom model whose predict touches the file named by $SLOW_MODEL_STARTED, then takes a second:
    a test can wait for that file and know a request is in flight, without relying on timing."""
    import modelpack

    class Slow(modelpack.PythonModel):  # defined locally so cloudpickle stores it by value
        def predict(self, context, model_input, params=None):
            import os
            import pathlib
            import time

            import numpy as np

            pathlib.Path(os.environ["SLOW_MODEL_STARTED"]).touch()
            time.sleep(1.0)
            return np.asarray(model_input) * 2

    path = tmp_path_factory.mktemp("models") / "slow_model"
    modelpack.save_model(Slow(), path)
    return path


@pytest.mark.parametrize("group", [True, False], ids=["process-group", "master-only"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_in_flight_request_finish(slow_model_dir, serve, tmp_path, sig, group):
    """Ctrl-C (SIGINT to the whole process group, or to the master alone) stops as gracefully as SIGTERM:
    the request being computed gets its answer, the exit code is 0 and nothing is logged as a traceback."""
    started = tmp_path / "predict-started"
    server = serve(slow_model_dir, "-w", "2", env={"SLOW_MODEL_STARTED": str(started)})
    result: dict[str, object] = {}

    def client() -> None:
        try:
            result["response"] = server.post(b'{"inputs": [1, 2]}')
        except requests.RequestException as exc:
            result["response"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 10
    while not started.exists():
        assert time.monotonic() < deadline, f"the request never reached the model:\n{server.log()}"
        time.sleep(0.01)
    code = server.stop(sig, group=group)  # the model is still sleeping: the request is in flight
    thread.join(10)
    log = server.log()
    assert isinstance(result.get("response"), requests.Response), f"{result.get('response')!r}\n{log}"
    assert _preds(result["response"]) == [2, 4], log
    assert code == 0, log
    assert "Traceback" not in log, log


def test_missing_model_exits_with_clear_message(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "modelpack.cli", "serve", "-m", str(tmp_path / "nope"),
                           "-p", "1", "--env-manager", "local"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip() == f"Error: Model directory '{tmp_path / 'nope'}' does not exist"


def test_predictions_match_python_api(diabetes_server, diabetes_model_dir, diabetes):
    import modelpack

    X, _ = diabetes
    body = {"dataframe_split": {"columns": COLUMNS, "data": X.head(50).values.tolist()}}
    served = np.asarray(_preds(diabetes_server.post(orjson.dumps(body))))
    # Same rows, built the way the server builds them (row-major), so BLAS sums in the same order.
    import pandas as pd

    frame = pd.DataFrame(X.head(50).values.tolist(), columns=COLUMNS)
    np.testing.assert_array_equal(served, modelpack.load_model(diabetes_model_dir).predict(frame))


def test_no_control_socket_in_the_users_home(custom_model_dir, serve, tmp_path):
    """gunicorn 27 would open ~/.gunicorn/gunicorn.ctl, one path shared by every server of the user."""
    home = tmp_path / "home"
    home.mkdir()
    server = serve(custom_model_dir, env={"HOME": str(home)})
    assert _preds(server.post(b'{"inputs": [1]}')) == [2]
    assert not (home / ".gunicorn").exists()
