"""GET /metrics (modelpack/server/metrics.py, observe.py): real servers with two workers, scraped and parsed with
prometheus_client's own parser. Counts add up across workers and survive a killed worker; routes are templates;
rows, durations, requests in flight, schema rejections by column, model errors, restarts, the model's info and
load time; ``--no-metrics`` turns the route off."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import modelpack

JSON = {"Content-Type": "application/json"}


def scrape(server, **kw) -> list:
    """Every sample of one scrape."""
    reply = requests.get(f"{server.url}/metrics", timeout=10, **kw)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(reply.text) for s in family.samples]


def value(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def split_body(frame) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                           "data": frame.to_numpy().tolist()}}).encode()


def worker_pids(server) -> set[int]:
    """The gunicorn workers: the master's children (the master is the server's process: the CLI exec'd it)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == server.proc.pid:
                pids.add(int(entry))
    return pids


def access_pids(server) -> set[str]:
    """The pids of the processes that wrote an access line for POST /invocations."""
    return set(re.findall(r"\] \[(\d+)\] \[INFO\] \[[^]]+\] modelpack\.access: POST /invocations", server.log()))


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


MODEL = "diabetes_model"  # the diabetes_model_dir fixture's directory name: the model's name


def test_counts_rows_and_durations_add_up_across_two_workers(serve, diabetes_model_dir, diabetes):
    X, _ = diabetes
    server = serve(diabetes_model_dir, "-w", "2")
    one, three = split_body(X.head(1)), split_body(X.head(3))
    sent = {1: 0, 3: 0}
    # a new connection per request (no session): the workers take turns; go on until both have answered
    while len(access_pids(server)) < 2 or sum(sent.values()) < 20:
        rows = 1 if sum(sent.values()) % 2 else 3
        reply = requests.post(f"{server.url}/invocations", data=one if rows == 1 else three, headers=JSON, timeout=10)
        assert reply.status_code == 200, reply.text
        sent[rows] += 1
        assert sum(sent.values()) < 300, "one worker answered every request"
    total = sum(sent.values())

    samples = scrape(server)
    route = {"model": MODEL, "route": "/invocations"}
    assert value(samples, "modelpack_requests_total", **route, method="POST", status="200") == total
    assert value(samples, "modelpack_request_duration_seconds_count", **route) == total
    assert 0 < value(samples, "modelpack_request_duration_seconds_sum", **route) < total * 5
    assert value(samples, "modelpack_request_rows_count", model=MODEL) == total
    assert value(samples, "modelpack_request_rows_sum", model=MODEL) == sent[1] + 3 * sent[3]
    buckets = {float(s.labels["le"]): s.value for s in samples
               if s.name == "modelpack_request_rows_bucket" and s.labels["model"] == MODEL}
    assert buckets[1.0] == sent[1] and buckets[2.0] == sent[1] and buckets[5.0] == total
    assert buckets[float("inf")] == total
    # /ping (the start-up checks) counts too, without a model
    assert value(samples, "modelpack_requests_total", model="", route="/ping", status="200") >= 1
    assert value(samples, "modelpack_requests_in_flight", model=MODEL) == 0


