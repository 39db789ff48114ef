"""SAVE and LOAD: round trips, the MLmodel descriptor, env files, atomicity."""

from __future__ import annotations

import platform
import threading
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.errors import FlavorError, ModelLoadError, ModelSaveError


def test_round_trip_exact_predictions(diabetes, elasticnet, diabetes_model_dir):
    X, _ = diabetes
    model = modelpack.load_model(diabetes_model_dir)
    np.testing.assert_array_equal(model.predict(X), elasticnet.predict(X))


def test_predict_accepts_numpy_records_and_columns(diabetes, elasticnet, diabetes_model_dir):
    X, _ = diabetes
    model = modelpack.load_model(diabetes_model_dir)
    expected = elasticnet.predict(X.head(4))
    np.testing.assert_array_equal(model.predict(X.head(4).to_dict(orient="records")), expected)
    np.testing.assert_array_equal(model.predict(X.head(4).to_dict(orient="list")), expected)


def test_native_load_returns_the_estimator(diabetes, elasticnet, diabetes_model_dir):
    from modelpack.flavors import sklearn as sk_flavor

    X, _ = diabetes
    native = sk_flavor.load_model(diabetes_model_dir)
    assert type(native).__name__ == "ElasticNet"
    np.testing.assert_array_equal(native.predict(X), elasticnet.predict(X))


