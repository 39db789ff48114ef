"""A model's output as the values of the UDF's result type.

On the driver the Spark type is compiled into a :class:`ResultPlan` (plain data, pickled into the UDF);
on the executors :func:`output_columns` splits whatever the model returned (array, Series, DataFrame, list,
dict of columns) into labelled 1-D columns and :func:`to_spark` picks and casts them:

- a scalar type takes the only column, or the leftmost one whose values fit the type (MLflow's rule, so a
  model returning ``label, score`` gives its score for ``double``);
- ``array<T>`` takes every column that fits ``T`` (all of them for ``string``) as one array per row, or the
  rows of a column that already holds arrays (a row of more dimensions is flattened in C order);
- ``struct<...>`` takes each field from the output column of the same name, or by position when the output
  has unnamed columns (a 2-D array, such as ``predict_proba``'s) as many as the struct has fields.

Nothing here imports pyspark: the scoring child of a rebuilt environment uses :func:`output_columns` too.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, quote, quote_names

#: A model output split into labelled 1-D columns (labels: the output's column names, or positions).
Columns = list[tuple[Hashable, np.ndarray]]

#: The scalar kinds a result may hold, by the name of their Spark type class.
SPARK_SCALARS = {
    "DoubleType": "double", "FloatType": "float", "LongType": "long", "IntegerType": "int",
    "ShortType": "short", "ByteType": "byte", "BooleanType": "boolean", "StringType": "string",
}
_NUMPY: dict[str, np.dtype[Any]] = {
    "double": np.dtype("float64"), "float": np.dtype("float32"), "long": np.dtype("int64"),
    "int": np.dtype("int32"), "short": np.dtype("int16"), "byte": np.dtype("int8"),
}
_INTEGERS = ("long", "int", "short", "byte")
SUPPORTED = ("double, float, long, int, short, byte, boolean, string, an array of one of those, "
             "or a struct whose fields are those or arrays of them")


@dataclass(frozen=True)
class ResultPlan:
    """What the UDF returns: ``kind`` is ``scalar``, ``array`` or ``struct``; ``element`` the scalar kind
    (scalar, array); ``fields`` the struct's fields in order."""

    kind: str
    element: str = ""
    fields: tuple[tuple[str, ResultPlan], ...] = ()
    ddl: str = ""  #: the Spark type as the user named it, for messages

    def describe(self) -> str:
        return self.ddl or (f"array<{self.element}>" if self.kind == "array" else self.element)


def plan_of(data_type: Any) -> ResultPlan:
    """Compile a pyspark DataType into a :class:`ResultPlan`; InvalidInputError for unsupported types."""
    ddl = data_type.simpleString()
    name = type(data_type).__name__
    if name in SPARK_SCALARS:
        return ResultPlan("scalar", SPARK_SCALARS[name], ddl=ddl)
    if name == "ArrayType" and type(data_type.elementType).__name__ in SPARK_SCALARS:
        return ResultPlan("array", SPARK_SCALARS[type(data_type.elementType).__name__], ddl=ddl)
    if name == "StructType" and data_type.fields:
        fields = []
        for field in data_type.fields:
            inner = plan_of(field.dataType) if type(field.dataType).__name__ != "StructType" else None
            if inner is None or inner.kind == "struct":
                break
            fields.append((field.name, inner))
        else:
            return ResultPlan("struct", fields=tuple(fields), ddl=ddl)
    raise InvalidInputError(f"spark_udf cannot return {ddl}; result_type must be {SUPPORTED}")


# ---------------------------------------------------------------- the model's output as columns


def series_values(series: pd.Series) -> np.ndarray:
    """A Series' values as numpy; nullable numbers with missing values become float with NaN."""
    dtype = series.dtype
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if numpy_dtype is not None and numpy_dtype.kind in "iuf" and not isinstance(dtype, pd.StringDtype):
        if series.isna().any():
            return series.to_numpy(dtype="float64", na_value=np.nan)
        return series.to_numpy(dtype=numpy_dtype)
    return series.to_numpy()


