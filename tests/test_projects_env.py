"""``modelpack run`` in rebuilt environments (slow): the seed's journey - the diabetes project in its virtualenv,
then its model served by ``runs:/<id>/model`` from a rebuilt environment too - and a git project at a commit with
a conda.yaml's pip section, built with uv (its script imports a package the test interpreter does not have, so a
right answer proves the command ran in the project's environment). One cache root serves the module."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import start_server

import modelpack
from modelpack.tracking.store import _forget_stores

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "diabetes_project"
BUILD_TIMEOUT = 600


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("modelpack-home")


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    from modelpack.tracking import fluent, uri

    path = tmp_path / "mlruns"
    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(path))
    monkeypatch.setattr(uri, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_experiment_name", None)
    _forget_stores()
    yield path
    _forget_stores()


def modelpack_run(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", "run", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=BUILD_TIMEOUT, env={**os.environ, "MODELPACK_HOME": str(home)})


def environments(home: Path) -> dict[str, dict]:
    """The published environments: key -> completion marker."""
    envs = home / "envs"
    return {p.name: json.loads((p.resolve() / "modelpack-env.json").read_text())
            for p in (envs.iterdir() if envs.is_dir() else []) if not p.name.startswith(".")}


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n    {text}")


def test_the_diabetes_project_runs_in_its_environment_and_its_model_serves(home, store, tmp_path, diabetes,
                                                                             capsys):
    from sklearn.linear_model import ElasticNet
    from sklearn.model_selection import train_test_split

    started = time.monotonic()
    out = modelpack_run(str(EXAMPLE), "-P", "alpha=0.01", "-P", "l1_ratio=0.75", home=home, cwd=tmp_path)
    cold = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Building environment" in out.stderr and "environment: virtualenv" in out.stderr  # the default
    run_id = re.search(r"logged as runs:/(\w+)/model", out.stdout).group(1)
    (marker,) = [m for m in environments(home).values() if m["built_for"] == str(EXAMPLE)]
    assert marker["manager"] == "virtualenv"
    installed = marker["requirements"]
    assert {"scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6"} <= set(installed)
    assert any(line.startswith("sqlalchemy==") for line in installed)  # what the script's logging needs

    got = modelpack.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.source_name == str(EXAMPLE)
    assert got.data.params == {"alpha": "0.01", "l1_ratio": "0.75"}
    assert set(got.data.metrics) == {"rmse", "mae", "r2"} and 50 < got.data.metrics["rmse"] < 60
    assert got.data.tags["modelpack.project.env"] == "virtualenv"

    X, y = diabetes
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42)
    expected = ElasticNet(alpha=0.01, l1_ratio=0.75, random_state=42).fit(X_train, y_train).predict(X_test.head(5))
    # served as a user serves it: the default env manager rebuilds the model's own environment
    server = start_server(f"runs:/{run_id}/model", tmp_path, env={"MODELPACK_HOME": str(home)},
                          timeout=BUILD_TIMEOUT, local=False)
    try:
        body = {"dataframe_split": json.loads(X_test.head(5).to_json(orient="split", index=False))}
        answer = server.post(json.dumps(body))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pytest.approx(list(expected))
    finally:
        assert server.stop() == 0
    served = [m for m in environments(home).values() if m["built_for"] != str(EXAMPLE) and "run_id" not in m]
    assert [m["manager"] for m in served if Path(m["built_for"]).name == "model"] == ["virtualenv"]  # the model's

    started = time.monotonic()
    again = modelpack_run(str(EXAMPLE), "-P", "alpha=0.1", "-P", "l1_ratio=0.5", home=home, cwd=tmp_path)
    warm = time.monotonic() - started
    assert again.returncode == 0, again.stderr[-4000:]
    assert "Using cached environment" in again.stderr and "Building environment" not in again.stderr
    assert modelpack.search_runs("Default", order_by=["metrics.rmse"])["params.alpha"].tolist() == ["0.01", "0.1"]
    report(capsys, f"diabetes project: cold (environment built) {cold:.1f}s, cached environment {warm:.1f}s")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_a_git_project_at_a_commit_runs_in_its_uv_environment(home, store, tmp_path, capsys):
    assert importlib.util.find_spec("roman") is None, "roman must not be installed in the test interpreter"
    repo = tmp_path / "numerals.git"
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "--quiet", "-b", "main")
    (work / "MLproject").write_text(
        "name: roman-numerals\nconda_env: conda.yaml\nentry_points:\n  validate:\n"
        "    parameters: {data_file: path}\n    command: \"python validate.py {data_file}\"\n")
    (work / "conda.yaml").write_text(
        "name: roman\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
        "      - roman==4.2\n")
    (work / "validate.py").write_text(
        "import sys\n\nimport roman\n\nimport modelpack\n\n"
        "numbers = [roman.fromRoman(line.strip()) for line in open(sys.argv[1]) if line.strip()]\n"
        "modelpack.log_metric('total', sum(numbers))\nmodelpack.set_tag('interpreter', sys.executable)\n")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "validate")
    commit = git(work, "rev-parse", "HEAD")
    (work / "validate.py").write_text("raise SystemExit('a later commit')\n")
    git(work, "commit", "--quiet", "-am", "later")
    git(tmp_path, "clone", "--quiet", "--bare", str(work), str(repo))
    (tmp_path / "data.csv").write_text("XIV\nMCMXCIX\n")

    started = time.monotonic()
    out = modelpack_run(f"file://{repo}", "--version", commit, "-e", "validate", "-P", "data_file=data.csv",
                        "--env-manager", "uv", home=home, cwd=tmp_path)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-4000:]
    run_id = re.search(r"in run (\w+) ", out.stderr).group(1)
    got = modelpack.get_run(run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"total": 14 + 1999}
    assert got.data.params == {"data_file": str(tmp_path / "data.csv")}
    assert got.info.source_git_commit == commit and got.data.tags["modelpack.project.env"] == "uv"
    assert Path(got.data.tags["interpreter"]).is_relative_to(home / "builds")  # the project's environment
    marker = next(m for m in environments(home).values() if m["manager"] == "uv")
    assert "roman==4.2" in marker["requirements"]
    report(capsys, f"git project with uv, environment built: {took:.1f}s")
