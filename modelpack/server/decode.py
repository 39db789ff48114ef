"""DECODE: request body -> (model input, params). One decoder per request format.

JSON bodies carry exactly one of the keys in :data:`JSON_FORMATS` (plus optional
``params``), or are a bare pandas split object ``{"columns": [...], "data": [[...]]}``.
``text/csv`` bodies have a header row. Every failure is an InvalidInputError (400) or
UnsupportedMediaTypeError (415) whose message names the problem, never the body.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import InvalidInputError, MalformedRequestError, UnsupportedMediaTypeError
from ..float_rows import FloatRows, numbers_only_after_data
from ..float_rows import from_csv as float_rows_from_csv
from ..float_rows import from_records as float_rows_from_records
from ..float_rows import from_split as float_rows_from_split

SPLIT_KEYS = frozenset({"columns", "data", "index"})


def _split(obj: Any, where: str = "dataframe_split", float_rows: bool = False) -> pd.DataFrame | FloatRows:
    if not isinstance(obj, dict) or "data" not in obj:
        raise InvalidInputError(f"'{where}' must be an object with 'data' (and 'columns')")
    data, columns = obj["data"], obj.get("columns")
    if not isinstance(data, list):
        raise InvalidInputError(f"'{where}.data' must be a list of rows")
    if columns is not None and not isinstance(columns, list):
        raise InvalidInputError(f"'{where}.columns' must be a list of column names")
    if float_rows and columns:
        rows = float_rows_from_split(data, columns)
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


def _records(obj: Any, float_rows: bool = False) -> pd.DataFrame | FloatRows:
    if not isinstance(obj, list) or (obj and set(map(type, obj)) != {dict}):
        raise InvalidInputError("'dataframe_records' must be a list of objects (one per row)")
    if float_rows:
        rows = float_rows_from_records(obj)
        if rows is not None:
            return rows
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


def decode_json(body: bytes, float_rows: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """Decode a JSON body. With ``float_rows`` (the model takes them, see modelpack/float_rows.py)
    a split or records body of plain numbers is read as one float64 block."""
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
            return _split(obj["dataframe_split"], float_rows=float_rows and numbers_only_after_data(body)), params
        if present[0] == "dataframe_records":
            return _records(obj["dataframe_records"], float_rows), params
        return JSON_FORMATS[present[0]](obj[present[0]]), params
    if len(present) > 1:
        raise InvalidInputError(f"JSON body has several input formats {present}; send exactly one")
    if "data" in obj and set(obj) <= SPLIT_KEYS | {"params"}:
        return _split(obj, "body", float_rows and numbers_only_after_data(body)), params
    raise InvalidInputError(f"JSON body must have {_FORMAT_HELP}; got keys {sorted(obj)[:10]}")


def decode_csv(body: bytes, float_rows: bool = False) -> tuple[pd.DataFrame | FloatRows, None]:
    """Decode a CSV body with a header row; see decode_json for ``float_rows``."""
    if float_rows:
        rows = float_rows_from_csv(body)
        if rows is not None:
            return rows, None
    if not body.strip():
        raise InvalidInputError("CSV body is empty; expected a header row and data rows")
    try:
        return pd.read_csv(io.BytesIO(body)), None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(f"CSV body cannot be parsed: {exc}") from None


Decoder = Callable[[bytes], tuple[Any, dict[str, Any] | None]]

#: mimetype -> decoder, for models without and with the float-rows fast path.
DECODERS: dict[str, Decoder] = {"application/json": decode_json, "text/csv": decode_csv}
FLOAT_ROWS_DECODERS: dict[str, Decoder] = {
    "application/json": partial(decode_json, float_rows=True),
    "text/csv": partial(decode_csv, float_rows=True),
}


class RequestDecoder:
    """Decodes request bodies for one model; which decoders it uses is decided once, here."""

    def __init__(self, float_rows: bool) -> None:
        self.decoders = FLOAT_ROWS_DECODERS if float_rows else DECODERS

    @classmethod
    def for_model(cls, model: Any) -> RequestDecoder:
        """The decoder for a loaded :class:`~modelpack.pyfunc.PyFuncModel`."""
        return cls(model.float_rows_columns is not None)

    def __call__(self, mimetype: str | None, body: bytes) -> tuple[Any, dict[str, Any] | None]:
        """Decode ``body`` by its (lower-cased, parameter-free) mimetype."""
        decoder = self.decoders.get(mimetype or "")
        if decoder is None:
            shown = f"'{mimetype}'" if mimetype else "missing"
            raise UnsupportedMediaTypeError(
                f"Content-Type {shown} is not supported; use one of {sorted(self.decoders)}"
            )
        return decoder(body)