def output_columns(output: Any, rows: int) -> Columns:
    """Split a model's output for ``rows`` input rows into labelled 1-D columns."""
    if isinstance(output, pd.DataFrame):
        columns: Columns = [(label, series_values(output.iloc[:, i])) for i, label in enumerate(output.columns)]
    elif isinstance(output, pd.Series):
        columns = [(output.name if output.name is not None else 0, series_values(output))]
    elif isinstance(output, dict):
        columns = [(label, np.asarray(value)) for label, value in output.items()]
    else:
        array = np.asarray(output)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim == 1:
            columns = [(0, array)]
        elif array.ndim == 2:
            columns = [(i, array[:, i]) for i in range(array.shape[1])]
        else:  # one nested array per row
            columns = [(0, _rows_of(array))]
    for label, values in columns:
        if values.ndim != 1 or len(values) != rows:
            raise InvalidInputError(f"The model returned {len(values)} value(s) in output column {quote(label)} "
                                    f"for {rows} input row(s)" + ("" if values.ndim == 1 else
                                                                  f" (an array of shape {values.shape})"))
    return columns


def _rows_of(array: np.ndarray) -> np.ndarray:
    out = np.empty(len(array), dtype=object)
    for i, row in enumerate(array):
        out[i] = row
    return out


# ---------------------------------------------------------------- columns as Spark values


def to_spark(columns: Columns, rows: int, plan: ResultPlan) -> pd.Series | pd.DataFrame:
    """The UDF's result for one batch: a Series (scalar and array types) or a DataFrame (struct)."""
    if plan.kind == "struct":
        return pd.DataFrame({name: _field(columns, i, name, inner, plan) for i, (name, inner)
                             in enumerate(plan.fields)})
    if plan.kind == "array":
        return _array(columns, plan.element, plan)
    return pd.Series(_scalar_column(columns, plan.element, plan))


def empty_result(plan: ResultPlan) -> pd.Series | pd.DataFrame:
    """The result of an empty batch (the model is not called)."""
    if plan.kind == "struct":
        return pd.DataFrame({name: empty_result(inner) for name, inner in plan.fields})
    if plan.kind == "array" or plan.element not in _NUMPY:
        return pd.Series([], dtype=object)
    return pd.Series(np.empty(0, dtype=_NUMPY[plan.element]))


def _field(columns: Columns, position: int, name: str, inner: ResultPlan, plan: ResultPlan) -> pd.Series:
    labels = [label for label, _ in columns]
    by_name = {str(label): values for label, values in columns}
    if name in by_name:
        values = by_name[name]
    elif all(isinstance(label, (int, np.integer)) for label in labels) and len(columns) == len(plan.fields):
        values = columns[position][1]  # unnamed outputs (a 2-D array): by position
    else:
        raise InvalidInputError(
            f"result_type {plan.describe()} asks for field {quote(name)}, which the model's output does not have; "
            f"its columns are {quote_names(labels)} (name the struct's fields after them, or, for an output "
            f"with unnamed columns, give the struct exactly {len(columns)} field(s))")
    if inner.kind == "array":
        return _array([(name, values)], inner.element, plan)
    return pd.Series(_cast(values, inner.element, name, plan))


def _fits(values: np.ndarray, kind: str) -> bool:
    if kind == "string":
        return True
    if kind == "boolean":
        return values.dtype.kind == "b"
    if kind in _INTEGERS:
        return values.dtype.kind in "iu"
    return values.dtype.kind in "iuf"


def _scalar_column(columns: Columns, kind: str, plan: ResultPlan) -> np.ndarray:
    if len(columns) == 1:
        label, values = columns[0]
        return _cast(values, kind, label, plan)
    for label, values in columns:
        if _fits(values, kind):
            return _cast(values, kind, label, plan)
    raise InvalidInputError(_no_fit(columns, kind, plan))


