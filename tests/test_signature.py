"""Signatures: specs, MLflow's JSON-string form, and inference from example data."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from modelpack.errors import InvalidInputError
from modelpack.signature import (
    DATA_TYPES,
    ColSpec,
    ModelSignature,
    ParamSchema,
    ParamSpec,
    Schema,
    TensorSpec,
)
from modelpack.signature_inference import infer_signature

# What MLflow 3.17 wrote for the diabetes ElasticNet (inputs shortened to three columns).
MLFLOW_INPUTS = (
    '[{"type": "double", "name": "age", "required": true}, '
    '{"type": "double", "name": "sex", "required": true}, '
    '{"type": "double", "name": "bmi", "required": true}]'
)
MLFLOW_OUTPUTS = '[{"type": "double", "required": true}]'


# ---------------------------------------------------------------- JSON form


def test_parse_the_mlflow_signature() -> None:
    signature = ModelSignature.from_dict({"inputs": MLFLOW_INPUTS, "outputs": MLFLOW_OUTPUTS, "params": None})
    assert signature.inputs == Schema([ColSpec("double", n) for n in ("age", "sex", "bmi")])
    assert signature.outputs == Schema([ColSpec("double")])
    assert signature.params is None
    assert signature.to_dict() == {
        "inputs": MLFLOW_INPUTS,
        "outputs": MLFLOW_OUTPUTS,
        "params": None,
    }


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (ColSpec("double", "age"), '{"type": "double", "name": "age", "required": true}'),
        (ColSpec("string"), '{"type": "string", "required": true}'),
        (ColSpec("long", "n", required=False), '{"type": "long", "name": "n", "required": false}'),
        (
            TensorSpec(np.dtype("float64"), (-1, 4)),
            '{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}',
        ),
        (
            TensorSpec(np.dtype("uint8"), (-1, 28, 28), "image"),
            '{"name": "image", "type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": [-1, 28, 28]}}',
        ),
        (
            TensorSpec(np.dtype(str), (-1,)),
            '{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1]}}',
        ),
    ],
)
def test_spec_json_exact(spec: ColSpec | TensorSpec, text: str) -> None:
    assert json.dumps(spec.to_dict()) == text
    assert Schema.from_json(f"[{text}]") == Schema([spec])


@pytest.mark.parametrize("type_name", sorted(DATA_TYPES))
@pytest.mark.parametrize("required", [True, False])
def test_column_round_trip_every_type(type_name: str, required: bool) -> None:
    schema = Schema([ColSpec(type_name, "c", required), ColSpec("double", "d")])
    assert Schema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize(
    "dtype", ["bool", "int8", "int32", "int64", "uint16", "float16", "float32", "float64", "str",
              "bytes", "object", "datetime64[ns]", "complex128"]
)  # fmt: skip
def test_tensor_round_trip_every_dtype(dtype: str) -> None:
    schema = Schema([TensorSpec(np.dtype(dtype), (-1, 2, 3), "t")])
    assert Schema.from_json(schema.to_json()) == schema


PARAMS = [
    (ParamSpec("k", "long", 3), '{"name": "k", "type": "long", "default": 3, "shape": null}'),
    (ParamSpec("n", "integer", 7), '{"name": "n", "type": "integer", "default": 7, "shape": null}'),
    (ParamSpec("t", "double", 0.5),
     '{"name": "t", "type": "double", "default": 0.5, "shape": null}'),
    (ParamSpec("f", "float", 1), '{"name": "f", "type": "float", "default": 1.0, "shape": null}'),
    (ParamSpec("on", "boolean", False),
     '{"name": "on", "type": "boolean", "default": false, "shape": null}'),
    (ParamSpec("s", "string", "x"),
     '{"name": "s", "type": "string", "default": "x", "shape": null}'),
    (ParamSpec("d", "datetime", dt.datetime(2024, 5, 1, 8, 30)),
     '{"name": "d", "type": "datetime", "default": "2024-05-01T08:30:00", "shape": null}'),
    (ParamSpec("ks", "long", [1, 2], (-1,)),
     '{"name": "ks", "type": "long", "default": [1, 2], "shape": [-1]}'),
    (ParamSpec("ds", "datetime", [dt.date(2024, 1, 2)], (-1,)),
     '{"name": "ds", "type": "datetime", "default": ["2024-01-02T00:00:00"], "shape": [-1]}'),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "text"), PARAMS, ids=[p[0].name for p in PARAMS])
def test_param_json_exact_and_round_trip(spec: ParamSpec, text: str) -> None:
    assert json.dumps(spec.to_dict()) == text
    schema = ParamSchema([spec])
    assert ParamSchema.from_json(schema.to_json()) == schema


def test_full_signature_round_trip() -> None:
    signature = ModelSignature(
        Schema([ColSpec("double", "a"), ColSpec("string", "b", required=False)]),
        Schema([TensorSpec(np.dtype("float32"), (-1, 3))]),
        ParamSchema([p for p, _ in PARAMS]),
    )
    as_dict = signature.to_dict()
    assert all(isinstance(v, str) for v in as_dict.values())
    assert ModelSignature.from_dict(as_dict) == signature
    assert ModelSignature.from_dict(json.loads(json.dumps(as_dict))) == signature


def test_older_mlflow_forms() -> None:
    # MLflow before 2.x wrote no "required"; early params used "dtype" instead of "type".
    assert Schema.from_json('[{"type": "long", "name": "x"}]') == Schema([ColSpec("long", "x")])
    params = ParamSchema.from_json('[{"name": "k", "dtype": "long", "default": 1}]')
    assert params == ParamSchema([ParamSpec("k", "long", 1)])
    assert ModelSignature.from_dict({"inputs": MLFLOW_INPUTS}).outputs is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"type": "array", "items": {"type": "string"}}]', "Unsupported column type 'array'"),
        ('{"type": "double"}', "must be a list"),
        ('[{"name": "x"}]', "with a 'type'"),
        ('[{"type": "tensor", "tensor-spec": {"dtype": "<U5", "shape": [-1]}}]', "carries a size"),
    ],
)
def test_bad_schema_json(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Schema.from_json(text)


# ---------------------------------------------------------------- specs


def test_schema_properties() -> None:
    schema = Schema([ColSpec("double", "a"), ColSpec("long", "b", required=False)])
    assert not schema.is_tensor and schema.has_input_names
    assert schema.input_names == ["a", "b"]
    assert schema.required_input_names == ["a"]
    assert schema.optional_input_names == ["b"]
    assert len(schema) == 2 and [s.name for s in schema] == ["a", "b"]
    unnamed = Schema([TensorSpec(np.dtype("float64"), (-1,))])
    assert unnamed.is_tensor and unnamed.input_names == [0] and not unnamed.has_input_names


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "at least one"),
        ([ColSpec("double", "a"), TensorSpec(np.dtype("float64"), (-1,), "t")], "only ColSpec"),
        ([ColSpec("double", "a"), ColSpec("double")], "name every input or none"),
        ([ColSpec("double", "a"), ColSpec("long", "a")], "unique"),
        ([ColSpec("double", required=False)], "Unnamed inputs cannot be optional"),
        (
            [TensorSpec(np.dtype("int8"), (-1,)), TensorSpec(np.dtype("int8"), (-1,))],
            "need a name each",
        ),
    ],
)
def test_invalid_schemas(inputs: list, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Schema(inputs)


def test_invalid_specs() -> None:
    with pytest.raises(InvalidInputError, match="Unsupported column type 'decimal'"):
        ColSpec("decimal", "x")
    with pytest.raises(TypeError, match="shape"):
        TensorSpec(np.dtype("float64"), (-2, 3))
    with pytest.raises(InvalidInputError, match="Unsupported parameter type 'binary'"):
        ParamSpec("b", "binary", b"x")
    with pytest.raises(InvalidInputError, match=r"shape must be None or \(-1,\)"):
        ParamSpec("m", "long", [[1]], (-1, -1))
    with pytest.raises(InvalidInputError, match="needs a default"):
        ParamSpec("k", "long", None)
    with pytest.raises(InvalidInputError, match="Parameter 'k' expects long, got str 'x'"):
        ParamSpec("k", "long", "x")
    with pytest.raises(InvalidInputError, match=r"Duplicate parameter names: \['k'\]"):
        ParamSchema([ParamSpec("k", "long", 1), ParamSpec("k", "long", 2)])


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("long", 3, 3),
        ("long", np.int32(3), 3),
        ("long", 4.0, 4),
        ("integer", 2**31 - 1, 2**31 - 1),
        ("double", 1, 1.0),
        ("float", np.float32(0.5), 0.5),
        ("boolean", np.bool_(True), True),
        ("string", "x", "x"),
        ("datetime", "2024-01-02T03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
        ("datetime", np.datetime64("2024-01-02"), dt.datetime(2024, 1, 2)),
        ("datetime", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2)),
    ],
)
def test_param_values_accepted(type_name: str, value: object, expected: object) -> None:
    got = ParamSpec("p", type_name, value).default
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("long", True),
        ("long", 1.5),
        ("long", "1"),
        ("integer", 2**31),
        ("double", True),
        ("double", "1.0"),
        ("boolean", 1),
        ("boolean", "true"),
        ("string", 1),
        ("datetime", 1700000000),
        ("datetime", "not a date"),
    ],
)
def test_param_values_refused(type_name: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=f"Parameter 'p' expects {type_name}, got"):
        ParamSpec("p", type_name, value)


# ---------------------------------------------------------------- inference


def inputs_json(data: object) -> list[dict]:
    return json.loads(infer_signature(data).to_dict()["inputs"])


def test_infer_from_dataframe() -> None:
    frame = pd.DataFrame(
        {
            "f64": [1.5, 2.0],
            "f32": np.array([1, 2], dtype="float32"),
            "i64": [1, 2],
            "i32": np.array([1, 2], dtype="int32"),
            "i8": np.array([1, 2], dtype="int8"),
            "u32": np.array([1, 2], dtype="uint32"),
            "flag": [True, False],
            "text": ["a", "b"],
            "text_object": pd.Series(["a", "b"], dtype=object),
            "raw": [b"a", b"b"],
            "when": pd.to_datetime(["2020-01-01", "2020-01-02"]),
            "when_object": [dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 2)],
            "nullable": pd.array([1, 2], dtype="Int64"),
        }
    )
    types = {c["name"]: c["type"] for c in inputs_json(frame)}
    assert types == {
        "f64": "double", "f32": "float", "i64": "long", "i32": "integer", "i8": "integer",
        "u32": "long", "flag": "boolean", "text": "string", "text_object": "string",
        "raw": "binary", "when": "datetime", "when_object": "datetime", "nullable": "long",
    }  # fmt: skip
    assert all(c["required"] for c in inputs_json(frame))


def test_infer_missing_values_make_columns_optional() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan], "s": ["a", None], "n": pd.array([1, None], dtype="Int64"), "k": [1, 2]})
    assert [(c["name"], c["type"], c["required"]) for c in inputs_json(frame)] == [
        ("x", "double", False),
        ("s", "string", False),
        ("n", "long", False),
        ("k", "long", True),
    ]


def test_infer_from_each_kind() -> None:
    assert inputs_json(pd.Series([1.0, 2.0], name="x")) == [{"type": "double", "required": True}]
    assert inputs_json(np.zeros((5, 4), dtype="float32")) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}
    ]
    assert inputs_json(np.array(["a", "bb"])) == [{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": [-1]}}]
    assert inputs_json([{"a": 1, "b": "x"}, {"a": 2}]) == [
        {"type": "long", "name": "a", "required": True},
        {"type": "string", "name": "b", "required": False},
    ]
    assert inputs_json({"a": [1.0, 2.0], "b": np.array([True, False])}) == [
        {"type": "double", "name": "a", "required": True},
        {"type": "boolean", "name": "b", "required": True},
    ]
    assert inputs_json({"a": 1.0, "b": "x"}) == [
        {"type": "double", "name": "a", "required": True},
        {"type": "string", "name": "b", "required": True},
    ]
    assert inputs_json({"img": np.zeros((2, 3, 3)), "mask": np.zeros((2, 3), dtype=bool)}) == [
        {"name": "img", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3, 3]}},
        {"name": "mask", "type": "tensor", "tensor-spec": {"dtype": "bool", "shape": [-1, 3]}},
    ]
    assert inputs_json(["a", "b"]) == [{"type": "string", "required": True}]
    assert inputs_json([1, 2]) == [{"type": "long", "required": True}]
    assert inputs_json("hello") == [{"type": "string", "required": True}]


def test_infer_outputs() -> None:
    frame = pd.DataFrame({"x": [1.0]})
    regressor = infer_signature(frame, np.array([0.5, 1.5]))
    assert regressor.to_dict()["outputs"] == '[{"type": "double", "required": true}]'
    classifier = infer_signature(frame, np.array(["yes", "no"], dtype=object))
    assert classifier.to_dict()["outputs"] == '[{"type": "string", "required": true}]'
    probabilities = infer_signature(frame, np.zeros((2, 3)))
    assert probabilities.outputs == Schema([TensorSpec(np.dtype("float64"), (-1, 3))])
    assert infer_signature(frame, pd.DataFrame({"p": [0.1]})).outputs == Schema([ColSpec("double", "p")])
    assert infer_signature(frame).outputs is None


def test_infer_params() -> None:
    signature = infer_signature(
        pd.DataFrame({"x": [1.0]}),
        params={
            "flag": True,
            "k": 3,
            "t": 0.5,
            "name": "x",
            "when": dt.datetime(2024, 1, 1),
            "stops": ["a", "b"],
            "weights": [1, 2.5],
        },
    )
    assert signature.params == ParamSchema(
        [
            ParamSpec("flag", "boolean", True),
            ParamSpec("k", "long", 3),
            ParamSpec("t", "double", 0.5),
            ParamSpec("name", "string", "x"),
            ParamSpec("when", "datetime", dt.datetime(2024, 1, 1)),
            ParamSpec("stops", "string", ["a", "b"], (-1,)),
            ParamSpec("weights", "double", [1.0, 2.5], (-1,)),
        ]
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": None}, "Cannot infer the type of parameter 'x' from NoneType None"),
        ({"x": b"raw"}, "parameter 'x' from bytes"),
        ({"x": {"a": 1}}, "parameter 'x' from dict"),
        ({"x": []}, r"parameter 'x' from \[\]"),
        ({"x": ["a", 1]}, r"Parameter 'x' mixes types \['long', 'string'\]"),
    ],
)
def test_infer_params_refused(params: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        infer_signature(pd.DataFrame({"x": [1.0]}), params=params)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (object(), TypeError, "Cannot infer a schema from object"),
        (pd.DataFrame(), InvalidInputError, "without columns"),
        ({}, InvalidInputError, "empty dict"),
        ([[1, 2], [3, 4]], InvalidInputError, "list of lists"),
        (pd.DataFrame({"m": [1, "a"]}), InvalidInputError, "column 'm': its values are mixed"),
        (pd.DataFrame({"u": np.array([1], dtype="uint64")}), InvalidInputError, "uint64"),
        (np.array([{"a": 1}]), InvalidInputError, "dtype object"),
        (np.array(1.0), InvalidInputError, "0-dimensional"),
        ({"a": [1, 2], "b": [1]}, InvalidInputError, "Cannot read the dict as columns"),
    ],
)
def test_infer_refused(data: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        infer_signature(data)


# ---------------------------------------------------------------- required and optional columns


def test_required_must_be_a_json_boolean() -> None:
    with pytest.raises(InvalidInputError, match="'required' must be true or false, got 'false'"):
        Schema.from_json('[{"type": "double", "name": "x", "required": "false"}]')


@pytest.mark.parametrize("example", [
    pd.DataFrame({"x": [1.0, None], "k": [1, 2]}),
    {"x": [1.0, None], "k": [1, 2]},
    [{"x": 1.0, "k": 1}, {"k": 2}],  # a record without the key
    [{"x": 1.0, "k": 1}, {"x": None, "k": 2}],
], ids=["frame", "dict of lists", "left-out key", "null"])
def test_a_column_with_missing_values_in_the_example_is_optional(example: object) -> None:
    assert [(c["name"], c["required"]) for c in inputs_json(example)] == [("x", False), ("k", True)]


@pytest.mark.parametrize("example", [pd.Series([1.0, np.nan]), ["a", None], [1.0, float("nan")]])
def test_an_unnamed_input_column_with_missing_values_is_refused(example: object) -> None:
    with pytest.raises(InvalidInputError, match="unnamed column with missing values: an unnamed column cannot be"):
        infer_signature(example)


def test_outputs_with_missing_values_are_inferred() -> None:
    signature = infer_signature(pd.DataFrame({"x": [1.0, 2.0]}), np.array([0.5, np.nan]))
    assert signature.to_dict()["outputs"] == '[{"type": "double", "required": true}]'


MLFLOW_REQUIRED = r'''
import json, sys
from mlflow.models import infer_signature
from mlflow.models.signature import ModelSignature
frame = read_frame(sys.argv[1])
theirs = infer_signature(frame).to_dict()
ours = ModelSignature.from_dict(json.loads(open(sys.argv[2]).read()))
print(json.dumps({"inferred": theirs, "read": [[c.name, c.required] for c in ours.inputs.inputs]}))
'''


@pytest.mark.slow
def test_mlflow_reads_and_writes_required_like_modelpack(tmp_path) -> None:
    from mlflow_env import mlflow_python
    from mlflow_interop import run_mlflow_script, write_frame

    frame = pd.DataFrame({"x": [1.0, np.nan], "s": ["a", None], "k": [1, 2]})
    ours = infer_signature(frame)
    (tmp_path / "ours.json").write_text(json.dumps(ours.to_dict()))
    printed = run_mlflow_script(mlflow_python([]), MLFLOW_REQUIRED, str(write_frame(frame, tmp_path / "f.json")),
                                str(tmp_path / "ours.json"), cwd=tmp_path)
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["read"] == [["x", False], ["s", False], ["k", True]]  # MLflow reads modelpack's optional columns
    theirs = ModelSignature.from_dict(result["inferred"])  # and modelpack reads MLflow's, to the same signature
    assert theirs.inputs == ours.inputs
    assert [c.required for c in theirs.inputs] == [False, False, True]
