"""DECODE: request body -> (model input, params). One decoder per request format.

JSON bodies carry exactly one of the keys in :data:`JSON_FORMATS` (plus optional
``params``), or are a bare pandas split object ``{"columns": [...], "data": [[...]]}``.
``text/csv`` bodies have a header row. Every failure is an InvalidInputError (400) or
UnsupportedMediaTypeError (415) whose message names the problem, never the body.
"""

from __future__ import annotations

import io
import itertools
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import InvalidInputError, MalformedRequestError, UnsupportedMediaTypeError
from ..pyfunc import FloatRows

SPLIT_KEYS = frozenset({"columns", "data", "index"})


def _float_block(data: list, columns: list) -> FloatRows | None:
    """Rows of plain numbers as one float64 block, or None to take the checked path.

    The caller has made sure the body holds no strings, booleans or nulls in the data;
    here every row must be a list of ``len(columns)`` numbers. ``np.fromiter`` over the
    chained rows is the fastest list -> array route in numpy (faster than ``np.array``).
    """
    width = len(columns)
    try:
        if set(map(len, data)) != {width}:
            return None
        flat = np.fromiter(itertools.chain.from_iterable(data), np.float64, count=len(data) * width)
    except (TypeError, ValueError):  # a row that is not a list, a nested list
        return None
    # Column-major, as pandas lays out a frame built from rows: models see the same memory
    # layout (and BLAS sums in the same order) as on the checked path.
    return FloatRows(np.asfortranarray(flat.reshape(len(data), width)), columns)


def _split(obj: Any, where: str = "dataframe_split", all_double: bool = False) -> pd.DataFrame | FloatRows:
    if not isinstance(obj, dict) or "data" not in obj:
        raise InvalidInputError(f"'{where}' must be an object with 'data' (and 'columns')")
    data, columns = obj["data"], obj.get("columns")
    if not isinstance(data, list):
        raise InvalidInputError(f"'{where}.data' must be a list of rows")
    if columns is not None and not isinstance(columns, list):
        raise InvalidInputError(f"'{where}.columns' must be a list of column names")
    if all_double and columns and data:
        rows = _float_block(data, columns)
        if rows is not None:
            return rows
    if columns is not None and data:
        width = len(columns)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise InvalidInputError(
                    f"'{where}.data' row {i} has {got}; expected {width} (one per column)"
                )
    try:
        return pd.DataFrame(data, columns=columns)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"'{where}' cannot be read as a table: {exc}") from None


def _records(obj: Any, all_double: bool = False) -> pd.DataFrame | FloatRows:
    if not isinstance(obj, list) or (obj and set(map(type, obj)) != {dict}):
        raise InvalidInputError("'dataframe_records' must be a list of objects (one per row)")
    if all_double and obj:
        rows = _records_float_rows(obj)
        if rows is not None:
            return rows
    return pd.DataFrame.from_records(obj)


def _records_float_rows(records: list[dict]) -> FloatRows | None:
    """Records that all have the same keys and only int/float values (no bool: its type is
    not int's), as FloatRows in the first record's key order - the table from_records builds,
    cast to double as enforcement would. Anything else: None, and pandas reads it."""
    columns = list(records[0])
    width = len(columns)
    if not width or set(map(len, records)) != {width}:
        return None
    if not set(map(type, itertools.chain.from_iterable(map(dict.values, records)))) <= {float, int}:
        return None
    getter = operator.itemgetter(*columns)
    values = map(getter, records) if width == 1 else itertools.chain.from_iterable(map(getter, records))
    try:  # same length and every key of the first record present: the same keys
        flat = np.fromiter(values, np.float64, count=len(records) * width)
    except KeyError:
        return None
    return FloatRows(np.asfortranarray(flat.reshape(len(records), width)), columns)


