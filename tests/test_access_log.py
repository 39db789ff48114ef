"""Request ids and the access log (modelpack/server/observe.py, worker.py): an ``X-Request-ID`` is honoured or
made, returned on every response (the worker's own 400/408/413 included) and written on every log line of its
request, so a 500's error id, the client's id, the traceback and the access line all match; ``--log-format json``
makes every line a JSON object; ``--no-access-log`` turns the access lines off. Real servers over HTTP."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests

from modelpack.server.observe import head_info, request_id_from, row_count

JSON = {"Content-Type": "application/json"}
GOOD = b'{"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}}'
RAISES = b'{"dataframe_split": {"columns": ["x"], "data": [[-1]]}}'  # custom_model_dir's model raises on it
GENERATED = re.compile(r"[0-9a-f]{32}")


def access_lines(server) -> list[str]:
    return [line for line in server.log().splitlines() if " modelpack.access: " in line]


def post(server, body: bytes = GOOD, **headers: str) -> requests.Response:
    return requests.post(f"{server.url}/invocations", data=body, headers={**JSON, **headers}, timeout=15)


def raw_exchange(server, data: bytes, wait: float = 0) -> bytes:
    """Send ``data`` on a new connection (then nothing more for ``wait`` s) and read until the server closes."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait + 15) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


def header(reply: bytes, name: str) -> str | None:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


@pytest.fixture
def server(serve, custom_model_dir):
    return serve(custom_model_dir, "-w", "2")


def test_a_request_id_is_honoured_or_made_and_returned(server):
    mine = post(server, **{"X-Request-ID": "client-42.a:b/c+d=e@f~g"})
    assert mine.status_code == 200 and mine.headers["X-Request-ID"] == "client-42.a:b/c+d=e@f~g"
    made = [post(server).headers["X-Request-ID"] for _ in range(3)]
    assert all(GENERATED.fullmatch(i) for i in made) and len(set(made)) == 3
    # not a sane token (spaces, quotes, too long): replaced, so it cannot break log lines or messages
    for bad in ("two words", 'quote"d', "x" * 201, "semi;colon"):
        replaced = post(server, **{"X-Request-ID": bad}).headers["X-Request-ID"]
        assert GENERATED.fullmatch(replaced), bad
    for method, path, status in [("get", "/nope", 404), ("get", "/invocations", 405), ("get", "/ping", 200),
                                 ("get", "/metrics", 200), ("get", "/version", 200)]:
        reply = getattr(requests, method)(f"{server.url}{path}", headers={"X-Request-ID": f"r-{status}"}, timeout=10)
        assert reply.status_code == status and reply.headers["X-Request-ID"] == f"r-{status}", path
    lines = access_lines(server)
    mine_line = next(line for line in lines if "[client-42.a:b/c+d=e@f~g]" in line)
    assert "modelpack.access: POST /invocations 200 " in mine_line and " rows=2 model=custom_model " in mine_line
    assert any("[r-404] modelpack.access: GET /nope 404 " in line and "route=other" in line for line in lines)
    assert not any("two words" in line for line in lines)


