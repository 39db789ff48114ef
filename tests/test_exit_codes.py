"""The README's exit codes, one test each, through the real CLI in a subprocess: 0 ok, 2 bad input or
usage, 3 model cannot be loaded or saved, 4 the model raised, 5 environment build failed. A failure
is one ``Error: ...`` line on stderr and never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import modelpack
from modelpack.cli.main import main


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def assert_error(stderr: str, fragment: str) -> None:
    """``stderr`` is exactly one ``Error:`` line holding ``fragment``."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], stderr


@pytest.fixture
def inputs(tmp_path) -> Path:
    (tmp_path / "ok.json").write_text('{"dataframe_split": {"columns": ["x"], "data": [[1], [3]]}}')
    (tmp_path / "negative.json").write_text('{"dataframe_split": {"columns": ["x"], "data": [[-1]]}}')
    (tmp_path / "malformed.json").write_text('{"dataframe_split": {"columns": ["x"]')
    return tmp_path


def test_0_ok(custom_model_dir, inputs):
    out = cli("predict", "-m", str(custom_model_dir), "-i", str(inputs / "ok.json"), "--env-manager", "local")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"predictions":[2,6]}' and out.stderr == ""


@pytest.mark.parametrize("input_name, fragment", [
    ("malformed.json", "Request body is not valid JSON"),
    ("missing.json", "Cannot read input file"),
])
def test_2_bad_input(custom_model_dir, inputs, input_name, fragment):
    out = cli("predict", "-m", str(custom_model_dir), "-i", str(inputs / input_name), "--env-manager", "local")
    assert out.returncode == 2
    assert_error(out.stderr, fragment)


def test_2_usage():
    out = cli("predict", "-i", "in.json")
    assert out.returncode == 2 and "Error: Missing option '-m'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("damage, fragment", [
    ("missing", "does not exist"),
    ("unpicklable", "Cannot unpickle"),
])
def test_3_model_cannot_be_loaded(custom_model_dir, inputs, tmp_path, damage, fragment):
    model = tmp_path / "model"
    if damage == "unpicklable":
        shutil.copytree(custom_model_dir, model)
        (model / "python_model.pkl").write_bytes(b"not a pickle")
    out = cli("predict", "-m", str(model), "-i", str(inputs / "ok.json"), "--env-manager", "local")
    assert out.returncode == 3
    assert_error(out.stderr, fragment)


def test_4_the_model_raised(custom_model_dir, inputs):
    out = cli("predict", "-m", str(custom_model_dir), "-i", str(inputs / "negative.json"), "--env-manager", "local")
    assert out.returncode == 4
    assert_error(out.stderr, "The model raised ValueError while predicting: negative input: secret-row-value")
    assert out.stdout == ""


def test_4_a_multi_line_model_error_is_one_line(inputs, tmp_path):
    def predict(model_input):
        raise RuntimeError("first line\nsecond line")

    modelpack.save_model(predict, tmp_path / "model")
    out = cli("predict", "-m", str(tmp_path / "model"), "-i", str(inputs / "ok.json"), "--env-manager", "local")
    assert out.returncode == 4
    assert_error(out.stderr, "The model raised RuntimeError while predicting: first line")


def test_4_through_the_model_environment(custom_model_dir, inputs, tmp_path, monkeypatch, capfd):
    """``predict`` re-runs itself with the environment's interpreter and exits with that run's code."""
    import modelpack.cli.prepare_env

    env_python = tmp_path / "env-python"  # another path to this interpreter, so predict re-runs
    env_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    env_python.chmod(0o755)
    monkeypatch.setattr(modelpack.cli.prepare_env, "environment_python", lambda *args: str(env_python))
    assert main(["predict", "-m", str(custom_model_dir), "-i", str(inputs / "negative.json")]) == 4
    assert_error(capfd.readouterr().err, "The model raised ValueError while predicting")
    assert main(["predict", "-m", str(custom_model_dir), "-i", str(inputs / "ok.json")]) == 0
    assert capfd.readouterr().out.strip() == '{"predictions":[2,6]}'


@pytest.mark.parametrize("how", ["not a Python", "no such Python version"])
def test_5_environment_build_failed(custom_model_dir, tmp_path, how):
    model, env = custom_model_dir, {"MODELPACK_HOME": str(tmp_path / "home")}
    if how == "not a Python":
        args = ["--python", str(model / "MLmodel")]
        fragment = "is not a working Python interpreter"
    else:  # a model saved with a Python this machine does not have: the build stops before it starts
        model = tmp_path / "model"
        shutil.copytree(custom_model_dir, model)
        spec = model / "python_env.yaml"
        spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "python": "2.7.18"}))
        env |= {"PATH": str(tmp_path / "bin"), "PYENV_ROOT": str(tmp_path / "pyenv"),
                "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv")}
        args, fragment = [], "This model needs Python 2.7"
    out = cli("prepare-env", "-m", str(model), "--env-manager", "virtualenv", *args, env=env)
    assert out.returncode == 5
    assert_error(out.stderr, fragment)
