"""Test helpers shared by test modules: a real `modelpack serve` subprocess on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, body: bytes | str, content_type: str | None = "application/json", **kw) -> requests.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return requests.post(f"{self.url}/invocations", data=body, headers=headers, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"server did not stop within {timeout}s after signal {sig}") from None
        return self.proc.returncode


def start_server(model_dir: Path, tmp_path: Path, *extra: str, env: dict | None = None,
                 timeout: float = 90, local: bool = True) -> Server:
    """Run ``modelpack serve`` as a subprocess and wait until /ping answers 200.

    ``--env-manager local`` is added unless ``extra`` names one or ``local`` is False (the CLI's default)."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-m", str(model_dir), "-p", str(port), *extra]
    if local and "--env-manager" not in extra:
        cmd += ["--env-manager", "local"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/ping", timeout=1).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not ready after {timeout}s:\n{server.log()}")
