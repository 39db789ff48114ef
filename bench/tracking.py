"""Tracking calls, modelpack against MLflow 3.17, each on its own SQLite store on this machine.

    python bench/tracking.py                 # 1000 log_metric, 300 log_param, 50 start_run per side
    python bench/tracking.py --calls 3000 --repeat 3 --json bench/results/tracking.json

The same script (MLflow's fluent names, which modelpack shares) runs once with ``import modelpack`` in this
interpreter and once with ``import mlflow`` in the cached MLflow virtualenv of tests/mlflow_env.py (built on
first use), each in a fresh temporary directory with a ``sqlite:///`` tracking URI. It times every call with
``perf_counter_ns`` after a warm-up (the first run creates the database) and prints the median and mean per
call, and the ratio modelpack / MLflow (below 1: modelpack is faster).

What differs besides the code: modelpack's SQLite store runs in WAL mode with ``synchronous=NORMAL`` (a commit
survives a crash of the process; the last commits may be lost on a power failure), MLflow's uses SQLite's
defaults (a rollback journal, ``synchronous=FULL``: an fsync per commit). The ``modelpack-full`` column runs
modelpack with ``synchronous=FULL`` too, for the comparison at equal durability.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Runs in the library's own interpreter: argv = library, store dir, calls, params, runs, sync mode.
CALLS = """\
import json, sys, time
library, store, calls, n_params, n_runs, sync = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6]
if library == "mlflow":
    import mlflow as lib
else:
    import modelpack as lib
lib.set_tracking_uri(f"sqlite:///{store}/tracking.db")
if library == "modelpack" and sync == "full":
    from sqlalchemy import event
    from modelpack.tracking.store import Store
    engine = Store.open().engine
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=FULL"))
    engine.dispose()
lib.set_experiment("bench")
with lib.start_run():  # warm-up: creates the database and the experiment, loads every module on the path
    lib.log_param("warm", 1)
    lib.log_metric("warm", 1.0)
clock = time.perf_counter_ns
timings = {"start_run": [], "log_param": [], "log_metric": [], "log_metrics(10)": []}
for _ in range(n_runs):
    t = clock(); lib.start_run(); timings["start_run"].append(clock() - t)
    lib.end_run()
with lib.start_run():
    for i in range(n_params):
        t = clock(); lib.log_param(f"p{i}", i); timings["log_param"].append(clock() - t)
    for i in range(calls):
        t = clock(); lib.log_metric("loss", 1.0 / (i + 1), step=i); timings["log_metric"].append(clock() - t)
    batch = {f"m{k}": float(k) for k in range(10)}
    for i in range(max(1, calls // 10)):
        t = clock(); lib.log_metrics(batch, step=i); timings["log_metrics(10)"].append(clock() - t)
print(json.dumps(timings))
"""


def run_side(python: str, library: str, args: argparse.Namespace, sync: str, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-tracking-{library}-") as tmp:
        out = subprocess.run([python, "-c", CALLS, library, tmp, str(args.calls), str(args.params), str(args.runs),
                              sync], capture_output=True, text=True, cwd=tmp, env=env, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{library} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(samples: list[int]) -> dict[str, float]:
    return {"median_us": statistics.median(samples) / 1000, "mean_us": statistics.fmean(samples) / 1000,
            "p95_us": sorted(samples)[int(len(samples) * 0.95)] / 1000, "calls": len(samples)}


def best_of(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per operation, the repetition with the lowest median (the least disturbed by other load)."""
    return {op: min((summary(r[op]) for r in runs), key=lambda s: s["median_us"]) for op in runs[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="log_metric calls per side (default 1000)")
    parser.add_argument("--params", type=int, default=300, help="log_param calls per side (default 300)")
    parser.add_argument("--runs", type=int, default=50, help="start_run calls per side (default 50)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions; the best median of each is kept")
    parser.add_argument("--skip-full", action="store_true", help="leave out modelpack with synchronous=FULL")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from mlflow_env import child_env, mlflow_python

    print("preparing the MLflow 3.17 virtualenv (built once, cached)...", file=sys.stderr, flush=True)
    mlflow = str(mlflow_python())
    own_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    sides = {"modelpack": (sys.executable, "modelpack", "normal", own_env),
             "mlflow": (mlflow, "mlflow", "normal", child_env())}
    if not args.skip_full:
        sides["modelpack-full"] = (sys.executable, "modelpack", "full", own_env)
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for repetition in range(args.repeat):
        for name, (python, library, sync, env) in sides.items():
            print(f"[{repetition + 1}/{args.repeat}] {name}...", file=sys.stderr, flush=True)
            results[name].append(run_side(python, library, args, sync, env))
    best = {name: best_of(runs) for name, runs in results.items()}

    names = list(sides)
    header = ["operation", *(f"{n} median / mean µs" for n in names), "ratio modelpack / mlflow (median)"]
    if "modelpack-full" in best:
        header.append("ratio modelpack-full / mlflow")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for op in best["modelpack"]:
        cells = [op, *(f"{best[n][op]['median_us']:.0f} / {best[n][op]['mean_us']:.0f}" for n in names)]
        cells.append(f"{best['modelpack'][op]['median_us'] / best['mlflow'][op]['median_us']:.3f}")
        if "modelpack-full" in best:
            cells.append(f"{best['modelpack-full'][op]['median_us'] / best['mlflow'][op]['median_us']:.3f}")
        print("| " + " | ".join(cells) + " |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs, load average {load:.2f}; "
          f"{args.calls} log_metric, {args.params} log_param, {args.runs} start_run per side, best of {args.repeat}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                         "args": {k: str(v) for k, v in vars(args).items()}, "results": best},
                                        indent=2))


if __name__ == "__main__":
    main()
