"""A cached virtualenv holding real MLflow, for tests that check compatibility with it.

``mlflow_python(["skops"])`` returns the Python of a virtualenv with ``mlflow==3.17.*``, the test process's own
scikit-learn version (so pickles load on both sides) and the given packages. It is built once per requirement
list and kept under ``~/.cache/modelpack-tests/venvs/<hash>``:

- the build happens in a hidden sibling directory that is renamed into place, and the stamp file is written last,
  so a killed or failed build is never used (it is deleted by the next build);
- a file lock per hash makes concurrent test runs wait for one build instead of racing.

The directory is renamed after pip ran, so the console scripts in its ``bin/`` name the build path: run tools as
``python -m mlflow`` / ``python -m pip``, never ``bin/mlflow``. Tests using it are ``@pytest.mark.slow``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

logger = logging.getLogger(__name__)

MLFLOW_REQUIREMENT = "mlflow==3.17.*"
STAMP = ".modelpack-tests-complete"
#: No telemetry, tracking or progress bars from MLflow in the child processes.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_PIP_TIMEOUT = 1800.0


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "modelpack-tests" / "venvs"


def requirements(extra_packages: list[str]) -> list[str]:
    """What the virtualenv holds: MLflow, this process's scikit-learn, then ``extra_packages``."""
    return [MLFLOW_REQUIREMENT, f"scikit-learn=={version('scikit-learn')}", *sorted(set(extra_packages))]


def child_env() -> dict[str, str]:
    """The environment for processes in the MLflow virtualenv: quiet, and blind to this process's paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **QUIET_ENV, "PYTHONNOUSERSITE": "1"}


def run_python(python: Path, code: str, *args: str, cwd: Path, timeout: float = 300) -> str:
    """Run ``code`` with ``python`` in ``cwd`` (never the repository, whose ``modelpack/`` would be importable);
    its stdout, or AssertionError with its stderr when it fails."""
    proc = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          env=child_env(), timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{python} -c ... exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


@functools.cache
def _cached(reqs: tuple[str, ...]) -> Path:
    return _ensure(list(reqs))


def mlflow_python(extra_packages: list[str] | tuple[str, ...] = ()) -> Path:
    """The ``bin/python`` of a cached virtualenv with MLflow 3.17 plus ``extra_packages`` (built on first use)."""
    return _cached(tuple(requirements(list(extra_packages))))


def _key(reqs: list[str]) -> str:
    spec = {"python": list(sys.version_info[:2]), "requirements": reqs}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _ensure(reqs: list[str]) -> Path:
    from filelock import FileLock

    root = cache_root()
    key = _key(reqs)
    final = root / key
    python = final / "bin" / "python"
    if (final / STAMP).is_file():
        return python
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{key}.lock")):
        if (final / STAMP).is_file():  # another process built it while we waited
            return python
        for leftover in [final, *root.glob(f".build-{key}-*")]:
            shutil.rmtree(leftover, ignore_errors=True)  # unfinished builds: never trusted
        build = root / f".build-{key}-{secrets.token_hex(4)}"
        started = time.monotonic()
        logger.warning("Building the MLflow test virtualenv %s with %s (minutes, first run only)", final, reqs)
        try:
            _build(build, reqs)
            (build / STAMP).write_text("\n".join(reqs) + "\n")
            os.rename(build, final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        logger.warning("Built %s in %.0fs", final, time.monotonic() - started)
    return python


def _build(build: Path, reqs: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", "--no-periodic-update", str(build)], check=True,
                   capture_output=True, timeout=300, env=child_env())
    proc = subprocess.run(
        [str(build / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
        capture_output=True, text=True, timeout=_PIP_TIMEOUT, env=child_env(),
    )
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING:")]
        raise RuntimeError(f"pip install {' '.join(reqs)} failed:\n" + "\n".join(errors[-15:]))
