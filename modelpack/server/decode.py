"""DECODE: request body -> (model input, params). One decoder per request format.

JSON bodies carry exactly one of the keys in :data:`JSON_FORMATS` (plus optional
``params``), or are a bare pandas split object ``{"columns": [...], "data": [[...]]}``.
``text/csv`` bodies have a header row. Every failure is an InvalidInputError (400) or
UnsupportedMediaTypeError (415) whose message names the problem, never the body.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import InvalidInputError, MalformedRequestError, UnsupportedMediaTypeError

SPLIT_KEYS = frozenset({"columns", "data", "index"})


def _float_block(data: list, columns: list) -> pd.DataFrame | None:
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
    return pd.DataFrame(np.asfortranarray(flat.reshape(len(data), width)), columns=columns, copy=False)


def _split(obj: Any, where: str = "dataframe_split", all_double: bool = False) -> pd.DataFrame:
    if not isinstance(obj, dict) or "data" not in obj:
        raise InvalidInputError(f"'{where}' must be an object with 'data' (and 'columns')")
    data, columns = obj["data"], obj.get("columns")
    if not isinstance(data, list):
        raise InvalidInputError(f"'{where}.data' must be a list of rows")
    if columns is not None and not isinstance(columns, list):
        raise InvalidInputError(f"'{where}.columns' must be a list of column names")
    if all_double and columns and data:
        frame = _float_block(data, columns)
        if frame is not None:
            return frame
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


def _records(obj: Any) -> pd.DataFrame:
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise InvalidInputError("'dataframe_records' must be a list of objects (one per row)")
    return pd.DataFrame.from_records(obj)


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
    split body of plain numbers may be read as one float64 block (what enforcement would
    cast it to anyway). numpy would silently turn booleans, nulls and numeric strings into
    numbers, so a body that may hold any of them takes the checked path."""
    all_double = all_double and _only_numbers_after_data(body)
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
            return _split(obj["dataframe_split"], all_double=all_double), params
        return JSON_FORMATS[present[0]](obj[present[0]]), params
    if len(present) > 1:
        raise InvalidInputError(f"JSON body has several input formats {present}; send exactly one")
    if "data" in obj and set(obj) <= SPLIT_KEYS | {"params"}:
        return _split(obj, "body", all_double), params
    raise InvalidInputError(f"JSON body must have {_FORMAT_HELP}; got keys {sorted(obj)[:10]}")


def decode_csv(body: bytes, all_double: bool = False) -> tuple[pd.DataFrame, None]:
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
