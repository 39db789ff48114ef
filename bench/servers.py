"""The servers under comparison: how each is installed, how it saves the model, how it starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from process import free_port

BENCH_DIR = Path(__file__).resolve().parent
# No phoning home from any server while it is measured.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class SkipServer(Exception):
    """This server cannot be set up here; the message says why."""


@dataclass
class Context:
    """What every server's setup needs: the shared model files and where to put things."""

    workdir: Path
    model_path: Path  # the fitted model, joblib
    example_path: Path  # 3 rows as pandas split JSON
    workers: int
    cache_dir: Path
    allow_install: bool
    model_kind: str = "elasticnet"  #: a key of payloads.MODELS


def _libraries(ctx: Context) -> list[str]:
    """The harness's scikit-learn, and the model's library when it has one, pinned to the harness's versions
    so every server unpickles the very same model."""
    from importlib.metadata import packages_distributions

    from payloads import MODELS

    library = MODELS[ctx.model_kind]
    if library is None:
        return [_same_sklearn()]
    # the distribution that provides the package here: xgboost, or the CPU-only xgboost-cpu
    dist = (packages_distributions().get(library) or [library])[0]
    return [_same_sklearn(), f"{dist}=={version(dist)}"]


@dataclass
class Launch:
    """How to start a prepared server and talk to it."""

    argv: list[str]
    ready_path: str = "/ping"
    infer_path: str = "/invocations"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


class Server:
    """One contender. `kinds` maps a table format (split, records, csv) to the body it is sent."""

    name = ""
    kinds: dict[str, str] = {"split": "split"}
    checks_predictions = True

    def prepare(self, ctx: Context) -> str:
        """Install what is needed and save the model; returns a version string."""
        raise NotImplementedError

    def launch(self, ctx: Context, port: int) -> Launch:
        raise NotImplementedError

    def predictions(self, reply: Any) -> list[float]:
        """The predictions inside a decoded 200 reply."""
        return reply["predictions"] if isinstance(reply, dict) else reply


# Saves the shared joblib model with a library's own save function, in that library's env.
SAVE_SCRIPT = """
import json, sys
import joblib, pandas as pd
model = joblib.load(sys.argv[1])
split = json.load(open(sys.argv[2]))
example = pd.DataFrame(split["data"], columns=split["columns"])
{save}
"""


