"""Rows per second of one ``modelpack serve`` scoring a big body as split JSON and as Arrow IPC, side by side.

One server (the README's diabetes ElasticNet, saved by modelpack: an all-double signature, so both JSON and Arrow
reach the model through the float-rows fast path) gets the same ``--rows`` rows (default 100,000) in each request
format, asking for each answer format:

- ``split -> json``: ``{"dataframe_split": ...}`` answered ``{"predictions": [...]}`` (the baseline);
- ``split -> arrow``: the same body, ``Accept: application/vnd.apache.arrow.stream``;
- ``arrow -> json``: the rows as an Arrow IPC stream (``Content-Type: application/vnd.apache.arrow.stream``);
- ``arrow -> arrow``: Arrow both ways;
- ``parquet -> json``: the rows as a Parquet file, for comparison.

Every variant's answer is first checked against the model's own predictions. Then the variants take turns, one
``--duration`` run each per round for ``--repeat`` rounds (so a busy machine slows them alike), each run a closed
loop of ``--connections`` keep-alive connections; the table shows the best and the median run, and each variant's
best rows/s over the baseline's. The load generator is this Python process (threads), on the same cores as the
server: compare variants within one run.

Usage::

    python bench/arrow_bodies.py                      # 100,000 rows, 3 rounds of 3 s per variant
    python bench/arrow_bodies.py --rows 10000 --repeat 5 --duration 2
    python bench/arrow_bodies.py --json results.json  # the numbers as JSON too

Needs pyarrow (``pip install -e '.[arrow]'``).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process import ServerProcess, free_port  # noqa: E402

JSON = "application/json"
STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Variant:
    name: str
    body: bytes
    content_type: str
    accept: str
    runs: list[float] = field(default_factory=list)  # requests per second, one per round
    answer_bytes: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="rows per request (default 100,000)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3)")
    p.add_argument("--repeat", type=int, default=3, help="rounds: runs per variant (default 3)")
    p.add_argument("--connections", type=int, default=2, help="keep-alive connections of the load (default 2)")
    p.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def build(workdir: Path, rows: int):
    """The model directory, the request rows and the model's own predictions for them."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    import modelpack

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y)
    path = workdir / "diabetes_model"
    modelpack.save_model(model, path, input_example=X.head(3))
    frame = X.iloc[np.random.default_rng(0).integers(0, len(X), rows)].reset_index(drop=True)
    return path, frame, model.predict(frame)


def variants(frame) -> list[Variant]:
    import pyarrow as pa

    split = json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                            "data": frame.to_numpy().tolist()}}).encode()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    arrow = sink.getvalue().to_pybytes()
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    return [
        Variant("split -> json", split, JSON, JSON),
        Variant("split -> arrow", split, JSON, STREAM),
        Variant("arrow -> json", arrow, STREAM, JSON),
        Variant("arrow -> arrow", arrow, STREAM, STREAM),
        Variant("parquet -> json", parquet.getvalue(), PARQUET, JSON),
    ]


def post(conn: http.client.HTTPConnection, variant: Variant) -> bytes:
    conn.request("POST", "/invocations", variant.body, {"Content-Type": variant.content_type,
                                                         "Accept": variant.accept})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{variant.name}: {response.status} {data[:300]!r}")
    return data


def check(port: int, variant: Variant, expected: np.ndarray) -> None:
    import pyarrow as pa

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = post(conn, variant)
    finally:
        conn.close()
    variant.answer_bytes = len(data)
    if variant.accept == STREAM:
        got = pa.ipc.open_stream(pa.py_buffer(data)).read_all().column("predictions").to_numpy()
    else:
        got = np.asarray(json.loads(data)["predictions"])
    np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=variant.name)


def run(port: int, variant: Variant, duration: float, connections: int) -> float:
    """Requests per second of a closed loop of ``connections`` keep-alive connections for ``duration`` seconds."""
    counts = [0] * connections
    errors: list[BaseException] = []
    stop = time.perf_counter() + duration

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while time.perf_counter() < stop:
                post(conn, variant)
                counts[i] += 1
        except BaseException as exc:  # reported by the caller  # noqa: BLE001
            errors.append(exc)
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{variant.name}: {errors[0]}")
    return sum(counts) / elapsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-arrow-") as tmp:
        workdir = Path(tmp)
        log(f"building the model and {args.rows:,} rows ...")
        model_dir, frame, expected = build(workdir, args.rows)
        cases = variants(frame)
        port = free_port()
        script = Path(sys.executable).with_name("modelpack")
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "modelpack.cli"]
        argv_ = [*cli, "serve", "-m", str(model_dir), "-p", str(port), "-w", str(args.workers),
                 "--env-manager", "local"]
        env = {**os.environ, "MODELPACK_MAX_BODY_BYTES": str(256 * 1024 * 1024)}
        with ServerProcess(argv_, env, workdir, workdir / "server.log") as server:
            server.wait_ready(port, "/ping", 120)
            for variant in cases:
                check(port, variant, expected)
                run(port, variant, min(1.0, args.duration), args.connections)  # warm-up
            for round_ in range(args.repeat):
                log(f"round {round_ + 1}/{args.repeat}, load average {os.getloadavg()[0]:.2f}")
                for variant in cases:
                    variant.runs.append(run(port, variant, args.duration, args.connections))
    print_table(cases, args)
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows, "duration": args.duration, "repeat": args.repeat, "connections": args.connections,
            "workers": args.workers, "cpus": os.cpu_count(),
            "variants": [{"name": v.name, "body_bytes": len(v.body), "answer_bytes": v.answer_bytes,
                          "requests_per_s": v.runs} for v in cases],
        }, indent=2))
    return 0


def print_table(cases: list[Variant], args: argparse.Namespace) -> None:
    base = max(cases[0].runs) * args.rows
    print(f"### Arrow and JSON bodies, {args.rows:,} rows per request\n")
    print(f"{os.cpu_count()} CPUs, {args.workers} server workers, {args.connections} connections, "
          f"{args.repeat} rounds of {args.duration:g} s per variant; rows/s best and median of the rounds.\n")
    print("| request -> answer | body MB | answer MB | req/s best | rows/s best | rows/s median | x split -> json |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v in cases:
        best, median = max(v.runs) * args.rows, statistics.median(v.runs) * args.rows
        print(f"| {v.name} | {len(v.body) / 1e6:.1f} | {v.answer_bytes / 1e6:.1f} | {max(v.runs):.2f} | "
              f"{best:,.0f} | {median:,.0f} | {best / base:.2f}x |")
    arrow = next(v for v in cases if v.name == "arrow -> json")
    ratio = max(arrow.runs) / max(cases[0].runs)
    print(f"\nArrow IPC body over split JSON (best rows/s, JSON answers both): {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
