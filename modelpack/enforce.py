"""Schema enforcement: check and safely cast a model's input and params against its signature.

One implementation serves both ``load_model(...).predict`` and the HTTP server. A
:class:`SchemaEnforcer` is built once per loaded model and does all the planning up
front, so a request whose columns and dtypes already match costs a list compare, a
dtype-tuple compare and one vectorized check of its values. Every refusal is an
:class:`~modelpack.errors.InvalidInputError` naming the column (or tensor, or parameter),
the row where one is at fault, the expected type and what was received. The casting rules
are documented in ``docs/schema.md``.

Values, after casting: a ``required`` column holds a value in every row (no None, NaN, NA
or NaT); an optional one (``required: false``) may hold missing values, which reach the
model as NaN (float, double), NaT (datetime), None (string, binary) or pandas' nullable
``Int32``/``Int64``/``boolean`` (integer, long, boolean). Infinities are never accepted in a
float or double column (a number too large for a double, such as ``1e400``, reads as one).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from modelpack.errors import InvalidInputError, quote, quote_names
from modelpack.signature import ColSpec, ModelSignature, Schema, TensorSpec

_DEFAULT_STR = pd.Series(["a"]).dtype  # what this pandas gives a column of str
_NOT_A_DTYPE = object()  # never equal to a dtype: forces the checked path


class _Refusal(Exception):
    """Internal: a value cannot be converted; ``args[0]`` says why."""


def _show(value: Any) -> str:
    return quote(value, 40)


def _is_object(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def _first(values: np.ndarray, bad: np.ndarray) -> Any:
    return values[np.flatnonzero(bad)[0]]


def _cast_numeric(values: np.ndarray, target: np.dtype) -> np.ndarray:
    """Cast a numeric or boolean array to ``target`` when no value changes meaning.

    Raises ``_Refusal`` otherwise. Shared by column and tensor enforcement so both
    follow one table (see docs/schema.md).
    """
    source = values.dtype
    if source == target:
        return values
    if source.kind == "b" or target.kind == "b":
        raise _Refusal("booleans and numbers do not convert into each other")
    if source.kind not in "iuf":
        raise _Refusal("no safe conversion")
    if target.kind == "f":
        if target.itemsize < source.itemsize and source.kind == "f" and values.size:
            big = np.isfinite(values) & (np.abs(values) > float(np.finfo(target).max))
            if big.any():
                raise _Refusal(f"{_show(_first(values, big))} is out of range for {target}")
        return values.astype(target)
    if source.kind == "f":
        missing = np.isnan(values)
        if missing.any():
            raise _Refusal("it holds missing values (NaN)")
        fraction = ~np.isfinite(values) | (values != np.floor(values))
        if fraction.any():
            raise _Refusal(f"{_show(_first(values, fraction))} is not a whole number")
    if not np.can_cast(source, target, "safe") and values.size:
        info = np.iinfo(target)
        outside = (values < info.min) | (values >= info.max + 1)  # exact for floats too
        if outside.any():
            raise _Refusal(f"{_show(_first(values, outside))} is out of range for {target}")
    return values.astype(target)


# ---------------------------------------------------------------- columns


def _column_values(series: pd.Series, spec: ColSpec) -> pd.Series:
    """Return ``series`` as the spec's type (the same object when nothing changes)."""
    dtype = series.dtype
    if spec.type in ("string", "binary"):
        return _text_column(series, spec.type)
    if spec.type == "datetime":
        return _datetime_column(series)
    target = spec.numpy_dtype
    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # pandas nullable Int64, Float64, boolean
    if numpy_dtype is not None and not isinstance(dtype, pd.StringDtype):
        if numpy_dtype.kind == "b" and target.kind != "b":
            raise _Refusal("booleans and numbers do not convert into each other")
        if not series.isna().any():
            series = series.astype(numpy_dtype)
        elif target.kind == "f":
            series = series.astype("float64")
        else:
            raise _Refusal("it holds missing values")
    elif _is_object(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "empty"):
            try:
                # ints for an int target (any missing value was handled by _convert); float64 holds NaN
                series = series.astype("int64" if inferred == "integer" and target.kind != "f" else "float64")
            except (OverflowError, ValueError, TypeError):
                raise _Refusal("its values do not fit a 64-bit number") from None
        elif inferred == "boolean" and not series.isna().any():
            series = series.astype("bool")
        else:
            raise _Refusal(_not_number(series, inferred))
    elif not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise _Refusal(_not_number(series, str(dtype)))
    values = series.to_numpy()
    cast = _cast_numeric(values, target)
    if cast is values:
        return series
    return pd.Series(cast, index=series.index, name=series.name)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _not_number(series: pd.Series, what: str) -> str:
    for value in series:
        if isinstance(value, (bool, np.bool_)) or not (
            _is_missing(value) or isinstance(value, (int, float, np.number))
        ):
            return f"{_show(value)} is not a number"
    return f"its values are {what}"