def test_counters_survive_a_killed_worker_and_the_restart_is_counted(serve, diabetes_model_dir, diabetes):
    X, _ = diabetes
    server = serve(diabetes_model_dir, "-w", "2")
    body = split_body(X.head(2))
    while len(access_pids(server)) < 2:  # both workers have counted some
        assert requests.post(f"{server.url}/invocations", data=body, headers=JSON, timeout=10).status_code == 200
    before = value(scrape(server), "modelpack_requests_total", model=MODEL, route="/invocations")
    assert before >= 2

    workers = worker_pids(server)
    assert len(workers) == 2
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server), what="a new worker")
    samples = wait_for(lambda: (s := scrape(server)) and value(s, "modelpack_worker_restarts_total") == 1 and s,
                       what="the restart counted")
    assert value(samples, "modelpack_requests_total", model=MODEL, route="/invocations") == before
    assert value(samples, "modelpack_request_rows_sum", model=MODEL) == 2 * before

    for _ in range(5):
        assert requests.post(f"{server.url}/invocations", data=body, headers=JSON, timeout=10).status_code == 200
    samples = scrape(server)
    assert value(samples, "modelpack_requests_total", model=MODEL, route="/invocations") == before + 5
    assert value(samples, "modelpack_requests_in_flight", model=MODEL) == 0  # the dead worker's gauge is gone
    assert value(samples, "modelpack_model_info", model=MODEL) == 1  # live workers' info, once
    server.stop()
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory) -> Path:
    """A model that touches $SLOW_MODEL_STARTED, then sleeps ``x`` seconds: a request in flight on demand."""
    class Slow(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            seconds = float(model_input["x"].max())
            if seconds > 0:
                Path(os.environ["SLOW_MODEL_STARTED"]).touch()
                time.sleep(seconds)
            return model_input["x"]

    path = tmp_path_factory.mktemp("slow") / "slow"
    modelpack.save_model(Slow(), path)
    return path


def test_requests_in_flight(serve, slow_model_dir, tmp_path):
    started = tmp_path / "started"
    server = serve(slow_model_dir, "-w", "2", env={"SLOW_MODEL_STARTED": str(started)})
    replies = []
    slow = threading.Thread(target=lambda: replies.append(server.post(b'{"dataframe_split": {"columns": ["x"], '
                                                                      b'"data": [[2.0]]}}')))
    slow.start()
    try:
        wait_for(started.exists, what="the slow request started")
        samples = scrape(server)  # answered by the other worker, while the first one predicts
        assert value(samples, "modelpack_requests_in_flight", model="slow") == 1
        assert value(samples, "modelpack_requests_in_flight", model="") == 1  # this scrape itself
    finally:
        slow.join(30)
    assert replies and replies[0].status_code == 200
    samples = scrape(server)
    assert value(samples, "modelpack_requests_in_flight", model="slow") == 0
    assert value(samples, "modelpack_requests_total", model="slow", status="200") == 1
    assert value(samples, "modelpack_request_duration_seconds_bucket", model="slow", le="1.0") == 0
    assert value(samples, "modelpack_request_duration_seconds_bucket", model="slow", le="2.5") == 1


def test_schema_rejections_are_counted_by_the_signature_column(serve, diabetes_model_dir, diabetes):
    X, _ = diabetes
    server = serve(diabetes_model_dir, "-w", "2")
    wrong_type = X.head(2).astype(object)
    wrong_type["bmi"] = "heavy"
    assert server.post(split_body(wrong_type)).json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert server.post(split_body(wrong_type)).status_code == 400
    missing = split_body(X.head(2).drop(columns=["s1", "s2"]))
    assert server.post(missing).json()["error_code"] == "INVALID_PARAMETER_VALUE"
    nan = X.head(2).copy()
    nan.loc[0, "age"] = float("nan")
    assert "has no value" in server.post(split_body(nan)).json()["message"]
    # not schema rejections: a body that is no JSON, and an unknown column name (from the client: never a label)
    assert server.post(b"{not json").json()["error_code"] == "BAD_REQUEST"

    samples = scrape(server)
    rejected = {s.labels["column"]: s.value for s in samples
                if s.name == "modelpack_schema_rejections_total" and s.labels["model"] == MODEL}
    assert rejected == {"bmi": 2, "s1": 1, "s2": 1, "age": 1}
    assert value(samples, "modelpack_requests_total", model=MODEL, route="/invocations", status="400") == 5
    assert value(samples, "modelpack_model_errors_total") == 0


@pytest.fixture(scope="module")
def sleepy_model_dir(tmp_path_factory) -> Path:
    class Sleepy(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            time.sleep(float(model_input["seconds"].max()))
            return model_input["seconds"]

    path = tmp_path_factory.mktemp("sleepy") / "sleepy"
    modelpack.save_model(Sleepy(), path)
    return path


def test_model_errors_timeouts_and_the_restart_they_cause(serve, custom_model_dir, sleepy_model_dir):
    server = serve(custom_model_dir, "-w", "2")
    assert server.post(b'{"dataframe_split": {"columns": ["x"], "data": [[-1]]}}').status_code == 500
    samples = scrape(server)
    assert value(samples, "modelpack_model_errors_total", model="custom_model", error_code="MODEL_ERROR") == 1
    assert value(samples, "modelpack_requests_total", model="custom_model", status="500") == 1

    sleepy = serve(sleepy_model_dir, "-w", "1", "--timeout", "3")
    reply = sleepy.post(b'{"dataframe_split": {"columns": ["seconds"], "data": [[30]]}}')
    assert reply.status_code == 504
    samples = wait_for(lambda: (s := scrape(sleepy)) and value(s, "modelpack_worker_restarts_total") == 1 and s,
                       what="the timed-out worker's restart counted")
    assert value(samples, "modelpack_model_errors_total", model="sleepy", error_code="PREDICTION_TIMEOUT") == 1
    assert value(samples, "modelpack_requests_total", model="sleepy", route="/invocations", status="504") == 1
    assert value(samples, "modelpack_requests_in_flight", model="sleepy") == 0


def test_model_info_and_load_time(serve, diabetes_model_dir):
    import sklearn

    server = serve(diabetes_model_dir, "-w", "2")
    samples = scrape(server)
    info = [s for s in samples if s.name == "modelpack_model_info"]
    assert len(info) == 1 and info[0].value == 1
    uuid = modelpack.load_model(diabetes_model_dir).metadata.model_uuid
    assert info[0].labels == {"model": MODEL, "source": str(diabetes_model_dir), "version": "", "uuid": uuid,
                              "flavor": "sklearn", "flavor_version": sklearn.__version__,
                              "modelpack_version": modelpack.__version__}
    assert 0 < value(samples, "modelpack_model_load_seconds", model=MODEL) < 60
    assert value(samples, "python_info") == 1
    families = {f.name: f for f in text_string_to_metric_families(requests.get(f"{server.url}/metrics").text)}
    assert families["modelpack_requests"].type == "counter"
    assert families["modelpack_request_duration_seconds"].type == "histogram"
    assert families["modelpack_requests_in_flight"].type == "gauge"
    assert "route template" in families["modelpack_requests"].documentation


def test_routes_are_templates_and_unknown_paths_or_methods_add_no_labels(serve, diabetes_model_dir,
                                                                         custom_model_dir, diabetes):
    X, _ = diabetes
    server = serve(f"diabetes={diabetes_model_dir}", "-m", f"iris={custom_model_dir}", "-w", "2")
    assert requests.post(f"{server.url}/models/diabetes/invocations", data=split_body(X.head(1)), headers=JSON,
                         timeout=10).status_code == 200
    assert requests.post(f"{server.url}/models/iris/invocations", data=b'{"inputs": [1, 2]}', headers=JSON,
                         timeout=10).status_code == 200
    assert requests.get(f"{server.url}/models/nope-{os.getpid()}/metadata", timeout=10).status_code == 404
    for i in range(3):
        assert requests.get(f"{server.url}/no/such/path/{i}", timeout=10).status_code == 404
    assert requests.request("BREW", f"{server.url}/ping", timeout=10).status_code == 405

    samples = scrape(server)
    routes = {(s.labels["model"], s.labels["route"], s.labels["method"], s.labels["status"]): s.value
              for s in samples if s.name == "modelpack_requests_total"}
    assert routes[("diabetes", "/models/<name>/invocations", "POST", "200")] == 1
    assert routes[("iris", "/models/<name>/invocations", "POST", "200")] == 1
    assert routes[("", "/models/<name>/metadata", "GET", "404")] == 1
    assert routes[("", "other", "GET", "404")] == 3
    assert routes[("", "/ping", "OTHER", "405")] == 1
    labels = {v for s in samples for v in s.labels.values()}
    assert not any("nope" in v or "/no/such" in v or "BREW" in v for v in labels)
    assert "modelpack.access: BREW /ping 405 " in server.log()  # the log says what the client sent
    assert value(samples, "modelpack_request_rows_sum", model="iris") == 2


def test_answers_the_worker_writes_itself_are_counted(serve, diabetes_model_dir):
    import socket

    server = serve(diabetes_model_dir, "-w", "1", env={"MODELPACK_MAX_BODY_BYTES": "1000"})
    too_big = requests.post(f"{server.url}/invocations", data=b"x" * 5000, headers=JSON, timeout=10)
    assert too_big.status_code == 413
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    samples = scrape(server)
    assert value(samples, "modelpack_requests_total", model=MODEL, route="/invocations", method="POST",
                 status="413") == 1
    assert value(samples, "modelpack_requests_total", route="/ping", method="GET", status="400") == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_metrics_turns_the_route_off(serve, diabetes_model_dir, how):
    server = (serve(diabetes_model_dir, "--no-metrics") if how == "flag"
              else serve(diabetes_model_dir, env={"MODELPACK_METRICS": "0"}))
    reply = requests.get(f"{server.url}/metrics", timeout=10)
    assert reply.status_code == 404 and reply.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_openmetrics_when_asked(serve, diabetes_model_dir):
    server = serve(diabetes_model_dir)
    reply = requests.get(f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10)
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert reply.text.endswith("# EOF\n") and "modelpack_requests_total{" in reply.text


def test_the_private_directory_goes_at_exit_and_a_given_one_is_kept(serve, diabetes_model_dir, tmp_path):
    server = serve(diabetes_model_dir, "-w", "2", env={"MODELPACK_LOG_LEVEL": "debug"})
    found = re.search(r"Metrics: the processes' files are in (\S+) \(removed at exit\)", server.log())
    assert found, server.log()
    private = Path(found.group(1))
    assert private.is_dir() and any(private.glob("*-modelpack.db"))
    assert server.stop() == 0
    assert not private.exists()

    given = tmp_path / "prom"
    server = serve(diabetes_model_dir, "-w", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(given)})
    assert value(scrape(server), "modelpack_requests_total", route="/ping") >= 1
    assert server.stop() == 0
    assert {p.name.split("_")[0] for p in given.glob("*.db")} >= {"counter", "histogram"}


@pytest.fixture(scope="module")
def counting_model_dir(tmp_path_factory) -> Path:
    """A model that counts its calls in a prometheus_client Counter of its own."""
    class Counting(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import prometheus_client

            if not hasattr(self, "calls"):
                self.calls = prometheus_client.Counter("counting_model_calls", "Calls of the counting model")
            self.calls.inc()
            return model_input

    path = tmp_path_factory.mktemp("counting") / "counting"
    modelpack.save_model(Counting(), path)
    return path


def test_a_models_own_prometheus_metrics_are_served_too(serve, counting_model_dir):
    server = serve(counting_model_dir, "-w", "2")
    for _ in range(6):
        assert requests.post(f"{server.url}/invocations", data=b'{"inputs": [1]}', headers=JSON,
                             timeout=10).status_code == 200
    assert value(scrape(server), "counting_model_calls_total") == 6


def test_a_reload_replaces_the_workers_and_a_failed_one_is_counted(serve, diabetes_model_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "reloaded"
    shutil.copytree(diabetes_model_dir, model_dir)
    server = serve(model_dir, "-w", "2")
    assert requests.get(f"{server.url}/metadata", timeout=10).status_code == 200
    before = worker_pids(server)
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reloaded: new workers serve" in server.log(), what="the reload")
    wait_for(lambda: len(worker_pids(server)) == 2 and not worker_pids(server) & before, what="new workers")
    samples = wait_for(lambda: (s := scrape(server)) and value(s, "modelpack_worker_restarts_total") == 2 and s,
                       what="the replaced workers counted")
    assert value(samples, "modelpack_requests_total", route="/metadata", status="200") == 1  # kept
    assert [s.value for s in samples if s.name == "modelpack_model_info"] == [1]  # the old workers' info is gone
    assert value(samples, "modelpack_reload_failures_total") == 0

    (model_dir / "MLmodel").write_text("flavors: [not, a, model]\n")
    server.proc.send_signal(signal.SIGHUP)
    samples = wait_for(lambda: (s := scrape(server)) and value(s, "modelpack_reload_failures_total") == 1 and s,
                       what="the failed reload counted")
    assert "Reload failed" in server.log()
    assert requests.get(f"{server.url}/metadata", timeout=10).status_code == 200  # the old model still serves


def test_a_killed_servers_directory_is_swept_by_the_next_one(serve, diabetes_model_dir, tmp_path):
    from modelpack.server.metrics import _process_identity

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    alive = tmp / "modelpack-metrics-alive"  # a live process's (this one's): kept
    alive.mkdir()
    (alive / "owner.json").write_text(json.dumps(_process_identity(os.getpid())))
    foreign = tmp / "modelpack-metrics-foreign"  # no owner file: not ours to judge
    foreign.mkdir()

    killed = serve(diabetes_model_dir, "-w", "2", env=env)
    private = [p for p in tmp.glob("modelpack-metrics-*") if p not in (alive, foreign)]
    assert len(private) == 1 and (private[0] / "owner.json").is_file()
    os.killpg(killed.proc.pid, signal.SIGKILL)  # master and workers: nobody removes the directory
    killed.proc.wait(10)
    assert private[0].is_dir()

    server = serve(diabetes_model_dir, "-w", "2", env=env)
    assert not private[0].exists() and alive.is_dir() and foreign.is_dir()
    assert server.stop() == 0
    assert sorted(tmp.glob("modelpack-metrics-*")) == sorted([alive, foreign])
