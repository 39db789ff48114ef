"""Get a model's environment from the cache, building it once when it is missing.

The build, under the key's file lock: discard unfinished builds of the key -> create the
virtualenv in a fresh directory -> install the build tools -> install the requirements
(with the serving modelpack) -> compile bytecode -> check that the server imports -> write
the completion marker -> publish (atomic symlink rename). Any failure deletes the
directory; the installer's log is kept under ``logs/`` and named in the error.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import EnvironmentBuildError
from . import runner
from .cache import BUILD_LOG, MARKER, Cache, Environment
from .failure import summarize
from .managers import Manager, get_manager
from .python import Interpreter, find_python
from .recorded import RecordedEnv
from .runner import Progress

logger = logging.getLogger(__name__)

REQUIREMENTS_IN_ENV = "modelpack-requirements.txt"
#: The modules the server needs, imported once to prove the environment can serve.
_CHECK = "import modelpack.pyfunc, modelpack.server.app, modelpack.server.gunicorn"
_WAIT_NOTICE_EVERY = 30.0


def ensure_environment(model_dir: Path, manager_name: str, python: str | None = None,
                       progress: Progress | None = None, cache: Cache | None = None) -> Environment:
    """The cached environment for ``model_dir`` (built now if missing) and record its use."""
    return ensure_recorded_environment(RecordedEnv.from_model(model_dir), manager_name, python, progress, cache,
                                       used_by=Path(model_dir).absolute())


def ensure_recorded_environment(recorded: RecordedEnv, manager_name: str, python: str | None = None,
                                progress: Progress | None = None, cache: Cache | None = None,
                                used_by: Path | None = None) -> Environment:
    """The cached environment of ``recorded`` (a model's or a project's), built now if missing, under the
    cache's lock; its use by ``used_by`` (default: ``recorded.model_dir``) is recorded."""
    progress = progress or (lambda line: logger.info("  %s", line))
    interpreter = find_python(recorded.python, python)
    key = recorded.key(interpreter.version, manager_name)
    cache = cache or Cache()
    env = cache.get(key)
    if env is not None:
        logger.info("Using cached environment %s (Python %s, %s)", key, interpreter.version, manager_name)
    else:
        manager = get_manager(manager_name)
        notices: list[float] = []

        def waiting(seconds: float) -> None:
            if not notices or seconds - notices[-1] >= _WAIT_NOTICE_EVERY:
                notices.append(seconds)
                progress(f"Waiting for another process that is building environment {key} ({seconds:.0f}s)")

        with cache.lock(key, on_wait=waiting):
            env = cache.get(key)
            if env is not None:
                logger.info("Using environment %s, just built by another process", key)
            else:
                cache.discard_partial(key)
                env = _Build(cache, key, recorded, interpreter, manager, progress).run()
    env.record_use(used_by or recorded.model_dir)
    return env


class _Build:
    """One build of one key, in a fresh directory."""

    def __init__(self, cache: Cache, key: str, recorded: RecordedEnv, interpreter: Interpreter,
                 manager: Manager, progress: Progress) -> None:
        self.cache, self.key, self.recorded = cache, key, recorded
        self.interpreter, self.manager, self.progress = interpreter, manager, progress
        self.path = cache.new_build_dir(key)
        self.log_path = cache.new_log(key)

    def run(self) -> Environment:
        started = time.monotonic()
        logger.info("Building environment %s for %s with Python %s (%s); this happens once",
                    self.key, self.recorded.model_dir.name, self.interpreter.version, self.manager.name)
        try:
            with open(self.log_path, "w", encoding="utf-8") as log:
                self._steps(log)
            self._write_marker(time.monotonic() - started)
            shutil.move(str(self.log_path), str(self.path / BUILD_LOG))
            env = self.cache.publish(self.key, self.path)
        except BaseException as exc:
            shutil.rmtree(self.path, ignore_errors=True)
            if isinstance(exc, OSError):
                raise EnvironmentBuildError(f"Building environment {self.key} failed: {exc}. "
                                            f"Log: {self.log_path}") from exc
            raise
        logger.info("Built environment %s in %.1fs", self.key, time.monotonic() - started)
        return env

    def _steps(self, log: IO[str]) -> None:
        python = self.path / "bin" / "python"
        self._step(log, f"Creating a virtual environment with Python {self.interpreter.version}",
                   self.manager.create(self.path, self.interpreter), "creating the virtual environment")
        if self.recorded.build_dependencies:
            tools = list(self.recorded.build_dependencies)
            self._step(log, f"Installing build tools: {' '.join(tools)}",
                       self.manager.install(python, tools), "installing the build tools")
        lines = self.recorded.install_lines()
        requirements = self.path / REQUIREMENTS_IN_ENV
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._step(log, f"Installing {len(lines)} requirements: {', '.join(lines)}",
                   self.manager.install(python, ["-r", str(requirements)]),
                   f"installing the model's requirements with {self.manager.installer}")
        self._compile(log, python)
        self._step(log, "Checking that the server starts in the environment",
                   [str(python), "-c", _CHECK], "importing the server in the new environment", summary=_last_line)

    def _step(self, log: IO[str], title: str, argv: list[str], what: str,
              summary: Callable[[list[str]], str] = summarize) -> None:
        self.progress(title)
        result = runner.run(argv, log, self.progress, cwd=self.recorded.model_dir)
        if result.returncode != 0:
            raise EnvironmentBuildError(
                f"Building the environment failed while {what}: {summary(result.lines)}. "
                f"Full log: {self.log_path}"
            )

    def _compile(self, log: IO[str], python: Path) -> None:
        """Compile bytecode at its final path, test suites skipped (a failure here is not fatal)."""
        import re

        lib = self.path / "lib"
        skip = re.escape(str(lib)) + r".*[/\\](tests?|testing)[/\\]"
        self.progress("Compiling bytecode")
        runner.run([str(python), "-m", "compileall", "-q", "-j", "0", "-x", skip, str(lib)], log, self.progress)

    def _write_marker(self, seconds: float) -> None:
        from .modelpack_source import installed

        marker = {
            "key": self.key,
            "python": self.interpreter.version,
            "base_python": self.interpreter.path,
            "manager": self.manager.name,
            "platform": f"{platform.system()}-{platform.machine()}",
            "build_dependencies": list(self.recorded.build_dependencies),
            "requirements": self.recorded.install_lines(),
            "modelpack": " ".join(installed().install_args),
            "built_for": str(self.recorded.model_dir),
            "created": time.time(),
            "build_seconds": round(seconds, 1),
        }
        (self.path / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _last_line(lines: list[str]) -> str:
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1] if tail else "no output"

