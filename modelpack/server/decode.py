"""DECODE: request body -> (model input, params). One decoder per request format.

JSON bodies carry exactly one of the keys in :data:`JSON_FORMATS` (plus optional
``params``), or are a bare pandas split object ``{"columns": [...], "data": [[...]]}``;
other top-level keys next to a format key are ignored with a warning in the log, as MLflow's
scoring server ignores them. ``text/csv`` bodies have a header row;
``application/vnd.apache.parquet`` bodies are read by pandas with pyarrow (the ``arrow`` extra), and so are
Arrow IPC bodies (``application/vnd.apache.arrow.stream``, or ``.file``; :func:`decode_arrow`).
JSON is read by orjson; a body orjson refuses is read again by Python's ``json``, which is what
MLflow's server reads with: the bare ``NaN``, ``Infinity`` and ``-Infinity`` that Python's
``json.dumps`` (and so MLflow's client) writes, numbers past a double (``1e400``, infinity), a
UTF-8 byte order mark. Every failure is an InvalidInputError (400) or UnsupportedMediaTypeError
(415) whose message names the problem (and the row, column or key), never the body: a body is
never cut, padded or reinterpreted to make it fit. A table with no rows, a row with more or
fewer values than there are columns, an ``index`` that does not match the rows, a boolean among
numbers, a parameter that is no scalar or list of scalars are all refused here, before the model
is called. Missing and non-finite values are the signature's business (modelpack/enforce.py).

Parameters the model's signature does not declare are dropped with a warning, as MLflow does
(:class:`RequestDecoder`); a model without a signature receives the parameters as sent.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..config import DEFAULT_MAX_BODY_BYTES
from ..errors import (
    InvalidInputError,
    MalformedRequestError,
    UnsupportedMediaTypeError,
    quote,
    quote_names,
)
from ..float_rows import FloatRows, numbers_only_after_data
from ..float_rows import from_csv as float_rows_from_csv
from ..float_rows import from_records as float_rows_from_records
from ..float_rows import from_split as float_rows_from_split
from .decode_columnar import ARROW_FILE, ARROW_STREAM, PARQUET, decode_arrow, decode_parquet

SPLIT_KEYS = frozenset({"columns", "data", "index"})
JSON = "application/json"
CSV = "text/csv"

logger = logging.getLogger("modelpack.server")


class _Ignored:
    """Warns about ignored keys and parameters once per name in this process (a client sending the same
    unknown key on every request would otherwise fill the log); past ``limit`` names it stops remembering,
    and it remembers a name by its first 100 characters (a client's names are unbounded)."""

    def __init__(self, limit: int = 256) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.limit = limit

    def __call__(self, what: str, names: Iterable[str], why: str) -> None:
        new = [name for name in names if (what, name[:100]) not in self.seen]
        if not new:
            return
        if len(self.seen) < self.limit:
            self.seen.update((what, name[:100]) for name in new)
        logger.warning("Ignoring %s %s: %s (as MLflow's scoring server does; logged once per name)",
                       what, quote_names(new), why)


_ignored = _Ignored()


def _no_rows(where: str) -> InvalidInputError:
    return InvalidInputError(f"'{where}' holds no rows; send at least one row to score")


def _split(obj: Any, where: str = "dataframe_split", float_rows: bool = False) -> pd.DataFrame | FloatRows:
    if not isinstance(obj, dict) or "data" not in obj:
        raise InvalidInputError(f"'{where}' must be an object with 'data' (and 'columns')")
    data, columns, index = obj["data"], obj.get("columns"), obj.get("index")
    if not isinstance(data, list):
        raise InvalidInputError(f"'{where}.data' must be a list of rows")
    if not data:
        raise _no_rows(f"{where}.data")
    if columns is not None:
        _check_column_names(columns, f"{where}.columns")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        got = f"{len(index)} labels" if isinstance(index, list) else f"a {type(index).__name__}"
        raise InvalidInputError(
            f"'{where}.index' has {got} for {len(data)} rows of '{where}.data'; send one label per row or no 'index'"
        )
    if float_rows and columns:
        rows = float_rows_from_split(data, columns)
        if rows is not None:
            return rows
    if columns is not None:
        width = len(columns)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise InvalidInputError(
                    f"'{where}.data' row {i} has {got}; expected {width} (one per column)"
                )
    elif isinstance(data[0], list):  # no names: every row as long as the first (pandas would pad with NaN)
        width = len(data[0])
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise InvalidInputError(f"'{where}.data' row {i} has {got}; row 0 has {width}")
    elif any(isinstance(row, list) for row in data):
        raise InvalidInputError(f"'{where}.data' mixes rows (lists) and single values")
    try:
        return pd.DataFrame(data, columns=columns)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"'{where}' cannot be read as a table: {quote(str(exc), 200)}") from None


