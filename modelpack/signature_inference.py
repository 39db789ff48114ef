"""SIGNATURE INFERENCE: a signature from example input, output and parameter values.

Column types follow what pandas infers for each column (object columns by their values);
arrays become tensor specs; dicts of arrays, named tensors. A named input column with a missing
value (None, NaN, NA, NaT, or a key left out of a record) in the example is optional
(``required: false``), as MLflow infers it; the others are required, so they must hold a value in
every row sent. An unnamed column cannot be optional (MLflow's rule), so an unnamed input example
with missing values is refused. pandas is imported only here, when a signature is inferred.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from modelpack.errors import InvalidInputError
from modelpack.signature import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec, show_value

_SCALARS = (str, bytes, bool, int, float, dt.date, np.generic)
_OBJECT_KINDS = {
    "string": "string",
    "bytes": "binary",
    "boolean": "boolean",
    "integer": "long",
    "floating": "double",
    "mixed-integer-float": "double",
    "datetime": "datetime",
    "datetime64": "datetime",
    "date": "datetime",
}


def infer_signature(model_input: Any, model_output: Any = None, params: dict[str, Any] | None = None) -> ModelSignature:
    """Build a signature from example input, optional example output and parameter defaults."""
    inputs = _infer_schema(model_input, output=False)
    outputs = None if model_output is None else _infer_schema(model_output, output=True)
    return ModelSignature(inputs, outputs, infer_param_schema(params) if params else None)


def infer_param_schema(params: dict[str, Any]) -> ParamSchema:
    """Parameter specs whose types come from the default values (lists give shape (-1,))."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    specs = []
    for name, value in params.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            if len(value) == 0:
                raise InvalidInputError(f"Cannot infer the type of parameter {name!r} from []")
            kinds = {_param_type(name, v) for v in value}
            if kinds == {"long", "double"}:
                kinds = {"double"}
            if len(kinds) != 1:
                raise InvalidInputError(f"Parameter {name!r} mixes types {sorted(kinds)}")
            specs.append(ParamSpec(str(name), kinds.pop(), list(value), (-1,)))
        else:
            specs.append(ParamSpec(str(name), _param_type(name, value), value))
    return ParamSchema(specs)


def _param_type(name: str, value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, np.integer)):
        return "long"
    if isinstance(value, (float, np.floating)):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (dt.date, np.datetime64)):
        return "datetime"
    raise InvalidInputError(
        f"Cannot infer the type of parameter {name!r} from {type(value).__name__} {show_value(value)};"
        " supported: bool, int, float, str, datetime, or a list of one of them"
    )


def _infer_schema(data: Any, output: bool) -> Schema:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return _frame_schema(data)
    if isinstance(data, pd.Series):
        return _unnamed_column(data, output)
    if isinstance(data, np.ndarray):
        if output and data.ndim == 1:  # a regressor's or classifier's predictions
            return _unnamed_column(pd.Series(data), output)
        return Schema([_tensor_spec(data, None)])
    if isinstance(data, dict):
        return _dict_schema(data)
    if isinstance(data, (list, tuple)) and data:
        if all(isinstance(x, dict) for x in data):
            return _frame_schema(pd.DataFrame(list(data)))
        if all(isinstance(x, _SCALARS) or x is None for x in data):
            return _unnamed_column(pd.Series(list(data)), output)
        raise InvalidInputError("Cannot infer a schema from a list of lists; pass a numpy array or a DataFrame")
    if isinstance(data, _SCALARS):
        return _unnamed_column(pd.Series([data]), output)
    raise TypeError(
        f"Cannot infer a schema from {type(data).__name__}; supported: pandas DataFrame or Series,"
        " numpy array, dict of columns or arrays, list of records or scalars, a scalar"
    )


def _unnamed_column(series: Any, output: bool) -> Schema:
    """One unnamed column: always required, so an input example with missing values cannot describe it."""
    type_name, has_nulls = _column_type(series, series.name or 0)
    if has_nulls and not output:
        raise InvalidInputError(
            "Cannot infer a signature from an unnamed column with missing values: an unnamed column cannot be "
            "optional (MLflow's rule), and a required one refuses missing values. Name the column (a DataFrame "
            "or a dict of columns), or give an example without missing values"
        )
    return Schema([ColSpec(type_name)])


def _dict_schema(data: dict[Any, Any]) -> Schema:
    import pandas as pd

    if not data:
        raise InvalidInputError("Cannot infer a schema from an empty dict")
    values = list(data.values())
    if any(isinstance(v, np.ndarray) and v.ndim > 1 for v in values):
        return Schema([_tensor_spec(np.asarray(v), str(k)) for k, v in data.items()])
    if all(isinstance(v, _SCALARS) or v is None for v in values):
        return _frame_schema(pd.DataFrame([data]))
    try:
        frame = pd.DataFrame(data)
    except ValueError as exc:
        raise InvalidInputError(f"Cannot read the dict as columns: {exc}") from None
    return _frame_schema(frame)


def _frame_schema(frame: Any) -> Schema:
    if frame.shape[1] == 0:
        raise InvalidInputError("Cannot infer a schema from a DataFrame without columns")
    specs = []
    for label in frame.columns:
        type_name, has_nulls = _column_type(frame[label], label)
        specs.append(ColSpec(type_name, str(label), required=not has_nulls))
    return Schema(specs)


def _column_type(series: Any, label: Any) -> tuple[str, bool]:
    """The column type of a pandas Series, and whether it holds missing values."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        type_name = "string"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        type_name = "datetime"
    elif isinstance(dtype, np.dtype) and dtype.kind == "O":
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind not in _OBJECT_KINDS:
            raise InvalidInputError(
                f"Cannot infer a type for column {label!r}: its values are {kind}"
                " (supported: str, bytes, bool, int, float, datetime)"
            )
        type_name = _OBJECT_KINDS[kind]
    else:
        numpy_dtype = getattr(dtype, "numpy_dtype", dtype)  # pandas nullable Int64, boolean...
        type_name = _numeric_type(numpy_dtype, label)
    return type_name, bool(series.isna().any())


def _numeric_type(dtype: Any, label: Any) -> str:
    kind, size = getattr(dtype, "kind", "?"), getattr(dtype, "itemsize", 0)
    if kind == "b":
        return "boolean"
    if kind == "i" or (kind == "u" and size < 8):
        return "integer" if (size <= 4 if kind == "i" else size <= 2) else "long"
    if kind == "f" and size <= 8:
        return "float" if size <= 4 else "double"
    raise InvalidInputError(f"Cannot infer a type for column {label!r} of dtype {dtype}")


def _tensor_spec(array: np.ndarray, name: str | None) -> TensorSpec:
    if array.ndim == 0:
        raise InvalidInputError("Cannot infer a tensor spec from a 0-dimensional array")
    dtype = array.dtype
    if dtype.kind in "US":
        dtype = np.dtype(str if dtype.kind == "U" else bytes)
    elif dtype.kind not in "biufcM":
        raise InvalidInputError(
            f"Cannot infer a tensor spec from an array of dtype {dtype}; convert it to a typed"
            " array (numbers, str, bytes, bool, datetime64)"
        )
    return TensorSpec(dtype, (-1, *array.shape[1:]), name)


__all__ = ["infer_param_schema", "infer_signature"]