def test_the_workers_own_answers_carry_the_request_id(serve, custom_model_dir):
    server = serve(custom_model_dir, "-w", "1", env={"MODELPACK_MAX_BODY_BYTES": "1000"})
    too_big = raw_exchange(server, b"POST /invocations HTTP/1.1\r\nHost: t\r\nX-Request-ID: big-1\r\n"
                                   b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
    assert too_big.startswith(b"HTTP/1.1 413 ") and header(too_big, "X-Request-ID") == "big-1"
    bad_framing = raw_exchange(server, b"POST /invocations HTTP/1.1\r\nHost: t\r\nX-Request-ID: frame-1\r\n"
                                       b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc")
    assert bad_framing.startswith(b"HTTP/1.1 400 ") and header(bad_framing, "X-Request-ID") == "frame-1"
    bad_line = raw_exchange(server, b"NOT A REQUEST LINE AT ALL\r\nX-Request-ID: parse-1\r\n\r\n")
    assert bad_line.startswith(b"HTTP/1.1 400 ") and header(bad_line, "X-Request-ID") == "parse-1"
    unnamed = raw_exchange(server, b"GET /ping HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    assert unnamed.startswith(b"HTTP/1.1 400 ") and GENERATED.fullmatch(header(unnamed, "X-Request-ID") or "")
    lines = access_lines(server)
    assert any("[big-1] modelpack.access: POST /invocations 413 " in line and "model=custom_model" in line
               for line in lines)
    assert any("[frame-1] modelpack.access: POST /invocations 400 " in line for line in lines)
    assert any("[parse-1] modelpack.access: " in line and " 400 " in line for line in lines)
    # the worker's warning about the bad request line is written under its id too
    assert any("[parse-1]" in line and "Invalid request" in line for line in server.log().splitlines())


def test_a_body_that_stops_arriving_gets_a_408_with_its_request_id(serve, custom_model_dir):
    server = serve(custom_model_dir, "-w", "1")
    started = time.monotonic()
    reply = raw_exchange(server, b"POST /invocations HTTP/1.1\r\nHost: t\r\nX-Request-ID: stalled-1\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"", wait=12)
    assert reply.startswith(b"HTTP/1.1 408 ") and header(reply, "X-Request-ID") == "stalled-1"
    assert 9 < time.monotonic() - started < 14
    line = next(line for line in access_lines(server) if "[stalled-1]" in line)
    assert "POST /invocations 408 " in line
    millis = float(re.search(r" 408 ([0-9.]+)ms ", line).group(1))
    assert 9000 < millis < 14000  # from the request's first byte to the answer


def test_a_500s_error_id_is_the_request_id_on_every_line_of_it(server):
    reply = post(server, RAISES, **{"X-Request-ID": "trace-me-1"})
    assert reply.status_code == 500 and reply.headers["X-Request-ID"] == "trace-me-1"
    message = reply.json()["message"]
    assert message.endswith("details are in the server log under error id trace-me-1")
    lines = [line for line in server.log().splitlines() if "trace-me-1" in line]
    error = next(i for i, line in enumerate(lines) if "[ERROR] [trace-me-1] modelpack.server: MODEL_ERROR" in line)
    traceback = lines[error + 1:]
    assert traceback[0] == "[trace-me-1] Traceback (most recent call last):"
    assert "[trace-me-1] ValueError: negative input: secret-row-value" in traceback
    assert "[INFO] [trace-me-1] modelpack.access: POST /invocations 500 " in lines[-1]
    # every line of the traceback carries the id: grepping for it finds the whole story
    start = server.log().index("MODEL_ERROR (error id trace-me-1)")
    story = server.log()[start:].split(" modelpack.access: ")[0].splitlines()[1:-1]
    assert story and all(line.startswith("[trace-me-1] ") for line in story)


def test_a_500_without_a_client_id_is_found_by_the_id_the_server_made(server):
    reply = post(server, RAISES)
    made = reply.headers["X-Request-ID"]
    assert GENERATED.fullmatch(made) and reply.json()["message"].endswith(f"error id {made}")
    assert f"[{made}] Traceback (most recent call last):" in server.log()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_json_lines(serve, custom_model_dir, how):
    server = (serve(custom_model_dir, "-w", "2", "--log-format", "json") if how == "flag"
              else serve(custom_model_dir, "-w", "2", env={"MODELPACK_LOG_FORMAT": "json"}))
    assert post(server, **{"X-Request-ID": "json-1"}).status_code == 200
    assert post(server, RAISES, **{"X-Request-ID": "json-2"}).status_code == 500
    too_big = requests.post(f"{server.url}/invocations", headers={**JSON, "Content-Length": "999999999999",
                                                                  "X-Request-ID": "json-3"}, timeout=10)
    assert too_big.status_code == 413
    server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "logger", "message", "pid"} <= set(r) for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in records)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    access = {r["request_id"]: r for r in records if r["logger"] == "modelpack.access"}
    ok = access["json-1"]
    assert (ok["method"], ok["path"], ok["route"], ok["status"], ok["rows"], ok["model"], ok["level"]) == (
        "POST", "/invocations", "/invocations", 200, 2, "custom_model", "INFO")
    assert 0 < ok["duration_ms"] < 10_000 and ok["client"] == "127.0.0.1"
    assert access["json-2"]["status"] == 500 and access["json-3"]["status"] == 413
    error = next(r for r in records if r["level"] == "ERROR" and r.get("request_id") == "json-2")
    assert error["message"].startswith("MODEL_ERROR (error id json-2)")
    assert error["exception"].startswith("Traceback") and "secret-row-value" in error["exception"]
    ping = next(r for r in records if r["logger"] == "modelpack.access" and r["path"] == "/ping")
    assert ping["rows"] is None and ping["model"] is None


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_access_log(serve, custom_model_dir, how):
    server = (serve(custom_model_dir, "--no-access-log") if how == "flag"
              else serve(custom_model_dir, env={"MODELPACK_ACCESS_LOG": "0"}))
    reply = post(server, **{"X-Request-ID": "quiet-1"})
    assert reply.status_code == 200 and reply.headers["X-Request-ID"] == "quiet-1"
    assert post(server, RAISES, **{"X-Request-ID": "quiet-2"}).status_code == 500
    assert access_lines(server) == []
    assert "[quiet-2] Traceback" in server.log()  # the request's other lines keep its id


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_other_worker_classes(serve, custom_model_dir, worker_class):
    server = serve(custom_model_dir, "-w", "2", env={"MODELPACK_WORKER_CLASS": worker_class})
    for i in range(4):
        reply = post(server, **{"X-Request-ID": f"{worker_class}-{i}"})
        assert reply.status_code == 200 and reply.headers["X-Request-ID"] == f"{worker_class}-{i}"
    failed = post(server, RAISES, **{"X-Request-ID": f"{worker_class}-boom"})
    assert failed.json()["message"].endswith(f"error id {worker_class}-boom")
    assert f"[{worker_class}-boom] Traceback" in server.log()
    assert sum(f"[{worker_class}-" in line for line in access_lines(server)) == 5
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'modelpack_requests_total{method="POST",model="custom_model",route="/invocations",status="200"} 4.0' \
        in metrics


# -- the helpers, unit level -------------------------------------------------------------------------------------

def test_head_info_reads_what_has_arrived():
    assert head_info(b"POST /invocations?x=1 HTTP/1.1\r\nHost: t\r\nx-request-ID:  abc \r\n\r\n") == (
        "POST", "/invocations", "abc")
    assert head_info(b"POST /invocations HTTP/1.1\r\nHost: t\r\nX-Request-ID: cut-sho") == (
        "POST", "/invocations", None)
    assert head_info(b"POST /invoc") == ("", "", None)
    assert head_info(b"") == ("", "", None)


def test_request_ids_and_row_counts():
    import numpy as np
    import pandas as pd

    assert request_id_from("abc-1") == "abc-1"
    assert GENERATED.fullmatch(request_id_from(None)) and GENERATED.fullmatch(request_id_from("a b"))
    assert row_count(pd.DataFrame({"a": range(7)})) == 7
    assert row_count(np.zeros((4, 3))) == 4 and row_count(np.float64(1.0)) == 1
    assert row_count({"t": np.zeros((5, 2)), "u": np.zeros(5)}) == 5
    assert row_count([1, 2, 3]) == 3 and row_count("text") is None


def test_settings_from_the_environment_and_back_to_arguments(monkeypatch, tmp_path):
    from modelpack.config import ServeConfig, ServedModel
    from modelpack.errors import ModelpackError
    from modelpack.server.__main__ import parse_args

    default = ServeConfig.from_env(tmp_path)
    assert (default.metrics, default.log_format, default.access_log) == (True, "plain", True)
    assert not {"--no-metrics", "--log-format", "--no-access-log"} & set(default.to_args())  # older servers take it
    monkeypatch.setenv("MODELPACK_METRICS", "off")
    monkeypatch.setenv("MODELPACK_LOG_FORMAT", "JSON")
    monkeypatch.setenv("MODELPACK_ACCESS_LOG", "0")
    config = ServeConfig.from_env(tmp_path, models=(ServedModel("m", tmp_path, str(tmp_path)),))  # as the CLI's
    assert (config.metrics, config.log_format, config.access_log) == (False, "json", False)
    assert ServeConfig.from_env(tmp_path, metrics=True).metrics  # a flag wins over the environment
    monkeypatch.delenv("MODELPACK_METRICS")
    monkeypatch.delenv("MODELPACK_LOG_FORMAT")
    monkeypatch.delenv("MODELPACK_ACCESS_LOG")
    assert parse_args(config.to_args()) == config  # what the CLI hands the server is what it meant
    monkeypatch.setenv("MODELPACK_METRICS", "maybe")
    with pytest.raises(ModelpackError, match="MODELPACK_METRICS must be 1 or 0"):
        ServeConfig.from_env(tmp_path)
    monkeypatch.setenv("MODELPACK_METRICS", "1")
    monkeypatch.setenv("MODELPACK_LOG_FORMAT", "xml")
    with pytest.raises(ModelpackError, match=r"MODELPACK_LOG_FORMAT must be one of \['plain', 'json'\], got 'xml'"):
        ServeConfig.from_env(tmp_path)
