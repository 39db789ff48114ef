"""What observability costs: throughput with Prometheus metrics and the access log on and off.

Four servers of the same model run side by side (``modelpack serve``): everything off
(``--no-metrics --no-access-log``), metrics only, access log only, and both (the default). Each round
loads each server in turn, in a rotated order, with the same body for the same time, so the machine's
noise falls on all four alike, and starts them afresh (see ``start_servers``); the table shows every
round's requests/s, the median, and the median relative to everything off. The access log goes to a
file, as a server's stderr would.

One worker by default: what is measured is the cost per request, and with two workers on two cores the
load generator's few keep-alive connections sometimes all land on one worker (which then serves alone, at
half the throughput), so the rounds of a two-worker run fall in two groups and hide a few percent.

    python bench/metrics_cost.py                       # 1 and 10,000 rows, 6 rounds of 3 s
    python bench/metrics_cost.py --rounds 5 --duration 10
    python bench/metrics_cost.py --rows 1 --loadgen python
    python bench/metrics_cost.py --workers 2
    python bench/metrics_cost.py --before /tmp/old   # also a checkout without observability (PYTHONPATH)

The target (issue 15): one-row throughput with metrics on within 5% of metrics off.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import available_tools, run_load  # noqa: E402
from payloads import encode, sample_rows, train_model  # noqa: E402
from process import ServerProcess, free_port  # noqa: E402

#: Name -> extra ``modelpack serve`` flags.
CONFIGS = {
    "all off": ["--no-metrics", "--no-access-log"],
    "metrics": ["--no-access-log"],
    "access log": ["--no-metrics"],
    "both (default)": [],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_servers(configs: dict[str, list[str]], model_dir: Path, args: argparse.Namespace, env: dict[str, str],
                  workdir: Path) -> dict[str, tuple[ServerProcess, int]]:
    """One server per configuration, started afresh each round: a process's memory layout (address space
    randomisation, hash seeds) moves its speed by a few percent, and new processes each round average that out
    instead of carrying one draw through the whole run."""
    servers = {}
    for name, flags in configs.items():
        port = free_port()
        argv = [sys.executable, "-m", "modelpack.cli", "serve", "-m", str(model_dir), "-p", str(port),
                "-w", str(args.workers), "--env-manager", "local", *flags]
        server_env = {**env, "PYTHONPATH": str(args.before.resolve())} if name == "before" else env
        servers[name] = (ServerProcess(argv, server_env, None, workdir / f"{name.split()[0]}.log"), port)
    return servers


def measure(args: argparse.Namespace, configs: dict[str, list[str]], rows: list[int], bodies: dict[int, bytes],
            tool: str, model_dir: Path, workdir: Path) -> dict[tuple[str, int], list[float]]:
    """Requests/s by (configuration, rows), one value per round: new servers each round, each loaded in turn
    in a rotated order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    results: dict[tuple[str, int], list[float]] = {(name, n): [] for name in configs for n in rows}
    names = list(configs)
    for round_ in range(args.rounds):
        servers = start_servers(configs, model_dir, args, env, workdir)
        try:
            for proc, port in servers.values():
                proc.wait_ready(port, "/ping", 120)
                for n in rows:  # warm-up
                    run_load(tool, port, "/invocations", bodies[n], "application/json", 2, 1)
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for n in rows:
                for name in order:
                    _, port = servers[name]
                    result = run_load(tool, port, "/invocations", bodies[n], "application/json",
                                      8 if n < 10_000 else 2, args.duration)
                    if result.errors:
                        log(f"  {name}, {n} rows: {result.errors} errors")
                    results[(name, n)].append(result.rps)
                    log(f"  round {round_ + 1}, {n} rows, {name}: {result.rps:,.0f} req/s")
        finally:
            for proc, _ in servers.values():
                proc.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1,10000", help="comma-separated payload sizes (default 1,10000)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each with new servers (default 6)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="server workers (default 1, see above)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also serve from this source tree (PYTHONPATH=DIR, default flags): the code before")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (model, server logs)")
    args = parser.parse_args(argv)
    configs = dict(CONFIGS)
    if args.before:
        configs = {"before": [], **configs}
    tool = available_tools()[0] if args.loadgen == "auto" else args.loadgen
    rows = [int(r) for r in args.rows.split(",")]

    import modelpack

    workdir = Path(tempfile.mkdtemp(prefix="modelpack-metrics-cost-"))
    try:
        model, X = train_model()
        model_dir = workdir / "model"
        modelpack.save_model(model, model_dir, input_example=X.head(3))
        bodies = {n: encode(sample_rows(X, n), "split") for n in rows}
        log(f"work dir {workdir}; load by {tool}; {args.rounds} rounds x {args.duration:.0f} s per measurement")
        results = measure(args, configs, rows, bodies, tool, model_dir, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"{os.cpu_count()} CPUs, {args.workers} workers, load by {tool}, {args.rounds} rounds x "
          f"{args.duration:.0f} s, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| rows | server | req/s per round | median req/s | vs all off |")
    print("|---:|---|---|---:|---:|")
    for n in rows:
        base = statistics.median(results[("all off", n)])
        for name in configs:
            values = results[(name, n)]
            median = statistics.median(values)
            rounds = ", ".join(f"{v:,.0f}" for v in values)
            print(f"| {n:,} | {name} | {rounds} | {median:,.0f} | {100 * (median / base - 1):+.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
