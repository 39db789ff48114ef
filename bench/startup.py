"""Start-up time: from spawning the serve command to the first ``GET /ping`` 200.

Measured for the README's diabetes ElasticNet:

- ``modelpack serve`` with a cold environment build (empty ``MODELPACK_HOME``), with the cached
  environment, and with ``--env-manager local``;
- ``mlflow models serve --env-manager virtualenv`` on an MLflow-saved copy of the same fitted model,
  cold (empty ``MLFLOW_ENV_ROOT``) and cached, when an MLflow virtualenv is at hand (by default the
  one bench/run.py creates, ``~/.cache/modelpack-bench/venvs/mlflow``; it is only read).

Usage::

    python bench/startup.py                     # modelpack, plus MLflow if its virtualenv exists
    python bench/startup.py --repeat 5 --skip-mlflow
    python bench/startup.py --json startup.json

Cold numbers include downloads that pip cannot cache when the index sends no cache headers, and
both tools share the machine's pip cache: run the whole script twice to compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MLFLOW_VENV = Path.home() / ".cache" / "modelpack-bench" / "venvs" / "mlflow"
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_ping(argv: list[str], env: dict[str, str], port: int, log_path: Path, timeout: float) -> float:
    """Seconds from spawning ``argv`` to the first 200 on /ping; the process tree is stopped afterwards."""
    with open(log_path, "ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **QUIET, **env})
    try:
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as reply:
                    if reply.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no /ping 200 after {timeout:.0f}s; see {log_path}")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def save_models(workdir: Path, mlflow_python: Path | None) -> tuple[Path, Path | None]:
    """The diabetes ElasticNet saved by modelpack and, if possible, by MLflow (same fitted model)."""
    import pickle

    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    import modelpack

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y)
    modelpack.save_model(model, workdir / "modelpack_model", input_example=X.head(3))
    if mlflow_python is None:
        return workdir / "modelpack_model", None
    (workdir / "model.pkl").write_bytes(pickle.dumps(model))
    X.head(3).to_json(workdir / "example.json", orient="split")
    script = ("import pickle, sys, pandas as pd, mlflow.sklearn; "
              "m = pickle.load(open(sys.argv[1], 'rb')); x = pd.read_json(sys.argv[2], orient='split'); "
              "mlflow.sklearn.save_model(m, sys.argv[3], input_example=x)")
    subprocess.run([str(mlflow_python), "-c", script, str(workdir / "model.pkl"), str(workdir / "example.json"),
                    str(workdir / "mlflow_model")], check=True, capture_output=True, env={**os.environ, **QUIET},
                   timeout=600)
    return workdir / "modelpack_model", workdir / "mlflow_model"


def measure(name: str, argv_for_port, env: dict[str, str], runs: int, workdir: Path, timeout: float) -> list[float]:
    times = []
    for i in range(runs):
        port = free_port()
        seconds = time_to_ping(argv_for_port(port), env, port, workdir / f"{name}.log", timeout)
        log(f"  {name} run {i + 1}: {seconds:.2f}s")
        times.append(seconds)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each warm measurement (default 3)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--mlflow-python", type=Path, default=MLFLOW_VENV / "bin" / "python")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--workdir", type=Path, help="keep models, caches and logs here (default: a temp dir)")
    args = parser.parse_args(argv)

    mlflow_python = None if args.skip_mlflow or not args.mlflow_python.exists() else args.mlflow_python
    if not args.skip_mlflow and mlflow_python is None:
        log(f"No MLflow virtualenv at {args.mlflow_python.parent.parent} (python bench/run.py creates it); "
            "MLflow is skipped")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelpack-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"Work directory: {workdir}")
    modelpack_model, mlflow_model = save_models(workdir, mlflow_python)

    serve = [sys.executable, "-m", "modelpack.cli", "serve", "-m", str(modelpack_model), "-w", "1"]
    home = {"MODELPACK_HOME": str(workdir / "modelpack-home")}
    results: dict[str, list[float]] = {}
    log("modelpack, cold environment build:")
    results["modelpack cold build"] = measure("modelpack-cold", lambda p: [*serve, "-p", str(p)], home, 1,
                                              workdir, 900)
    log("modelpack, cached environment:")
    results["modelpack cached"] = measure("modelpack-cached", lambda p: [*serve, "-p", str(p)], home,
                                          args.repeat, workdir, 120)
    log("modelpack, --env-manager local:")
    results["modelpack local"] = measure("modelpack-local", lambda p: [*serve, "-p", str(p), "--env-manager",
                                                                      "local"], {}, args.repeat, workdir, 120)
    if mlflow_model is not None:
        assert mlflow_python is not None
        mlflow = [str(mlflow_python.parent / "mlflow"), "models", "serve", "-m", str(mlflow_model), "-w", "1",
                  "--env-manager", "virtualenv"]
        env = {"MLFLOW_ENV_ROOT": str(workdir / "mlflow-envs"),
               "PATH": f"{mlflow_python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        try:
            log("mlflow models serve --env-manager virtualenv, cold:")
            results["mlflow virtualenv cold build"] = measure(
                "mlflow-cold", lambda p: [*mlflow, "-p", str(p)], env, 1, workdir, 1200)
            log("mlflow models serve --env-manager virtualenv, cached:")
            results["mlflow virtualenv cached"] = measure(
                "mlflow-cached", lambda p: [*mlflow, "-p", str(p)], env, args.repeat, workdir, 300)
        except RuntimeError as exc:
            log(f"MLflow failed: {exc}")

    print("| start-up to first /ping 200 | best (s) | median (s) | runs |")
    print("|---|---:|---:|---:|")
    for name, times in results.items():
        print(f"| {name} | {min(times):.2f} | {statistics.median(times):.2f} | {len(times)} |")
    if args.json:
        args.json.write_text(json.dumps({"seconds": results, "workdir": str(workdir)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