def test_mlmodel_fields(diabetes_model_dir):
    doc = yaml.safe_load((diabetes_model_dir / "MLmodel").read_text())
    pyfunc = doc["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.sklearn"
    assert pyfunc["python_version"] == platform.python_version()
    assert pyfunc["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert pyfunc["model_path"] == "model.pkl" and pyfunc["predict_fn"] == "predict"
    sk = doc["flavors"]["sklearn"]
    assert sk["pickled_model"] == "model.pkl"
    assert sk["sklearn_version"] == metadata.version("scikit-learn")
    assert sk["serialization_format"] == "cloudpickle"
    assert len(doc["model_uuid"]) == 32
    assert doc["utc_time_created"].startswith("20")
    assert doc["modelpack_version"] == modelpack.__version__
    assert doc["saved_input_example_info"] == {
        "artifact_path": "input_example.json", "type": "dataframe", "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
    }
    assert sorted(p.name for p in diabetes_model_dir.iterdir()) == [
        "MLmodel", "conda.yaml", "input_example.json", "model.pkl", "python_env.yaml",
        "requirements.txt", "serving_input_example.json",
    ]
    assert not list(diabetes_model_dir.parent.glob(".diabetes_model.*"))  # no staging leftovers


def test_signature_inferred_from_example(diabetes_model_dir):
    doc = yaml.safe_load((diabetes_model_dir / "MLmodel").read_text())
    import json

    inputs = json.loads(doc["signature"]["inputs"])
    assert inputs[0] == {"type": "double", "name": "age", "required": True}
    assert [c["name"] for c in inputs] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert json.loads(doc["signature"]["outputs"]) == [{"type": "double", "required": True}]


def test_env_files_pin_installed_versions(diabetes_model_dir):
    reqs = (diabetes_model_dir / "requirements.txt").read_text().splitlines()
    for dist in ("numpy", "pandas", "cloudpickle", "scikit-learn"):
        assert f"{dist}=={metadata.version(dist)}" in reqs
    assert any(r.startswith("modelpack") for r in reqs)
    env = yaml.safe_load((diabetes_model_dir / "python_env.yaml").read_text())
    assert env["python"] == platform.python_version()
    assert env["dependencies"] == ["-r requirements.txt"]
    assert any(t.startswith("pip==") for t in env["build_dependencies"])
    conda = yaml.safe_load((diabetes_model_dir / "conda.yaml").read_text())
    assert f"python={platform.python_version()}" in conda["dependencies"]
    assert conda["dependencies"][-1]["pip"] == reqs


def test_example_files(diabetes, diabetes_model_dir):
    import orjson

    X, _ = diabetes
    example = orjson.loads((diabetes_model_dir / "input_example.json").read_bytes())
    assert example["columns"] == list(X.columns)
    assert example["data"] == X.head(3).values.tolist()  # full float precision
    serving = orjson.loads((diabetes_model_dir / "serving_input_example.json").read_bytes())
    assert serving == {"dataframe_split": example}


def test_predict_proba_selectable(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    modelpack.save_model(clf, tmp_path / "m", predict_fn="predict_proba")
    proba = modelpack.load_model(tmp_path / "m").predict(X.head(3))
    np.testing.assert_array_equal(proba, clf.predict_proba(X.head(3)))
    with pytest.raises(FlavorError, match="predict_fn must be one of"):
        modelpack.save_model(clf, tmp_path / "n", predict_fn="transform")
    assert not (tmp_path / "n").exists()


def test_pickle_format_and_pipeline(tmp_path, diabetes):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = diabetes
    pipe = make_pipeline(StandardScaler(), Ridge()).fit(X, y)
    modelpack.save_model(pipe, tmp_path / "m", serialization_format="pickle")
    doc = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert doc["flavors"]["sklearn"]["serialization_format"] == "pickle"
    np.testing.assert_array_equal(modelpack.load_model(tmp_path / "m").predict(X), pipe.predict(X))


def test_model_directory_gets_normal_permissions(diabetes_model_dir):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(diabetes_model_dir.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700


def test_existing_directory_is_refused_unless_overwrite(tmp_path, elasticnet, diabetes):
    X, _ = diabetes
    target = tmp_path / "m"
    first = modelpack.save_model(elasticnet, target)
    with pytest.raises(ModelSaveError, match="already exists; pass overwrite=True"):
        modelpack.save_model(elasticnet, target)
    second = modelpack.save_model(elasticnet, target, overwrite=True)
    assert second.model_uuid != first.model_uuid
    assert modelpack.load_model(target).metadata.model_uuid == second.model_uuid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_overwrite_never_deletes_a_non_model_directory(tmp_path, elasticnet):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.csv").write_text("1,2\n")
    with pytest.raises(ModelSaveError, match="not a model directory"):
        modelpack.save_model(elasticnet, tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "precious.csv").read_text() == "1,2\n"


def test_failing_save_leaves_nothing(tmp_path, diabetes):
    from sklearn.linear_model import LinearRegression

    X, y = diabetes
    model = LinearRegression().fit(X, y)
    model.lock = threading.Lock()  # cannot be pickled
    with pytest.raises(ModelSaveError, match="Saving the model failed: TypeError"):
        modelpack.save_model(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_failing_overwrite_keeps_the_old_model(tmp_path, diabetes, elasticnet):
    from sklearn.linear_model import LinearRegression

    X, y = diabetes
    modelpack.save_model(elasticnet, tmp_path / "m")
    bad = LinearRegression().fit(X, y)
    bad.lock = threading.Lock()
    with pytest.raises(ModelSaveError):
        modelpack.save_model(bad, tmp_path / "m", overwrite=True)
    np.testing.assert_array_equal(modelpack.load_model(tmp_path / "m").predict(X), elasticnet.predict(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_unknown_object_names_the_type(tmp_path):
    with pytest.raises(FlavorError, match=r"No flavor can save an object of type builtins.dict"):
        modelpack.save_model({"a": 1}, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_requirements_override_and_extra(tmp_path, elasticnet):
    modelpack.save_model(elasticnet, tmp_path / "a", pip_requirements=["scikit-learn", "-c constraints.txt"])
    assert (tmp_path / "a" / "requirements.txt").read_text() == "scikit-learn\n-c constraints.txt\n"
    modelpack.save_model(elasticnet, tmp_path / "b", extra_pip_requirements=["requests==2.0", "numpy>=1"])
    reqs = (tmp_path / "b" / "requirements.txt").read_text().splitlines()
    assert reqs[-2:] == ["requests==2.0", "numpy>=1"]
    assert not any(r.startswith("numpy==") for r in reqs)
    assert modelpack.get_model_dependencies(tmp_path / "b") == str(tmp_path / "b" / "requirements.txt")


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "No MLmodel file in"),
    (lambda p: (p.mkdir(), (p / "MLmodel").write_text("flavors: [unclosed")), "Cannot read"),
    (lambda p: (p.mkdir(), (p / "MLmodel").write_text("just a string")), "is not a YAML mapping"),
    (lambda p: (p.mkdir(), (p / "MLmodel").write_text("flavors: {sklearn: {}}")), "no 'python_function' flavor"),
    (lambda p: (p.mkdir(), (p / "MLmodel").write_text(
        "flavors: {python_function: {loader_module: no_such_module_xyz}}")), "cannot be imported"),
])
def test_unloadable_directories(tmp_path, setup, message):
    path = tmp_path / "m"
    setup(path)
    with pytest.raises(ModelLoadError, match=message):
        modelpack.load_model(path)


def test_missing_model_file(tmp_path, elasticnet):
    modelpack.save_model(elasticnet, tmp_path / "m")
    (tmp_path / "m" / "model.pkl").unlink()
    with pytest.raises(ModelLoadError, match=r"Model file '.*model.pkl' is missing"):
        modelpack.load_model(tmp_path / "m")


def test_corrupt_model_file(tmp_path, elasticnet):
    modelpack.save_model(elasticnet, tmp_path / "m")
    (tmp_path / "m" / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="Cannot unpickle"):
        modelpack.load_model(tmp_path / "m")


def test_unknown_mlmodel_keys_survive(tmp_path, elasticnet):
    from modelpack.descriptor import ModelDescriptor

    modelpack.save_model(elasticnet, tmp_path / "m")
    doc = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    doc["future_field"] = {"x": 1}
    (tmp_path / "m" / "MLmodel").write_text(yaml.safe_dump(doc))
    d = ModelDescriptor.read(tmp_path / "m")
    d.write(tmp_path / "m")
    assert yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["future_field"] == {"x": 1}


def test_metadata_is_saved(tmp_path, elasticnet):
    modelpack.save_model(elasticnet, tmp_path / "m", metadata={"owner": "ds-team"})
    assert modelpack.load_model(tmp_path / "m").metadata.metadata == {"owner": "ds-team"}


def test_frame_example_with_strings_and_dates(tmp_path):
    class Echo(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["n"].to_numpy()

    df = pd.DataFrame({"s": ["a", "b"], "n": [1, 2], "t": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    modelpack.save_model(Echo(), tmp_path / "m", input_example=df)
    import orjson

    ex = orjson.loads((tmp_path / "m" / "input_example.json").read_bytes())
    assert ex == {"columns": ["s", "n", "t"],
                  "data": [["a", 1, "2024-01-01T00:00:00"], ["b", 2, "2024-02-01T00:00:00"]]}
