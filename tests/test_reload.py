"""Changing what is served without dropping a request: SIGHUP (and --watch for a model named by alias) loads
what the URI names now, starts new workers with it and retires the old ones gracefully; a client sending in a
loop sees no failed request and, from some moment on, only the new model's predictions. A new version that does
not load leaves the old one serving."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest
import requests
from helpers import free_port, wait_until_ready
from sklearn.linear_model import ElasticNet

import modelpack
from modelpack.registry import register_model, set_alias


@pytest.fixture
def versions(tmp_path, diabetes, monkeypatch):
    """Two registered versions of 'diabetes' (in a new SQLite store) whose predictions differ; the alias
    'champion' on version 1."""
    from modelpack.tracking.store import _forget_stores

    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(tmp_path / "mlruns"))
    X, y = diabetes
    for number, alpha in ((1, 0.01), (2, 1.0)):
        path = tmp_path / f"v{number}"
        modelpack.save_model(ElasticNet(alpha=alpha).fit(X, y), path, input_example=X.head(3))
        assert register_model(path, "diabetes").version == number
    set_alias("diabetes", "champion", 1)
    row = X.head(1)
    body = json.dumps({"dataframe_split": json.loads(row.to_json(orient="split", index=False))})
    answers = {n: round(float(modelpack.load_model(tmp_path / f"v{n}").predict(row)[0]), 6) for n in (1, 2)}
    assert answers[1] != answers[2]
    yield body, {value: number for number, value in answers.items()}
    _forget_stores()


def _serve(tmp_path, *extra: str):
    port = free_port()
    cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-m", "models:/diabetes@champion", "-p", str(port),
           "--env-manager", "local", "-w", "2", *extra]
    return wait_until_ready(cmd, port, tmp_path / "server.log", dict(os.environ), 90)


class Clients:
    """Threads posting the same body in a loop, each on its own keep-alive session; every answer recorded."""

    def __init__(self, url: str, body: str, which: dict[float, int], threads: int = 3) -> None:
        self.url, self.body, self.which = url, body, which
        self.stop = threading.Event()
        self.seen: list[list[int]] = [[] for _ in range(threads)]
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def _loop(self, index: int) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                answer = session.post(f"{self.url}/invocations", data=self.body, timeout=30,
                                      headers={"Content-Type": "application/json"})
            except requests.RequestException as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if answer.status_code != 200:
                self.failures.append(f"{answer.status_code}: {answer.text}")
                continue
            self.seen[index].append(self.which.get(round(answer.json()["predictions"][0], 6), -1))

    def wait_for(self, version: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(seen and seen[-1] == version for seen in self.seen):
                return
            time.sleep(0.05)
        raise AssertionError(f"clients never all saw version {version}: last {[s[-1:] for s in self.seen]}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(40)


def _assert_switched_once(clients: Clients) -> None:
    """No failure; each client saw version 1, then version 2 and nothing else from then on."""
    assert clients.failures == []
    for seen in clients.seen:
        assert -1 not in seen
        first_new = seen.index(2)
        assert first_new > 0 and set(seen[:first_new]) == {1} and set(seen[first_new:]) == {2}, seen


def test_sighup_serves_the_new_version_without_a_failed_request(tmp_path, versions):
    body, which = versions
    server = _serve(tmp_path)
    clients = Clients(server.url, body, which)
    try:
        clients.wait_for(1, 20)
        set_alias("diabetes", "champion", 2)
        time.sleep(0.5)  # the alias moved, nothing reloaded: still version 1
        assert all(seen[-1] == 1 for seen in clients.seen)
        os.kill(server.proc.pid, signal.SIGHUP)
        clients.wait_for(2, 30)
        time.sleep(1.5)  # keep sending while the old workers drain
    finally:
        clients.finish()
        assert server.stop() == 0
    _assert_switched_once(clients)
    assert sum(map(len, clients.seen)) > 50
    assert "Reloaded: new workers serve diabetes=" in server.log()


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(tmp_path, versions):
    body, which = versions
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: modelpack.flavors.sklearn\n"
                                    "    model_path: model.pkl\n    python_version: 3.11.7\n")
    assert register_model(broken, "diabetes").version == 3
    server = _serve(tmp_path)
    clients = Clients(server.url, body, which, threads=2)
    try:
        clients.wait_for(1, 20)
        set_alias("diabetes", "champion", 3)
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "Reload failed" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert server.proc.poll() is None
        clients.wait_for(1, 5)
    finally:
        clients.finish()
        assert server.stop() == 0
    assert clients.failures == []
    assert all(set(seen) == {1} for seen in clients.seen)
    log = server.log()
    assert "Reload failed, still serving the models loaded before" in log and "model.pkl" in log


def test_watch_follows_the_alias(tmp_path, versions):
    body, which = versions
    server = _serve(tmp_path, "--watch", "--watch-interval", "1")
    clients = Clients(server.url, body, which, threads=2)
    try:
        clients.wait_for(1, 20)
        set_alias("diabetes", "champion", 2)
        clients.wait_for(2, 30)
        time.sleep(1.5)
    finally:
        clients.finish()
        assert server.stop() == 0
    _assert_switched_once(clients)
    assert "A watched model URI now names another model: reloading" in server.log()


def test_watch_needs_a_model_named_by_alias(tmp_path, diabetes_model_dir):
    import subprocess

    result = subprocess.run([sys.executable, "-m", "modelpack.cli", "serve", "-m", str(diabetes_model_dir),
                             "--watch", "--env-manager", "local", "-p", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--watch follows a model named by alias" in result.stderr