def _array(value: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise InvalidInputError(f"'{where}' is not a regular (non-ragged) array: {exc}") from None


def _tensors(obj: Any, where: str) -> Any:
    if isinstance(obj, dict):
        return {name: _array(value, f"{where}.{name}") for name, value in obj.items()}
    if isinstance(obj, list):
        if obj and all(isinstance(r, dict) for r in obj):
            return pd.DataFrame.from_records(obj)
        return _array(obj, where)
    raise InvalidInputError(f"'{where}' must be a list or an object of named lists")


JSON_FORMATS: dict[str, Callable[[Any], Any]] = {
    "dataframe_split": _split,
    "dataframe_records": _records,
    "instances": lambda obj: _tensors(obj, "instances"),
    "inputs": lambda obj: _tensors(obj, "inputs"),
}

_FORMAT_HELP = (
    f"one of the keys {sorted(JSON_FORMATS)} (optionally with 'params'), "
    "or a pandas split object with 'columns' and 'data'"
)


def _only_numbers_after_data(body: bytes) -> bool:
    """Whether nothing but numbers can follow the ``"data"`` key: no string (no '"'), no
    ``true``/``null`` (no 'u') and no ``false`` (no 'a') after it - one memchr each. Another
    key after the data only costs the checked path, never a wrong answer."""
    start = body.find(b'"data"') + 6
    return start >= 6 and body.find(b'"', start) < 0 and body.find(b"u", start) < 0 and body.find(b"a", start) < 0


def decode_json(body: bytes, all_double: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """Decode a JSON body. ``all_double`` says every model input column is a double, so a
    split or records body of plain numbers may be read as one float64 block, :class:`FloatRows`
    (what enforcement would cast it to anyway; ``PyFuncModel.predict`` takes it as it is). numpy
    would silently turn booleans, nulls and numeric strings into numbers, so a body that may
    hold any of them takes the checked path."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInputError(f"JSON body must be an object with {_FORMAT_HELP}")
    params = obj.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidInputError("'params' must be an object mapping parameter names to values")
    present = [key for key in JSON_FORMATS if key in obj]
    if len(present) == 1:
        unknown = set(obj) - {present[0], "params"}
        if unknown:
            raise InvalidInputError(f"Unexpected keys {sorted(unknown)[:10]} next to '{present[0]}'")
        if present[0] == "dataframe_split":
            return _split(obj["dataframe_split"], all_double=all_double and _only_numbers_after_data(body)), params
        if present[0] == "dataframe_records":
            return _records(obj["dataframe_records"], all_double), params
        return JSON_FORMATS[present[0]](obj[present[0]]), params
    if len(present) > 1:
        raise InvalidInputError(f"JSON body has several input formats {present}; send exactly one")
    if "data" in obj and set(obj) <= SPLIT_KEYS | {"params"}:
        return _split(obj, "body", all_double and _only_numbers_after_data(body)), params
    raise InvalidInputError(f"JSON body must have {_FORMAT_HELP}; got keys {sorted(obj)[:10]}")


#: Bytes a CSV body of plain numbers holds after its header line.
_CSV_NUMBER_BYTES = b"0123456789.-+eE,\n"
#: Up to this size (about 120 rows of 10 numbers), float() beats read_csv's ~0.35 ms fixed cost.
_SMALL_CSV_BYTES = 24 * 1024


def _csv_float_rows(body: bytes) -> FloatRows | None:
    """A small CSV body of plain numbers under a simple header as FloatRows, else None (pandas).

    Taken only where pandas would read the same table: a header of distinct, non-empty,
    unquoted names; rows of exactly one field per column, every field a number (float()
    and pandas both round correctly, so the values are identical); no quotes, spaces, empty
    fields, blank lines or CR. Anything else - including every error - is left to pandas.
    """
    header, _, rest = body.partition(b"\n")
    if not rest or len(body) > _SMALL_CSV_BYTES or rest.translate(None, _CSV_NUMBER_BYTES):
        return None
    try:
        columns = header.decode("utf-8").split(",")
    except UnicodeDecodeError:
        return None
    if len(set(columns)) != len(columns) or not all(c and c.strip() == c and '"' not in c for c in columns) \
            or columns[0].startswith("\ufeff"):
        return None
    lines = rest.split(b"\n")
    if not lines[-1]:
        lines.pop()
    width = len(columns)
    if not lines or set(map(bytes.count, lines, itertools.repeat(b","))) != {width - 1}:
        return None
    try:
        flat = np.fromiter(map(float, b",".join(lines).split(b",")), np.float64, count=len(lines) * width)
    except ValueError:  # "1.2.3", "-", "" ...: pandas decides what they are
        return None
    return FloatRows(np.asfortranarray(flat.reshape(len(lines), width)), columns)


def decode_csv(body: bytes, all_double: bool = False) -> tuple[pd.DataFrame | FloatRows, None]:
    """Decode a CSV body with a header row; see decode_json for ``all_double``."""
    if all_double:
        rows = _csv_float_rows(body)
        if rows is not None:
            return rows, None
    if not body.strip():
        raise InvalidInputError("CSV body is empty; expected a header row and data rows")
    try:
        return pd.read_csv(io.BytesIO(body)), None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(f"CSV body cannot be parsed: {exc}") from None


DECODERS: dict[str, Callable[[bytes, bool], tuple[Any, dict[str, Any] | None]]] = {
    "application/json": decode_json,
    "text/csv": decode_csv,
}


def decode_request(mimetype: str | None, body: bytes, all_double: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """Decode a request body by its (lower-cased, parameter-free) mimetype; see decode_json for ``all_double``."""
    decoder = DECODERS.get(mimetype or "")
    if decoder is None:
        shown = f"'{mimetype}'" if mimetype else "missing"
        raise UnsupportedMediaTypeError(
            f"Content-Type {shown} is not supported; use one of {sorted(DECODERS)}"
        )
    return decoder(body, all_double)
