"""Finding the interpreter for a model's recorded Python version (modelpack/env/python.py)."""

from __future__ import annotations

import logging
import stat
import sys
from pathlib import Path

import pytest

from modelpack.env import python as lookup
from modelpack.env.python import Interpreter, choose, find_python
from modelpack.errors import EnvironmentBuildError


def _fake_python(path: Path, version: str) -> Path:
    """An executable that answers the version probe like a Python would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """An empty machine: no pyenv, no uv Pythons, an empty PATH, and a 3.11.7 'current' interpreter."""
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "uv"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(lookup, "current", lambda: Interpreter("/current/python", "3.11.7"))
    return tmp_path


def test_exact_version_wins(machine):
    _fake_python(machine / "pyenv" / "versions" / "3.9.18" / "bin" / "python", "3.9.18")
    _fake_python(machine / "pyenv" / "versions" / "3.9.2" / "bin" / "python", "3.9.2")
    found = find_python("3.9.18")
    assert found == Interpreter(str(machine / "pyenv" / "versions" / "3.9.18" / "bin" / "python"), "3.9.18")
    assert find_python("3.11.7").path == "/current/python"


def test_uv_managed_and_path_interpreters(machine):
    uv = _fake_python(machine / "uv" / "cpython-3.12.4-linux-x86_64-gnu" / "bin" / "python3", "3.12.4")
    assert find_python("3.12.4") == Interpreter(str(uv), "3.12.4")
    on_path = _fake_python(machine / "bin" / "python3.10", "3.10.14")
    assert find_python("3.10.14") == Interpreter(str(on_path), "3.10.14")


def test_other_patch_release_is_used_with_a_warning(machine, caplog):
    _fake_python(machine / "pyenv" / "versions" / "3.9.2" / "bin" / "python", "3.9.2")
    newest = _fake_python(machine / "pyenv" / "versions" / "3.9.18" / "bin" / "python", "3.9.18")
    with caplog.at_level(logging.WARNING, logger="modelpack.env.python"):
        found = find_python("3.9.7")
    assert found == Interpreter(str(newest), "3.9.18")
    assert "saved with Python 3.9.7" in caplog.text and "using Python 3.9.18" in caplog.text


def test_missing_minor_version_says_what_to_install(machine):
    _fake_python(machine / "pyenv" / "versions" / "3.10.13" / "bin" / "python", "3.10.13")
    with pytest.raises(EnvironmentBuildError) as info:
        find_python("3.8.18")
    message = info.value.message
    assert "needs Python 3.8" in message and "saved with 3.8.18" in message
    assert "pyenv install 3.8.18" in message and "--python" in message
    assert "found: 3.10.13, 3.11.7" in message


def test_python_override(machine, caplog):
    other = _fake_python(machine / "elsewhere" / "py", "3.12.1")
    with caplog.at_level(logging.WARNING, logger="modelpack.env.python"):
        assert find_python("3.11.7", override=str(other)) == Interpreter(str(other), "3.12.1")
    assert "as --python asks" in caplog.text
    with pytest.raises(EnvironmentBuildError, match="not a working Python"):
        find_python("3.11.7", override=str(machine / "nope"))


def test_pyenv_shims_are_not_run(machine, monkeypatch):
    shim = _fake_python(machine / "pyenv" / "shims" / "python3.9", "3.9.18")
    monkeypatch.setenv("PATH", str(shim.parent))
    with pytest.raises(EnvironmentBuildError):
        find_python("3.9.18")


def test_choose_prefers_exact_then_newest_patch():
    found = [Interpreter("a", "3.9.2"), Interpreter("b", "3.9.18"), Interpreter("c", "3.9.10")]
    assert choose("3.9.10", found).path == "c"
    assert choose("3.9.11", found).path == "b"
    assert choose("3.9", found).path == "b"  # only the minor version recorded (no warning)


def test_the_real_interpreter_is_found():
    assert find_python(".".join(map(str, sys.version_info[:3]))).path == sys.executable
