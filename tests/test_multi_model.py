"""Several models in one server (``-m NAME=URI`` repeated): each at /models/<name>/..., GET /models lists them,
/invocations serves a server's only model, and models whose environments differ are refused at start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import requests
from helpers import free_port, wait_until_ready
from sklearn.linear_model import ElasticNet, LogisticRegression

import modelpack


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, diabetes):
    X, y = diabetes
    root = tmp_path_factory.mktemp("multi")
    reg = root / "diabetes"
    modelpack.save_model(ElasticNet(alpha=0.01, l1_ratio=0.75).fit(X, y), reg, input_example=X.head(3))
    churn = root / "churn"
    modelpack.save_model(LogisticRegression(max_iter=500).fit(X, y > 140), churn, input_example=X.head(3))
    return X, reg, churn


def _serve_models(tmp_path, *specs: str, extra: tuple[str, ...] = ()):
    port = free_port()
    cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-p", str(port), "--env-manager", "local", *extra]
    for spec in specs:
        cmd += ["-m", spec]
    import os

    return wait_until_ready(cmd, port, tmp_path / f"server-{port}.log", dict(os.environ), 90)


def _split(frame) -> str:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})


def test_each_model_at_its_own_url(tmp_path, two_models):
    X, reg, churn = two_models
    server = _serve_models(tmp_path, f"diabetes={reg}", f"churn={churn}", extra=("-w", "2"))
    try:
        rows = X.sample(20, random_state=1)
        for name, path in (("diabetes", reg), ("churn", churn)):
            expected = modelpack.load_model(path).predict(rows)
            answer = requests.post(f"{server.url}/models/{name}/invocations", data=_split(rows), timeout=10,
                                   headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(answer.json()["predictions"], np.asarray(expected, dtype=float))
            meta = requests.get(f"{server.url}/models/{name}/metadata", timeout=10).json()
            assert meta["flavors"]["sklearn"]["sklearn_version"]
            assert requests.get(f"{server.url}/models/{name}/ready", timeout=10).status_code == 200

        listing = requests.get(f"{server.url}/models", timeout=10).json()["models"]
        assert [(m["name"], m["invocations"], m["ready"]) for m in listing] == [
            ("diabetes", "/models/diabetes/invocations", True), ("churn", "/models/churn/invocations", True)]
        assert listing[0]["flavor"] == "sklearn" and listing[0]["source"] == str(reg)

        # /invocations and /metadata belong to a server's only model: here they say where to go instead
        for method, path in (("post", "/invocations"), ("get", "/metadata")):
            answer = getattr(requests, method)(f"{server.url}{path}", data=_split(rows), timeout=10,
                                               headers={"Content-Type": "application/json"})
            assert answer.status_code == 404
            assert "/models/<name>/invocations" in answer.json()["message"]
            assert "['churn', 'diabetes']" in answer.json()["message"]
        unknown = requests.post(f"{server.url}/models/nope/invocations", data=_split(rows), timeout=10,
                                headers={"Content-Type": "application/json"})
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
        assert "No model named 'nope'" in unknown.json()["message"]
        # a column missing for one model is that model's 4xx, naming the column
        bad = requests.post(f"{server.url}/models/churn/invocations", data=_split(rows.drop(columns=["bmi"])),
                            timeout=10, headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and "bmi" in bad.json()["message"]
    finally:
        assert server.stop() == 0
    assert "Serving 2 models (diabetes, churn)" in server.log()


def test_one_model_is_at_invocations_and_under_its_name(tmp_path, two_models):
    X, reg, _ = two_models
    server = _serve_models(tmp_path, str(reg))
    try:
        rows = X.head(5)
        plain = requests.post(f"{server.url}/invocations", data=_split(rows), timeout=10,
                              headers={"Content-Type": "application/json"})
        named = requests.post(f"{server.url}/models/diabetes/invocations", data=_split(rows), timeout=10,
                              headers={"Content-Type": "application/json"})
        assert plain.status_code == named.status_code == 200
        assert plain.json() == named.json()
        assert [m["name"] for m in requests.get(f"{server.url}/models", timeout=10).json()["models"]] == ["diabetes"]
    finally:
        server.stop()


def _serve_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", "serve", "-p", str(free_port()), *args],
                          capture_output=True, text=True, timeout=120)


def test_names_are_checked_before_anything_starts(two_models):
    _, reg, churn = two_models
    unnamed = _serve_cli("-m", str(reg), "-m", f"churn={churn}", "--env-manager", "local")
    assert unnamed.returncode == 2
    assert "with several models, name each one as NAME=URI" in unnamed.stderr and str(reg) in unnamed.stderr
    twice = _serve_cli("-m", f"a={reg}", "-m", f"a={churn}", "--env-manager", "local")
    assert twice.returncode == 2 and "given more than once: ['a']" in twice.stderr


def test_models_whose_environments_differ_are_refused_at_start(tmp_path, two_models):
    X, reg, _ = two_models
    other = tmp_path / "other"
    modelpack.save_model(ElasticNet().fit(X, X["bmi"]), other, extra_pip_requirements=["tabulate==0.9.0"])
    result = _serve_cli("-m", f"diabetes={reg}", "-m", f"other={other}", "--env-manager", "virtualenv")
    assert result.returncode == 2, result.stderr
    message = result.stderr
    assert "Models 'diabetes' and 'other' were saved with different environments" in message
    assert "other: tabulate==0.9.0" in message and "run one server per environment" in message
    assert "Building" not in result.stdout + message  # refused before any environment is built
