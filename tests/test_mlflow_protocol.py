"""MLflow's scoring protocol, case by case (issue 12, point 4): a client written for ``mlflow models serve`` works
against ``modelpack serve`` unchanged.

- MLflow's own scoring-server test cases (its ``tests/pyfunc/test_scoring_server.py``; the facts carried over, the
  code written here) run against a real ``modelpack serve``, with models trained here;
- the differences a migrating client met (bare NaN, extra keys, unknown params, ``instances`` as objects, Series,
  error codes, ``/version``, Parquet) each have a test of what the server does now;
- slow: the same requests go to ``mlflow models serve`` (MLflow 3.17, in its cached virtualenv) and to
  ``modelpack serve`` on the same model directory, side by side: same status, same ``error_code``, same
  predictions, except the deliberate differences of docs/schema.md, each asserted as such; and MLflow's own
  ``ScoringServerClient`` scores through ``modelpack serve``.
"""

from __future__ import annotations

import base64
import datetime
import importlib.util
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import Server, error, ok, start_server

import modelpack
from modelpack.signature import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
HAVE_ARROW = importlib.util.find_spec("pyarrow") is not None
needs_arrow = pytest.mark.skipif(not HAVE_ARROW, reason="Parquet bodies need pyarrow (the arrow extra)")


# -- models, trained here -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    """MLflow's test data: the first two iris features."""
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data[:, :2], data.target


@pytest.fixture(scope="module")
def knn(iris):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier().fit(*iris)


@pytest.fixture(scope="module")
def knn_dir(tmp_path_factory, knn) -> Path:
    """MLflow's test model: a KNN classifier saved without a signature."""
    path = tmp_path_factory.mktemp("models") / "knn"
    modelpack.save_model(knn, path)
    return path


@pytest.fixture(scope="module")
def param_dir(tmp_path_factory, knn) -> Path:
    """The KNN with a tensor signature and one datetime parameter (MLflow's param-schema case)."""
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 2))]),
                               params=ParamSchema([ParamSpec("param1", "datetime", datetime.datetime(2023, 7, 1))]))
    path = tmp_path_factory.mktemp("models") / "knn_params"
    modelpack.save_model(knn, path, signature=signature)
    return path


def _echo_estimator():
    """An sklearn-flavored model (so MLflow loads it too) answering what reached it. Defined in a function so
    cloudpickle stores the class by value."""
    from sklearn.base import BaseEstimator

    class Echo(BaseEstimator):
        def predict(self, X):
            import numpy as np
            import pandas as pd

            if isinstance(X, pd.DataFrame):
                if "series" in X.columns:  # a named Series
                    return X["series"] * 2
                if "unnamed" in X.columns:
                    return pd.Series(X["unnamed"].to_numpy() * 2)
                return {"kind": "DataFrame", "columns": [str(c) for c in X.columns],
                        "dtypes": [str(t) for t in X.dtypes], "values": X.astype(str).to_numpy().tolist()}
            if isinstance(X, dict):
                return {"kind": "dict", "keys": list(X), "shapes": [list(np.shape(v)) for v in X.values()]}
            return {"kind": type(X).__name__, "shape": list(np.shape(X)), "values": np.asarray(X).tolist()}

    return Echo()


@pytest.fixture(scope="module")
def echo_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "echo"
    modelpack.save_model(_echo_estimator(), path, flavor="sklearn")
    return path


#: MLflow's all-types frame: one column per signature type.
def all_types_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "boolean": [True, False, True],
        "integer": np.array([1, 2, 3], np.int32),
        "long": np.array([1, 2, 3], np.int64),
        "float": np.array([math.pi, 2 * math.pi, 3 * math.pi], np.float32),
        "double": [math.pi, 2 * math.pi, 3 * math.pi],
        "binary": [bytes([1, 2, 3]), bytes([4, 5, 6]), bytes([7, 8, 9])],
        "datetime": pd.to_datetime(["2021-01-01 00:00:00", "2021-02-02 00:00:00", "2021-03-03 12:00:00"]),
        "string": ["a", "b", "c"],
    })


@pytest.fixture(scope="module")
def dtypes_dir(tmp_path_factory) -> Path:
    """A custom model whose signature names one column per type; it answers the dtypes it received."""

    class Dtypes(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return [[str(k), str(v)] for k, v in model_input.dtypes.items()]

    schema = Schema([ColSpec(name, name) for name in all_types_frame().columns])
    path = tmp_path_factory.mktemp("models") / "dtypes"
    modelpack.save_model(Dtypes(), path, signature=ModelSignature(inputs=schema))
    return path


@pytest.fixture(scope="module")
def multi_dir(tmp_path_factory) -> Path:
    """A model with two named tensor inputs, a and b (MLflow's keras case): a . (1, 2) + b . (3, 4) per row."""

    class TwoInputs(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import numpy as np

            return model_input["a"] @ np.array([1.0, 2.0]) + model_input["b"] @ np.array([3.0, 4.0])

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 2), "a"),
                                              TensorSpec(np.dtype("float64"), (-1, 2), "b")]))
    path = tmp_path_factory.mktemp("models") / "two_inputs"
    modelpack.save_model(TwoInputs(), path, signature=signature)
    return path


