"""SPEC: what a project is - its name, its entry points (typed parameters, a command template) and the
environment it declares.

Read from the ``MLproject`` file (found in any letter case, as MLflow finds it)::

    name: diabetes
    python_env: python_env.yaml        # or conda_env: conda.yaml; or neither
    entry_points:
      main:
        parameters:
          alpha: {type: float, default: 0.5}
          data_file: path              # the short form: a type, no default (so the value is required)
        command: "python train.py {alpha} --data {data_file}"

Without an MLproject file (or for whatever it leaves out) the directory's name is the project's name, every
``.py`` or ``.sh`` file is an entry point (``-e train.py``), and ``python_env.yaml`` or else ``conda.yaml`` at the
top of the directory is the environment. A file that is wrong in any way is a :class:`ProjectError` naming the
key, before anything runs.
"""

from __future__ import annotations

import re
import shlex
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import quote, quote_names
from .errors import ProjectError

MLPROJECT = "MLproject"
#: The parameter types and what a value of each must be (params.py converts them).
PARAM_TYPES = ("string", "float", "int", "path", "uri")
PYTHON_ENV, CONDA_ENV, DOCKER_ENV = "python_env", "conda_env", "docker_env"
#: The environment files looked for at the top of a project that does not name one.
DEFAULT_ENV_FILES = ((PYTHON_ENV, "python_env.yaml"), (CONDA_ENV, "conda.yaml"))
#: How a script entry point is run, by suffix (``python`` is the environment's, found first on PATH).
SCRIPT_SUFFIXES = (".py", ".sh")
#: A parameter's name: usable in a ``{placeholder}``, as ``--name`` and as a tracking param key.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DECLARED_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # no '.': it would read as attribute access


@dataclass(frozen=True)
class Parameter:
    """A declared parameter: its type and default (None: a value is required)."""

    name: str
    type: str = "string"
    default: Any = None


@dataclass(frozen=True)
class EntryPoint:
    """A command to run: a template with ``{name}`` placeholders for ``parameters`` (in declaration order).

    A script entry point (``-e train.py``) declares nothing: every parameter is passed as ``--name value``."""

    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    script: bool = False


@dataclass(frozen=True)
class Project:
    """A project directory as read by :func:`load`."""

    directory: Path
    name: str
    entry_points: dict[str, EntryPoint]
    env_kind: str | None = None  #: ``python_env``, ``conda_env``, or None: no environment declared
    env_file: Path | None = None
    mlproject: Path | None = None

    def entry_point(self, name: str) -> EntryPoint:
        """The declared entry point ``name``, else the ``.py`` / ``.sh`` file of that path in the project."""
        declared = self.entry_points.get(name)
        if declared is not None:
            return declared
        if name.endswith(SCRIPT_SUFFIXES):
            script = (self.directory / name).resolve()
            if not script.is_relative_to(self.directory.resolve()):
                raise ProjectError(f"Entry point {quote(name)} is outside the project directory {self.directory}")
            if script.is_file():
                relative = script.relative_to(self.directory.resolve()).as_posix()
                runner = "python" if name.endswith(".py") else ("bash" if shutil.which("bash") else "sh")
                return EntryPoint(name, f"{runner} {shlex.quote(relative)}", script=True)
            raise ProjectError(f"Project {quote(self.name)} has no file {quote(name)} to run as an entry point "
                               f"(looked for {script})")
        raise ProjectError(self._unknown_entry_point(name))

    def scripts(self) -> list[str]:
        """The ``.py`` and ``.sh`` files at the top of the project (each is an entry point)."""
        return sorted(p.name for p in self.directory.iterdir() if p.is_file() and p.suffix in SCRIPT_SUFFIXES)

    def _unknown_entry_point(self, name: str) -> str:
        scripts = self.scripts()
        runnable = f"; or run one of its scripts with -e, e.g. -e {scripts[0]}" if scripts else ""
        if self.mlproject is None:
            return (f"Project {quote(self.name)} has no MLproject file, so its entry points are its .py and .sh "
                    f"files, and {quote(name)} is none of them: pass one with -e "
                    f"(found: {quote_names(scripts) if scripts else 'none'})")
        return (f"Project {quote(self.name)} has no entry point {quote(name)}; its MLproject declares "
                f"{quote_names(self.entry_points)}{runnable}")


def find_mlproject(directory: Path) -> Path | None:
    """The project's MLproject file, in any letter case."""
    for entry in sorted(directory.iterdir()):
        if entry.name.lower() == MLPROJECT.lower() and entry.is_file():
            return entry
    return None


