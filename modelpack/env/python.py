"""Find an interpreter for the Python version a model was saved with.

Looked for, cheapest first: this interpreter, pyenv's versions (``$PYENV_ROOT/versions``,
default ``~/.pyenv``), uv's managed Pythons, then ``python3.X`` / ``python3`` / ``python``
on PATH (those have to be run to learn their version). An exact match wins; another patch
release of the same minor version is used with a warning; no interpreter of that minor
version is an :class:`EnvironmentBuildError` that says how to get one.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..errors import EnvironmentBuildError

logger = logging.getLogger(__name__)

_UV_DIR_RE = re.compile(r"^cpython-(\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)-")  # not "+freethreaded" builds
_PROBE = "import platform; print(platform.python_version())"


@dataclass(frozen=True)
class Interpreter:
    """A Python executable and its full version (``3.11.7``)."""

    path: str
    version: str

    @property
    def minor(self) -> str:
        return minor_of(self.version)


def parse_version(version: str) -> Version | None:
    """``version`` parsed (``3.14.0rc1``, ``3.12.1+local`` and a git build's ``3.13.0a2+`` too); None if invalid."""
    try:
        return Version(version.removesuffix("+"))
    except InvalidVersion:
        return None


def _full_version(version: str) -> bool:
    """Whether ``version`` is an interpreter's full version: major.minor.micro, maybe a pre-release."""
    parsed = parse_version(version)
    return parsed is not None and len(parsed.release) == 3


def minor_of(version: str) -> str:
    """``3.11`` for ``3.11.7`` (and for ``3.11``, ``3.11.0rc1``)."""
    parsed = parse_version(version)
    return f"{parsed.major}.{parsed.minor}" if parsed else ".".join(version.split(".")[:2])


def _sort_key(version: str) -> Version:
    """Orders versions newest last (3.9.18 after 3.9.18rc1 after 3.9.2); an invalid one first."""
    return parse_version(version) or Version("0")


def current() -> Interpreter:
    return Interpreter(sys.executable, platform.python_version())


def probe(path: str) -> Interpreter | None:
    """Run ``path`` to learn its version; None when it does not run."""
    try:
        out = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip()
    return Interpreter(path, version) if out.returncode == 0 and _full_version(version) else None


def _pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _uv_python_dir() -> Path:
    if os.environ.get("UV_PYTHON_INSTALL_DIR"):
        return Path(os.environ["UV_PYTHON_INSTALL_DIR"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "uv" / "python"


def _executable(bin_dir: Path) -> str | None:
    for name in ("python3", "python"):
        if (bin_dir / name).is_file():
            return str(bin_dir / name)
    return None


def installed_without_running() -> Iterator[Interpreter]:
    """Interpreters whose version is known from their directory name (pyenv, uv)."""
    versions = _pyenv_root() / "versions"
    if versions.is_dir():
        for entry in sorted(versions.iterdir()):
            exe = _executable(entry / "bin") if _full_version(entry.name) else None
            if exe:
                yield Interpreter(exe, entry.name)
    uv_dir = _uv_python_dir()
    if uv_dir.is_dir():
        for entry in sorted(uv_dir.iterdir()):
            match = _UV_DIR_RE.match(entry.name)
            exe = _executable(entry / "bin") if match else None
            if match and exe:
                yield Interpreter(exe, match.group(1))


def on_path(minor: str) -> Iterator[Interpreter]:
    """``python{minor}``, ``python3`` and ``python`` on PATH (pyenv's shims skipped), run to learn their version."""
    shims = (_pyenv_root() / "shims").resolve()
    seen: set[str] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or Path(directory).resolve() == shims:
            continue
        for name in (f"python{minor}", "python3", "python"):
            path = os.path.join(directory, name)
            real = os.path.realpath(path)
            if real in seen or not os.access(path, os.X_OK) or os.path.isdir(path):
                continue
            seen.add(real)
            found = probe(path)
            if found:
                yield found


def choose(version: str, candidates: Iterable[Interpreter]) -> Interpreter:
    """The exact version if present, else the newest patch of the same minor (with a warning)."""
    found = list(candidates)
    for candidate in found:
        if candidate.version == version:
            return candidate
    same_minor = [c for c in found if c.minor == minor_of(version)]
    if same_minor:
        best = max(same_minor, key=lambda c: _sort_key(c.version))
        if version == minor_of(version):  # only "3.11" was recorded: any 3.11 is exact enough
            return best
        logger.warning(
            "The model was saved with Python %s, which was not found; using Python %s (%s) instead. "
            "Install %s (e.g. `pyenv install %s`) or pass --python for an exact match.",
            version, best.version, best.path, version, version,
        )
        return best
    others = sorted({c.version for c in found}, key=_sort_key)
    raise EnvironmentBuildError(
        f"This model needs Python {minor_of(version)} (it was saved with {version}), and no Python "
        f"{minor_of(version)} interpreter was found on PATH, in pyenv ({_pyenv_root() / 'versions'}) or "
        f"among uv's Pythons{' (found: ' + ', '.join(others) + ')' if others else ''}. "
        f"Install it, e.g. `pyenv install {version}` or `uv python install {version}`, "
        f"or pass --python /path/to/python{minor_of(version)}, or serve with --env-manager local."
    )


def find_python(version: str, override: str | None = None) -> Interpreter:
    """The interpreter to build the environment of a model saved with Python ``version``."""
    if override:
        found = probe(override)
        if found is None:
            raise EnvironmentBuildError(f"--python {override} is not a working Python interpreter")
        if found.minor != minor_of(version):
            logger.warning("The model was saved with Python %s; building its environment with Python %s "
                           "as --python asks", version, found.version)
        return found
    cheap = [current(), *installed_without_running()]
    for candidate in cheap:
        if candidate.version == version:
            return candidate
    return choose(version, [*cheap, *on_path(minor_of(version))])