def run_python(python: Path | str, code: str, *args: str) -> str:
    """Run a snippet with an interpreter; SkipServer with the error's tail when it fails."""
    proc = subprocess.run(
        [str(python), "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **QUIET_ENV},
    )
    if proc.returncode != 0:
        tail = "\n    ".join(proc.stderr.strip().splitlines()[-5:])
        raise SkipServer(f"setup script failed:\n    {tail}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"


def ensure_venv(ctx: Context, name: str, requirements: list[str]) -> Path:
    """A cached virtualenv holding `requirements`; rebuilt when the list changes.

    The stamp file is written only after pip succeeds, so a half-built env is never trusted.
    """
    root = ctx.cache_dir / "venvs" / name
    python = root / "bin" / "python"
    stamp = root / ".bench-requirements"
    spec = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == spec:
        return root
    if not ctx.allow_install:
        raise SkipServer(f"no virtualenv at {root} and --no-install was given")
    print(
        f"  installing {' '.join(requirements)} into {root} (minutes, first run only)",
        file=sys.stderr,
        flush=True,
    )
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
    stamp.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING:")]
        raise SkipServer("pip install failed:\n    " + "\n    ".join(errors[-6:]))
    stamp.write_text(spec)
    return root


def _same_sklearn() -> str:
    """Pin the harness's scikit-learn so every server unpickles the very same model."""
    return f"scikit-learn=={version('scikit-learn')}"


class Modelpack(Server):
    """The project under test, from the harness's own interpreter; ``worker_class`` sets
    MODELPACK_WORKER_CLASS (None: the server's default) for the variants named ``modelpack_<class>``."""

    name = "modelpack"
    kinds = {"split": "split", "records": "records", "csv": "csv"}

    def __init__(self, worker_class: str | None = None) -> None:
        self.worker_class = worker_class
        if worker_class:
            self.name = f"modelpack_{worker_class}"

    def prepare(self, ctx: Context) -> str:
        import importlib.util

        if self.worker_class == "gevent" and importlib.util.find_spec("gevent") is None:
            raise SkipServer("gevent is not installed here (pip install gevent to compare its worker)")
        self.model_dir = ctx.workdir / f"{self.name}_model"
        save = (
            "import modelpack\n"
            "modelpack.save_model(model, sys.argv[3], input_example=example)\n"
            "print(getattr(modelpack, '__version__', '?'))"
        )
        try:
            return run_python(
                sys.executable,
                SAVE_SCRIPT.format(save=save),
                str(ctx.model_path),
                str(ctx.example_path),
                str(self.model_dir),
            )
        except SkipServer as e:
            raise SkipServer(f"modelpack is not usable from {sys.executable}: {e}") from None

    def launch(self, ctx: Context, port: int) -> Launch:
        script = Path(sys.executable).with_name("modelpack")
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "modelpack.cli"]
        return Launch(
            cli
            + [
                "serve",
                "-m",
                str(self.model_dir),
                "-p",
                str(port),
                "-w",
                str(ctx.workers),
                "--env-manager",
                "local",
            ],
            env={"MODELPACK_WORKER_CLASS": self.worker_class} if self.worker_class else {},
        )


class Mlflow(Server):
    """`mlflow models serve` (FastAPI on uvicorn workers) from its own virtualenv."""

    name = "mlflow"
    kinds = {"split": "split", "records": "records", "csv": "csv"}
    requirement = "mlflow==3.17.*"

    def prepare(self, ctx: Context) -> str:
        name = "mlflow" if ctx.model_kind == "elasticnet" else f"mlflow-{ctx.model_kind}"
        self.venv = ensure_venv(ctx, name, [self.requirement, *_libraries(ctx)])
        self.model_dir = ctx.workdir / "mlflow_model"
        flavor = "sklearn" if ctx.model_kind == "elasticnet" else ctx.model_kind
        save = (
            f"import mlflow, mlflow.{flavor}\n"
            f"mlflow.{flavor}.save_model(model, sys.argv[3], input_example=example)\n"
            "print(mlflow.__version__)"
        )
        return run_python(
            self.venv / "bin" / "python",
            SAVE_SCRIPT.format(save=save),
            str(ctx.model_path),
            str(ctx.example_path),
            str(self.model_dir),
        )

    def launch(self, ctx: Context, port: int) -> Launch:
        mlflow = str(self.venv / "bin" / "mlflow")
        return Launch(
            [
                mlflow,
                "models",
                "serve",
                "-m",
                str(self.model_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                str(ctx.workers),
                "--env-manager",
                "local",
            ],
            env={"PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}"},
        )


class MLServer(Server):
    """Seldon MLServer with its scikit-learn runtime, V2 protocol, `parallel_workers` workers."""

    name = "mlserver"
    kinds = {"split": "v2"}
    model_name = "diabetes"
    requirements = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]

    def prepare(self, ctx: Context) -> str:
        if ctx.model_kind != "elasticnet":
            raise SkipServer("its scikit-learn runtime serves the elasticnet model only")
        self.venv = ensure_venv(ctx, "mlserver", [*self.requirements, _same_sklearn()])
        self.repo = ctx.workdir / "mlserver_repo"
        model_dir = self.repo / self.model_name
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(ctx.model_path, model_dir / "model.joblib")
        settings = {
            "name": self.model_name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))
        return run_python(
            self.venv / "bin" / "python",
            "import mlserver, mlserver_sklearn; print(mlserver.__version__)",
        )

    def launch(self, ctx: Context, port: int) -> Launch:
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": ctx.workers,
            "load_models_at_startup": True,
            "metrics_dir": str(self.repo / ".metrics"),
        }
        (self.repo / "settings.json").write_text(json.dumps(settings, indent=2))
        return Launch(
            [str(self.venv / "bin" / "mlserver"), "start", str(self.repo)],
            ready_path=f"/v2/models/{self.model_name}/ready",
            infer_path=f"/v2/models/{self.model_name}/infer",
            env={"PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}"},
            cwd=self.repo,
        )

    def predictions(self, reply: Any) -> list[float]:
        return reply["outputs"][0]["data"]


class Floor(Server):
    """A minimal Flask app from bench/ on gunicorn sync workers: the stack's lower bound."""

    def __init__(self, module: str, checks_predictions: bool) -> None:
        self.name = module
        self.module = module
        self.checks_predictions = checks_predictions

    def prepare(self, ctx: Context) -> str:
        return f"flask {version('flask')}, gunicorn {version('gunicorn')}"

    def launch(self, ctx: Context, port: int) -> Launch:
        return Launch(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(ctx.workers),
                "-b",
                f"127.0.0.1:{port}",
                f"{self.module}:app",
            ],
            env={"BENCH_MODEL": str(ctx.model_path)},
            cwd=BENCH_DIR,
        )


def all_servers() -> list[Server]:
    return [
        Modelpack(),
        # gunicorn's own worker classes, for comparison (gevent only where it is installed: not a dependency)
        Modelpack("sync"),
        Modelpack("gthread"),
        Modelpack("gevent"),
        Mlflow(),
        MLServer(),
        Floor("floor_numpy", checks_predictions=True),
        Floor("floor_const", checks_predictions=False),
    ]