def load(directory: Path, default_name: str | None = None) -> Project:
    """Read the project in ``directory`` (its name defaults to ``default_name``, else the directory's name)."""
    import yaml

    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise ProjectError(f"No project at {directory}: it is not a directory")
    fallback_name = default_name or directory.name
    mlproject = find_mlproject(directory)
    if mlproject is None:
        kind, env_file = _default_env(directory)
        return Project(directory, fallback_name, {}, kind, env_file)
    try:
        spec = yaml.safe_load(mlproject.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProjectError(f"Cannot read {mlproject}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{mlproject} is not valid YAML: {' '.join(str(exc).split())}") from None
    spec = {} if spec is None else spec
    where = str(mlproject)
    if not isinstance(spec, dict):
        raise ProjectError(f"{where} must be a mapping (name, python_env or conda_env, entry_points), "
                           f"got {type(spec).__name__}")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ProjectError(f"{where}: 'name' must be a non-empty string, got {quote(name)}")
    kind, env_file = _declared_env(directory, spec, where)
    entry_points = _entry_points(spec.get("entry_points"), where)
    return Project(directory, name or fallback_name, entry_points, kind, env_file, mlproject)


def _default_env(directory: Path) -> tuple[str | None, Path | None]:
    for kind, filename in DEFAULT_ENV_FILES:
        if (directory / filename).is_file():
            return kind, directory / filename
    return None, None


def _declared_env(directory: Path, spec: dict, where: str) -> tuple[str | None, Path | None]:
    declared = [key for key in (PYTHON_ENV, CONDA_ENV, DOCKER_ENV) if spec.get(key) is not None]
    if len(declared) > 1:
        raise ProjectError(f"{where} declares {' and '.join(declared)}; a project has one environment")
    if not declared:
        return _default_env(directory)
    kind = declared[0]
    if kind == DOCKER_ENV:
        raise ProjectError(f"{where} declares a docker_env, which modelpack does not run: declare python_env "
                           "(python_env.yaml) or conda_env (conda.yaml; its pip section is installed) instead")
    value = spec[kind]
    if not isinstance(value, str) or not value.strip():
        raise ProjectError(f"{where}: '{kind}' must name a file in the project, got {quote(value)}")
    path = directory / value
    if not path.is_file():
        raise ProjectError(f"{where} names the {kind} file {quote(value)}, which does not exist ({path})")
    return kind, path


def _entry_points(value: Any, where: str) -> dict[str, EntryPoint]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: 'entry_points' must be a mapping of names to entry points, "
                           f"got {type(value).__name__}")
    found = {}
    for name, body in value.items():
        if not isinstance(name, str) or not name:
            raise ProjectError(f"{where}: an entry point's name must be a string, got {quote(name)}")
        if not isinstance(body, dict):
            raise ProjectError(f"{where}: entry point {quote(name)} must be a mapping with 'command' and "
                               f"optionally 'parameters', got {type(body).__name__}")
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ProjectError(f"{where}: entry point {quote(name)} needs a 'command' (a string), "
                               f"got {quote(command)}")
        parameters = _parameters(body.get("parameters"), f"{where}: entry point {quote(name)}")
        _check_placeholders(command, parameters, f"{where}: the command of entry point {quote(name)}")
        found[name] = EntryPoint(name, command, parameters)
    return found


def _parameters(value: Any, where: str) -> dict[str, Parameter]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: 'parameters' must be a mapping of names to types, got {type(value).__name__}")
    found = {}
    for name, body in value.items():
        if not isinstance(name, str) or not _DECLARED_NAME_RE.fullmatch(name):
            raise ProjectError(f"{where}: parameter name {quote(name)} must be letters, digits, '_' and '-'")
        if isinstance(body, str) or body is None:
            kind, default = body or "string", None
        elif isinstance(body, dict):
            kind, default = body.get("type", "string"), body.get("default")
        else:
            raise ProjectError(f"{where}: parameter {quote(name)} must be a type such as 'float' or a mapping "
                               f"{{type: ..., default: ...}}, got {quote(body)}")
        if kind not in PARAM_TYPES:
            raise ProjectError(f"{where}: parameter {quote(name)} has type {quote(kind)}; the types are "
                               f"{', '.join(PARAM_TYPES)}")
        found[name] = Parameter(name, kind, default)
    return found


def _check_placeholders(command: str, parameters: dict[str, Parameter], where: str) -> None:
    for _, name, spec, conversion in template_parts(command, where):
        if name is None:
            continue
        if name not in parameters:
            declared = f"its parameters are {quote_names(parameters)}" if parameters else "it declares none"
            raise ProjectError(f"{where} uses {{{name}}}, which is not a declared parameter ({declared})")
        if spec or conversion:
            raise ProjectError(f"{where}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                               f"{':' + spec if spec else ''}}} must be a plain {{{name}}}: values are passed "
                               "as given")


def template_parts(command: str, where: str = "The command") -> list[tuple[str, str | None, str | None, str | None]]:
    """``(literal text, field name, format spec, conversion)`` of a command template, as ``str.format`` reads it
    (``{{`` and ``}}`` come back as single braces in the literal text)."""
    try:
        return list(string.Formatter().parse(command))
    except ValueError as exc:
        raise ProjectError(f"{where} is not a valid template: {exc} (write a literal brace as '{{{{' or "
                           "'}}')") from None


__all__ = ["EntryPoint", "MLPROJECT", "NAME_RE", "PARAM_TYPES", "Parameter", "Project", "find_mlproject", "load",
           "template_parts"]