def _check_column_names(columns: Any, where: str) -> None:
    """Column names are a list of distinct strings or numbers (pandas would rename or nest the others)."""
    if not isinstance(columns, list):
        raise InvalidInputError(f"'{where}' must be a list of column names")
    if not set(map(type, columns)) <= {str}:
        bad = next((c for c in columns if not isinstance(c, (str, int, float)) or isinstance(c, bool)), None)
        if bad is not None:
            raise InvalidInputError(f"'{where}' holds {quote(bad)}; a column name is a string")
    if len(set(columns)) != len(columns):
        raise InvalidInputError(f"'{where}' names the column {quote(_repeated(columns))} twice")


def _repeated(names: list[Any]) -> Any:
    """The first name of ``names`` seen before."""
    seen: set[Any] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _records(obj: Any, float_rows: bool = False, where: str = "dataframe_records") -> pd.DataFrame | FloatRows:
    if not isinstance(obj, list) or (obj and set(map(type, obj)) != {dict}):
        raise InvalidInputError(f"'{where}' must be a list of objects (one per row)")
    if not obj:
        raise _no_rows(where)
    if float_rows:
        rows = float_rows_from_records(obj)
        if rows is not None:
            return rows
    return pd.DataFrame.from_records(obj)


def _array(value: Any, where: str, bools: bool) -> np.ndarray:
    """``value`` as a numpy array, refusing what numpy would silently change: a boolean among numbers
    becomes 1.0, a number among strings becomes text. ``bools``: whether the body holds true/false at all."""
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise InvalidInputError(f"'{where}' is not a regular (non-ragged) array: {quote(str(exc), 200)}") from None
    kind = array.dtype.kind
    if (kind in "iuf" and bools) or kind in "US":
        cells = np.asarray(value, dtype=object)
        flat = cells.ravel().tolist()
        odd = (lambda v: type(v) is bool) if kind in "iuf" else (lambda v: type(v) is not str)
        at = next((i for i, v in enumerate(flat) if odd(v)), None)
        if at is not None:
            position = "".join(f"[{i}]" for i in np.unravel_index(at, cells.shape))
            shown = str(flat[at]).lower() if isinstance(flat[at], bool) else quote(flat[at])  # as JSON spells it
            why = "a boolean is not a number" if kind in "iuf" else "a number is not turned into text"
            raise InvalidInputError(
                f"'{where}{position}' is {shown} among {'numbers' if kind in 'iuf' else 'strings'}; {why}"
            )
    return array


def _tensors(obj: Any, where: str, bools: bool = True) -> Any:
    if isinstance(obj, dict):
        if not obj:
            raise InvalidInputError(f"'{where}' is an empty object; send at least one named input")
        return {name: _array(value, f"{where}.{name}", bools) for name, value in obj.items()}
    if isinstance(obj, list):
        if not obj:
            raise _no_rows(where)
        if isinstance(obj[0], dict):
            if where == "instances":
                return _instance_records(obj, bools)
            return _records(obj, where=where)
        return _array(obj, where, bools)
    if isinstance(obj, (str, int, float)):  # one value (a text for a text model): a 0-d array, as MLflow reads it
        return _array(obj, where, bools)
    raise InvalidInputError(f"'{where}' must be a list, an object of named lists or a single value")


def _instance_records(records: list, bools: bool) -> dict[str, np.ndarray]:
    """``instances`` as a list of objects, TensorFlow Serving's row format: one array per key, stacking the
    rows' values (MLflow's reading: a model with several named inputs gets each as one array). Every object
    must have the same keys: a key left out of one row would shift the rows of that input against the others."""
    keys = list(records[0])
    if not keys:
        raise InvalidInputError("'instances[0]' is an empty object; send at least one named input per row")
    expected = set(keys)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidInputError(f"'instances[{i}]' is not an object ({type(record).__name__}) but "
                                    "'instances[0]' is; send a list of objects (one per row) or a list of values")
        if record.keys() != expected:
            raise InvalidInputError(f"'instances[{i}]' has the keys {quote_names(sorted(record))} and 'instances[0]' "
                                    f"{quote_names(sorted(keys))}; every object needs the same keys")
    return {key: _array([record[key] for record in records], f"instances.{key}", bools) for key in keys}


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


