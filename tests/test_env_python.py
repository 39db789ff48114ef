"""Finding the interpreter for a model's recorded Python version (modelpack/env/python.py)."""

from __future__ import annotations

import logging
import stat
import sys
from pathlib import Path

import pytest

from modelpack.env import python as lookup
from modelpack.env.python import Interpreter, choose, find_python, minor_of
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


@pytest.mark.parametrize("version, minor", [
    ("3.14.0rc1", "3.14"), ("3.13.0a2", "3.13"), ("3.12.1+local", "3.12"), ("3.13.0a2+", "3.13"), ("3.11", "3.11"),
])
def test_pre_release_and_local_versions_parse(version, minor):
    assert minor_of(version) == minor
    assert Interpreter("p", version).minor == minor


def test_pre_release_and_local_interpreters_are_found(machine, caplog):
    rc = _fake_python(machine / "pyenv" / "versions" / "3.14.0rc1" / "bin" / "python", "3.14.0rc1")
    assert find_python("3.14.0rc1") == Interpreter(str(rc), "3.14.0rc1")
    with caplog.at_level(logging.WARNING, logger="modelpack.env.python"):
        assert find_python("3.14.0") == Interpreter(str(rc), "3.14.0rc1")  # the final release is missing
    assert "using Python 3.14.0rc1" in caplog.text
    alpha = _fake_python(machine / "uv" / "cpython-3.13.0a2-linux-x86_64-gnu" / "bin" / "python3", "3.13.0a2")
    assert find_python("3.13.0a2") == Interpreter(str(alpha), "3.13.0a2")
    local = _fake_python(machine / "bin" / "python3.12", "3.12.1+local")
    assert find_python("3.12.1+local") == Interpreter(str(local), "3.12.1+local")


def test_choose_orders_pre_releases_and_lists_them(machine, monkeypatch):
    found = [Interpreter("rc", "3.9.18rc1"), Interpreter("old", "3.9.2"), Interpreter("new", "3.9.18")]
    assert choose("3.9.19", found).path == "new"
    assert choose("3.9.19", found[:2]).path == "rc"  # 3.9.18rc1 is newer than 3.9.2
    monkeypatch.setattr(lookup, "current", lambda: Interpreter("/current/python", "3.14.0rc1"))
    _fake_python(machine / "pyenv" / "versions" / "3.13.0a2" / "bin" / "python", "3.13.0a2")
    _fake_python(machine / "bin" / "python3", "3.12.1+local")
    with pytest.raises(EnvironmentBuildError) as info:
        find_python("3.8.18")
    assert "found: 3.12.1+local, 3.13.0a2, 3.14.0rc1" in info.value.message


def test_the_real_interpreter_is_found():
    assert find_python(".".join(map(str, sys.version_info[:3]))).path == sys.executable
