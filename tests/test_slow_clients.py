"""The buffering worker (modelpack/server/worker.py) over real sockets: slow or idle clients do not hold the
server, every protocol error is JSON, and keep-alive, pipelining and ``Expect: 100-continue`` work.

Everything runs on loopback against ``modelpack serve -w 1`` (one worker: the easiest to starve)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

import modelpack

PING = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture
def server(serve, diabetes_model_dir):
    return serve(diabetes_model_dir, "-w", "1")


@pytest.fixture
def body(diabetes) -> bytes:
    X, _ = diabetes
    return json.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(2).to_numpy().tolist()}}).encode()


def _port(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=15)
    return sock


_pending: dict[int, bytes] = {}  # bytes received after a response, per socket (pipelined answers)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from ``sock`` (interim 1xx responses skipped)."""
    data = _pending.pop(sock.fileno(), b"")
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200:
            continue
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers["content-length"])
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            data += chunk
        _pending[sock.fileno()] = data[length:]
        return status, headers, data[:length]


class _SlowClients:
    """``n`` connections that send their request a byte every ``interval`` seconds (or nothing)."""

    def __init__(self, server, n: int, interval: float = 0.5) -> None:
        self.stop = threading.Event()
        self.socks = [_connect(server) for _ in range(n)]
        kinds = [b"POST /invocations HTTP/1.1\r\n",  # slow headers
                 b"POST /invocations HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n\r\n",
                 None]  # idle
        self.threads = [threading.Thread(target=self._drip, args=(s, kinds[i % 3], interval), daemon=True)
                        for i, s in enumerate(self.socks)]
        for t in self.threads:
            t.start()

    def _drip(self, sock: socket.socket, start: bytes | None, interval: float) -> None:
        try:
            if start is not None:
                sock.sendall(start)
            while not self.stop.wait(interval):
                if start is not None:
                    sock.sendall(b"X")
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        for s in self.socks:
            s.close()


def test_slow_and_idle_clients_do_not_hold_the_worker(server, body):
    attack = _SlowClients(server, 7)
    try:
        time.sleep(1.0)  # every slow client is connected and has started sending
        for _ in range(10):
            started = time.monotonic()
            assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
            reply = server.post(body)
            assert reply.status_code == 200, reply.text
            assert len(reply.json()["predictions"]) == 2
            assert time.monotonic() - started < 2
    finally:
        attack.close()


def test_headers_that_never_finish_get_a_json_408(server):
    sock = _connect(server)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: t\r\n")
    started = time.monotonic()
    try:
        while time.monotonic() - started < 14:
            sock.sendall(b"X")  # still sending, never finishing
            time.sleep(0.5)
    except OSError:
        pass  # closed by the server after its answer
    status, headers, payload = _read_response(sock)
    assert status == 408 and headers["content-type"] == "application/json"
    assert "headers must arrive within 10 s" in json.loads(payload)["message"]
    assert 9 < time.monotonic() - started < 14


def test_keep_alive_pipelining_and_expect_continue(server, body):
    sock = _connect(server)
    sock.sendall(PING + PING)  # two requests in one packet: two answers, in order, on the same connection
    assert _read_response(sock)[0] == 200 and _read_response(sock)[0] == 200
    head = (b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    sock.sendall(head)
    interim = sock.recv(100)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim  # sent before the body arrived
    sock.sendall(body)
    status, _, payload = _read_response(sock)
    assert status == 200 and len(json.loads(payload)["predictions"]) == 2
    sock.close()


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /ping HTTP/9.9\r\nHost: t\r\n\r\n", 400),
    (b"GET /ping HTTP/1.1\r\nBad Header Name: x\r\n\r\n", 400),
    (b"POST /invocations HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/csv\r\n\r\nZZ\r\n", 400),
    (b"POST /invocations HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"GET /ping HTTP/1.1\r\n" + b"X-Flood: y\r\n" * 6000 + b"\r\n", 431),
])
def test_protocol_errors_are_json(server, raw, status):
    sock = _connect(server)
    sock.sendall(raw)
    got, headers, payload = _read_response(sock)
    assert got == status, payload
    assert headers["content-type"] == "application/json" and headers.get("connection") == "close"
    error = json.loads(payload)
    assert error["error_code"] and error["message"] and b"<html" not in payload.lower()
    assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200  # the worker is fine


