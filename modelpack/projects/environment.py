"""ENVIRONMENT: the environment a project's command runs in, built and cached by the same code as a model's.

A project's ``python_env.yaml`` has the format of a model's (``python``, ``build_dependencies``,
``dependencies``); of a ``conda.yaml`` the Python version, the build tools (pip, setuptools, wheel) and the
``pip:`` section are read (other conda packages are not installed, with a warning). Either becomes a
:class:`~modelpack.env.recorded.RecordedEnv`, so its cache key, build steps (with the serving modelpack
installed), lock, atomic publishing and progress lines are those of ``modelpack serve``. To that, a project's
environment adds what the command's ``modelpack.log_*`` calls need to reach the tracking store: modelpack's
``tracking`` extra (SQLAlchemy, Alembic; ``postgres`` too for a PostgreSQL store), pinned to the versions of the
process that runs the project, unless the project's own requirements name them.

``local`` runs the command with this interpreter (its directory first on PATH, so ``python`` is this one).
A project that declares no environment runs ``local`` unless ``--env-manager`` asks for a build, which then
gets this interpreter's Python version and nothing but modelpack (and what logging needs). A rebuilt
environment's command runs without this process's ``PYTHONPATH`` and ``PYTHONHOME``, which would reach into it.

Until ``modelpack.env.build`` takes a ``RecordedEnv`` itself, :func:`ensure_environment` repeats its
``ensure_environment``'s few lines of lookup and locking around the same ``_Build``.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..env.recorded import RecordedEnv
from ..env.runner import Progress
from ..errors import quote
from .errors import ProjectError
from .spec import CONDA_ENV, Project

if TYPE_CHECKING:
    from ..env.cache import Environment

logger = logging.getLogger(__name__)

ENV_MANAGERS = ("virtualenv", "uv", "local")
_BUILD_TOOLS = ("pip", "setuptools", "wheel")
#: (distribution, extras, requirement when it is not installed here) of modelpack's ``tracking`` and ``postgres``
#: extras (pyproject.toml): what a command needs to log to the store. Read from here, not from modelpack's metadata,
#: which a checkout's stale ``*.egg-info`` can shadow.
_TRACKING_EXTRA = (("sqlalchemy", "", ">=2"), ("alembic", "", ">=1.13"))
_POSTGRES_EXTRA = (("psycopg", "[binary]", ">=3.1"),)
_CONDA_PYTHON_RE = re.compile(r"python\s*==?\s*(\d+(?:\.\d+){1,2})(?:\.\*)?")
_CONDA_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
#: Variables of this process that would reach into a rebuilt environment from outside it.
_DROP_FOR_BUILT = ("PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "__PYVENV_LAUNCHER__")


@dataclass(frozen=True)
class CommandEnvironment:
    """Where the command runs: the manager, the ``bin`` directory put first on PATH, the variables to change."""

    manager: str
    bin_dir: Path
    python: Path
    set_vars: dict[str, str] = field(default_factory=dict)
    drop_vars: tuple[str, ...] = ()

    def environ(self, base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
        """The command's environment variables: ``base`` with this environment's changes, then ``extra``."""
        env = {k: v for k, v in base.items() if k not in self.drop_vars}
        env["PATH"] = os.pathsep.join([str(self.bin_dir), *[p for p in base.get("PATH", "").split(os.pathsep) if p]])
        env.update(self.set_vars)
        env.update(extra)
        return env


def default_manager(project: Project) -> str:
    """``virtualenv`` for a project that declares an environment (as ``serve`` for a model), else ``local``."""
    return "virtualenv" if project.env_file is not None else "local"


def recorded_environment(project: Project) -> RecordedEnv | None:
    """The environment ``project`` declares, in the form model environments are built from; None when it
    declares none."""
    if project.env_file is None:
        return None
    import yaml

    from ..env import reqfile

    path = project.env_file
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProjectError(f"Cannot read the project's environment file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(content, dict):
        raise ProjectError(f"{path} must be a mapping, got {type(content).__name__}")
    if project.env_kind == CONDA_ENV:
        python, build, lines = _from_conda(content, path)
    else:
        python = str(content.get("python") or "")
        build = _strings(content.get("build_dependencies"), path, "build_dependencies")
        lines = _strings(content.get("dependencies"), path, "dependencies")
    if not python:
        python = platform.python_version()
        logger.info("%s names no Python version; using this interpreter's, %s", path.name, python)
    try:
        requirements = reqfile.expand(lines, path.parent)
    except OSError as exc:
        raise ProjectError(f"{path}: the requirements file {exc.filename} cannot be read "
                           f"({exc.strerror or exc})") from None
    return RecordedEnv(project.directory, python, tuple(build), tuple(requirements))


def _strings(value: Any, path: Path, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ProjectError(f"{path}: '{key}' must be a list of requirement strings, got {quote(value)}")
    return [str(v) for v in value]


def _from_conda(content: dict, path: Path) -> tuple[str, list[str], list[str]]:
    """(Python version, build tools, pip requirements) of a conda environment file."""
    python, build, pip, skipped = "", [], [], []
    for item in content.get("dependencies") or []:
        if isinstance(item, dict):
            pip += _strings(item.get("pip"), path, "dependencies: pip")
            continue
        text = str(item).strip()
        found = _CONDA_NAME_RE.match(text)
        name = found.group(0).lower() if found else ""
        if name == "python":
            match = _CONDA_PYTHON_RE.fullmatch(text.replace(" ", ""))
            python = match.group(1) if match else ""
            if not match and text != "python":
                logger.warning("%s asks for %r; only an exact version (python=3.11.7) is looked for, so this "
                               "interpreter's version is used", path.name, text)
        elif name in _BUILD_TOOLS:
            build.append(re.sub(r"^([A-Za-z]+)\s*=(?![=<>])", r"\1==", text))  # conda's pip=23.2 is pip==23.2
        else:
            skipped.append(text)
    if skipped:
        logger.warning("%s lists conda packages, which are not installed: %s (list them under 'pip:' to install "
                       "them with pip)", path.name, ", ".join(skipped))
    return python, build, pip


def store_requirements(url: str) -> list[str]:
    """The requirements of logging to the tracking store at ``url`` (a SQLAlchemy URL): modelpack's ``tracking``
    extra, and its ``postgres`` extra for a PostgreSQL store, each pinned to the version installed here."""
    from importlib import metadata

    from packaging.version import InvalidVersion, Version

    wanted = [*_TRACKING_EXTRA, *(_POSTGRES_EXTRA if url.startswith("postgres") else ())]
    lines = []
    for name, extra, fallback in wanted:
        try:
            lines.append(f"{name}{extra}=={Version(metadata.version(name)).public}")
        except (metadata.PackageNotFoundError, InvalidVersion):
            lines.append(f"{name}{extra}{fallback}")
    return lines


def prepare(project: Project, manager: str, python: str | None = None, progress: Progress | None = None,
            store_url: str | None = None) -> CommandEnvironment:
    """The environment to run ``project``'s command in: ``local``, or its rebuilt environment (from the cache,
    or built now, reporting each step to ``progress``), with what logging to the tracking store at
    ``store_url`` needs."""
    if manager not in ENV_MANAGERS:
        raise ProjectError(f"Unknown environment manager {quote(manager)}; expected one of {', '.join(ENV_MANAGERS)}")
    if manager == "local":
        if python:
            raise ProjectError("--python picks the interpreter of a rebuilt environment; it cannot be combined "
                               "with --env-manager local")
        executable = Path(sys.executable)
        in_venv = sys.prefix != sys.base_prefix
        return CommandEnvironment("local", executable.parent, executable,
                                  {"VIRTUAL_ENV": sys.prefix} if in_venv else {})
    recorded = recorded_environment(project)
    if recorded is None:
        logger.info("Project %r declares no environment; building one with Python %s and modelpack only",
                    project.name, platform.python_version())
        recorded = RecordedEnv(project.directory, platform.python_version(), (), ())
    if store_url is not None:
        recorded = _with_requirements(recorded, store_requirements(store_url))
    env = ensure_environment(recorded, manager, python=python, progress=progress)
    bin_dir = env.path / "bin"
    return CommandEnvironment(manager, bin_dir, bin_dir / "python", {"VIRTUAL_ENV": str(env.path)}, _DROP_FOR_BUILT)


def _with_requirements(recorded: RecordedEnv, lines: list[str]) -> RecordedEnv:
    """``recorded`` with the ``lines`` whose distributions its requirements do not name already."""
    from dataclasses import replace

    from ..env.spec import canonical_name

    named = {canonical_name(line) for line in recorded.requirements}
    missing = tuple(line for line in lines if canonical_name(line) not in named)
    return replace(recorded, requirements=recorded.requirements + missing) if missing else recorded


def ensure_environment(recorded: RecordedEnv, manager_name: str, python: str | None = None,
                       progress: Progress | None = None) -> Environment:
    """The cached environment of ``recorded`` (built now when missing), by the code that builds models'."""
    from ..env.build import ensure_recorded_environment

    return ensure_recorded_environment(recorded, manager_name, python, progress)


__all__ = ["ENV_MANAGERS", "CommandEnvironment", "default_manager", "ensure_environment", "prepare",
           "recorded_environment", "store_requirements"]
