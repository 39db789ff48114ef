"""Schema enforcement over real HTTP, /metadata, and `modelpack validate`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import orjson
import pandas as pd
import pytest
import requests
from helpers import start_server

import modelpack
from modelpack.signature import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec


@pytest.fixture(scope="module")
def typed_model_dir(tmp_path_factory):
    """Columns a: long, b: double, c: string (optional); params k: long = 3, tag: string = 'x'."""

    class Typed(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            assert list(model_input.columns)[:2] == ["a", "b"]  # reordered, extras dropped
            assert "extra" not in model_input.columns
            return {
                "sum": (model_input["a"] * params["k"] + model_input["b"]).tolist(),
                "dtypes": [str(model_input["a"].dtype), str(model_input["b"].dtype)],
                "tag": params["tag"],
            }

    signature = ModelSignature(
        inputs=Schema([ColSpec("long", "a"), ColSpec("double", "b"), ColSpec("string", "c", required=False)]),
        params=ParamSchema([ParamSpec("k", "long", 3), ParamSpec("tag", "string", "x")]),
    )
    path = tmp_path_factory.mktemp("models") / "typed"
    modelpack.save_model(Typed(), path, signature=signature,
                         input_example=pd.DataFrame({"a": [1], "b": [0.5], "c": ["u"]}))
    return path


@pytest.fixture(scope="module")
def tensor_model_dir(tmp_path_factory):
    class RowSum(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            assert isinstance(model_input, np.ndarray) and model_input.dtype == np.float64
            return model_input.sum(axis=1)

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 3))]))
    path = tmp_path_factory.mktemp("models") / "tensor"
    modelpack.save_model(RowSum(), path, signature=signature)
    return path


@pytest.fixture(scope="module")
def typed(typed_model_dir, tmp_path_factory):
    server = start_server(typed_model_dir, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tensor(tensor_model_dir, tmp_path_factory):
    server = start_server(tensor_model_dir, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


def ok(resp: requests.Response):
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def bad(resp: requests.Response) -> str:
    """The message of a 400 for input the server read but the model's signature refused: MLflow's code for a
    failed schema enforcement, INVALID_PARAMETER_VALUE (a body that cannot be read is BAD_REQUEST)."""
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    return body["message"]


@pytest.mark.parametrize("body, content_type", [
    ({"dataframe_split": {"columns": ["b", "a", "extra"], "data": [[0.5, 2, "z"]]}}, "application/json"),
    ({"dataframe_records": [{"extra": 1, "b": 0.5, "a": 2}]}, "application/json"),
    ({"instances": [{"a": 2, "b": 0.5}]}, "application/json"),
    ({"inputs": {"a": [2], "b": [0.5]}}, "application/json"),
    ({"columns": ["a", "b"], "data": [[2, 0.5]]}, "application/json"),
    ("b,a,extra\n0.5,2,z\n", "text/csv"),
])
def test_every_format_is_enforced_the_same_way(typed, body, content_type):
    data = body if isinstance(body, str) else orjson.dumps(body)
    out = ok(typed.post(data, content_type))
    assert out == {"sum": [6.5], "dtypes": ["int64", "float64"], "tag": "x"}


def test_safe_casts_are_silent(typed):
    # a double column sent as whole numbers is widened; a long column sent as whole floats is lossless
    body = {"dataframe_split": {"columns": ["a", "b"], "data": [[2.0, 1]]}}
    assert ok(typed.post(orjson.dumps(body))) == {"sum": [7.0], "dtypes": ["int64", "float64"], "tag": "x"}


def test_missing_required_column(typed):
    message = bad(typed.post(orjson.dumps({"dataframe_split": {"columns": ["b"], "data": [[1.5]]}})))
    assert "missing required input columns ['a']" in message


@pytest.mark.parametrize("row, message", [
    (b'{"a": 2.5, "b": 0.5}',
     "Incompatible input for column 'a': expected long, received float64 (2.5 is not a whole number)"),
    (b'{"a": 2, "b": "abc"}',  # pandas 3 calls the dtype str, pandas 2 object
     "Incompatible input for column 'b': expected double, received "),
    (b'{"a": 1180591620717411303424, "b": 0.5}', "Incompatible input for column 'a': expected long"),
    (b'{"a": true, "b": 0.5}', "Incompatible input for column 'a': expected long, received bool"),
])
def test_unsafe_casts_are_refused(typed, row, message):
    got = bad(typed.post(b'{"dataframe_records": [' + row + b"]}"))
    assert got.startswith(message)
    if b"abc" in row:
        assert got.endswith("('abc' is not a number)")


def test_params_defaults_override_and_errors(typed):
    base = {"dataframe_split": {"columns": ["a", "b"], "data": [[2, 0.5]]}}
    assert ok(typed.post(orjson.dumps({**base, "params": {"k": 10, "tag": "y"}}))) == {
        "sum": [20.5], "dtypes": ["int64", "float64"], "tag": "y"}
    message = bad(typed.post(orjson.dumps({**base, "params": {"k": "ten"}})))
    assert "'k'" in message and "long" in message
    # a parameter the signature does not declare is ignored with a warning, as MLflow's server does (its own
    # test expects a 200); the declared ones sent with it still count
    assert ok(typed.post(orjson.dumps({**base, "params": {"nope": 1, "k": 4}}))) == {
        "sum": [8.5], "dtypes": ["int64", "float64"], "tag": "x"}
    assert ok(typed.post(orjson.dumps({**base, "params": {"nope": 2}})))["sum"] == [6.5]
    log = typed.log()
    assert log.count("Ignoring parameters ['nope']: the model's signature declares the parameters ['k', 'tag']") == 1


def test_tensor_model(tensor):
    assert ok(tensor.post(b'{"inputs": [[1, 2, 3], [4, 5, 6]]}')) == [6.0, 15.0]  # int -> float64 is safe
    message = bad(tensor.post(b'{"inputs": [[1, 2], [3, 4]]}'))
    assert "(2, 2) does not match expected shape (-1, 3)" in message
    message = bad(tensor.post(b'{"inputs": [["a", "b", "c"]]}'))
    assert "expected dtype float64" in message


def test_metadata_route(typed, typed_model_dir):
    meta = requests.get(typed.url + "/metadata", timeout=5).json()
    assert meta["flavor"] == "python_function"
    assert meta["loader_module"] == "modelpack.flavors.custom"
    assert meta["signature"]["inputs"][0] == {"type": "long", "name": "a", "required": True}
    assert meta["signature"]["params"][0]["name"] == "k"
    assert meta["serving_input_example"] == {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 0.5, "u"]]}}
    assert meta["server"]["modelpack_version"] == modelpack.__version__
    # the example a client discovers is accepted as is
    assert ok(typed.post(orjson.dumps(meta["serving_input_example"])))["sum"] == [3.5]


def _validate(model_dir, path):
    return subprocess.run([sys.executable, "-m", "modelpack.cli", "validate", "-m", str(model_dir), "-i", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_validate_command(typed_model_dir, tmp_path):
    out = _validate(typed_model_dir, typed_model_dir / "serving_input_example.json")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK: 1 rows match the model's signature, params ['k', 'tag']"
    (tmp_path / "bad.json").write_text(json.dumps({"dataframe_split": {"columns": ["b"], "data": [[1.0]]}}))
    out = _validate(typed_model_dir, tmp_path / "bad.json")
    assert out.returncode == 2
    assert out.stderr.startswith("Error: ") and "missing required input columns ['a']" in out.stderr


def test_python_and_http_give_the_same_message(typed, typed_model_dir):
    model = modelpack.load_model(typed_model_dir)
    with pytest.raises(modelpack.ModelpackError) as err:
        model.predict(pd.DataFrame({"b": [1.5]}))
    assert bad(typed.post(orjson.dumps({"dataframe_split": {"columns": ["b"], "data": [[1.5]]}}))) == err.value.message