def _no_fit(columns: Columns, kind: str, plan: ResultPlan) -> str:
    shown = ", ".join(f"{quote(label)} ({values.dtype})" for label, values in columns[:12])
    return (f"The model's output has no column of {kind} values for result_type {plan.describe()}: its columns "
            f"are {shown}; ask for a type they hold (string takes any), or an array or struct of them")


def _array(columns: Columns, kind: str, plan: ResultPlan) -> pd.Series:
    if len(columns) == 1 and columns[0][1].dtype.kind == "O" and len(columns[0][1]) and _is_sequence(
            columns[0][1][0]):
        label, values = columns[0]  # one array per row already
        return pd.Series([None if row is None else _cast(np.asarray(row).ravel(), kind, label, plan)
                          for row in values], dtype=object)
    chosen = columns if kind == "string" or len(columns) == 1 else [(lb, v) for lb, v in columns if _fits(v, kind)]
    if not chosen:
        raise InvalidInputError(_no_fit(columns, kind, plan))
    block = np.column_stack([_cast(values, kind, label, plan) for label, values in chosen])
    return pd.Series(list(block), dtype=object)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _cast(values: np.ndarray, kind: str, label: Hashable, plan: ResultPlan) -> np.ndarray:
    """``values`` as Spark's ``kind``; InvalidInputError naming the column and a value that does not fit."""
    dtype = values.dtype
    if kind == "string":
        if dtype.kind in "OUS":
            return np.array([v if v is None or isinstance(v, str) else None if _missing(v) else str(v)
                             for v in values], dtype=object)
        return values.astype(str).astype(object)
    if kind == "boolean":
        if dtype.kind == "b":
            return values
        if dtype.kind == "O" and all(v is None or isinstance(v, (bool, np.bool_)) for v in values):
            return values
        raise _unfit(values, kind, label, plan, "they are not booleans")
    if dtype.kind == "O":
        try:
            values = values.astype("float64")
        except (TypeError, ValueError):
            bad = next((v for v in values if not isinstance(v, (int, float, np.number)) or isinstance(v, bool)),
                       values[0])
            raise _unfit(values, kind, label, plan, f"{quote(bad)} is not a number") from None
        dtype = values.dtype
    if dtype.kind not in "iuf":
        raise _unfit(values, kind, label, plan, f"they are {dtype}, not numbers")
    target = _NUMPY[kind]
    if target.kind == "f":
        return values.astype(target, copy=False)
    if dtype.kind == "f":
        missing = np.isnan(values)
        fraction = ~missing & (~np.isfinite(values) | (values != np.floor(values)))
        if fraction.any():
            bad = values[np.flatnonzero(fraction)[0]]
            raise _unfit(values, kind, label, plan, f"{quote(bad)} is not a whole number")
        if missing.any():  # a missing value is a null of the integer column
            _check_range(np.where(missing, 0, values), kind, label, plan)
            return pd.array(values, dtype=f"Int{target.itemsize * 8}").to_numpy(dtype=object, na_value=None)
    _check_range(values, kind, label, plan)
    return values.astype(target, copy=False)


def _missing(value: Any) -> bool:
    return value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _check_range(values: np.ndarray, kind: str, label: Hashable, plan: ResultPlan) -> None:
    info = np.iinfo(_NUMPY[kind])
    if values.size and values.dtype != _NUMPY[kind]:
        outside = (values < info.min) | (values > info.max)
        if outside.any():
            bad = values[np.flatnonzero(outside)[0]]
            raise _unfit(values, kind, label, plan, f"{quote(bad)} is out of range for {kind}")


def _unfit(values: np.ndarray, kind: str, label: Hashable, plan: ResultPlan, why: str) -> InvalidInputError:
    return InvalidInputError(f"The model's output column {quote(label)} does not fit {kind} in result_type "
                             f"{plan.describe()}: {why}")
