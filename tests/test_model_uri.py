"""Model URIs (modelpack/model_uri.py): every form parses and resolves to the right directory, unknown names,
versions, aliases and runs are one-line errors naming what exists, and every command that takes ``-m`` accepts
every form."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from postgres import postgres_server  # noqa: F401  (pytest fixture)
from registry_helpers import files_of, tracking_uri_fixture  # noqa: F401  (the fixture tracking_uri)

import modelpack
from modelpack.errors import InvalidInputError
from modelpack.model_uri import ModelUri, locate_model, parse_model_uri, resolve_model_uri
from modelpack.registry import ModelNotFoundError, register_model, set_alias


@pytest.mark.parametrize("uri, expected", [
    ("runs:/0a1b/model", ModelUri("runs", run_id="0a1b", path="model")),
    ("runs:/0a1b/nested/dir/", ModelUri("runs", run_id="0a1b", path="nested/dir")),
    ("runs:/0a1b", ModelUri("runs", run_id="0a1b", path="")),
    ("models:/diabetes/3", ModelUri("models", name="diabetes", version=3)),
    ("models:/diabetes/latest", ModelUri("models", name="diabetes")),
    ("models:/diabetes/LATEST", ModelUri("models", name="diabetes")),
    ("models:/diabetes@champion", ModelUri("models", name="diabetes", alias="champion")),
    ("models:/my model@v-2", ModelUri("models", name="my model", alias="v-2")),
    ("file:///srv/my%20models/diabetes", ModelUri("path", path="/srv/my models/diabetes")),
    ("file://localhost/srv/diabetes", ModelUri("path", path="/srv/diabetes")),
    ("relative/diabetes_model", ModelUri("path", path="relative/diabetes_model")),
    ("/srv/models/diabetes", ModelUri("path", path="/srv/models/diabetes")),
    ("C:/models/diabetes", ModelUri("path", path="C:/models/diabetes")),  # a drive letter is not a scheme
])
def test_parse(uri, expected):
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize("uri, fragment", [
    ("runs:/", "expected runs:/<run_id>/<path>"),
    ("runs:/0a1b/../../etc", "expected runs:/<run_id>/<path> with a path inside the run's artifacts"),
    ("models:/diabetes", "expected models:/<name>/<version>, models:/<name>/latest or models:/<name>@<alias>"),
    ("models:/diabetes/", "expected models:/<name>/<version>"),
    ("models:/@champion", "expected models:/<name>/<version>"),
    ("models:/diabetes/1/extra", "expected models:/<name>/<version>"),
    ("models:/diabetes/0", "'0' is neither a version number nor 'latest'"),
    ("models:/diabetes/Production", "'Production' is neither a version number nor 'latest' (stages are not "
                                    "supported: name the version with an alias, models:/diabetes@<alias>)"),
    ("s3://bucket/diabetes", "modelpack reads runs:/, models:/ and file:// URIs and paths, not 's3' URIs"),
    ("file://otherhost/srv/diabetes", "a file URI names a local path"),
])
def test_malformed_uris_are_refused(uri, fragment):
    with pytest.raises(InvalidInputError) as caught:
        parse_model_uri(uri)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture
def journey(tracking_uri, diabetes, elasticnet):
    """Two runs, each logging a model registered as 'diabetes' (versions 1 and 2); 'champion' -> version 1."""
    from sklearn.linear_model import ElasticNet

    X, y = diabetes
    modelpack.set_experiment("diabetes")
    run_ids = []
    for model in (elasticnet, ElasticNet(alpha=1.0).fit(X, y)):
        with modelpack.start_run() as run:
            modelpack.log_model(model, "model", registered_model_name="diabetes")
        run_ids.append(run.info.run_id)
    set_alias("diabetes", "champion", 1)
    return run_ids


def test_every_form_resolves_to_its_model(journey, diabetes, elasticnet, tmp_path, monkeypatch):
    X, _ = diabetes
    first_run, second_run = journey
    run_dir = resolve_model_uri(f"runs:/{first_run}/model")
    assert run_dir.name == "model" and run_dir.parent.name == "artifacts" and first_run in run_dir.parts
    assert locate_model(f"runs:/{first_run}/model").run_id == first_run
    v1 = resolve_model_uri("models:/diabetes/1")
    assert resolve_model_uri("models:/diabetes@champion") == v1 == locate_model("models:/diabetes/1").path
    assert locate_model("models:/diabetes/latest").run_id == second_run
    assert resolve_model_uri("models:/diabetes/latest") == resolve_model_uri("models:/diabetes/2") != v1
    assert files_of(v1) == files_of(run_dir)
    expected = elasticnet.predict(X.head(4))
    for uri in (f"runs:/{first_run}/model", "models:/diabetes/1", "models:/diabetes@champion"):
        assert np.allclose(modelpack.load_model(resolve_model_uri(uri)).predict(X.head(4)), expected), uri
    assert not np.allclose(modelpack.load_model(resolve_model_uri("models:/diabetes/latest")).predict(X.head(4)),
                           expected)

    monkeypatch.chdir(tmp_path)
    assert resolve_model_uri("some/model") == tmp_path / "some" / "model"
    assert resolve_model_uri(f"file://{tmp_path}/my%20model") == tmp_path / "my model"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model_uri("~/model") == tmp_path / "model"


def test_load_model_takes_every_form(journey, diabetes, elasticnet, tmp_path):
    X, _ = diabetes
    expected = elasticnet.predict(X.head(4))
    for uri in (f"runs:/{journey[0]}/model", "models:/diabetes/1", "models:/diabetes@champion"):
        assert np.allclose(modelpack.load_model(uri).predict(X.head(4)), expected), uri
    with pytest.raises(ModelNotFoundError, match="its versions: \\[1, 2\\]"):
        modelpack.load_model("models:/diabetes/5")


def test_unknown_names_versions_aliases_and_runs_name_what_exists(journey):
    first_run, _ = journey
    cases = [
        ("models:/diabetis/1", "No registered model named 'diabetis'; registered models: ['diabetes']"),
        ("models:/diabetes/3", "Registered model 'diabetes' has no version 3; its versions: [1, 2]"),
        ("models:/diabetes@challenger",
         "Registered model 'diabetes' has no alias 'challenger'; its aliases: 'champion' -> version 1"),
        ("models:/diabetis@champion", "No registered model named 'diabetis'; registered models: ['diabetes']"),
        ("models:/diabetis/latest", "No registered model named 'diabetis'; registered models: ['diabetes']"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "No run with id '0123456789abcdef0123456789abcdef'"),
        (f"runs:/{first_run}/modle", f"Run {first_run} has no artifact 'modle'; its logged models: ['model']"),
    ]
    for uri, message in cases:
        with pytest.raises(ModelNotFoundError) as caught:
            resolve_model_uri(uri)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value), uri


def test_a_path_resolves_without_the_tracking_store(tmp_path):
    """Loading a model directory stays as light as it was: no SQLAlchemy, no store opened or created."""
    code = ("import sys; from modelpack.model_uri import resolve_model_uri; "
            f"print(resolve_model_uri('{tmp_path}/m'), resolve_model_uri('file://{tmp_path}/m'), "
            "'sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.split() == [f"{tmp_path}/m", f"{tmp_path}/m", "False"], out.stderr
    assert not (tmp_path / "mlruns").exists()


# -- every command that takes -m --------------------------------------------------------------------------------


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ), cwd=cwd)


@pytest.fixture
def registered(tmp_path, monkeypatch, diabetes_model_dir) -> Path:
    """A SQLite store (MODELPACK_TRACKING_URI) with 'diabetes' version 1 as 'champion'; its directory."""
    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(tmp_path / "mlruns"))
    version = register_model(diabetes_model_dir, "diabetes")
    set_alias("diabetes", "champion", 1)
    return version.path


def test_info_names_the_uri_and_the_directory(registered):
    out = cli("info", "-m", "models:/diabetes@champion")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == ["URI:           models:/diabetes@champion", f"Model:         {registered}"]
    import json

    summary = json.loads(cli("info", "-m", "models:/diabetes/latest", "--json").stdout)
    assert summary["uri"] == "models:/diabetes/latest" and summary["path"] == str(registered)


def test_prepare_env_and_predict_take_a_registry_uri(registered, tmp_path, diabetes, elasticnet):
    out = cli("prepare-env", "-m", "models:/diabetes@champion", "--env-manager", "local")
    assert out.returncode == 0 and out.stdout.strip() == sys.executable, out.stderr
    X, _ = diabetes
    body = tmp_path / "rows.json"
    body.write_text(X.head(3).to_json(orient="split", index=False).join(['{"dataframe_split": ', "}"]))
    out = cli("predict", "-m", "models:/diabetes/1", "-i", str(body), "--env-manager", "local")
    assert out.returncode == 0, out.stderr
    import json

    assert np.allclose(json.loads(out.stdout)["predictions"], elasticnet.predict(X.head(3)))


def test_generate_dockerfile_takes_a_registry_uri(registered, tmp_path):
    out = cli("generate-dockerfile", "-m", "models:/diabetes@champion", "-d", str(tmp_path / "context"),
              "--modelpack-wheel", str(_fake_wheel(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert files_of(tmp_path / "context" / "model") == files_of(registered)
    assert (tmp_path / "context" / "Dockerfile").is_file()


def _fake_wheel(tmp_path: Path) -> Path:
    """A file named like a wheel: generate-dockerfile only copies it into the context (nothing is built here)."""
    wheel = tmp_path / "modelpack-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    return wheel


@pytest.mark.parametrize("command", [
    ["info"], ["prepare-env", "--env-manager", "local"], ["generate-dockerfile", "-d", "out"],
    ["build-docker", "-n", "diabetes:1"], ["serve", "--env-manager", "local"],
    ["predict", "-i", "rows.json", "--env-manager", "local"],
])
def test_an_unknown_alias_is_one_line_with_exit_code_3(registered, tmp_path, command):
    out = cli(command[0], "-m", "models:/diabetes@prod", *command[1:], cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert out.stderr.splitlines() == [
        "Error: Registered model 'diabetes' has no alias 'prod'; its aliases: 'champion' -> version 1"]
    assert not (tmp_path / "out").exists()