def _text_column(series: pd.Series, kind: str) -> pd.Series:
    dtype = series.dtype
    want = "a str" if kind == "string" else "bytes or base64 text"
    if isinstance(dtype, pd.StringDtype):
        inferred = "string"
    elif _is_object(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
    else:
        raise _Refusal(f"{dtype} values are not {want}")
    if inferred in ("empty", "string" if kind == "string" else "bytes"):
        return series
    if kind == "binary" and inferred == "string":  # binary sent over JSON: base64 text
        return series.map(_base64, na_action="ignore").astype(object)
    accepted = str if kind == "string" else (bytes, bytearray)
    for value in series:
        if not _is_missing(value) and not isinstance(value, accepted):
            raise _Refusal(f"{_show(value)} is not {want}")
    return series


def _base64(value: str) -> bytes:
    try:  # line breaks dropped: base64.encodebytes (what MLflow's client writes) ends every 76 characters with one
        return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        raise _Refusal(f"{_show(value)} is not valid base64") from None


def _datetime_column(series: pd.Series) -> pd.Series:
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return series
    if not (isinstance(dtype, pd.StringDtype) or _is_object(dtype)):
        raise _Refusal(f"{dtype} values are not datetimes")
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred in ("string", "datetime", "datetime64", "date", "empty"):
        try:
            return pd.to_datetime(series, format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            pass
    for value in series:  # error path only: find the value to name
        if isinstance(value, (str, dt.date)):
            try:
                pd.to_datetime(pd.Series([value], dtype=object), format="ISO8601")
                continue
            except (ValueError, TypeError, OverflowError):
                pass
        if not _is_missing(value):
            raise _Refusal(f"{_show(value)} is not an ISO 8601 datetime")
    raise _Refusal("its values are not ISO 8601 datetimes")


#: Column types whose missing values are pandas' nullable types (numpy's ints and bools have no NA).
_NULLABLE = {"integer": "Int32", "long": "Int64", "boolean": "boolean"}
_FLOATS = ("float", "double")


def _missing_column(spec: ColSpec, index: pd.Index) -> pd.Series:
    """An all-missing column for an optional input the caller left out."""
    if spec.type in _NULLABLE:
        return pd.Series(pd.NA, index=index, dtype=_NULLABLE[spec.type])
    if spec.type in ("float", "double", "datetime"):
        return pd.Series(np.nan, index=index, dtype=spec.numpy_dtype)
    return pd.Series(None, index=index, dtype=object)


def _label(label: str | int) -> str:
    return f"column {quote(label)}" if isinstance(label, str) else f"column {label}"


def _row(index: pd.Index, positions: np.ndarray) -> str:
    """'row 3' (the first of ``positions``, counted from 0) with the frame's own index label, if it has one,
    and how many more rows there are."""
    first = int(positions[0])
    text = f"row {first}"
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        text += f" (index {quote(index[first])})"
    return text + (f" (and {len(positions) - 1} more row(s))" if len(positions) > 1 else "")


def _missing_value(label: str | int, spec: ColSpec, index: pd.Index, positions: np.ndarray) -> InvalidInputError:
    return InvalidInputError(
        f"Required {_label(label)} ({spec.type}) has no value at {_row(index, positions)}; the model's signature "
        "needs a value in every row of it (null, NaN, NA, an empty CSV field and a left-out key are missing values)",
        columns=[label],
    )


def _not_finite(label: str | int, spec: ColSpec, index: pd.Index, values: np.ndarray,
                positions: np.ndarray) -> InvalidInputError:
    return InvalidInputError(
        f"C{_label(label)[1:]} holds {_show(values[positions[0]])} at {_row(index, positions)}; expected "
        f"a finite {spec.type} (a number too large for a {spec.type}, such as 1e400, reads as infinity)",
        columns=[label],
    )


def _check_float_column(values: np.ndarray, spec: ColSpec, label: str | int, index: pd.Index) -> None:
    """Refuse infinities, and NaN in a required column."""
    finite = np.isfinite(values)
    if finite.all():
        return
    nan = np.isnan(values)
    inf = np.flatnonzero(~finite & ~nan)
    if inf.size:
        raise _not_finite(label, spec, index, values, inf)
    if spec.required:
        raise _missing_value(label, spec, index, np.flatnonzero(nan))


def _blocks_clean(frame: pd.DataFrame, missing: bool) -> bool:
    """Whether ``frame`` holds no infinity or NaN in its numpy float columns and, with ``missing``, no
    missing value in its other columns: one vectorized call per pandas block (pandas keeps the columns
    of one dtype in one 2-D block), where taking the columns one by one costs 7-80 µs each. False means
    "look column by column" (also should pandas' internals not be as expected)."""
    try:
        for block in frame._mgr.blocks:
            values, dtype = block.values, block.dtype
            if isinstance(dtype, np.dtype) and dtype.kind == "f":
                if not np.isfinite(values).all():
                    return False
            elif missing and not (isinstance(dtype, np.dtype) and dtype.kind in "biu") and pd.isna(values).any():
                return False
    except AttributeError:
        return False
    return True


class _ColumnPlan:
    """Everything about a column schema that does not depend on the request."""

    def __init__(self, schema: Schema) -> None:
        self.specs: list[ColSpec] = schema.inputs
        self.named = schema.has_input_names
        self.names: list[Any] = [s.name for s in self.specs]  # all str when named, all None when not
        self.labels: list[str | int] = [s.name if s.name is not None else i for i, s in enumerate(self.specs)]
        self.required = [s.name for s in self.specs if s.required]
        self.fast_dtypes = tuple(_fast_dtype(s) for s in self.specs)
        # All columns float32 or all float64 (typical of scikit-learn): cast as one block.
        kinds = {s.type for s in self.specs}
        uniform_float = len(kinds) == 1 and kinds <= {"float", "double"}
        self.block_dtype = self.specs[0].numpy_dtype if uniform_float else None
        self.float_positions = [i for i, s in enumerate(self.specs) if s.type in _FLOATS]
        # Required columns whose already-matching dtype may hold missing values (str, datetime64).
        self.fast_missing_positions = [i for i, s in enumerate(self.specs)
                                       if s.required and s.type in ("string", "datetime")]

    def enforce(self, data: Any) -> pd.DataFrame:
        frame = self._as_frame(data)
        if self.named:
            dtypes = tuple(frame.dtypes)
            if dtypes == self.fast_dtypes and frame.columns.tolist() == self.names:
                self._check_values(frame, fast=True)
                return frame
            if self.block_dtype is not None:
                block = self._numeric_block(frame, dtypes)
                if block is not None:
                    self._check_values(block)
                    return block
            result = self._named(frame)
        else:
            if frame.shape[1] != len(self.specs):
                raise InvalidInputError(
                    f"Model expects {len(self.specs)} unnamed column(s), "
                    f"received {frame.shape[1]}: {quote_names(frame.columns)}"
                )
            if tuple(frame.dtypes) == self.fast_dtypes:
                self._check_values(frame, fast=True)
                return frame
            result = self._positional(frame)
        self._check_values(result)
        return result

    def _check_values(self, frame: pd.DataFrame, fast: bool = False) -> None:
        """Refuse infinities in float columns and missing values in required ones (see the module doc).

        ``frame`` holds the signature's columns in order, cast. Missing values in other columns were
        refused while casting them, except on the fast path (``fast``: nothing was cast)."""
        fast = fast and bool(self.fast_missing_positions)
        if (not self.float_positions and not fast) or _blocks_clean(frame, fast):
            return
        # rare: find the column, and judge its NaNs by whether it is required
        for i in self.float_positions:
            _check_float_column(frame.iloc[:, i].to_numpy(), self.specs[i], self.labels[i], frame.index)
        if fast:
            for i in self.fast_missing_positions:
                missing = frame.iloc[:, i].isna().to_numpy()
                if missing.any():
                    raise _missing_value(self.labels[i], self.specs[i], frame.index, np.flatnonzero(missing))

    def _as_frame(self, data: Any) -> pd.DataFrame:
        if isinstance(data, pd.DataFrame):
            return data
        if isinstance(data, pd.Series):
            return data.to_frame()
        if isinstance(data, np.ndarray) and data.ndim in (1, 2):
            if data.ndim == 1:
                data = data.reshape(-1, 1)
            names = self.names if self.named and data.shape[1] == len(self.names) else None
            return pd.DataFrame(data, columns=names)
        if isinstance(data, dict) or (isinstance(data, list) and data and all(isinstance(r, dict) for r in data)):
            if isinstance(data, dict) and all(np.ndim(v) == 0 for v in data.values()):
                data = [data]  # one record
            try:
                return pd.DataFrame(data)
            except ValueError as exc:
                raise InvalidInputError(f"Cannot read the input as columns: {quote(str(exc), 200)}") from None
        if isinstance(data, (list, str, bytes)) and not self.named:
            return pd.DataFrame({0: [data] if isinstance(data, (str, bytes)) else data})
        raise InvalidInputError(
            f"Model expects a DataFrame with columns {self.names if self.named else '(unnamed)'};"
            f" received {type(data).__name__}"
        )

    def _numeric_block(self, frame: pd.DataFrame, dtypes: tuple[Any, ...]) -> Any:
        """Cast an all-numeric frame in one numpy call; None means "use the column path"."""
        assert self.block_dtype is not None
        if not all(isinstance(d, np.dtype) and d.kind in "iuf" for d in dtypes):
            return None
        columns = frame.columns.tolist()
        if columns == self.names:
            positions = None
        else:
            where = {str(label): i for i, label in enumerate(columns)}
            if len(where) != len(columns) or not all(n in where for n in self.names):
                return None
            positions = [where[n] for n in self.names]
        values = frame.to_numpy(dtype=np.float64)
        if positions is not None:
            values = values[:, positions]
        try:
            values = _cast_numeric(values, self.block_dtype)
        except _Refusal:
            return None  # the column path names the column in its error
        return pd.DataFrame(values, columns=self.names, index=frame.index)

    def _named(self, frame: pd.DataFrame) -> pd.DataFrame:
        if frame.columns.has_duplicates:
            duplicated = frame.columns[frame.columns.duplicated()].tolist()
            raise InvalidInputError(f"Input has duplicate columns {quote_names(duplicated)}")
        labels = {str(label): label for label in frame.columns}
        missing = [n for n in self.required if n not in labels]
        if missing:
            raise InvalidInputError(
                f"Model is missing required input columns {quote_names(missing)}. "
                f"Expected columns: {quote_names(self.names)}; received: {quote_names(labels)}",
                columns=missing,
            )
        columns, changed = {}, False
        for name, spec in zip(self.names, self.specs, strict=True):
            if name in labels:
                column = frame[labels[name]]
                columns[name] = _convert(column, spec, name)
                changed = changed or columns[name] is not column
            else:
                columns[name] = _missing_column(spec, frame.index)
        if not changed and frame.columns.tolist() == self.names:
            return frame
        return pd.DataFrame(columns, index=frame.index)

    def _positional(self, frame: pd.DataFrame) -> pd.DataFrame:
        changed = {}
        for i, spec in enumerate(self.specs):
            column = frame.iloc[:, i]
            converted = _convert(column, spec, i)
            if converted is not column:
                changed[i] = converted
        if not changed:
            return frame
        frame = frame.copy()
        for i, column in changed.items():
            frame.isetitem(i, column)
        return frame


def _fast_dtype(spec: ColSpec) -> Any:
    if spec.type == "string":  # object columns need their values checked
        return _DEFAULT_STR if isinstance(_DEFAULT_STR, pd.StringDtype) else _NOT_A_DTYPE
    if spec.type == "binary":
        return _NOT_A_DTYPE  # object columns need their values checked
    return spec.numpy_dtype


def _convert(series: pd.Series, spec: ColSpec, label: str | int) -> pd.Series:
    """``series`` cast for ``spec``; missing values refused when the column is required (float columns: in
    ``_check_float_column``, after casting), kept as pandas' nullable types for optional integer/long/boolean."""
    try:
        dtype = series.dtype
        if spec.type not in _FLOATS and not (isinstance(dtype, np.dtype) and dtype.kind in "biu"):
            missing = series.isna().to_numpy()
            if missing.any():
                if spec.required:
                    raise _missing_value(label, spec, series.index, np.flatnonzero(missing))
                if spec.type in _NULLABLE:
                    return _nullable_column(series, spec, missing)
        return _column_values(series, spec)
    except _Refusal as refusal:
        raise InvalidInputError(
            f"Incompatible input for {_label(label)}: expected {spec.type}, received {series.dtype}"
            f" ({refusal.args[0]})", columns=[label]
        ) from None


def _nullable_column(series: pd.Series, spec: ColSpec, missing: np.ndarray) -> pd.Series:
    """An optional integer, long or boolean column with missing values, as pandas' nullable type."""
    present = _column_values(series[~missing], spec).to_numpy()
    data = np.zeros(len(series), dtype=spec.numpy_dtype)
    data[~missing] = present
    array = pd.arrays.BooleanArray(data, missing) if spec.type == "boolean" else pd.arrays.IntegerArray(data, missing)
    return pd.Series(array, index=series.index, name=series.name)


# ---------------------------------------------------------------- tensors


def _tensor(value: Any, spec: TensorSpec, label: str) -> np.ndarray:
    """Check one tensor's shape and cast its dtype when safe."""
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        if array.dtype == object and array.size and isinstance(array.flat[0], (list, np.ndarray)):
            array = np.stack(list(array))  # a DataFrame column holding one array per row
    except ValueError as exc:
        raise InvalidInputError(f"Input{label} is not a rectangular array ({exc})",
                                columns=[spec.name or ""]) from None
    shape, expected = array.shape, spec.shape
    if len(shape) != len(expected) or any(e not in (-1, a) for a, e in zip(shape, expected, strict=True)):
        raise InvalidInputError(f"Shape of input{label} {shape} does not match expected shape {expected}",
                                columns=[spec.name or ""])
    source, target = array.dtype, spec.dtype
    if source == target or (source.kind == target.kind and source.kind in "US"):
        return array
    try:
        if source.kind in "biuf" and target.kind in "biuf":
            return _cast_numeric(array, target)
        text = source.kind in "USO" or target.kind in "USO"  # numpy calls number->str "safe"
        if (not text and np.can_cast(source, target, "safe")) or source.kind == target.kind == "M":
            return array.astype(target)
        raise _Refusal("no safe conversion")
    except _Refusal as refusal:
        raise InvalidInputError(
            f"Incompatible input{label}: expected dtype {target}, received {source} ({refusal.args[0]})",
            columns=[spec.name or ""],
        ) from None


class _TensorPlan:
    """Everything about a tensor schema that does not depend on the request."""

    def __init__(self, schema: Schema) -> None:
        self.specs: list[TensorSpec] = schema.inputs
        self.names: list[Any] = [s.name for s in self.specs]  # all str when named, all None when not
        self.single = self.specs[0] if len(self.specs) == 1 else None

    def enforce(self, data: Any) -> Any:
        single = self.single
        if single is not None and not isinstance(data, dict):
            label = f" {single.name!r}" if single.name else ""
            if isinstance(data, pd.DataFrame):
                data = data.to_numpy()
            return _tensor(data, single, label)
        if isinstance(data, pd.DataFrame):
            data = {str(c): data[c].to_numpy() for c in data.columns}
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"Model expects named tensors {self.names} as a mapping of name to array;"
                f" received {type(data).__name__}"
            )
        if single is not None and single.name is None and len(data) == 1:
            return _tensor(next(iter(data.values())), single, "")
        missing = [n for n in self.names if n not in data]
        if missing:
            raise InvalidInputError(
                f"Model is missing required input tensors {quote_names(missing)}. "
                f"Expected tensors: {quote_names(self.names)}; received: {quote_names(data)}",
                columns=missing,
            )
        return {s.name: _tensor(data[s.name], s, f" {s.name!r}") for s in self.specs}


# ---------------------------------------------------------------- the enforcer


class SchemaEnforcer:
    """Checks inputs and params against one model's signature; built once, used per call."""

    def __init__(self, signature: ModelSignature | None) -> None:
        self.signature = signature
        schema = signature.inputs if signature is not None else None
        self._plan: _ColumnPlan | _TensorPlan | None = None
        if schema is not None:
            self._plan = _TensorPlan(schema) if schema.is_tensor else _ColumnPlan(schema)
        param_schema = signature.params if signature is not None else None
        self._param_specs = {p.name: p for p in param_schema} if param_schema else None
        self._defaults = param_schema.defaults if param_schema else {}

    def inputs(self, data: Any) -> Any:
        """Return ``data`` checked and safely cast for the model, or raise InvalidInputError."""
        if self._plan is None:
            return data
        return self._plan.enforce(data)

    def params(self, params: dict[str, Any] | None) -> dict[str, Any] | None:
        """Return params checked against the signature with defaults filled in."""
        if self.signature is None:
            return params
        specs = self._param_specs
        if specs is None:
            if params:
                raise InvalidInputError(
                    "This model accepts no parameters (its signature declares none); "
                    f"received {quote_names(sorted(params))}"
                )
            return params
        if params is None:
            return dict(self._defaults)
        if not isinstance(params, dict):
            raise InvalidInputError(f"Parameters must be a mapping of name to value, received {type(params).__name__}")
        unknown = [name for name in params if name not in specs]
        if unknown:
            raise InvalidInputError(
                f"Unknown parameters {quote_names(unknown)}. Known parameters: {quote_names(specs)}"
            )
        checked = dict(self._defaults)
        for name, value in params.items():
            checked[name] = specs[name].validate(value)
        return checked


__all__ = ["SchemaEnforcer"]