def _check_params(params: Any) -> dict[str, Any] | None:
    """``params`` is None or an object of scalars and lists of scalars (what a signature can declare)."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidInputError("'params' must be an object mapping parameter names to values")
    for name, value in params.items():
        if isinstance(value, dict) or (
            isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value)
        ):
            what = "an object" if isinstance(value, dict) else "a nested list"
            raise InvalidInputError(
                f"Parameter {quote(name)} is {what}; a parameter is a scalar or a list of scalars"
            )
    return params


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _load_json(body: bytes) -> Any:
    """The parsed body: orjson first (the fast path); what it refuses, Python's ``json`` as MLflow reads it
    (``NaN``, ``Infinity``, ``1e400``, a byte order mark), so the fallback costs only bodies orjson refuses.

    Python's ``json`` also reads an escaped lone UTF-16 surrogate (``"\\ud800"``) into a string that is no
    Unicode: no UTF-8 for it, so pandas' Arrow strings (and any output) fail on it. Those are refused, as orjson
    refuses them."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedRequestError(f"Request body is not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(body) or not body.isascii():  # escapes, or UTF-16/32 text
        lone = _lone_surrogate(obj)
        if lone is not None:
            raise MalformedRequestError(
                f"Request body is not valid JSON: the string {quote(lone)} holds a lone UTF-16 surrogate, "
                "which is no Unicode character"
            )
    return obj


def _lone_surrogate(obj: Any) -> str | None:
    """The first string (key or value) in the parsed JSON ``obj`` that cannot be written as UTF-8, or None."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
    return None


def decode_json(body: bytes, float_rows: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """Decode a JSON body. With ``float_rows`` (the model takes them, see modelpack/float_rows.py)
    a split or records body of plain numbers is read as one float64 block."""
    obj = _load_json(body)
    if not isinstance(obj, dict):
        raise InvalidInputError(f"JSON body must be an object with {_FORMAT_HELP}")
    params = _check_params(obj.get("params"))
    present = [key for key in JSON_FORMATS if key in obj]
    if len(present) == 1:
        key = present[0]
        if len(obj) > 1 + ("params" in obj):
            _ignored("top-level keys", sorted(set(obj) - {key, "params"}),
                     f"only 'params' is read next to {key!r}")
        if key == "dataframe_split":
            return _split(obj[key], float_rows=float_rows and numbers_only_after_data(body)), params
        if key == "dataframe_records":
            return _records(obj[key], float_rows), params
        bools = b"true" in body or b"false" in body  # numpy turns booleans among numbers into 1.0 and 0.0
        return _tensors(obj[key], key, bools), params
    if len(present) > 1:
        raise InvalidInputError(f"JSON body has several input formats {present}; send exactly one")
    if "data" in obj and set(obj) <= SPLIT_KEYS | {"params"}:
        return _split(obj, "body", float_rows and numbers_only_after_data(body)), params
    raise InvalidInputError(f"JSON body must have {_FORMAT_HELP}; got keys {quote_names(sorted(obj))}")


def decode_csv(body: bytes, float_rows: bool = False) -> tuple[pd.DataFrame | FloatRows, None]:
    """Decode a CSV body with a header row; see decode_json for ``float_rows``.

    Every row must have one field per header name, and the names must be distinct: pandas would
    silently drop a first row's extra fields (or, without ``index_col=False``, take them as the index,
    shifting every value one column left), fill a short row with NaN, and rename a second ``a`` to
    ``a.1``. pandas reports the first of these (a warning, or an error for a later row); the others
    leave a NaN in the last column or a renamed column. Only then is the body checked line by line
    (:func:`_check_csv_shape`), to name the row, so a well-formed body costs pandas' read alone."""
    if float_rows:
        rows = float_rows_from_csv(body)
        if rows is not None:
            return rows, None
    if not body.strip():
        raise InvalidInputError("CSV body is empty; expected a header row and data rows")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(io.BytesIO(body), index_col=False)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            _check_csv_shape(body)  # names the row when a row's field count is what is wrong
            raise MalformedRequestError(f"CSV body cannot be parsed: {quote(str(exc), 300)}") from None
    if (frame.empty or any(issubclass(w.category, pd.errors.ParserWarning) for w in caught)
            or (frame.shape[1] and frame.iloc[:, -1].isna().any()) or _renamed_duplicates(frame.columns)):
        _check_csv_shape(body)
    return frame, None


