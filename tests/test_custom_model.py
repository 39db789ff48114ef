"""Custom Python models: PythonModel, functions, artifacts, code paths, params."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

import modelpack


def test_artifacts_and_load_context(tmp_path):
    (tmp_path / "weights.txt").write_text("3.5")
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "words.txt").write_text("a\nb\n")

    class Scaled(modelpack.PythonModel):
        def load_context(self, context):
            with open(context.artifacts["weights"]) as fh:
                self.w = float(fh.read())
            self.words = open(f"{context.artifacts['vocab']}/words.txt").read().split()

        def predict(self, context, model_input, params=None):
            return model_input["x"].to_numpy() * self.w + len(self.words)

    modelpack.save_model(Scaled(), tmp_path / "m",
                         artifacts={"weights": tmp_path / "weights.txt", "vocab": tmp_path / "vocab"})
    (tmp_path / "weights.txt").write_text("0")  # the model must use its own copy
    model = modelpack.load_model(tmp_path / "m")
    np.testing.assert_array_equal(model.predict(pd.DataFrame({"x": [1.0, 2.0]})), [5.5, 9.0])
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]["python_function"]
    assert conf["loader_module"] == "modelpack.flavors.custom"
    assert conf["python_model"] == "python_model.pkl"
    assert conf["artifacts"] == {"weights": {"path": "artifacts/weights/weights.txt"},
                                 "vocab": {"path": "artifacts/vocab/vocab"}}


def test_code_paths_are_importable_in_a_fresh_process(tmp_path):
    pkg = tmp_path / "src" / "mylib_xyz"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("def triple(v):\n    return v * 3\n")
    sys.path.insert(0, str(tmp_path / "src"))
    try:
        import mylib_xyz

        class UsesLib(modelpack.PythonModel):
            def predict(self, context, model_input, params=None):
                return mylib_xyz.triple(np.asarray(model_input))

        modelpack.save_model(UsesLib(), tmp_path / "m", code_paths=[pkg])
    finally:
        sys.path.remove(str(tmp_path / "src"))
        sys.modules.pop("mylib_xyz", None)
    assert (tmp_path / "m" / "code" / "mylib_xyz" / "__init__.py").is_file()
    out = subprocess.run(
        [sys.executable, "-c",
         f"import modelpack; print(modelpack.load_model({str(tmp_path / 'm')!r}).predict([1, 2]).tolist())"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[3, 6]"


def test_function_model_and_params(tmp_path):
    def add_one(model_input):
        return np.asarray(model_input) + 1

    modelpack.save_model(add_one, tmp_path / "f")
    assert modelpack.load_model(tmp_path / "f").predict([1, 2]).tolist() == [2, 3]

    class WithParams(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.asarray(model_input) * (params or {}).get("k", 1)

    modelpack.save_model(WithParams(), tmp_path / "p")
    assert modelpack.load_model(tmp_path / "p").predict([1, 2], params={"k": 5}).tolist() == [5, 10]


def test_custom_native_load_returns_user_object(tmp_path):
    from modelpack.flavors import custom

    class Plain(modelpack.PythonModel):
        def load_context(self, context):
            self.loaded = True

        def predict(self, context, model_input, params=None):
            return model_input

    custom.save_model(Plain(), tmp_path / "m")
    obj = custom.load_model(tmp_path / "m")
    assert type(obj).__name__ == "Plain" and obj.loaded


def test_missing_artifact_fails_atomically(tmp_path):
    class M(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with pytest.raises(modelpack.ModelpackError, match="Artifact 'w' not found"):
        modelpack.save_model(M(), tmp_path / "m", artifacts={"w": tmp_path / "nope.bin"})
    assert list(tmp_path.iterdir()) == []


def test_input_example_signature_and_enforcement(tmp_path):
    class Sum(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return (model_input["a"] + model_input["b"]).to_numpy()

    modelpack.save_model(Sum(), tmp_path / "m", input_example=pd.DataFrame({"a": [1.0], "b": [2.0]}))
    model = modelpack.load_model(tmp_path / "m")
    assert model.predict(pd.DataFrame({"b": [2.0], "a": [1.0], "extra": ["x"]})).tolist() == [3.0]
    with pytest.raises(modelpack.ModelpackError, match="b"):
        model.predict(pd.DataFrame({"a": [1.0]}))
