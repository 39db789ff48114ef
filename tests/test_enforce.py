"""Schema enforcement: the casting table, column handling, tensors, params, messages."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from modelpack.enforce import SchemaEnforcer
from modelpack.errors import InvalidInputError
from modelpack.signature import (
    ColSpec,
    ModelSignature,
    ParamSchema,
    ParamSpec,
    Schema,
    TensorSpec,
)

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def columns(*specs: ColSpec, params: ParamSchema | None = None) -> SchemaEnforcer:
    return SchemaEnforcer(ModelSignature(Schema(list(specs)), params=params))


def tensors(*specs: TensorSpec) -> SchemaEnforcer:
    return SchemaEnforcer(ModelSignature(Schema(list(specs))))


# ---------------------------------------------------------------- the casting table

RECEIVED = {
    "bool": lambda: pd.Series([True, False]),
    "int8": lambda: pd.Series([1, 2], dtype="int8"),
    "int32": lambda: pd.Series([1, 2], dtype="int32"),
    "int64": lambda: pd.Series([1, 2], dtype="int64"),
    "int64 > int32": lambda: pd.Series([1, 2**40], dtype="int64"),
    "uint64 > int64": lambda: pd.Series([1, 2**63], dtype="uint64"),
    "float32 fraction": lambda: pd.Series([1.5, 2.0], dtype="float32"),
    "float64 whole": lambda: pd.Series([1.0, 2.0]),
    "float64 fraction": lambda: pd.Series([1.5, 2.0]),
    "float64 NaN": lambda: pd.Series([1.0, np.nan]),
    "float64 > float32": lambda: pd.Series([1e300, 1.0]),
    "str base64": lambda: pd.Series(["YQ==", "Yg=="]),
    "str ISO date": lambda: pd.Series(["2020-01-01", "2021-06-30T12:00:00"]),
    "str number": lambda: pd.Series(["1.5", "2"]),
    "object str": lambda: pd.Series(["a", None], dtype=object),
    "object bytes": lambda: pd.Series([b"a", b"b"], dtype=object),
    "object int": lambda: pd.Series([1, 2], dtype=object),
    "object int+float+None": lambda: pd.Series([1, 2.5, None], dtype=object),
    "object bool": lambda: pd.Series([True, False], dtype=object),
    "object datetime": lambda: pd.Series([dt.datetime(2020, 1, 1), None], dtype=object),
    "Int64": lambda: pd.Series([1, 2], dtype="Int64"),
    "Int64 with NA": lambda: pd.Series([1, None], dtype="Int64"),
    "boolean (nullable)": lambda: pd.Series([True, False], dtype="boolean"),
    "datetime64": lambda: pd.Series(pd.to_datetime(["2020-01-01", "2021-01-01"])),
}
EXPECTED = ["boolean", "integer", "long", "float", "double", "string", "binary", "datetime"]
# What each (received, expected) pair gives in an optional column (required=False: missing values allowed):
# the result's dtype, or "x" for a refusal. "same" keeps the received column unchanged; "M" is any datetime64
# dtype. A required column gives the same for the rows without missing values, and refuses the others
# (test_required_columns_refuse_missing_values).
TABLE = {
    # columns: boolean, integer, long, float, double, string, binary, datetime
    "bool":                  ("bool", "x",     "x",     "x",       "x",       "x",    "x",    "x"),
    "int8":                  ("x", "int32", "int64", "float32", "float64", "x",    "x",    "x"),
    "int32":                 ("x", "same",  "int64", "float32", "float64", "x",    "x",    "x"),
    "int64":                 ("x", "int32", "same",  "float32", "float64", "x",    "x",    "x"),
    "int64 > int32":         ("x", "x",     "same",  "float32", "float64", "x",    "x",    "x"),
    "uint64 > int64":        ("x", "x",     "x",     "float32", "float64", "x",    "x",    "x"),
    "float32 fraction":      ("x", "x",     "x",     "same",    "float64", "x",    "x",    "x"),
    "float64 whole":         ("x", "int32", "int64", "float32", "same",    "x",    "x",    "x"),
    "float64 fraction":      ("x", "x",     "x",     "float32", "same",    "x",    "x",    "x"),
    "float64 NaN":           ("x", "Int32", "Int64", "float32", "same",    "x",    "x",    "x"),
    "float64 > float32":     ("x", "x",     "x",     "x",       "same",    "x",    "x",    "x"),
    "str base64":            ("x", "x",     "x",     "x",       "x",       "same", "object", "x"),
    "str ISO date":          ("x", "x",     "x",     "x",       "x",       "same", "x",    "M"),
    "str number":            ("x", "x",     "x",     "x",       "x",       "same", "x",    "x"),
    "object str":            ("x", "x",     "x",     "x",       "x",       "same", "x",    "x"),
    "object bytes":          ("x", "x",     "x",     "x",       "x",       "x",    "same", "x"),
    "object int":            ("x", "int32", "int64", "float32", "float64", "x",    "x",    "x"),
    "object int+float+None": ("x", "x",     "x",     "float32", "float64", "x",    "x",    "x"),
    "object bool":           ("bool", "x",  "x",     "x",       "x",       "x",    "x",    "x"),
    "object datetime":       ("x", "x",     "x",     "x",       "x",       "x",    "x",    "M"),
    "Int64":                 ("x", "int32", "int64", "float32", "float64", "x",    "x",    "x"),
    "Int64 with NA":         ("x", "Int32", "Int64", "float32", "float64", "x",    "x",    "x"),
    "boolean (nullable)":    ("bool", "x",  "x",     "x",       "x",       "x",    "x",    "x"),
    "datetime64":            ("x", "x",     "x",     "x",       "x",       "x",    "x",    "same"),
}  # fmt: skip
CASES = [
    pytest.param(received, expected, TABLE[received][i], id=f"{received}->{expected}")
    for received in RECEIVED
    for i, expected in enumerate(EXPECTED)
]


def test_table_covers_every_pair() -> None:
    assert set(TABLE) == set(RECEIVED)
    assert all(len(row) == len(EXPECTED) for row in TABLE.values())


@pytest.mark.parametrize(("received", "expected", "outcome"), CASES)
def test_casting_table(received: str, expected: str, outcome: str) -> None:
    enforcer = columns(ColSpec(expected, "c", required=False))
    frame = pd.DataFrame({"c": RECEIVED[received]()})
    if outcome == "x":
        with pytest.raises(InvalidInputError) as info:
            enforcer.inputs(frame)
        message = str(info.value)
        assert "column 'c'" in message
        assert f"expected {expected}" in message
        assert f"received {frame['c'].dtype}" in message
        return
    result = enforcer.inputs(frame)["c"]
    if outcome == "same":
        assert result.dtype == frame["c"].dtype
        assert result.tolist() == frame["c"].tolist() or result.isna().equals(frame["c"].isna())
    elif outcome == "M":
        assert result.dtype.kind == "M"
    else:
        assert str(result.dtype) == outcome
    if expected in ("integer", "long", "float", "double") and received != "uint64 > int64":
        source = pd.to_numeric(frame["c"].astype(object), errors="coerce").astype("float64")
        np.testing.assert_allclose(result.astype("float64"), source, rtol=1e-6)


def test_binary_base64_is_decoded() -> None:
    result = columns(ColSpec("binary", "c", required=False)).inputs(pd.DataFrame({"c": ["aGk=", None]}))
    assert result["c"].tolist()[0] == b"hi"
    assert result["c"].isna().tolist() == [False, True]


def test_iso_datetimes_are_parsed() -> None:
    result = columns(ColSpec("datetime", "c")).inputs(pd.DataFrame({"c": ["2021-06-30T12:00:00"]}))
    assert result["c"].iloc[0] == pd.Timestamp(2021, 6, 30, 12)


# ---------------------------------------------------------------- columns


def diabetes() -> SchemaEnforcer:
    return columns(*(ColSpec("double", name) for name in COLUMNS))


def test_matching_frame_is_returned_untouched() -> None:
    frame = pd.DataFrame([[0.1] * 10], columns=COLUMNS)
    assert diabetes().inputs(frame) is frame


def test_missing_required_columns_are_all_named() -> None:
    frame = pd.DataFrame([[0.1] * 8], columns=[c for c in COLUMNS if c not in ("bmi", "s1")])
    with pytest.raises(InvalidInputError) as info:
        diabetes().inputs(frame)
    assert str(info.value) == (
        f"Model is missing required input columns ['bmi', 's1']. Expected columns: {COLUMNS};"
        f" received: {frame.columns.tolist()}"
    )


def test_type_error_message() -> None:
    frame = pd.DataFrame([[0.1] * 10], columns=COLUMNS).astype({"bmi": object})
    frame.loc[0, "bmi"] = "abc"
    with pytest.raises(InvalidInputError) as info:
        diabetes().inputs(frame)
    assert str(info.value) == (
        "Incompatible input for column 'bmi': expected double, received object ('abc' is not a number)"
    )


@pytest.mark.parametrize(
    ("values", "expected", "reason"),
    [
        ([2.5], "long", "2.5 is not a whole number"),
        ([3e9], "integer", "3000000000.0 is out of range for int32"),
        ([True], "double", "booleans and numbers do not convert into each other"),
        ([1e300], "float", "1e+300 is out of range for float32"),
    ],
)
def test_refusal_reasons(values: list, expected: str, reason: str) -> None:
    frame = pd.DataFrame({"x": values})
    with pytest.raises(InvalidInputError) as info:
        columns(ColSpec(expected, "x")).inputs(frame)
    assert str(info.value) == (
        f"Incompatible input for column 'x': expected {expected}, received {frame['x'].dtype} ({reason})"
    )


def test_ints_become_doubles_through_the_block_path() -> None:
    frame = pd.DataFrame([[1] * 10], columns=COLUMNS)
    result = diabetes().inputs(frame)
    assert result.dtypes.tolist() == [np.dtype("float64")] * 10
    assert result.to_numpy().tolist() == [[1.0] * 10]


def test_extra_columns_dropped_and_order_restored() -> None:
    frame = pd.DataFrame([[float(i) for i in range(10)]], columns=COLUMNS)
    shuffled = frame[COLUMNS[::-1]].assign(extra="x")
    result = diabetes().inputs(shuffled)
    assert result.columns.tolist() == COLUMNS
    assert result.to_numpy().tolist() == frame.to_numpy().tolist()


def test_mixed_types_reordered() -> None:
    enforcer = columns(ColSpec("string", "name"), ColSpec("long", "n"))
    result = enforcer.inputs(pd.DataFrame({"n": [1.0], "name": ["a"], "junk": [0]}))
    assert result.columns.tolist() == ["name", "n"]
    assert result["n"].dtype == np.int64


def test_missing_optional_columns_are_filled_with_missing_values() -> None:
    enforcer = columns(
        ColSpec("double", "a"),
        ColSpec("double", "b", required=False),
        ColSpec("long", "c", required=False),
        ColSpec("string", "d", required=False),
        ColSpec("datetime", "e", required=False),
    )
    result = enforcer.inputs(pd.DataFrame({"a": [1.0, 2.0]}))
    assert result.columns.tolist() == ["a", "b", "c", "d", "e"]
    assert result[["b", "c", "d", "e"]].isna().all().all()
    assert result["b"].dtype == np.float64 and str(result["c"].dtype) == "Int64"
    assert result["e"].dtype.kind == "M"


def test_integer_column_labels_match_string_names() -> None:
    enforcer = columns(ColSpec("double", "0"), ColSpec("double", "1"))
    result = enforcer.inputs(pd.DataFrame(np.ones((2, 2))))
    assert result.columns.tolist() == ["0", "1"]


def test_duplicate_columns_refused() -> None:
    frame = pd.DataFrame([[1.0, "x"]], columns=["a", "a"])
    with pytest.raises(InvalidInputError, match=r"duplicate columns \['a'\]"):
        columns(ColSpec("double", "a")).inputs(frame)


def test_unnamed_single_column_accepts_one_column() -> None:
    enforcer = columns(ColSpec("string"))
    frame = pd.DataFrame({"text": ["hello"]})
    assert enforcer.inputs(frame) is frame
    assert enforcer.inputs(["a", "b"]).iloc[:, 0].tolist() == ["a", "b"]
    assert enforcer.inputs("one").iloc[0, 0] == "one"
    with pytest.raises(InvalidInputError, match=r"expects 1 unnamed column\(s\), received 2"):
        enforcer.inputs(pd.DataFrame({"a": ["x"], "b": ["y"]}))


def test_unnamed_columns_are_cast_by_position() -> None:
    result = columns(ColSpec("double"), ColSpec("long")).inputs(pd.DataFrame([[1, 2.0]]))
    assert result.dtypes.tolist() == [np.dtype("float64"), np.dtype("int64")]
    with pytest.raises(InvalidInputError, match="column 1: expected long"):
        columns(ColSpec("double"), ColSpec("long")).inputs(pd.DataFrame([[1, 2.5]]))


@pytest.mark.parametrize(
    "data",
    [
        {"a": [1.0, 2.0], "b": ["x", "y"]},
        [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}],
        {"a": 1.0, "b": "x"},
    ],
    ids=["dict of lists", "records", "one record"],
)
def test_other_tabular_inputs(data: object) -> None:
    result = columns(ColSpec("double", "a"), ColSpec("string", "b")).inputs(data)
    assert result.columns.tolist() == ["a", "b"] and result["a"].dtype == np.float64


def test_numpy_array_for_named_columns() -> None:
    result = columns(ColSpec("double", "a"), ColSpec("double", "b")).inputs(np.ones((3, 2)))
    assert result.columns.tolist() == ["a", "b"] and len(result) == 3


def test_unsupported_input_kind() -> None:
    with pytest.raises(InvalidInputError, match="received int"):
        columns(ColSpec("double", "a")).inputs(3)


def test_no_signature_passes_everything_through() -> None:
    enforcer = SchemaEnforcer(None)
    frame = pd.DataFrame({"anything": ["goes"]})
    assert enforcer.inputs(frame) is frame
    assert enforcer.params({"k": object()}) is not None
    assert enforcer.params(None) is None


def test_signature_without_inputs_passes_inputs_through() -> None:
    enforcer = SchemaEnforcer(ModelSignature(None, Schema([ColSpec("double")])))
    frame = pd.DataFrame({"a": ["x"]})
    assert enforcer.inputs(frame) is frame


# ---------------------------------------------------------------- tensors


@pytest.mark.parametrize(
    ("shape", "expected", "ok"),
    [
        ((3, 4), (-1, 4), True),
        ((1, 4), (-1, 4), True),
        ((3, 5), (-1, 4), False),
        ((3,), (-1, 4), False),
        ((2, 3, 4), (-1, 3, 4), True),
        ((2, 3, 4), (-1, -1, 4), True),
        ((2, 3, 4), (2, -1, 5), False),
        ((5,), (-1,), True),
    ],
)
def test_tensor_shapes(shape: tuple, expected: tuple, ok: bool) -> None:
    enforcer = tensors(TensorSpec(np.dtype("float64"), expected))
    data = np.zeros(shape)
    if ok:
        assert enforcer.inputs(data) is data
    else:
        with pytest.raises(InvalidInputError) as info:
            enforcer.inputs(data)
        assert str(info.value) == f"Shape of input {shape} does not match expected shape {expected}"


@pytest.mark.parametrize(
    ("source", "values", "target", "ok"),
    [
        ("float32", [1.5], "float64", True),
        ("int32", [1], "int64", True),
        ("int64", [1], "float64", True),
        ("float64", [1.5], "float32", True),  # JSON has no float32: see docs/schema.md
        ("float64", [2.0], "int64", True),
        ("float64", [2.5], "int64", False),
        ("int64", [2**40], "int32", False),
        ("int64", [7], "int32", True),
        ("bool", [True], "int64", False),
        ("<U3", ["abc"], "str", True),
        ("float64", [1.0], "str", False),
        ("str", ["a"], "float64", False),
    ],
)
def test_tensor_dtypes(source: str, values: list, target: str, ok: bool) -> None:
    enforcer = tensors(TensorSpec(np.dtype(target), (-1,)))
    data = np.array(values, dtype=source)
    if ok:
        result = enforcer.inputs(data)
        assert result.dtype.kind == np.dtype(target).kind
        assert result.tolist() == pytest.approx(data.tolist()) if target != "str" else True
    else:
        with pytest.raises(InvalidInputError, match=f"expected dtype .*, received {data.dtype}"):
            enforcer.inputs(data)


def test_dataframe_to_single_tensor() -> None:
    frame = pd.DataFrame(np.ones((2, 4)), columns=list("abcd"))
    result = tensors(TensorSpec(np.dtype("float32"), (-1, 4))).inputs(frame)
    assert isinstance(result, np.ndarray) and result.dtype == np.float32 and result.shape == (2, 4)


def test_named_tensors() -> None:
    enforcer = tensors(TensorSpec(np.dtype("float64"), (-1, 2), "x"), TensorSpec(np.dtype("int64"), (-1,), "y"))
    result = enforcer.inputs({"x": [[1.0, 2.0]], "y": np.array([3], dtype="int32"), "z": 0})
    assert set(result) == {"x", "y"} and result["y"].dtype == np.int64
    with pytest.raises(InvalidInputError) as info:
        enforcer.inputs({"x": np.ones((1, 2))})
    assert str(info.value) == (
        "Model is missing required input tensors ['y']. Expected tensors: ['x', 'y']; received: ['x']"
    )
    with pytest.raises(InvalidInputError, match="Shape of input 'x' \\(1, 3\\)"):
        enforcer.inputs({"x": np.ones((1, 3)), "y": np.ones(1, dtype="int64")})
    with pytest.raises(InvalidInputError, match="as a mapping of name to array"):
        enforcer.inputs(np.ones((1, 2)))


def test_ragged_tensor_refused() -> None:
    with pytest.raises(InvalidInputError, match="not a rectangular array"):
        tensors(TensorSpec(np.dtype("float64"), (-1, -1))).inputs([[1.0], [1.0, 2.0]])


# ---------------------------------------------------------------- params


def with_params() -> SchemaEnforcer:
    return columns(
        ColSpec("double", "a"),
        params=ParamSchema(
            [
                ParamSpec("k", "long", 3),
                ParamSpec("temperature", "double", 0.5),
                ParamSpec("stop", "string", ["."], (-1,)),
                ParamSpec("since", "datetime", dt.datetime(2020, 1, 1)),
            ]
        ),
    )


def test_params_defaults_filled_in() -> None:
    defaults = {"k": 3, "temperature": 0.5, "stop": ["."], "since": dt.datetime(2020, 1, 1)}
    assert with_params().params(None) == defaults
    assert with_params().params({"k": 5}) == {**defaults, "k": 5}


def test_params_are_converted() -> None:
    got = with_params().params({"temperature": 1, "stop": ["a", "b"], "since": "2021-02-03"})
    assert got["temperature"] == 1.0 and isinstance(got["temperature"], float)
    assert got["stop"] == ["a", "b"] and got["since"] == dt.datetime(2021, 2, 3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": "abc"}, "Parameter 'k' expects long, got str 'abc'"),
        ({"k": 2.5}, "Parameter 'k' expects long, got float 2.5"),
        ({"k": True}, "Parameter 'k' expects long, got bool True"),
        ({"k": [1]}, "Parameter 'k' expects long, got list [1]"),
        ({"temperature": "hot"}, "Parameter 'temperature' expects double, got str 'hot'"),
        ({"stop": "."}, "Parameter 'stop' expects a list of string, got str '.'"),
        ({"stop": ["a", 1]}, "Parameter 'stop' expects a list of string, got int 1 at index 1"),
        (
            {"since": "yesterday"},
            "Parameter 'since' expects datetime, got str 'yesterday' (not an ISO 8601 datetime)",
        ),
        (
            {"top_p": 1, "seed": 2},
            "Unknown parameters ['top_p', 'seed']. Known parameters: ['k', 'temperature', 'stop', 'since']",
        ),
        ("k=3", "Parameters must be a mapping of name to value, received str"),
    ],
)
def test_params_refused(params: object, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        with_params().params(params)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_params_without_param_schema() -> None:
    enforcer = columns(ColSpec("double", "a"))
    assert enforcer.params(None) is None
    assert enforcer.params({}) == {}
    with pytest.raises(InvalidInputError) as info:
        enforcer.params({"k": 1})
    assert str(info.value) == ("This model accepts no parameters (its signature declares none); received ['k']")


# ---------------------------------------------------------------- missing and non-finite values

MISSING = "the model's signature needs a value in every row of it"
# Each kind of column a client can send with a missing value in row 1, and the types it fits.
WITH_MISSING = {
    "float64 NaN": (lambda: pd.Series([1.0, np.nan, 2.0]), ["integer", "long", "float", "double"]),
    "object None": (lambda: pd.Series([1, None, 2], dtype=object), ["integer", "long", "float", "double"]),
    "Int64 NA": (lambda: pd.Series([1, None, 2], dtype="Int64"), ["integer", "long", "float", "double"]),
    "boolean NA": (lambda: pd.Series([True, None, False], dtype="boolean"), ["boolean"]),
    "object bool None": (lambda: pd.Series([True, None, False], dtype=object), ["boolean"]),
    "str None": (lambda: pd.Series(["YQ==", None, "Yg=="]), ["string", "binary"]),
    "datetime NaT": (lambda: pd.Series(pd.to_datetime(["2020-01-01", None, "2021-01-01"])), ["datetime"]),
}
MISSING_CASES = [pytest.param(kind, type_name, id=f"{kind}->{type_name}")
                 for kind, (_, types) in WITH_MISSING.items() for type_name in types]


@pytest.mark.parametrize(("kind", "type_name"), MISSING_CASES)
def test_required_columns_refuse_missing_values(kind: str, type_name: str) -> None:
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "c": WITH_MISSING[kind][0]()})
    with pytest.raises(InvalidInputError) as info:
        columns(ColSpec("double", "a"), ColSpec(type_name, "c")).inputs(frame)
    assert str(info.value) == (
        f"Required column 'c' ({type_name}) has no value at row 1; {MISSING} (null, NaN, NA, an empty CSV field"
        " and a left-out key are missing values)"
    )


@pytest.mark.parametrize(("kind", "type_name"), MISSING_CASES)
def test_optional_columns_keep_missing_values(kind: str, type_name: str) -> None:
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "c": WITH_MISSING[kind][0]()})
    result = columns(ColSpec("double", "a"), ColSpec(type_name, "c", required=False)).inputs(frame)["c"]
    assert result.isna().tolist() == [False, True, False]
    expected = {"integer": "Int32", "long": "Int64", "float": "float32", "double": "float64", "boolean": "boolean"}
    if type_name in expected:  # numpy has no missing int or bool: pandas' nullable types carry them
        assert str(result.dtype) == expected[type_name]
    if type_name in ("integer", "long", "float", "double"):
        assert result.astype("float64").tolist()[::2] == [1.0, 2.0]
    elif type_name == "boolean":
        assert result.tolist()[::2] == [True, False]
    elif type_name == "binary":
        assert result.tolist()[::2] == [b"a", b"b"]


def test_optional_integer_column_still_refuses_fractions() -> None:
    frame = pd.DataFrame({"c": [1.0, np.nan, 2.5]})
    with pytest.raises(InvalidInputError, match=r"column 'c': expected long, received float64 \(2.5 is not a whole"):
        columns(ColSpec("long", "c", required=False)).inputs(frame)


def frame_with(value: float, row: int = 2, column: str = "bmi", rows: int = 4) -> pd.DataFrame:
    frame = pd.DataFrame(np.full((rows, 10), 0.25), columns=COLUMNS)
    frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize("make", [
    lambda f: f,  # matching dtypes: the fast path
    lambda f: f.astype({"age": "float32"}),  # the numeric block path
    lambda f: f.assign(extra="x")[["extra", *COLUMNS[::-1]]],  # shuffled, extra column: the block path
    lambda f: f.astype(object),  # object columns: column by column
], ids=["fast", "block", "shuffled", "columns"])
def test_every_path_refuses_missing_and_infinite_doubles(make) -> None:
    for value, message in [
        (np.nan, f"Required column 'bmi' (double) has no value at row 2; {MISSING}"),
        (np.inf, "Column 'bmi' holds inf at row 2; expected a finite double (a number too large for a double, such"
                 " as 1e400, reads as infinity)"),
        (-np.inf, "Column 'bmi' holds -inf at row 2; expected a finite double"),
    ]:
        with pytest.raises(InvalidInputError) as info:
            diabetes().inputs(make(frame_with(value)))
        assert str(info.value).startswith(message)


def test_rows_are_counted_and_index_labels_named() -> None:
    frame = frame_with(np.nan, row=1)
    frame.loc[3, "bmi"] = np.nan
    with pytest.raises(InvalidInputError, match=r"'bmi' \(double\) has no value at row 1 \(and 1 more row\(s\)\);"):
        diabetes().inputs(frame)
    frame.index = ["w", "x", "y", "z"]
    with pytest.raises(InvalidInputError, match=r"at row 1 \(index 'x'\) \(and 1 more row\(s\)\)"):
        diabetes().inputs(frame)


def test_optional_double_takes_nan_never_infinity() -> None:
    enforcer = columns(ColSpec("double", "a"), ColSpec("double", "b", required=False))
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 3.0]})
    assert enforcer.inputs(frame) is frame  # the fast path, and NaN is allowed here
    with pytest.raises(InvalidInputError, match="Column 'b' holds inf at row 1"):
        enforcer.inputs(frame.assign(b=[np.nan, np.inf]))
    with pytest.raises(InvalidInputError, match="Required column 'a' .* at row 0"):
        enforcer.inputs(frame.assign(a=[np.nan, 1.0]))


def test_float_column_refuses_infinity() -> None:
    with pytest.raises(InvalidInputError, match="Column 'BMI' holds inf at row 0; expected a finite float"):
        columns(ColSpec("float", "BMI")).inputs(pd.DataFrame({"BMI": [np.inf]}))


@pytest.mark.parametrize("type_name", ["string", "datetime"])
def test_fast_path_checks_required_text_and_datetimes(type_name: str) -> None:
    values = ["a", None] if type_name == "string" else pd.to_datetime(["2020-01-01", None])
    frame = pd.DataFrame({"c": values})
    if type_name == "string":
        frame["c"] = frame["c"].astype(pd.Series(["a"]).dtype)  # the dtype pandas gives str: the fast path
    with pytest.raises(InvalidInputError, match=f"Required column 'c' \\({type_name}\\) has no value at row 1"):
        columns(ColSpec(type_name, "c")).inputs(frame)
    result = columns(ColSpec(type_name, "c", required=False)).inputs(frame)
    assert result["c"].isna().tolist() == [False, True]


def test_unnamed_columns_refuse_missing_values_by_position() -> None:
    with pytest.raises(InvalidInputError, match=r"Required column 1 \(long\) has no value at row 0"):
        columns(ColSpec("double"), ColSpec("long")).inputs(pd.DataFrame([[1.0, None]], dtype=object))


def test_tensors_keep_nan() -> None:
    data = np.array([[np.nan, 1.0]])
    assert tensors(TensorSpec(np.dtype("float64"), (-1, 2))).inputs(data) is data


# ---------------------------------------------------------------- what messages quote


def test_messages_cap_what_they_quote() -> None:
    huge = "x" * 1_000_000
    with pytest.raises(InvalidInputError) as info:
        diabetes().inputs(pd.DataFrame({huge: [1.0], **{f"c{i}": [1.0] for i in range(100)}}))
    message = str(info.value)
    assert len(message) < 2000
    assert "'xxxxxxxxxx" in message and "(1000002 characters)" in message and "and 89 more" in message
    with pytest.raises(InvalidInputError) as info:
        with_params().params({huge: 1})
    assert len(str(info.value)) < 400 and "(1000002 characters)" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        columns(ColSpec("long", "n")).inputs(pd.DataFrame({"n": [huge]}))
    assert len(str(info.value)) < 200