def _renamed_duplicates(columns: pd.Index) -> bool:
    """Whether pandas may have renamed a repeated header name (``a``, ``a`` -> ``a``, ``a.1``)."""
    names = {str(c) for c in columns}
    return any(base in names for base, _, number in (str(c).rpartition(".") for c in columns) if number.isdigit())


_NON_SPACE = re.compile(rb"\S")


def _check_csv_shape(body: bytes) -> None:
    """Refuse a CSV body whose rows do not all have as many fields as its header, or without data rows,
    or whose header names a column twice (the rare path of :func:`decode_csv`).

    Lines end at LF, CRLF or a lone CR, and lines that are empty or white space only are skipped, as
    pandas reads them; rows are counted from 0 after the header, without blank lines. Without quotes,
    numpy counts the commas of every line over the raw bytes (~0.4x what pandas takes to read the body);
    with quotes, the csv module parses it (quoted fields may hold commas and line breaks)."""
    if b'"' in body:
        _check_quoted_csv(body)
        return
    first = _NON_SPACE.search(body)
    if first is None:
        raise InvalidInputError("CSV body is empty; expected a header row and data rows")
    data = np.frombuffer(body, np.uint8)
    line_end = data == 10
    if b"\r" in body:  # a CR ends a line unless a LF follows it
        lone_cr = data == 13
        lone_cr[:-1] &= ~line_end[1:]
        line_end |= lone_cr
    starts = np.concatenate(([0], np.flatnonzero(line_end) + 1))
    starts = starts[starts < len(body)]
    ends = np.append(starts[1:], len(body))
    header_line = int(np.searchsorted(starts, first.start(), "right")) - 1
    header = body[starts[header_line]:ends[header_line]].rstrip(b"\r\n")
    names = header.decode("utf-8-sig", errors="replace").split(",")
    _check_header(names, has_rows=_NON_SPACE.search(body, int(ends[header_line])) is not None)
    # commas per line; an empty line's segment is its own line end: 0 commas, as it should be
    counts = np.add.reduceat((data == 44).view(np.uint8), starts, dtype=np.int64)
    wrong = np.flatnonzero(counts != len(names) - 1)
    if not wrong.size:
        return

    def blank(i: int) -> bool:
        return not body[starts[i]:ends[i]].strip()

    bad = [int(i) for i in wrong if i > header_line and not blank(int(i))]
    if bad:
        row = sum(1 for i in range(header_line + 1, bad[0]) if not blank(i))
        _wrong_field_count(row, int(counts[bad[0]]) + 1, len(names), len(bad))


def _check_header(names: list[str], has_rows: bool) -> None:
    width = len(names)
    if not has_rows:
        raise InvalidInputError(
            f"CSV body has a header of {width} column(s) {quote_names(names)} but no data rows; send at least one"
        )
    if len(set(names)) != width:
        raise InvalidInputError(f"CSV header names the column {quote(_repeated(names))} twice")


def _wrong_field_count(row: int, fields: int, width: int, rows: int) -> None:
    others = f" (and {rows - 1} more row(s))" if rows > 1 else ""
    raise InvalidInputError(
        f"CSV row {row} has {fields} fields but the header has {width}{others}; "
        "every row needs one field per column (an empty field is a missing value)"
    )