def test_chunked_body_over_the_limit_is_413_before_it_is_sent(serve, diabetes_model_dir):
    server = serve(diabetes_model_dir, "-w", "1", env={"MODELPACK_MAX_BODY_BYTES": "1000"})
    sock = _connect(server)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"800\r\n" + b"1," * 0x400)  # announces 2,048 bytes: refused without waiting for them
    status, _, payload = _read_response(sock)
    assert status == 413 and json.loads(payload)["error_code"] == "PAYLOAD_TOO_LARGE"


@pytest.fixture(scope="module")
def sleepy_model_dir(tmp_path_factory):
    """A custom model that sleeps ``seconds`` (a column) before answering."""
    class Sleepy(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            time.sleep(float(model_input["seconds"].max()))
            return model_input["seconds"]

    path = tmp_path_factory.mktemp("sleepy") / "model"
    modelpack.save_model(Sleepy(), path)
    return path


def test_a_request_past_the_timeout_is_a_json_504_and_the_server_recovers(serve, sleepy_model_dir):
    server = serve(sleepy_model_dir, "-w", "1", "--timeout", "3")
    started = time.monotonic()
    reply = server.post(json.dumps({"dataframe_split": {"columns": ["seconds"], "data": [[30]]}}))
    assert reply.status_code == 504, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert "timeout of 3 s" in reply.json()["message"]
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 30  # the worker is replaced; the next one answers
    while time.monotonic() < deadline:
        try:
            quick = server.post(json.dumps({"dataframe_split": {"columns": ["seconds"], "data": [[0]]}}))
            if quick.status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    assert quick.status_code == 200 and quick.json()["predictions"] == [{"seconds": 0}]  # a Series: MLflow's records


def test_many_pipelined_requests_are_answered_in_order(server):
    sock = _connect(server)
    sock.sendall(PING * 300 + b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n")
    for _ in range(300):
        assert _read_response(sock)[:1] == (200,)
    assert _read_response(sock)[2] == modelpack.__version__.encode()  # /version: the bare version, as MLflow's
    sock.close()


def test_a_long_prediction_holds_only_its_own_worker(serve, sleepy_model_dir):
    """While one worker predicts for seconds, the other answers /ping and predictions at once."""
    server = serve(sleepy_model_dir, "-w", "2", "--timeout", "30")
    slow = threading.Thread(target=server.post, args=(json.dumps({"dataframe_split": {"columns": ["seconds"],
                                                                                      "data": [[4]]}}),))
    slow.start()
    time.sleep(0.5)  # the slow request is being predicted
    try:
        for _ in range(10):
            started = time.monotonic()
            assert requests.get(f"{server.url}/ping", timeout=3).status_code == 200
            quick = server.post(json.dumps({"dataframe_split": {"columns": ["seconds"], "data": [[0]]}}))
            assert quick.status_code == 200 and time.monotonic() - started < 1.5
    finally:
        slow.join()


def test_a_refusal_reaches_a_client_still_sending_its_body(serve, diabetes_model_dir):
    """The 413 is sent while the body still arrives. Closing with unread bytes makes the kernel send a reset,
    which on a real network can overtake the answer (RFC 9112, 9.6), so the worker half-closes and drops the
    rest first. On loopback the answer also survived without that; this checks the lingering path works."""
    server = serve(diabetes_model_dir, "-w", "1", env={"MODELPACK_MAX_BODY_BYTES": "1000"})
    for _ in range(5):
        sock = _connect(server)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Type: text/csv\r\nContent-Length: 50000000\r\n\r\n")
        try:
            for _ in range(16):
                sock.sendall(b"1," * 65536)  # keeps sending after the server answered
        except OSError:
            pass  # the server stopped reading after its linger time
        status, _, payload = _read_response(sock)
        assert status == 413 and json.loads(payload)["error_code"] == "PAYLOAD_TOO_LARGE"
        sock.close()
