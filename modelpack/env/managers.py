"""The commands of each environment manager: ``virtualenv`` + pip (default) and ``uv``.

A manager only says *how* to create an environment and install into it; building, caching
and locking are :mod:`modelpack.env.build`'s job. ``local`` is not a manager: it uses the
running interpreter and never reaches this module.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..errors import EnvironmentBuildError
from .python import Interpreter


class Manager:
    """How to create a virtual environment and install requirements into it."""

    name = ""
    installer = ""  #: what messages call the installer ("pip", "uv")

    def create(self, target: Path, python: Interpreter) -> list[str]:
        raise NotImplementedError

    def install(self, env_python: Path, args: list[str]) -> list[str]:
        raise NotImplementedError


class VirtualenvManager(Manager):
    name = "virtualenv"
    installer = "pip"

    def create(self, target: Path, python: Interpreter) -> list[str]:
        return [sys.executable, "-m", "virtualenv", "--no-periodic-update", "--quiet",
                "--python", python.path, str(target)]

    def install(self, env_python: Path, args: list[str]) -> list[str]:
        # Bytecode is compiled afterwards in one parallel pass that skips test suites.
        return [str(env_python), "-m", "pip", "install", "--no-compile", "--progress-bar", "off", *args]


class UvManager(Manager):
    name = "uv"
    installer = "uv"

    def __init__(self, uv: str) -> None:
        self.uv = uv

    def create(self, target: Path, python: Interpreter) -> list[str]:
        return [self.uv, "venv", "--quiet", "--no-python-downloads", "--python", python.path, str(target)]

    def install(self, env_python: Path, args: list[str]) -> list[str]:
        return [self.uv, "pip", "install", "--python", str(env_python), *args]


def find_uv() -> str | None:
    """The ``uv`` executable: installed as a package in this interpreter, else on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def get_manager(name: str) -> Manager:
    """The manager called ``name`` (``virtualenv`` or ``uv``)."""
    if name == "virtualenv":
        return VirtualenvManager()
    if name == "uv":
        uv = find_uv()
        if uv is None:
            raise EnvironmentBuildError(
                "--env-manager uv needs uv, which is not installed: `pip install uv` "
                "(or see https://docs.astral.sh/uv/), or use --env-manager virtualenv"
            )
        return UvManager(uv)
    raise EnvironmentBuildError(f"Unknown environment manager '{name}'; expected virtualenv, uv or local")
