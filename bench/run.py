"""Benchmark modelpack against `mlflow models serve`, MLServer and two bare Flask floors.

Every server gets the same model, payloads and worker count, one after another on this machine;
the result is printed as markdown and written as JSON. See bench/README.md.

    python bench/run.py                      # everything, ~10 s per measurement
    python bench/run.py --quick              # ~3 s per measurement
    python bench/run.py --only modelpack,floor_const --duration 5
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attack  # noqa: E402
from loadgen import available_tools, run_load  # noqa: E402
from payloads import MODELS, ROW_COUNTS, Payload, build_payloads, train_model, write_model  # noqa: E402
from process import ServerProcess, free_port  # noqa: E402
from servers import QUIET_ENV, Context, Server, SkipServer, all_servers  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
FORMATS = ("split", "records", "csv")
READY_TIMEOUT_S = 180
BIG_PAYLOAD_ROWS = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [s.name for s in all_servers()]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        default=",".join(names),
        help=f"comma-separated servers to run (default: all of {','.join(names)})",
    )
    p.add_argument("--skip", default="", help="comma-separated servers to leave out")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load per measurement (default 10, or 3 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="short runs: 3 s per measurement")
    p.add_argument(
        "--rows",
        default=",".join(map(str, ROW_COUNTS)),
        help="comma-separated payload sizes in rows (default 1,100,10000)",
    )
    p.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help="comma-separated request formats: split,records,csv",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=None,
        help=f"connections for every payload (default 8, or 2 at {BIG_PAYLOAD_ROWS:,} rows)",
    )
    p.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="elasticnet",
        help="the model every server gets (default elasticnet; xgboost/lightgbm need that library here)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each payload N times and keep the best (for a noisy machine)",
    )
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (default: wrk when on PATH)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelpack-bench",
        help="where the competitors' virtualenvs live",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="skip servers whose virtualenv is not built yet instead of building it",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=BENCH_DIR / "results" / "latest.json",
        help="JSON results file (a .md copy of the tables is written next to it)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir (models, server logs)")
    p.add_argument(
        "--attack",
        type=float,
        default=0.0,
        help="after the load runs, measure /ping and /invocations availability for this many seconds while "
        "2 x workers + 5 slow clients hold connections (bench/attack.py; default 0: off)",
    )
    args = p.parse_args(argv)
    unknown = (set(_split(args.only)) | set(_split(args.skip))) - set(names)
    if unknown:
        p.error(f"unknown server(s) {sorted(unknown)}; choose from {names}")
    bad_formats = set(_split(args.formats)) - set(FORMATS)
    if bad_formats:
        p.error(f"unknown format(s) {sorted(bad_formats)}; choose from {list(FORMATS)}")
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    return args


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def post(port: int, path: str, payload: Payload) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=payload.body, headers={"Content-Type": payload.content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check(server: Server, port: int, path: str, payload: Payload) -> tuple[bool, str]:
    """One request must answer 200 with the reference predictions; says what went wrong if not."""
    try:
        status, body = post(port, path, payload)
    except (OSError, http.client.HTTPException) as e:
        return False, f"request failed: {e}"
    if status != 200:
        return False, f"HTTP {status}: {body[:120].decode(errors='replace')}"
    if not server.checks_predictions:
        return True, "200 (constant reply)"
    try:
        got = np.asarray(server.predictions(json.loads(body)), dtype=np.float64).ravel()
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return True, f"200 but predictions unreadable: {e!r}"
    if got.shape != payload.expected.shape:
        return True, f"MISMATCH: {got.size} predictions for {payload.expected.size} rows"
    diff = float(np.max(np.abs(got - payload.expected)))
    if not np.allclose(got, payload.expected, rtol=payload.rtol, atol=payload.rtol):
        return True, f"MISMATCH: max abs diff {diff:.3g}"
    return True, "ok" if diff == 0 else f"ok (max abs diff {diff:.0e})"


def bench_server(
    server: Server,
    ctx: Context,
    payloads: dict[tuple[int, str], Payload],
    plan: list[tuple[int, str]],
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    """Prepare, start, check, warm up, measure and stop one server, filling `result` as it goes
    (so an interrupted run still reports what it measured)."""
    result.update(status="skipped", runs=[], loadavg_1min=round(os.getloadavg()[0], 2))
    log(f"\n== {server.name}")
    try:
        result["version"] = server.prepare(ctx)
    except Exception as e:  # whatever breaks one contender's setup must not stop the others
        result["reason"] = str(e) if isinstance(e, SkipServer) else f"setup failed: {e!r}"
        log(f"  skipped: {result['reason']}")
        return
    port = free_port()
    launch = server.launch(ctx, port)
    env = {**os.environ, **QUIET_ENV, **launch.env}
    logfile = ctx.workdir / f"{server.name}.log"
    with ServerProcess(launch.argv, env, launch.cwd, logfile) as proc:
        try:
            result["startup_s"] = round(proc.wait_ready(port, launch.ready_path, READY_TIMEOUT_S), 3)
        except RuntimeError as e:
            result.update(status="failed", reason=f"did not become ready: {e}")
            log(f"  failed: {result['reason']}")
            return
        result.update(status="interrupted", reason="stopped before all measurements finished")
        log(f"  ready in {result['startup_s']:.2f} s on port {port}")
        todo = []
        for rows, fmt in plan:
            if fmt not in server.kinds:
                continue
            payload = payloads[(rows, server.kinds[fmt])]
            ok, verdict = check(server, port, launch.infer_path, payload)
            log(f"  check {rows} x {payload.kind}: {verdict}")
            if ok:
                todo.append((fmt, payload, verdict))
            else:
                result["runs"].append({"rows": rows, "format": fmt, "kind": payload.kind, "check": verdict})
        if todo:
            warm = todo[0][1]
            run_load(
                args.tool,
                port,
                launch.infer_path,
                warm.body,
                warm.content_type,
                2,
                1.0 if args.quick else 2.0,
            )
        result["rss_warm_mib"], result["pss_warm_mib"], result["processes"] = _memory_mib(proc)
        for fmt, payload, verdict in todo:
            conns = args.connections or (2 if payload.rows >= BIG_PAYLOAD_ROWS else 8)
            # Best of --repeat: interference from other work on the machine only ever slows a run.
            try:
                loads = [
                    run_load(
                        args.tool,
                        port,
                        launch.infer_path,
                        payload.body,
                        payload.content_type,
                        conns,
                        args.duration,
                    )
                    for _ in range(args.repeat)
                ]
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                verdict = f"load failed: {e}"
                result["runs"].append({"rows": payload.rows, "format": fmt, "kind": payload.kind, "check": verdict})
                log(f"  {payload.rows:>6} x {payload.kind:<7} {verdict}")
                continue
            load = max(loads, key=lambda r: r.rps)
            run = {
                "rows": payload.rows,
                "format": fmt,
                "kind": payload.kind,
                "check": verdict,
                **load.as_dict(),
                "rows_per_s": load.rps * payload.rows,
                "rps_all": [round(r.rps, 1) for r in loads],
            }
            result["runs"].append(run)
            log(
                f"  {payload.rows:>6} x {payload.kind:<7} {load.rps:9.1f} req/s  "
                f"p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms  errors {load.errors}"
            )
        result["rss_end_mib"], result["pss_end_mib"], _ = _memory_mib(proc)
        if args.attack > 0 and todo:
            one_row = min((p for _, p, _ in todo), key=lambda p: p.rows)
            attackers = 2 * ctx.workers + 5
            found = attack.measure(port, launch.infer_path, one_row.body, one_row.content_type, attackers, args.attack)
            result["availability"] = {"ping": found.ping, "invocations": found.invocations, "probes": found.probes,
                                      "attackers": attackers, "seconds": args.attack}
            log(f"  under {attackers} slow clients: /ping {found.ping:.1%}, /invocations {found.invocations:.1%} "
                f"of {found.probes} probes each")
        result.update(status="ok", reason=None)


def _memory_mib(proc: ServerProcess) -> tuple[float, float, int]:
    rss, pss, count = proc.memory_bytes()
    return round(rss / 2**20, 1), round(pss / 2**20, 1), count


# ---------------------------------------------------------------- report


def ratios(servers: dict[str, dict[str, Any]], base: str = "modelpack") -> dict[str, Any]:
    """base ÷ other for req/s per payload (>1: base is faster), start-up and RSS (<1: base wins)."""
    ref = servers.get(base, {})
    if ref.get("status") != "ok":
        return {}
    ref_rps = {(r["rows"], r["format"]): r["rps"] for r in ref["runs"] if "rps" in r}
    out: dict[str, Any] = {}
    for name, other in servers.items():
        if name == base or other.get("status") != "ok":
            continue
        entry: dict[str, Any] = {"rps": {}}
        for run in other["runs"]:
            key = (run["rows"], run["format"])
            if "rps" in run and key in ref_rps and run["rps"] > 0:
                entry["rps"][f"{key[0]} x {key[1]}"] = round(ref_rps[key] / run["rps"], 3)
        for field in ("startup_s", "rss_warm_mib", "pss_warm_mib"):
            if ref.get(field) and other.get(field):
                entry[field] = round(ref[field] / other[field], 3)
        out[name] = entry
    return out


def render(report: dict[str, Any]) -> str:
    servers: dict[str, dict[str, Any]] = report["servers"]
    meta = report["meta"]
    lines = [
        f"### Benchmark {meta['date']}",
        "",
        f"{meta['cpus']} CPUs, {meta['python']}, load by {meta['loadgen']}, "
        f"{meta['duration_s']:g} s per measurement, {meta['workers']} server workers, "
        f"model {meta.get('model', 'elasticnet')}, "
        f"load average at start {meta['loadavg']}.",
        "",
        "| server | rows | format | req/s | rows/s | p50 ms | p99 ms | errors | conns | check |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in servers.items():
        for r in s["runs"]:
            if "rps" in r:
                lines.append(
                    f"| {name} | {r['rows']:,} | {r['kind']} | {r['rps']:,.1f} | "
                    f"{r['rows_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                    f"{r['errors']} | {r['connections']} | {r['check']} |"
                )
            else:
                lines.append(f"| {name} | {r['rows']:,} | {r['kind']} | – | – | – | – | – | – | {r['check']} |")
    lines += [
        "",
        "| server | version | start-up to ready, s | RSS after warm-up, MiB "
        "| RSS at end, MiB | PSS after warm-up, MiB | PSS at end, MiB | processes | load avg before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in servers.items():
        if "startup_s" in s:
            keys = ("startup_s", "rss_warm_mib", "rss_end_mib", "pss_warm_mib", "pss_end_mib")
            cells = [_num(s.get(k)) for k in keys]
            lines.append(
                f"| {name} | {s.get('version', '?')} | "
                + " | ".join(cells)
                + f" | {s.get('processes', '–')} | {_num(s.get('loadavg_1min'))} |"
            )
    table = report.get("ratios", {})
    if table:
        others = list(table)
        keys = list(dict.fromkeys(k for entry in table.values() for k in entry["rps"]))
        lines += [
            "",
            "modelpack ÷ other: req/s (>1 = modelpack faster); start-up and RSS "
            "(<1 = modelpack faster / smaller). mlserver's split slot is its V2 "
            "tensor body; the floors take split only.",
            "",
            "| | " + " | ".join(others) + " |",
            "|---|" + "---:|" * len(others),
        ]
        for key in keys:
            cells = [_x(table[o]["rps"].get(key)) for o in others]
            lines.append(f"| req/s {key} | " + " | ".join(cells) + " |")
        for field, label in (("startup_s", "start-up"), ("rss_warm_mib", "RSS"), ("pss_warm_mib", "PSS")):
            lines.append(f"| {label} | " + " | ".join(_x(table[o].get(field)) for o in others) + " |")
    attacked = {n: s["availability"] for n, s in servers.items() if "availability" in s}
    if attacked:
        lines += [
            "",
            "Availability while slow clients hold connections (bench/attack.py: slow headers, slow body, idle):",
            "",
            "| server | slow clients | seconds | /ping 200 | /invocations 200 | probes each |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {n} | {a['attackers']} | {a['seconds']:g} | {a['ping']:.1%} | {a['invocations']:.1%} | {a['probes']} |"
            for n, a in attacked.items()
        ]
    problems = [(n, s) for n, s in servers.items() if s["status"] != "ok"]
    if problems:
        lines += ["", "Not measured:"]
        lines += [f"- **{n}** ({s['status']}): {(s.get('reason') or '-').splitlines()[0]}" for n, s in problems]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


# ---------------------------------------------------------------- main


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every `with ServerProcess`, which stops it


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    tools = available_tools()
    args.tool = tools[0] if args.loadgen == "auto" else args.loadgen
    if args.tool not in tools:
        log(f"{args.tool} is not on PATH; install it (apt-get install wrk) or use --loadgen python")
        return 2
    wanted = set(_split(args.only)) - set(_split(args.skip))
    selected = [s for s in all_servers() if s.name in wanted]
    formats = _split(args.formats)
    row_counts = tuple(int(r) for r in _split(args.rows))
    plan = [(rows, fmt) for rows in row_counts for fmt in formats]

    workdir = Path(tempfile.mkdtemp(prefix="modelpack-bench-"))
    log(f"work dir {workdir}; load generator {args.tool}")
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": f"Python {platform.python_version()}",
            "loadgen": args.tool,
            "duration_s": args.duration,
            "workers": args.workers,
            "model": args.model,
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        },
        "servers": {},
    }
    try:
        model, X = train_model(args.model)
        model_path, example_path = write_model(model, X, workdir)
        kinds = {k for s in selected for f, k in s.kinds.items() if f in formats}
        payloads = build_payloads(model, X, row_counts, kinds)
        ctx = Context(
            workdir,
            model_path,
            example_path,
            args.workers,
            args.cache_dir,
            allow_install=not args.no_install,
            model_kind=args.model,
        )
        for server in selected:
            report["servers"][server.name] = {}
            bench_server(server, ctx, payloads, plan, args, report["servers"][server.name])
    except KeyboardInterrupt:
        log("\ninterrupted; servers stopped, reporting what was measured")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report["ratios"] = ratios(report["servers"])
    markdown = render(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown)
    print(markdown)
    log(f"results written to {args.output} and {args.output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
