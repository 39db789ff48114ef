"""Run one server process tree: spawn, wait until ready, measure RSS, and always stop it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """Status of GET 127.0.0.1:port/path, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class ServerProcess:
    """A server started in its own session so the whole tree can be measured and stopped."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self, port: int, path: str, timeout: float) -> float:
        """Seconds from spawn to the first 200 on `path`; raises if it exits or times out."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if http_get_status(port, path, timeout=1.0) == 200:
                return time.perf_counter() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with code {self.proc.returncode}; {self.log_tail()}")
            time.sleep(0.02)
        raise RuntimeError(f"not ready after {timeout:.0f}s; {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return "log tail:\n    " + "\n    ".join(text[-lines:]) if text else "empty log"

    def tree(self) -> list[int]:
        """Our pid, its descendants, and anything else left in its session."""
        parents: dict[int, int] = {}
        sessions: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
            pid = int(entry.name)
            parents[pid], sessions[pid] = int(fields[1]), int(fields[3])
        found = {pid for pid, sid in sessions.items() if sid == self.pid}
        frontier = [self.pid] if self.pid in parents else []
        while frontier:
            parent = frontier.pop()
            found.add(parent)
            frontier.extend(p for p, pp in parents.items() if pp == parent and p not in found)
        return sorted(found)

    def memory_bytes(self) -> tuple[int, int, int]:
        """Summed VmRSS and summed PSS of the tree, and the number of processes in it.

        RSS counts a page shared by several processes (a preloaded model in forked workers)
        once per process; PSS splits it between them, so the PSS sum is what the tree costs.
        """
        rss, pss, count = 0, 0, 0
        for pid in self.tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            rss += _kib_field(status, "VmRSS:")
            pss += _kib_field(rollup, "Pss:")
            count += 1
        return rss, pss, count

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole tree, then SIGKILL whatever is still there after `timeout`."""
        pids = self.tree()
        _signal_all(self.pid, pids, signal.SIGTERM)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.proc.poll()
            if not [p for p in pids if _alive(p)]:
                return
            time.sleep(0.05)
        _signal_all(self.pid, self.tree() + pids, signal.SIGKILL)
        self.proc.wait(timeout=5)


def _signal_all(pgid: int, pids: list[int], sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has already exited


def _kib_field(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1]) * 1024
    return 0