def _check_quoted_csv(body: bytes) -> None:
    """:func:`_check_csv_shape` for a body with quotes, parsed by the csv module."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(f"CSV body is not UTF-8: {exc}") from None
    try:  # blank lines dropped, as pandas drops them
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True)
                if len(row) > 1 or (row and row[0].strip())]
    except csv.Error as exc:
        raise MalformedRequestError(f"CSV body cannot be parsed: {quote(str(exc), 300)}") from None
    if not rows:
        raise InvalidInputError("CSV body is empty; expected a header row and data rows")
    names = rows[0]
    _check_header(names, has_rows=len(rows) > 1)
    bad = [i for i, row in enumerate(rows[1:]) if len(row) != len(names)]
    if bad:
        _wrong_field_count(bad[0], len(rows[bad[0] + 1]), len(names), len(bad))


Decoder = Callable[[bytes], tuple[Any, dict[str, Any] | None]]

#: mimetype -> decoder, for models without and with the float-rows fast path.
DECODERS: dict[str, Decoder] = {JSON: decode_json, CSV: decode_csv}
FLOAT_ROWS_DECODERS: dict[str, Decoder] = {
    JSON: partial(decode_json, float_rows=True),
    CSV: partial(decode_csv, float_rows=True),
}


class RequestDecoder:
    """Decodes request bodies for one model; which decoders it uses, and which parameters it passes on,
    is decided once, here.

    ``param_names``: the parameters the model's signature declares. Others are dropped with a warning in
    the log, as MLflow's scoring server drops them (its own test expects a 200 for an unknown parameter), and
    so is every parameter when the signature declares none. None (a model without a signature): every
    parameter reaches the model as sent, since nothing says which it takes."""

    def __init__(self, float_rows: bool, param_names: Iterable[str] | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, float_columns: Sequence[str] | None = None) -> None:
        # Arrow bodies name their columns' types: the fast path picks the model's columns (``float_columns``)
        columns = list(float_columns) if float_rows and float_columns else None
        self.decoders: dict[str, Decoder] = {
            **(FLOAT_ROWS_DECODERS if float_rows else DECODERS),
            PARQUET: partial(decode_parquet, max_body_bytes=max_body_bytes),
            **{mimetype: partial(decode_arrow, float_columns=columns, max_body_bytes=max_body_bytes, mimetype=mimetype)
               for mimetype in (ARROW_STREAM, ARROW_FILE)},
        }
        self.param_names = None if param_names is None else frozenset(param_names)

    @classmethod
    def for_model(cls, model: Any, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> RequestDecoder:
        """The decoder for a loaded :class:`~modelpack.pyfunc.PyFuncModel`."""
        signature = model.signature
        names = None if signature is None else (signature.params.names if signature.params else [])
        columns = model.float_rows_columns
        return cls(columns is not None, names, max_body_bytes, columns)

    def __call__(self, content_type: str | None, body: bytes) -> tuple[Any, dict[str, Any] | None]:
        """Decode ``body`` by its Content-Type (a mimetype, with or without parameters)."""
        decoder = self.decoders.get(content_type or "")  # the usual case: exactly "application/json"
        if decoder is None:
            decoder = self._decoder_for(content_type)
        data, params = decoder(body)
        if params and self.param_names is not None:
            params = self._declared(params)
        return data, params

    def _decoder_for(self, content_type: str | None) -> Decoder:
        """The decoder for a Content-Type with parameters or in other case; 415 for any other type.

        As in MLflow: ``charset`` must name UTF-8 (the only encoding read), and no other parameter is taken
        (MLflow 1.x's ``format=pandas-split`` included: the JSON keys say the format)."""
        mimetype, *parameters = (content_type or "").split(";")
        mimetype = mimetype.strip().lower()
        decoder = self.decoders.get(mimetype)
        if decoder is None:
            shown = quote(content_type) if content_type else "missing"
            raise UnsupportedMediaTypeError(
                f"Content-Type {shown} is not supported; use one of {sorted(self.decoders)}"
            )
        unknown = []
        for parameter in filter(str.strip, parameters):
            name, _, value = parameter.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name != "charset":
                unknown.append(name)
            elif _codec(value) != "utf-8":
                raise UnsupportedMediaTypeError(
                    f"Content-Type charset {quote(value)} is not supported; send the body as UTF-8 (charset=utf-8)"
                )
        if unknown:
            raise UnsupportedMediaTypeError(
                f"Content-Type parameters {quote_names(unknown)} are not supported (only charset=utf-8); "
                "the JSON body's keys say its format"
            )
        return decoder

    def _declared(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """``params`` without the names the model's signature does not declare (logged once per name)."""
        names = self.param_names
        assert names is not None
        unknown = [name for name in params if name not in names]
        if not unknown:
            return params
        why = (f"the model's signature declares the parameters {quote_names(sorted(names))}" if names
               else "the model's signature declares no parameters")
        _ignored("parameters", unknown, why)
        return {name: value for name, value in params.items() if name in names} or None


def _codec(name: str) -> str | None:
    """The codec a charset name stands for (``utf-8`` for ``UTF8``, ``utf_8``...), or None if unknown."""
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return None
