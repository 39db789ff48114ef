"""Rows per second of ``modelpack.spark_udf`` against ``mlflow.pyfunc.spark_udf``, side by side.

Both score the same model directory (the README's diabetes ElasticNet, saved once by modelpack, which MLflow
loads natively) on the same data with the same Spark settings, both with ``env_manager="local"``:

- each side has its own process and Spark session (``local[2]``): modelpack from this interpreter, MLflow 3.17
  from the cached MLflow virtualenv of tests/mlflow_env.py with this interpreter's pyspark version (built on
  first use). Each session also runs ``floor``, the same pandas UDF round trip with no model (it answers
  zeros): what Spark's Arrow transfer alone costs in that session, so two sessions can be told apart from
  two UDFs;
- the data is the diabetes features repeated to ``--rows`` rows in ``--partitions`` partitions, made in Spark
  and cached before any timing;
- one pass is ``df.select(udf(*columns)).write.format("noop")``: every row scored, nothing collected. Each
  UDF's first pass (Python workers start, the model loads) is reported apart; then the UDFs take turns, one
  pass each per round for ``--repeat`` rounds, so a busy machine slows them alike; best and median;
- both sides must agree: the sum of their predictions is compared.

Usage::

    python bench/spark_udf.py                          # 1,000,000 rows, 8 partitions, 5 rounds
    python bench/spark_udf.py --partitions 64          # more, smaller tasks (MLflow loads the model per task)
    python bench/spark_udf.py --skip-mlflow             # modelpack and the floor only

Needs pyspark and a Java runtime (17 or 21) here: ``pip install -e '.[spark]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]

#: Run by each side's interpreter: argv = side, model dir, rows, partitions. Prints JSON lines: one when
#: ready (after the first pass), then one per "pass" command read from stdin, then the sum on "sum".
CHILD = r'''
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
os.environ["PYSPARK_PYTHON"] = sys.executable  # the Python workers run this side's interpreter
side, model_dir, rows, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from pyspark.sql import SparkSession, functions as F
from sklearn.datasets import load_diabetes

X, _ = load_diabetes(return_X_y=True, as_frame=True)
spark = (SparkSession.builder.master("local[2]").appName(f"bench-{side}")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", str(partitions))
         .config("spark.executorEnv.PYTHONWARNINGS", "ignore").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
repeats = -(-rows // len(X))
df = (spark.createDataFrame(X).crossJoin(spark.range(repeats).select()).limit(rows)
      .repartition(partitions).cache())
count = df.count()
started = time.perf_counter()
if side == "modelpack":
    import modelpack
    udf = modelpack.spark_udf(spark, model_dir, result_type="double", env_manager="local")
else:
    import mlflow.pyfunc
    udf = mlflow.pyfunc.spark_udf(spark, model_dir, result_type="double", env_manager="local")
setup = time.perf_counter() - started
import typing
from collections.abc import Iterator
import numpy as np, pandas as pd
from pyspark.sql.functions import pandas_udf

def zeros(batches):
    for batch in batches:
        yield pd.Series(np.zeros(len(batch[0])))

zeros.__annotations__ = {"batches": Iterator[tuple[typing.Union[pd.Series, pd.DataFrame], ...]],
                         "return": Iterator[pd.Series]}
scored = {side: df.select(udf(*X.columns).alias("p")),
          "floor": df.select(pandas_udf(zeros, "double")(*X.columns).alias("p"))}

def one_pass(name):
    started = time.perf_counter()
    scored[name].write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started

import pyspark
first = {name: one_pass(name) for name in scored}
print(json.dumps({"rows": count, "setup": setup, "first": first, "pyspark": pyspark.__version__}), flush=True)
for command in sys.stdin:
    verb, _, name = command.strip().partition(" ")
    if verb == "pass":
        print(json.dumps({"pass": one_pass(name)}), flush=True)
    elif verb == "sum":
        print(json.dumps({"sum": scored[name].agg(F.sum("p")).first()[0]}), flush=True)
spark.stop()
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def save_model(workdir: Path) -> Path:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    import modelpack

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    path = workdir / "diabetes_model"
    modelpack.save_model(ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y), path, input_example=X.head(3))
    return path


class Side:
    """One side's process: its Spark session (with its UDF and a floor UDF) stays up while the sides take turns."""

    def __init__(self, name: str, python: Path | str, model_dir: Path, args: argparse.Namespace,
                 workdir: Path) -> None:
        self.name = name
        self.passes: dict[str, list[float]] = {name: [], "floor": []}
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONWARNINGS="ignore")
        self.log_path = workdir / f"{name}.log"
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        log(f"  {name}: starting Spark, caching {args.rows:,} rows in {args.partitions} partitions, first passes ...")
        self.proc = subprocess.Popen(
            [str(python), "-c", CHILD, name, str(model_dir), str(args.rows), str(args.partitions)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file, text=True, cwd=workdir, env=env)
        self.info = self._reply()

    def run_pass(self, udf: str) -> None:
        self._send(f"pass {udf}")
        self.passes[udf].append(float(self._reply()["pass"]))

    def total(self) -> float:
        self._send(f"sum {self.name}")
        return float(self._reply()["sum"])

    def stop(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()

    def _send(self, command: str) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def _reply(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise SystemExit(f"{self.name} failed (exit {self.proc.returncode}):\n"
                             f"{self.log_path.read_text()[-3000:]}")
        return json.loads(line)


def mlflow_interpreter() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from mlflow_env import mlflow_python

    log(f"  MLflow virtualenv with pyspark=={version('pyspark')} (built on first use, minutes) ...")
    return mlflow_python([f"pyspark=={version('pyspark')}", "pyarrow"])


def table(sides: list[Side]) -> str:
    lines = ["| UDF | session | rows | setup s | first pass s | best pass s | median pass s | rows/s (best) "
             "| rows/s (median) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for side in sides:
        rows = side.info["rows"]
        for udf, passes in side.passes.items():
            best, median = min(passes), statistics.median(passes)
            setup = f"{side.info['setup']:.2f}" if udf == side.name else "–"
            lines.append(f"| {udf} | {side.name}'s | {rows:,} | {setup} | {side.info['first'][udf]:.2f} | "
                         f"{best:.2f} | {median:.2f} | {rows / best:,.0f} | {rows / median:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of one pass per UDF (default 5)")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()

    sides: list[Side] = []
    with tempfile.TemporaryDirectory(prefix="modelpack-bench-spark-") as tmp:
        workdir = Path(tmp)
        model_dir = save_model(workdir)
        try:
            sides.append(Side("modelpack", sys.executable, model_dir, args, workdir))
            if not args.skip_mlflow:
                sides.append(Side("mlflow", mlflow_interpreter(), model_dir, args, workdir))
            log(f"  {args.repeat} rounds, one pass per UDF each ...")
            for _ in range(args.repeat):
                for side in sides:
                    for udf in side.passes:
                        side.run_pass(udf)
            sums = {side.name: side.total() for side in sides}
        finally:
            for side in sides:
                side.stop()
    load = os.getloadavg()
    print(f"Spark UDF benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} CPUs, "
          f"local[2] per session, {args.partitions} partitions, pyspark {sides[0].info['pyspark']}, "
          f"Python {sys.version.split()[0]}, load average at end {load[0]:.2f}\n")
    print(table(sides))
    print()
    for side in sides:
        for udf, passes in side.passes.items():
            print(f"{udf} ({side.name}'s session) passes, s: {', '.join(f'{p:.2f}' for p in passes)}")
    ours = sides[0].passes
    median = statistics.median
    print(f"\nmodelpack / floor in its session, rows/s: {median(ours['floor']) / median(ours['modelpack']):.2f} "
          "(median pass; 1.00 = no cost beyond Spark's own pandas UDF round trip)")
    if not args.skip_mlflow:
        theirs = sides[1].passes
        assert abs(sums["modelpack"] - sums["mlflow"]) <= 1e-9 * abs(sums["mlflow"]), sums
        print(f"mlflow / floor in its session, rows/s: {median(theirs['floor']) / median(theirs['mlflow']):.2f}")
        first = sides[1].info["first"]["mlflow"] / sides[0].info["first"]["modelpack"]
        print(f"modelpack / mlflow rows/s: {min(theirs['mlflow']) / min(ours['modelpack']):.2f}x (best pass), "
              f"{median(theirs['mlflow']) / median(ours['modelpack']):.2f}x (median pass), {first:.2f}x (first "
              f"pass); predictions agree (sums {sums['modelpack']:.6f} and {sums['mlflow']:.6f})")

if __name__ == "__main__":
    main()
