"""The Model Registry (modelpack/registry): versions numbered from 1 per name, each an immutable copy of its model,
aliases that move atomically, and errors that name what exists - on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from postgres import postgres_server  # noqa: F401  (pytest fixture)
from registry_helpers import files_of, tracking_uri_fixture, writable_files  # noqa: F401  (the fixture tracking_uri)

import modelpack
from modelpack.errors import InvalidInputError, ModelLoadError
from modelpack.registry import (
    ModelNotFoundError,
    delete_alias,
    get_latest_version,
    get_model_version,
    get_model_version_by_alias,
    get_registered_model,
    list_model_versions,
    list_registered_models,
    register_model,
    set_alias,
    set_model_version_tag,
    set_registered_model_tag,
    update_registered_model,
)
from modelpack.tracking.store import Store


def test_versions_are_numbered_from_1_per_name(tracking_uri, diabetes_model_dir):
    numbers = [register_model(diabetes_model_dir, name).version for name in ("diabetes", "diabetes", "churn",
                                                                             "diabetes")]
    assert numbers == [1, 2, 1, 3]
    root = Store.open().artifact_root / "registry"
    for name, version in (("diabetes", 1), ("diabetes", 3), ("churn", 1)):
        found = get_model_version(name, version)
        assert found.path == root / name / str(version)
        assert found.source == str(diabetes_model_dir) and found.run_id is None
        assert found.uri == f"models:/{name}/{version}"
    assert [m.name for m in list_registered_models()] == ["churn", "diabetes"]
    assert get_registered_model("diabetes").latest_version == 3
    assert get_latest_version("diabetes").version == 3
    assert [v.version for v in list_model_versions("diabetes")] == [1, 2, 3]
    assert get_model_version("diabetes", "2").version == 2  # a version given as text, as on a command line


def test_a_version_is_an_immutable_copy_of_its_model(tracking_uri, tmp_path, diabetes, elasticnet):
    from sklearn.linear_model import ElasticNet

    X, y = diabetes
    source = tmp_path / "model"
    modelpack.save_model(elasticnet, source, input_example=X.head(3))
    first = register_model(source, "diabetes", description="alpha 0.01", tags={"data": "diabetes"})
    second = register_model(source, "diabetes")  # the same source again: a new version with its own copy
    assert first.path != second.path and first.path.parent == second.path.parent
    assert files_of(first.path) == files_of(second.path) == files_of(source)
    assert writable_files(first.path) == [] and writable_files(second.path) == []
    assert first.description == "alpha 0.01" and first.tags == {"data": "diabetes"}

    modelpack.save_model(ElasticNet(alpha=5.0).fit(X, y), source, overwrite=True)  # the source moves on
    expected = elasticnet.predict(X.head(5))
    for version in (first, second):
        assert np.allclose(modelpack.load_model(version.path).predict(X.head(5)), expected)
    assert not np.allclose(modelpack.load_model(source).predict(X.head(5)), expected)
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["1", "2"]  # no staging directory left behind


def test_register_from_a_run_keeps_its_run_id(tracking_uri, diabetes, elasticnet):
    X, _ = diabetes
    modelpack.set_experiment("diabetes")
    with modelpack.start_run(run_name="en-0.01") as run:
        info = modelpack.log_model(elasticnet, "model", input_example=X.head(3), registered_model_name="diabetes")
    run_id = run.info.run_id
    assert info.registered_model_version == 1
    logged = get_model_version("diabetes", 1)
    assert logged.run_id == run_id and logged.source == f"runs:/{run_id}/model"

    again = register_model(f"runs:/{run_id}/model", "diabetes")
    copied = register_model("models:/diabetes/1", "diabetes-prod")  # a version of one name into another
    assert again.version == 2 and again.run_id == run_id
    assert copied.version == 1 and copied.run_id == run_id and copied.source == "models:/diabetes/1"
    assert files_of(copied.path) == files_of(logged.path)


def test_aliases_name_one_version_and_move(tracking_uri, diabetes_model_dir):
    for _ in range(3):
        register_model(diabetes_model_dir, "diabetes")
    assert set_alias("diabetes", "champion", 1).aliases == ("champion",)
    set_alias("diabetes", "challenger", "2")
    assert get_model_version_by_alias("diabetes", "champion").version == 1

    moved = set_alias("diabetes", "champion", 2)
    assert moved.version == 2 and moved.aliases == ("challenger", "champion")
    assert get_model_version("diabetes", 1).aliases == ()
    assert get_registered_model("diabetes").aliases == {"challenger": 2, "champion": 2}

    delete_alias("diabetes", "challenger")
    assert get_registered_model("diabetes").aliases == {"champion": 2}
    with pytest.raises(ModelNotFoundError, match=r"no alias 'challenger'; its aliases: 'champion' -> version 2"):
        get_model_version_by_alias("diabetes", "challenger")
    with pytest.raises(ModelNotFoundError, match=r"no alias 'challenger'; its aliases: 'champion' -> version 2"):
        delete_alias("diabetes", "challenger")


def test_errors_name_what_exists(tracking_uri, diabetes_model_dir):
    with pytest.raises(ModelNotFoundError, match="No registered model named 'diabetes'; no model is registered yet"):
        get_model_version("diabetes", 1)
    register_model(diabetes_model_dir, "diabetes")
    register_model(diabetes_model_dir, "diabetes")
    register_model(diabetes_model_dir, "churn")
    with pytest.raises(ModelNotFoundError, match=r"No registered model named 'diabetis'; registered models: "
                                                 r"\['churn', 'diabetes'\]"):
        get_registered_model("diabetis")
    with pytest.raises(ModelNotFoundError, match=r"'diabetes' has no version 7; its versions: \[1, 2\]"):
        get_model_version("diabetes", 7)
    with pytest.raises(ModelNotFoundError, match=r"'diabetes' has no version 3; its versions: \[1, 2\]"):
        set_alias("diabetes", "champion", 3)
    with pytest.raises(ModelNotFoundError, match=r"'diabetes' has no alias 'champion'; it has no aliases"):
        get_model_version_by_alias("diabetes", "champion")
    assert issubclass(ModelNotFoundError, ModelLoadError) and ModelNotFoundError.exit_code == 3


@pytest.mark.parametrize("alias", ["latest", "Latest", "LATEST"])
def test_latest_is_a_reserved_alias(tracking_uri, diabetes_model_dir, alias):
    register_model(diabetes_model_dir, "diabetes")
    with pytest.raises(InvalidInputError, match="is reserved: models:/<name>/latest always names the highest"):
        set_alias("diabetes", alias, 1)
    assert get_registered_model("diabetes").aliases == {}


@pytest.mark.parametrize("call, fragment", [
    (lambda src: register_model(src, "a/b"), "Invalid registered model name 'a/b': it holds '/'"),
    (lambda src: register_model(src, "x@y"), "it holds '@'"),
    (lambda src: register_model(src, ".."), "Invalid registered model name '..': it is '.' or '..'"),
    (lambda src: register_model(src, " diabetes"), "it has leading or trailing spaces"),
    (lambda src: register_model(src, ""), "must be a non-empty string"),
    (lambda src: register_model(src, "n" * 251), "at most 250 characters, got 251"),
    (lambda src: set_alias("diabetes", "a b/c", 1), "Invalid alias 'a b/c'"),
    (lambda src: set_alias("diabetes", "champion", 0), "A model version is a positive integer, got 0"),
    (lambda src: get_model_version("diabetes", "one"), "A model version is a positive integer, got 'one'"),
])
def test_invalid_names_and_versions_are_refused(tracking_uri, diabetes_model_dir, call, fragment):
    register_model(diabetes_model_dir, "diabetes")
    with pytest.raises(InvalidInputError, match=fragment.replace("(", r"\(")):
        call(diabetes_model_dir)
    assert [m.name for m in list_registered_models()] == ["diabetes"]


def test_a_source_that_is_not_a_model_registers_nothing(tracking_uri, tmp_path, diabetes_model_dir):
    (tmp_path / "notes").mkdir()
    with pytest.raises(ModelLoadError, match="No MLmodel file in"):
        register_model(tmp_path / "notes", "diabetes")
    with pytest.raises(ModelLoadError, match="does not exist"):
        register_model(tmp_path / "missing", "diabetes")
    escaping = tmp_path / "escaping"
    shutil.copytree(diabetes_model_dir, escaping)
    (tmp_path / "secret.txt").write_text("not part of the model")
    os.symlink(tmp_path / "secret.txt", escaping / "notes.txt")  # a link out of the model directory
    with pytest.raises(ModelLoadError, match="outside the model directory"):
        register_model(escaping, "diabetes")
    assert list_registered_models() == []
    assert not (Store.open().artifact_root / "registry" / "diabetes").exists()


def test_a_leftover_version_directory_is_never_overwritten(tracking_uri, diabetes_model_dir, caplog):
    """A registration killed between publishing its copy and committing its row leaves ``<name>/<n>`` without a
    row; the next registration takes number n, puts its copy beside it and deletes nothing."""
    first = register_model(diabetes_model_dir, "diabetes")
    leftover = first.path.parent / "2"
    leftover.mkdir()
    (leftover / "MLmodel").write_text("half a model")
    second = register_model(diabetes_model_dir, "diabetes")
    assert second.version == 2 and second.path != leftover and second.path.name.startswith("2.")
    assert files_of(second.path) == files_of(diabetes_model_dir)
    assert (leftover / "MLmodel").read_text() == "half a model"
    assert "exists without a version row" in caplog.text
    assert register_model(diabetes_model_dir, "diabetes").path.name == "3"


def test_descriptions_and_tags(tracking_uri, diabetes_model_dir):
    register_model(diabetes_model_dir, "diabetes")
    assert update_registered_model("diabetes", "ElasticNet on the diabetes data").description == \
        "ElasticNet on the diabetes data"
    set_registered_model_tag("diabetes", "team", "health")
    set_registered_model_tag("diabetes", "team", "care")  # a tag's value may change
    set_model_version_tag("diabetes", 1, "validated", "yes")
    assert get_registered_model("diabetes").tags == {"team": "care"}
    assert get_model_version("diabetes", 1).tags == {"validated": "yes"}