@pytest.fixture(scope="module")
def optional_dir(tmp_path_factory) -> Path:
    """Columns x: double (required), y: double (optional), param scale: double = 1; predicts x * scale + y."""

    class Optional(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return (model_input["x"] * params["scale"] + model_input["y"]).to_numpy()

    signature = ModelSignature(inputs=Schema([ColSpec("double", "x"), ColSpec("double", "y", required=False)]),
                               params=ParamSchema([ParamSpec("scale", "double", 1.0)]))
    path = tmp_path_factory.mktemp("models") / "optional"
    modelpack.save_model(Optional(), path, signature=signature)
    return path


# -- servers (one per model and module) ---------------------------------------------------------------------------

def _module_server(request, tmp_path_factory, fixture: str) -> Server:
    server = start_server(request.getfixturevalue(fixture), tmp_path_factory.mktemp("srv"), "-w", "1")
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module")
def knn_server(request, tmp_path_factory) -> Server:
    return _module_server(request, tmp_path_factory, "knn_dir")


@pytest.fixture(scope="module")
def diabetes_server(request, tmp_path_factory) -> Server:
    return _module_server(request, tmp_path_factory, "diabetes_model_dir")


@pytest.fixture(scope="module")
def echo_server(request, tmp_path_factory) -> Server:
    return _module_server(request, tmp_path_factory, "echo_dir")


@pytest.fixture(scope="module")
def optional_server(request, tmp_path_factory) -> Server:
    return _module_server(request, tmp_path_factory, "optional_dir")


def split_of(frame: pd.DataFrame) -> bytes:
    """``{"dataframe_split": frame.to_dict(orient="split")}``, index included, as MLflow's client writes it."""
    return json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()


def parquet_of(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


DIABETES_COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def diabetes_rows(diabetes, elasticnet) -> tuple[pd.DataFrame, list[float]]:
    X, _ = diabetes
    return X.head(3), elasticnet.predict(X.head(3)).tolist()


# == 1. MLflow's own cases ========================================================================================

def test_malformed_json_is_400_bad_request(knn_server):
    message = error(knn_server.post(b"this is,,,, not valid json"), 400, "BAD_REQUEST")
    assert message.startswith("Request body is not valid JSON")


@pytest.mark.parametrize("body", [b"1", b'"1"', b"[1]"])
def test_json_that_is_no_object_is_400_bad_request(knn_server, body):
    assert "JSON body must be an object with one of the keys" in error(knn_server.post(body), 400, "BAD_REQUEST")


@pytest.mark.parametrize("body, fragment", [
    ({"not": "a serialized dataframe"}, "got keys ['not']"),
    ({"dataframe_records": [], "dataframe_split": {"data": []}}, "several input formats"),
])
def test_json_without_exactly_one_format_is_400_bad_request(knn_server, body, fragment):
    assert fragment in error(knn_server.post(json.dumps(body)), 400, "BAD_REQUEST")


def test_records_and_split_in_each_others_place_are_400(knn_server, iris):
    frame = pd.DataFrame(iris[0])
    wrong_split = json.dumps({"dataframe_split": frame.to_dict(orient="records")})
    assert "'dataframe_split' must be an object with 'data'" in error(knn_server.post(wrong_split), 400, "BAD_REQUEST")
    wrong_records = json.dumps({"dataframe_records": frame.to_dict(orient="split")})
    assert "'dataframe_records' must be a list of objects" in error(
        knn_server.post(wrong_records), 400, "BAD_REQUEST")


def test_split_whose_index_does_not_match_the_rows_is_400(knn_server):
    body = json.dumps({"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}})
    assert "has 2 labels for 3 rows" in error(knn_server.post(body), 400, "BAD_REQUEST")


def test_incompatible_frame(knn_server, diabetes_server):
    """One column for a model trained on two. Without a signature nothing can tell before the model raises: a 500
    MODEL_ERROR here (MLflow answers 400 for any model error: a deliberate difference, docs/schema.md); with a
    signature the server refuses it first, with MLflow's code for a schema mismatch."""
    body = split_of(pd.DataFrame(np.arange(10)))
    assert "The model raised ValueError" in error(knn_server.post(body), 500, "MODEL_ERROR")
    message = error(diabetes_server.post(body), 400, "INVALID_PARAMETER_VALUE")
    assert message.startswith("Model is missing required input columns")


def test_empty_csv_is_400_bad_request(knn_server):
    assert "CSV body is empty" in error(knn_server.post(b"", CSV), 400, "BAD_REQUEST")


@pytest.mark.parametrize("content_type", [JSON, JSON + "; charset=UTF-8", JSON + "; charset=utf-8"])
@pytest.mark.parametrize("orient", ["records", "split"])
def test_records_and_split_score(knn_server, knn, iris, orient, content_type):
    frame = pd.DataFrame(iris[0])
    body = json.dumps({f"dataframe_{orient}": frame.to_dict(orient=orient)})
    assert ok(knn_server.post(body, content_type)) == knn.predict(iris[0]).tolist()


def test_unsupported_content_type_is_415(knn_server, iris):
    body = pd.DataFrame(iris[0]).to_json(orient="split")
    message = error(knn_server.post(body, "not_a_supported_content_type"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert ("use one of ['application/json', 'application/vnd.apache.arrow.file', "
            "'application/vnd.apache.arrow.stream', 'application/vnd.apache.parquet', 'text/csv']") in message


@pytest.mark.parametrize("content_type, fragment", [
    (JSON + "; something=something", "parameters ['something'] are not supported"),
    (JSON + "; format=pandas-split", "parameters ['format'] are not supported"),  # MLflow 1.x's protocol
    (CSV + "; header=present", "parameters ['header'] are not supported"),
    (JSON + "; charset=latin-1", "charset 'latin-1' is not supported; send the body as UTF-8"),
])
def test_unknown_content_type_parameters_are_415(knn_server, content_type, fragment):
    assert fragment in error(knn_server.post(b'{"inputs": [[1, 2]]}', content_type), 415, "UNSUPPORTED_MEDIA_TYPE")


def test_tf_serving_instances_and_inputs(knn_server, knn, iris):
    expected = knn.predict(iris[0]).tolist()
    assert ok(knn_server.post(json.dumps({"instances": iris[0].tolist()}))) == expected
    assert ok(knn_server.post(json.dumps({"inputs": iris[0].tolist()}))) == expected


def test_instances_as_objects_feed_a_model_with_several_inputs(multi_dir, serve, iris):
    """MLflow's keras case: ``instances`` as one object per row is TF Serving's row format, read as one array per
    key; ``inputs`` sends the same as an object of arrays."""
    X = np.column_stack([iris[0], iris[0][::-1]])
    expected = (X[:, :2] @ [1.0, 2.0] + X[:, 2:] @ [3.0, 4.0]).tolist()
    server = serve(multi_dir)
    rows = [{"a": row[:2].tolist(), "b": row[2:].tolist()} for row in X]
    assert ok(server.post(json.dumps({"instances": rows}))) == pytest.approx(expected, rel=1e-12)
    columns = {"a": X[:, :2].tolist(), "b": X[:, 2:].tolist()}
    assert ok(server.post(json.dumps({"inputs": columns}))) == pytest.approx(expected, rel=1e-12)
    # a row without one of the keys would shift that input's rows against the other's: refused, naming the row
    message = error(server.post(json.dumps({"instances": [rows[0], {"a": rows[1]["a"]}]})), 400, "BAD_REQUEST")
    assert message == ("'instances[1]' has the keys ['a'] and 'instances[0]' ['a', 'b']; "
                       "every object needs the same keys")


def test_string_columns_stay_strings(echo_server):
    """MLflow's zip-code case: "95120" is read as text, not as a number, in records and in split."""
    records = {"dataframe_records": [{"zip": "95120", "cost": 10.45, "score": 8},
                                     {"zip": "95128", "cost": 23.0, "score": 0},
                                     {"zip": "95128", "cost": 12.1, "score": 10}]}
    split = {"dataframe_split": {"columns": ["zip", "cost", "count"], "index": [0, 1, 2],
                                 "data": [["95120", 10.45, -8], ["95128", 23.0, -1], ["95128", 12.1, 1000]]}}
    for body in (records, split):
        answer = ok(echo_server.post(json.dumps(body)))
        assert answer["dtypes"] == [str(pd.Series(["a"]).dtype), "float64", "int64"]
        assert [row[0] for row in answer["values"]] == ["95120", "95128", "95128"]


@pytest.fixture(scope="module")
def dtypes_server(request, tmp_path_factory) -> Server:
    return _module_server(request, tmp_path_factory, "dtypes_dir")


def _signature_dtypes(frame: pd.DataFrame) -> list[list[str]]:
    """What the model's signature makes of every column: its own dtype, in the signature's order."""
    return [[name, str(dtype)] for name, dtype in frame.dtypes.items()]


def _json_default(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value.isoformat()


@pytest.mark.parametrize("orient", ["split", "records", "inputs"])
def test_every_type_reaches_the_model_as_the_signature_says(dtypes_server, orient):
    """MLflow's all-types case: shuffled columns, binary as base64, datetimes as ISO 8601 text."""
    frame = all_types_frame()
    shuffled = frame[["string", "datetime", "double", "boolean", "binary", "long", "float", "integer"]]
    payload = {"split": {"dataframe_split": shuffled.to_dict(orient="split")},
               "records": {"dataframe_records": shuffled.to_dict(orient="records")},
               "inputs": {"inputs": shuffled.to_dict(orient="list")}}[orient]
    body = json.dumps(payload, default=_json_default)
    assert ok(dtypes_server.post(body)) == _signature_dtypes(frame)


def test_binary_as_mlflows_encoder_writes_it(dtypes_server):
    frame = all_types_frame()
    payload = json.loads(json.dumps({"dataframe_split": frame.to_dict(orient="split")}, default=_json_default))
    binary = frame.columns.get_loc("binary")
    for row, value in zip(payload["dataframe_split"]["data"], frame["binary"], strict=True):
        row[binary] = base64.encodebytes(value).decode("ascii")  # "AQID\n"
    assert ok(dtypes_server.post(json.dumps(payload)))[5] == ["binary", "object"]


def test_every_csv_type_reaches_the_model_as_the_signature_says(tmp_path, serve):
    """MLflow's CSV case: the types CSV can carry (no binary), shuffled."""

    class Dtypes(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return [[str(k), str(v)] for k, v in model_input.dtypes.items()]

    frame = all_types_frame().drop(columns=["binary", "datetime"])
    modelpack.save_model(Dtypes(), tmp_path / "m",
                         signature=ModelSignature(inputs=Schema([ColSpec(c, c) for c in frame.columns])))
    body = frame[["string", "double", "boolean", "long", "float", "integer"]].to_csv(index=False)
    assert ok(serve(tmp_path / "m").post(body, CSV)) == _signature_dtypes(frame)


@pytest.mark.parametrize("column, value, reason", [
    ("bad_integer", 9007199254740994.0, "9007199254740994.0 is out of range for int32"),
    ("bad_float", 1e300, "1e+300 is out of range for float32"),
    ("bad_string", 1, "int64 values are not a str"),
    ("bad_boolean", 1.5, "booleans and numbers do not convert into each other"),
])
def test_values_that_do_not_fit_their_column_are_refused(tmp_path, serve, column, value, reason):
    """MLflow's "bad" frame: its parser forces these (int32 overflow to -2147483648, 1.5 to True, 1 kept as a
    number in a string column); here each is refused naming the column (a deliberate difference, docs/schema.md)."""

    class Echo(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input.astype(str).to_numpy().tolist()

    schema = Schema([ColSpec("integer", "bad_integer"), ColSpec("float", "bad_float"),
                     ColSpec("string", "bad_string"), ColSpec("boolean", "bad_boolean")])
    modelpack.save_model(Echo(), tmp_path / "m", signature=ModelSignature(inputs=schema))
    server = serve(tmp_path / "m")
    good = {"bad_integer": 7, "bad_float": 1.1, "bad_string": "s", "bad_boolean": True}
    assert ok(server.post(json.dumps({"dataframe_records": [good]}))) == [["7", "1.1", "s", "True"]]
    message = error(server.post(json.dumps({"dataframe_records": [{**good, column: value}]})), 400,
                    "INVALID_PARAMETER_VALUE")
    assert message.startswith(f"Incompatible input for column '{column}'") and reason in message, message


def test_param_schema(param_dir, serve, knn, iris):
    """MLflow's param-schema case: no params is fine, an invalid value is a 400, an unknown name is ignored."""
    server = serve(param_dir)
    body = {"dataframe_split": pd.DataFrame(iris[0]).to_dict(orient="split")}
    expected = knn.predict(iris[0]).tolist()
    assert ok(server.post(json.dumps(body), JSON + "; charset=UTF-8")) == expected
    message = error(server.post(json.dumps({**body, "params": {"param1": "invalid_value1"}})),
                    400, "INVALID_PARAMETER_VALUE")
    assert message.startswith("Parameter 'param1' expects datetime")
    assert ok(server.post(json.dumps({**body, "params": {"invalid_param": "value"}}))) == expected
    assert ok(server.post(json.dumps({**body, "params": {"param1": "2024-01-02T03:04:05"}}))) == expected
    assert "Ignoring parameters ['invalid_param']: the model's signature declares the parameters ['param1']" \
        in server.log()


def test_arrays_of_text_are_written_as_lists(tmp_path, serve):
    """MLflow's jsonable case: a 2-D array of strings (any string dtype) is written as nested lists."""

    class Text(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import numpy as np

            return np.array([["a", "b", "c"], ["e", "f", "g"]], dtype=object if params else str)

    modelpack.save_model(Text(), tmp_path / "m")
    server = serve(tmp_path / "m")
    assert ok(server.post(b'{"inputs": [1]}')) == [["a", "b", "c"], ["e", "f", "g"]]
    assert ok(server.post(b'{"inputs": [1], "params": {"object": true}}')) == [["a", "b", "c"], ["e", "f", "g"]]


def test_text_that_looks_like_a_path_and_a_scalar_prediction(tmp_path, serve):
    """MLflow's URL case: values that look like paths or URLs are values; a model answering one number gets it
    written as that number."""

    class One(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return 1

    modelpack.save_model(One(), tmp_path / "m")
    frame = pd.DataFrame({"url": ["http://foo.com", "https://bar.com"], "bad_protocol": ["aaa://bbb", "address:/path"]})
    assert ok(serve(tmp_path / "m").post(split_of(frame))) == 1


# == 2. what a migrating client met ================================================================================

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_bare_non_finite_literals_are_read(echo_server, literal):
    """Python's json.dumps (so MLflow's client) writes NaN and infinities as bare literals: read as MLflow reads
    them; a model without a signature receives them."""
    answer = ok(echo_server.post(b'{"dataframe_split": {"columns": ["a"], "data": [[' + literal.encode() + b"]]}}"))
    assert answer["dtypes"] == ["float64"]
    (cell,), = answer["values"]  # the model wrote the value as text: NaN stays a (missing) NaN
    assert math.isnan(cell) if literal == "NaN" else cell == str(float(literal))  # 'inf', '-inf'


def test_nan_in_an_optional_column_reaches_the_model(optional_server):
    body = json.dumps({"dataframe_split": {"columns": ["x", "y"], "data": [[1.0, math.nan], [2.0, 0.5]]}})
    assert "NaN" in body  # what json.dumps writes
    assert optional_server.post(body).text == '{"predictions":[NaN,2.5]}'
    required = json.dumps({"dataframe_split": {"columns": ["x", "y"], "data": [[math.nan, 1.0]]}})
    assert error(optional_server.post(required), 400, "INVALID_PARAMETER_VALUE").startswith(
        "Required column 'x' (double) has no value at row 0;")


def test_other_top_level_keys_are_ignored_with_a_warning(diabetes_server, diabetes_rows):
    frame, expected = diabetes_rows
    body = {"dataframe_split": frame.to_dict(orient="split"), "extra": {"any": ["thing"]}, "id": 7}
    assert ok(diabetes_server.post(json.dumps(body))) == pytest.approx(expected, rel=1e-12)
    assert ok(diabetes_server.post(json.dumps(body))) == pytest.approx(expected, rel=1e-12)
    log = diabetes_server.log()
    assert log.count("Ignoring top-level keys ['extra', 'id']: only 'params' is read next to 'dataframe_split'") == 1
    # but never two formats at once: which one would be scored?
    both = {"dataframe_split": frame.to_dict(orient="split"), "inputs": frame.to_dict(orient="list")}
    assert "several input formats" in error(diabetes_server.post(json.dumps(both)), 400, "BAD_REQUEST")


def test_params_for_a_model_without_a_param_schema_are_ignored(diabetes_server, diabetes_rows):
    frame, expected = diabetes_rows
    body = {"dataframe_split": frame.to_dict(orient="split"), "params": {"alpha": 0.5}}
    assert ok(diabetes_server.post(json.dumps(body))) == pytest.approx(expected, rel=1e-12)
    assert "Ignoring parameters ['alpha']: the model's signature declares no parameters" in diabetes_server.log()
    nested = {"dataframe_split": frame.to_dict(orient="split"), "params": {"alpha": {"nested": 1}}}
    assert "Parameter 'alpha' is an object" in error(diabetes_server.post(json.dumps(nested)), 400, "BAD_REQUEST")


def test_a_series_is_written_as_records(echo_server):
    named = ok(echo_server.post(b'{"dataframe_split": {"columns": ["series"], "data": [[1], [2]]}}'))
    assert named == [{"series": 2}, {"series": 4}]
    unnamed = ok(echo_server.post(b'{"dataframe_split": {"columns": ["unnamed"], "data": [[1], [2]]}}'))
    assert unnamed == [{"0": 2}, {"0": 4}]


def test_error_codes_are_mlflows(diabetes_server, diabetes_rows):
    frame, _ = diabetes_rows
    assert error(diabetes_server.post(b"{"), 400, "BAD_REQUEST")
    assert error(diabetes_server.post(b"a,b\n1,2\n\"3,4\n", CSV), 400, "BAD_REQUEST")
    missing = error(diabetes_server.post(split_of(frame.drop(columns=["s6"]))), 400, "INVALID_PARAMETER_VALUE")
    assert missing.startswith("Model is missing required input columns ['s6']")


def test_version_is_the_bare_version(knn_server):
    resp = requests.get(knn_server.url + "/version", timeout=5)
    assert resp.status_code == 200 and resp.text == modelpack.__version__


@needs_arrow
def test_parquet_bodies_score(diabetes_server, diabetes_rows, echo_server):
    frame, expected = diabetes_rows
    assert ok(diabetes_server.post(parquet_of(frame), PARQUET)) == pytest.approx(expected, rel=1e-12)
    shuffled = frame[list(reversed(frame.columns))]  # the signature puts columns in order, as for JSON
    assert ok(diabetes_server.post(parquet_of(shuffled), PARQUET)) == pytest.approx(expected, rel=1e-12)
    mixed = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, None]})
    answer = ok(echo_server.post(parquet_of(mixed), PARQUET))
    assert answer["columns"] == ["a", "b", "c"] and answer["dtypes"][0] == "int64" and answer["dtypes"][2] == "float64"
    assert "Parquet body cannot be read" in error(diabetes_server.post(b"\x00\x11\x22\x33", PARQUET), 400,
                                                  "BAD_REQUEST")
    assert "Parquet body holds no rows" in error(diabetes_server.post(parquet_of(frame.head(0)), PARQUET), 400,
                                                 "BAD_REQUEST")
    missing = error(diabetes_server.post(parquet_of(frame.drop(columns=["bmi"])), PARQUET), 400,
                    "INVALID_PARAMETER_VALUE")
    assert missing.startswith("Model is missing required input columns ['bmi']")


@needs_arrow
def test_parquet_that_expands_past_the_limit_is_413(diabetes_model_dir, serve):
    """A column of one repeated value compresses to almost nothing: what the footer declares is checked first."""
    server = serve(diabetes_model_dir, env={"MODELPACK_MAX_BODY_BYTES": "100000"})
    body = parquet_of(pd.DataFrame({"age": np.zeros(200_000)}))
    assert len(body) < 100_000
    message = error(server.post(body, PARQUET), 413, "PAYLOAD_TOO_LARGE")
    assert message.startswith("Parquet body declares 200000 rows x 1 columns")


def test_parquet_without_pyarrow_is_415_naming_the_extra(diabetes_model_dir, serve, tmp_path):
    """Where pyarrow is not installed (here: a package of that name that fails to import, first on the path)."""
    blocker = tmp_path / "no-pyarrow" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow is blocked for this test')\n")
    server = serve(diabetes_model_dir, env={"PYTHONPATH": str(blocker.parent)})
    message = error(server.post(b"PAR1 any bytes", PARQUET), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "needs pyarrow" in message and "pip install 'modelpack[arrow]'" in message
    assert server.post(b'{"inputs": [[1]]}').status_code == 400  # JSON still served


# == 3. side by side with mlflow models serve (slow) ================================================================

@dataclass(frozen=True)
class Case:
    """One request to both servers. ``status``: both answer it (and the same ``error_code`` for an error, the same
    predictions for a 200); ``mlflow_status``: where MLflow answers otherwise, a deliberate difference
    (docs/schema.md), ``code``/``mlflow_code`` likewise."""

    model: str
    body: bytes
    content_type: str | None = JSON
    status: int = 200
    code: str | None = None
    mlflow_status: int | None = None
    mlflow_code: str | None = None


def _iris_frame() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    return pd.DataFrame(load_iris().data[:20, :2])


def _diabetes_frame() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).data.head(5)


def _side_by_side_cases() -> dict[str, Case]:
    iris, diabetes = _iris_frame(), _diabetes_frame()
    split, records = split_of(iris), json.dumps({"dataframe_records": iris.to_dict(orient="records")}).encode()
    diabetes_split = split_of(diabetes)
    with_nan = diabetes.copy()
    with_nan.iloc[2, 2] = math.nan
    cases = {
        # scored the same
        "split": Case("knn", split),
        "split, charset": Case("knn", split, JSON + "; charset=UTF-8"),
        "records": Case("knn", records),
        "instances": Case("knn", json.dumps({"instances": iris.to_numpy().tolist()}).encode()),
        "inputs": Case("knn", json.dumps({"inputs": iris.to_numpy().tolist()}).encode()),
        "csv": Case("knn", iris.to_csv(index=False).encode(), CSV),
        "diabetes split": Case("diabetes", diabetes_split),
        "extra top-level key": Case("diabetes", diabetes_split[:-1] + b', "extra": {"any": 1}}'),
        "params without a param schema": Case("diabetes", diabetes_split[:-1] + b', "params": {"alpha": 0.5}}'),
        "unknown param": Case("params", split[:-1] + b', "params": {"invalid_param": "value"}}'),
        "declared param": Case("params", split[:-1] + b', "params": {"param1": "2024-01-02T03:04:05"}}'),
        "bare NaN and infinities": Case(
            "echo", b'{"dataframe_split": {"columns": ["a"], "data": [[NaN], [Infinity], [-Infinity], [1e400]]}}'),
        "instances as objects of arrays": Case(
            "echo", b'{"instances": [{"a": [1, 2], "b": [3, 4]}, {"a": [5, 6], "b": [7, 8]}]}'),
        "named Series": Case("echo", b'{"dataframe_split": {"columns": ["series"], "data": [[1], [2]]}}'),
        "unnamed Series": Case("echo", b'{"dataframe_split": {"columns": ["unnamed"], "data": [[1], [2]]}}'),
        "records with a key left out": Case("echo", b'{"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2}]}'),
        "text stays text": Case("echo", json.dumps({"dataframe_split": {
            "columns": ["zip", "cost", "count"], "data": [["95120", 10.45, -8], ["95128", 23.0, -1]]}}).encode()),
        "UTF-8 byte order mark": Case("echo", b'\xef\xbb\xbf{"inputs": [1, 2]}'),
        # refused the same
        "malformed JSON": Case("knn", b"this is,,,, not valid json", status=400, code="BAD_REQUEST"),
        "a number": Case("knn", b"1", status=400, code="BAD_REQUEST"),
        "a list": Case("knn", b"[1]", status=400, code="BAD_REQUEST"),
        "no format key": Case("knn", b'{"not": "a serialized dataframe"}', status=400, code="BAD_REQUEST"),
        "two format keys": Case("knn", b'{"dataframe_records": [], "dataframe_split": {"data": []}}', status=400,
                                code="BAD_REQUEST"),
        "split as records": Case("knn", json.dumps({"dataframe_split": iris.to_dict(orient="records")}).encode(),
                                 status=400, code="BAD_REQUEST"),
        "records as split": Case("knn", json.dumps({"dataframe_records": iris.to_dict(orient="split")}).encode(),
                                 status=400, code="BAD_REQUEST"),
        "index not matching": Case("knn", b'{"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}}',
                                   status=400, code="BAD_REQUEST"),
        "empty CSV": Case("knn", b"", CSV, status=400, code="BAD_REQUEST"),
        "missing column": Case("diabetes", split_of(diabetes.drop(columns=["s6"])), status=400,
                               code="INVALID_PARAMETER_VALUE"),
        "invalid param value": Case("params", split[:-1] + b', "params": {"param1": "invalid_value1"}}',
                                    status=400, code="INVALID_PARAMETER_VALUE"),
        "unsupported type": Case("knn", split, "not_a_supported_content_type", status=415),
        "unknown content type parameter": Case("knn", split, JSON + "; something=something", status=415),
        "MLflow 1.x format parameter": Case("knn", split, JSON + "; format=pandas-split", status=415),
        "latin-1": Case("knn", split, JSON + "; charset=latin-1", status=415),
        # deliberate differences (docs/schema.md)
        "NaN in a required column": Case("diabetes", split_of(with_nan), status=400, code="INVALID_PARAMETER_VALUE",
                                         mlflow_code="BAD_REQUEST"),  # MLflow: the model raised, its 400 for that
        "the model raises": Case("knn", split_of(pd.DataFrame(np.arange(10))), status=500, code="MODEL_ERROR",
                                 mlflow_status=400, mlflow_code="BAD_REQUEST"),
        "bare split": Case("knn", iris.to_json(orient="split").encode(), mlflow_status=400,
                           mlflow_code="BAD_REQUEST"),
        "no Content-Type": Case("knn", split, None, status=415, mlflow_status=500),
        "Content-Type in capitals": Case("knn", split, "APPLICATION/JSON", mlflow_status=415),
        "charset utf8": Case("knn", split, JSON + "; charset=utf8", mlflow_status=415),
        "object params without a signature": Case("echo", b'{"inputs": [1], "params": {"p": {"a": 1}}}', status=400,
                                                  code="BAD_REQUEST", mlflow_status=200),
        "LLM body": Case("echo", b'{"input": [1]}', status=400, code="BAD_REQUEST", mlflow_status=200),
    }
    if HAVE_ARROW:
        cases["parquet"] = Case("knn", parquet_of(iris), PARQUET)
        cases["parquet, diabetes"] = Case("diabetes", parquet_of(diabetes), PARQUET)
        cases["not parquet"] = Case("knn", b"\x00\x11\x22\x33", PARQUET, status=400, code="BAD_REQUEST")
    return cases


SIDE_BY_SIDE = _side_by_side_cases()

@pytest.fixture(scope="module")
def both_servers(tmp_path_factory, knn_dir, param_dir, echo_dir, diabetes_model_dir):
    """model name -> (modelpack serve, mlflow models serve) on the same directory."""
    from mlflow_env import mlflow_python
    from mlflow_interop import mlflow_serve

    python = mlflow_python()
    dirs = {"knn": knn_dir, "params": param_dir, "echo": echo_dir, "diabetes": diabetes_model_dir}
    servers: dict[str, tuple[Server, Server]] = {}
    try:
        for name, path in dirs.items():
            tmp = tmp_path_factory.mktemp(f"both-{name}")
            servers[name] = (start_server(path, tmp, "-w", "1"), mlflow_serve(python, path, tmp))
        yield servers
    finally:
        for pair in servers.values():
            for server in pair:
                server.stop()


def _send(server: Server, case: Case) -> requests.Response:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    return requests.post(f"{server.url}/invocations", data=case.body, headers=headers, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIDE_BY_SIDE))
def test_side_by_side_with_mlflow(both_servers, name):
    case = SIDE_BY_SIDE[name]
    ours, theirs = (_send(server, case) for server in both_servers[case.model])
    assert ours.status_code == case.status, ours.text
    assert theirs.status_code == (case.mlflow_status or case.status), theirs.text
    assert ours.headers["Content-Type"].startswith(JSON)  # never text or HTML, whatever MLflow answers
    if ours.status_code == 200 and theirs.status_code == 200:
        np.testing.assert_equal(ours.json()["predictions"], theirs.json()["predictions"])
    if ours.status_code >= 400:
        assert ours.json()["error_code"] == (case.code or "UNSUPPORTED_MEDIA_TYPE")
    if theirs.status_code == 400:  # MLflow's 415s and 500s are plain text
        assert theirs.json()["error_code"] == (case.mlflow_code or case.code)


@pytest.mark.slow
def test_side_by_side_a_dict_of_columns_reaches_a_model_as_a_frame(both_servers):
    """``instances`` as objects of scalars: one array per key in both; modelpack's python_function then makes a dict
    of equal-length 1-D arrays a DataFrame (a deliberate difference: a model without a signature gets the table)."""
    ours, theirs = (_send(server, Case("echo", b'{"instances": [{"a": 1, "b": 2}, {"b": 3, "a": 4}]}'))
                    for server in both_servers["echo"])
    assert theirs.json()["predictions"] == {"kind": "dict", "keys": ["a", "b"], "shapes": [[2], [2]]}
    assert ours.json()["predictions"] == {"kind": "DataFrame", "columns": ["a", "b"], "dtypes": ["int64", "int64"],
                                          "values": [["1", "2"], ["4", "3"]]}


@pytest.mark.slow
def test_side_by_side_version_and_ping(both_servers):
    ours, theirs = both_servers["knn"]
    assert requests.get(ours.url + "/version", timeout=5).text == modelpack.__version__
    assert requests.get(theirs.url + "/version", timeout=5).text.startswith("3.17.")
    for server in (ours, theirs):
        assert requests.get(server.url + "/ping", timeout=5).status_code == 200


CLIENT = r'''
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

client = ScoringServerClient("127.0.0.1", int(sys.argv[1]))
client.wait_server_ready(timeout=30)
frame = read_frame(sys.argv[2])
answer = client.invoke(frame, params={"scale": 10.0})
print(json.dumps({"predictions": answer.get_predictions().to_numpy()[:, 0].tolist(),
                  "ndarray": answer.get_predictions(predictions_format="ndarray").tolist(),
                  "version": client.get_version()}))
'''


@pytest.mark.slow
def test_mlflows_own_client_scores_through_modelpack(optional_server, tmp_path):
    """MLflow's ScoringServerClient as it is: it writes the frame's NaN as a bare literal (json.dumps), its index
    and params next to the split; it reads the predictions and the bare version string."""
    from mlflow_env import mlflow_python
    from mlflow_interop import run_mlflow_script, write_frame

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, math.nan, 1.5]})
    port = optional_server.url.rsplit(":", 1)[1]
    out = run_mlflow_script(mlflow_python(), CLIENT, port, str(write_frame(frame, tmp_path / "frame.json")),
                            cwd=tmp_path)
    answer = json.loads(out.strip().splitlines()[-1])
    np.testing.assert_equal(answer["predictions"], [10.5, math.nan, 31.5])
    np.testing.assert_equal(answer["ndarray"], [10.5, math.nan, 31.5])
    assert answer["version"] == modelpack.__version__
