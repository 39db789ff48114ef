"""Closed-loop load generation: wrk when installed, else a small threaded keep-alive client."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("post.lua")
REQUEST_TIMEOUT_S = 60


@dataclass
class LoadResult:
    """What one load run measured. Errors are HTTP status >= 400 plus socket errors/timeouts."""

    tool: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def available_tools() -> list[str]:
    return (["wrk"] if shutil.which("wrk") else []) + ["python"]


def run_load(
    tool: str,
    port: int,
    path: str,
    body: bytes,
    content_type: str,
    connections: int,
    duration_s: float,
) -> LoadResult:
    """POST the same body over `connections` connections for `duration_s` seconds."""
    if tool == "wrk":
        return _run_wrk(port, path, body, content_type, connections, duration_s)
    if tool == "python":
        return _run_python(port, path, body, content_type, connections, duration_s)
    raise ValueError(f"unknown load generator {tool!r}; expected 'wrk' or 'python'")


def _run_wrk(port: int, path: str, body: bytes, content_type: str, connections: int, duration_s: float) -> LoadResult:
    with tempfile.NamedTemporaryFile(prefix="bench-body-", delete=False) as f:
        f.write(body)
    env = {**os.environ, "BENCH_BODY": f.name, "BENCH_CONTENT_TYPE": content_type}
    # One wrk thread: the server shares this machine's cores, so keep the client lean.
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}{path}",
    ]
    try:
        proc = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=duration_s + REQUEST_TIMEOUT_S + 30,
        )
    finally:
        os.unlink(f.name)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    s = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = s["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=round(seconds, 2),
        requests=s["requests"],
        errors=s["status_errors"] + s["socket_errors"],
        rps=s["requests"] / seconds,
        p50_ms=s["p50_us"] / 1e3,
        p99_ms=s["p99_us"] / 1e3,
    )


def _run_python(
    port: int, path: str, body: bytes, content_type: str, connections: int, duration_s: float
) -> LoadResult:
    headers = {"Content-Type": content_type}
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start = time.perf_counter()
    deadline = start + duration_s

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()  # http.client reconnects by itself after "Connection: close"
                if resp.status >= 400:
                    errors[i] += 1
                    continue
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                continue
            latencies[i].append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ok = sorted(x for per in latencies for x in per)
    total = len(ok) + sum(errors)
    return LoadResult(
        tool="python",
        connections=connections,
        duration_s=round(elapsed, 2),
        requests=total,
        errors=sum(errors),
        rps=total / elapsed,
        p50_ms=_percentile(ok, 50) * 1e3,
        p99_ms=_percentile(ok, 99) * 1e3,
    )


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]
