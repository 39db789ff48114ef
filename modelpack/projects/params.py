"""PARAMS: the values of an entry point's parameters - checked against their types, defaults filled in - and the
command they make.

- ``string``: as given. ``float`` / ``int``: a number of that type, passed in Python's canonical form
  (``1e-2`` -> ``0.01``, ``007`` -> ``7``), so the value a script logs after parsing it is the value the run
  logged. ``path``: a local file or directory that must exist, made absolute (a given value against the
  current directory, a default against the project). ``uri``: has a scheme (``s3://``, ``file:///``, ``runs:/``).
- A declared parameter without a value or default, a value that is not of its type, or a name that cannot be a
  parameter is a :class:`ProjectError` before anything runs. Undeclared names are passed after the command as
  ``--name value`` (as MLflow does), with a warning when the name looks like a misspelt declared one.
- Every value is shell-quoted into the command: ``1; rm -rf ~`` is one argument, never a second command.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import quote
from .errors import ProjectError
from .spec import NAME_RE, EntryPoint, Parameter, template_parts

logger = logging.getLogger(__name__)

_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?\d+")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")  # two characters at least: 'C:' is a drive, not a scheme


@dataclass(frozen=True)
class Resolved:
    """The parameter values of one run, as passed to the command and logged on the run."""

    declared: dict[str, str]  #: every declared parameter (defaults included), in declaration order
    extra: dict[str, str]  #: the undeclared ones, appended as ``--name value``

    @property
    def all(self) -> dict[str, str]:
        return {**self.declared, **self.extra}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``-P name=value`` options as a mapping (the value may contain '='; a name given twice is an error)."""
    found: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ProjectError(f"-P takes name=value, got {quote(item)}")
        if name in found:
            raise ProjectError(f"Parameter {quote(name)} is given twice (-P {name}={found[name]} and "
                               f"-P {item})")
        found[name] = value
    return found


def resolve(entry: EntryPoint, given: Mapping[str, Any], project_dir: Path, cwd: Path | None = None) -> Resolved:
    """Check ``given`` against ``entry``'s parameters and fill in the defaults.

    A given ``path`` is relative to ``cwd`` (default: the current directory), a default one to ``project_dir``.
    """
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    for name in given:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ProjectError(f"Invalid parameter name {quote(name)}: a name is letters, digits and '_.-', "
                               "starting with a letter, digit or '_'")
    missing = [p for name, p in entry.parameters.items() if given.get(name) is None and p.default is None]
    if missing:
        needed = ", ".join(f"{p.name} ({p.type})" for p in missing)
        example = " ".join(f"-P {p.name}=..." for p in missing)
        raise ProjectError(f"Entry point {quote(entry.name)} needs a value for {needed}: pass {example}")
    declared = {}
    for name, parameter in entry.parameters.items():
        value = given.get(name)
        if value is not None:
            declared[name] = convert(parameter, value, cwd, "value")
        else:
            declared[name] = convert(parameter, parameter.default, project_dir, "default")
    extra = {name: _text(name, value) for name, value in given.items() if name not in entry.parameters}
    for name in extra:
        close = difflib.get_close_matches(name, list(entry.parameters), n=1, cutoff=0.75)
        if close:
            logger.warning("Parameter %r is not declared by entry point %r, so it is passed as --%s; did you "
                           "mean %r?", name, entry.name, name, close[0])
    return Resolved(declared, extra)


def convert(parameter: Parameter, value: Any, base: Path, what: str = "value") -> str:
    """The text of ``value`` for ``parameter`` (see the module docstring); a :class:`ProjectError` when it is not
    of the parameter's type. ``base`` is the directory a relative path is taken from."""
    kind = parameter.type
    if kind == "string":
        return _text(parameter.name, value)
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(float(value))
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return repr(float(value))
        raise _wrong(parameter, value, "a number", what)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return str(int(value))
        raise _wrong(parameter, value, "an integer", what)
    if kind == "path":
        return _path(parameter, value, base, what)
    if kind == "uri":
        text = _text(parameter.name, value)
        if not _SCHEME_RE.match(text):
            raise _wrong(parameter, value, "a URI with a scheme such as s3://, https:// or file:/// (for a local "
                                           "file or directory declare the parameter as a path)", what)
        return text
    raise ProjectError(f"Parameter {quote(parameter.name)} has unknown type {quote(kind)}")


def _path(parameter: Parameter, value: Any, base: Path, what: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _wrong(parameter, value, "a path to a file or directory", what)
    text = os.fspath(value)
    if isinstance(text, bytes):
        raise _wrong(parameter, value, "a path to a file or directory", what)
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    elif _SCHEME_RE.match(text) and "://" in text:
        raise _wrong(parameter, value, "a local file or directory (a remote URI needs a 'uri' parameter)", what)
    path = Path(text).expanduser()
    absolute = Path(os.path.abspath(path if path.is_absolute() else base / path))
    if not absolute.exists():
        raise ProjectError(f"Parameter {quote(parameter.name)} (path): {quote(text)} does not exist "
                           f"(looked for {absolute})")
    return _text(parameter.name, str(absolute))


def _text(name: str, value: Any) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if isinstance(text, bytes) or "\x00" in text:
        raise ProjectError(f"Parameter {quote(name)} has a value that cannot be passed to a command: {quote(value)}")
    return text


def _wrong(parameter: Parameter, value: Any, expected: str, what: str) -> ProjectError:
    return ProjectError(f"Parameter {quote(parameter.name)} ({parameter.type}) must be {expected}; the {what} "
                        f"is {quote(value)}")


def render(entry: EntryPoint, values: Resolved) -> str:
    """The shell command of ``entry`` with ``values``: each placeholder replaced by its shell-quoted value, then
    ``--name value`` for each undeclared parameter."""
    parts = []
    for literal, name, _, _ in template_parts(entry.command):
        parts.append(literal)
        if name is not None:
            parts.append(shlex.quote(values.declared[name]))
    for name, value in values.extra.items():
        parts.append(f" {shlex.quote('--' + name)} {shlex.quote(value)}")
    return "".join(parts)


__all__ = ["Resolved", "convert", "parse_assignments", "render", "resolve"]
