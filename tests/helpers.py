"""Test helpers shared by test modules: a real `modelpack serve` subprocess on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20, group: bool = False) -> int:
        """Send ``sig`` and wait for the exit code. ``group=True`` signals the server's whole process group
        (master and workers), as a terminal's Ctrl-C does; otherwise only the master (``kill PID``)."""
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)  # start_server runs it in a new session: pgid == pid
            else:
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
    return wait_until_ready(cmd, port, log_path, {**os.environ, **(env or {})}, timeout)


def wait_until_ready(cmd: list[str], port: int, log_path: Path, env: dict, timeout: float,
                     cwd: Path | None = None) -> Server:
    """Start the server command ``cmd`` (its own session, output in ``log_path``) and wait for /ping 200."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=cwd)
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/ping", timeout=1).status_code == 200:
                return server
        except (requests.ConnectionError, requests.Timeout):  # workers may still be loading the model
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not ready after {timeout}s:\n{server.log()}")


def checkout_copy(dest: Path, root: Path = ROOT) -> Path:
    """Copy into ``dest`` what a fresh clone of ``root`` holds once its working tree is committed.

    That is the files git tracks plus the untracked ones it does not ignore (new files not added yet), with
    their working-tree content, symlinks kept as symlinks. Ignored files (.venv, build/, *.egg-info,
    diabetes_model/) are left out, as a clone has none, and so are tracked files deleted from the working tree.
    """
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"the tests copy the checkout with git ls-files, which failed:\n{out.stderr}"
    for name in dict.fromkeys(n for n in out.stdout.split("\0") if n):
        source, target = root / name, dest / name
        if not os.path.lexists(source):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    return dest


def ok(resp: requests.Response):
    """The predictions of a 200 JSON answer."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()["predictions"]


def error(resp: requests.Response, status: int, code: str) -> str:
    """The message of a JSON error answer with ``status`` and ``code``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["error_code"] == code, body
    return body["message"]
