"""``modelpack predict`` on a big CSV file: peak memory (RSS) and rows per second.

Builds the README's diabetes ElasticNet, writes a CSV file of ``--rows`` rows of the diabetes columns
(a 10,000-row sample with noise, repeated; about 215 bytes a row), and runs
``modelpack predict -m MODEL -i big.csv -o out.<fmt> --env-manager local`` on it, and on a 1,000-row file
for the baseline: the process's own size with the model loaded and nothing streamed. Each command is a child
of this script, waited with ``os.wait4``, which gives that child's peak RSS. With ``--mlflow PYTHON`` (an
interpreter with MLflow installed, such as the one bench/run.py builds) ``mlflow models predict`` scores the
same file with the same model directory, for comparison (it reads the whole file; mind your memory).

Usage::

    python bench/predict_stream.py                         # 5,000,000 rows, CSV out (~1 GB of input)
    python bench/predict_stream.py --rows 1000000 --formats csv,parquet,jsonl
    python bench/predict_stream.py --rows 1000000 --mlflow ~/.cache/modelpack-bench/venvs/mlflow/bin/python
    python bench/predict_stream.py --json results.json     # the numbers as JSON too

Files go to a temporary directory (``--workdir`` to choose it), removed at the end unless ``--keep-files``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK_ROWS = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_model(path: Path) -> None:
    import numpy as np  # noqa: F401 - imported before sklearn, as the CLI does
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    import modelpack

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    modelpack.save_model(ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y), path, input_example=X.head(3))


def write_csv(path: Path, rows: int) -> int:
    """``rows`` rows of the diabetes columns (a noisy 10,000-row sample, repeated); returns the file's size."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    X, _ = load_diabetes(return_X_y=True, as_frame=True)
    rng = np.random.default_rng(0)
    block = X.sample(BLOCK_ROWS, replace=True, random_state=0) + rng.normal(0, 0.001, (BLOCK_ROWS, X.shape[1]))
    header, _, body = block.to_csv(index=False, float_format="%.17g").encode().partition(b"\n")
    lines = body.splitlines(keepends=True)
    with open(path, "wb") as f:
        f.write(header + b"\n")
        full, rest = divmod(rows, BLOCK_ROWS)
        for _ in range(full):
            f.write(body)
        f.write(b"".join(lines[:rest]))
    return path.stat().st_size


def measure(argv: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one child process; raises if it fails."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{err[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}  # Linux: KB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--formats", default="csv", help="output formats, comma-separated (csv,jsonl,parquet,...)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--mlflow", default=None, metavar="PYTHON", help="also time `mlflow models predict`")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep-files", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="predict-stream-", dir=args.workdir))
    try:
        model = work / "model"
        build_model(model)
        big, small = work / "big.csv", work / "small.csv"
        log(f"writing {args.rows:,} rows to {big} ...")
        size = write_csv(big, args.rows)
        write_csv(small, 1000)
        log(f"  {size / 1e6:,.0f} MB")
        cli = [sys.executable, "-m", "modelpack.cli", "predict", "-m", str(model), "--env-manager", "local"]
        if args.batch_size:
            cli += ["--batch-size", str(args.batch_size)]
        results = {"rows": args.rows, "input_mb": size / 1e6, "runs": []}
        for fmt in args.formats.split(","):
            base = measure([*cli, "-i", str(small), "-o", str(work / f"small-out.{fmt}")])
            log(f"{fmt}: baseline (1,000 rows): {base['seconds']:.1f} s, peak RSS {base['peak_rss_mb']:.0f} MB")
            run = measure([*cli, "-i", str(big), "-o", str(work / f"out.{fmt}")])
            scoring = max(run["seconds"] - base["seconds"], 1e-9)
            row = {"tool": "modelpack predict", "output": fmt, "seconds": run["seconds"],
                   "rows_per_second": args.rows / scoring, "peak_rss_mb": run["peak_rss_mb"],
                   "baseline_rss_mb": base["peak_rss_mb"], "rss_growth_mb": run["peak_rss_mb"] - base["peak_rss_mb"],
                   "output_mb": (work / f"out.{fmt}").stat().st_size / 1e6}
            results["runs"].append(row)
            log(f"{fmt}: {run['seconds']:.1f} s, {row['rows_per_second']:,.0f} rows/s after start-up, peak RSS "
                f"{run['peak_rss_mb']:.0f} MB (+{row['rss_growth_mb']:.0f} MB over the baseline)")
            (work / f"out.{fmt}").unlink()
        if args.mlflow:
            mlflow = [args.mlflow, "-m", "mlflow", "models", "predict", "-m", str(model), "-t", "csv",
                      "--env-manager", "local"]
            base = measure([*mlflow, "-i", str(small), "-o", str(work / "mlflow-small.json")])
            run = measure([*mlflow, "-i", str(big), "-o", str(work / "mlflow-out.json")])
            scoring = max(run["seconds"] - base["seconds"], 1e-9)
            row = {"tool": "mlflow models predict", "output": "json", "seconds": run["seconds"],
                   "rows_per_second": args.rows / scoring, "peak_rss_mb": run["peak_rss_mb"],
                   "baseline_rss_mb": base["peak_rss_mb"], "rss_growth_mb": run["peak_rss_mb"] - base["peak_rss_mb"]}
            results["runs"].append(row)
            log(f"mlflow: {run['seconds']:.1f} s, {row['rows_per_second']:,.0f} rows/s after start-up, peak RSS "
                f"{run['peak_rss_mb']:.0f} MB (+{row['rss_growth_mb']:.0f} MB)")
        print(f"\n{args.rows:,} rows, {size / 1e6:,.0f} MB of CSV\n")
        print("| tool | output | wall s | rows/s (after start-up) | peak RSS MB | baseline MB | growth MB |")
        print("|---|---|---|---|---|---|---|")
        for r in results["runs"]:
            print(f"| {r['tool']} | {r['output']} | {r['seconds']:.1f} | {r['rows_per_second']:,.0f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['baseline_rss_mb']:.0f} | {r['rss_growth_mb']:.0f} |")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        if args.keep_files:
            log(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
