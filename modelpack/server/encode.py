"""ENCODE: predictions -> ``{"predictions": ...}`` JSON bytes, without Python-level loops; or, when the request's
``Accept`` asks for it, an Arrow IPC stream or file or a Parquet file (:func:`encode_response`).

Non-finite numbers: a prediction that is NaN, infinity or minus infinity is written as the
literal ``NaN``, ``Infinity`` or ``-Infinity``, as MLflow's scoring server writes it and as
Python's ``json``, pandas and MLflow's client read it back; ``null`` stays what it means, a
missing value (None). Strict JSON parsers (JavaScript's ``JSON.parse``) refuse those literals:
a client of such a model must allow them. orjson (the fast path) would write ``null`` for all
three, so a body holding ``null`` is checked for non-finite numbers and, only when there are
some, written again by the ``json`` module.

A pandas Series is written as the records of a one-column frame, ``[{"name": v}, ...]`` (``"0"``
for an unnamed one), as MLflow's scoring server writes it. What orjson cannot write (integers past
64 bits, a string holding a lone surrogate, exotic scalars) is written by the ``json`` module too;
predictions nothing can write are the model's error (500 ``MODEL_ERROR``), never a bug's.

Arrow and Parquet answers (pyarrow, the ``arrow`` extra) are one table whose rows are the predictions: an array
or list is the column ``predictions`` (a 2-D array: a fixed-size list of its values per row), a DataFrame keeps
its columns, a named Series is its column, a dict of outputs is a column per output. NaN stays NaN; missing
values (None, NA, NaT) are nulls.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import NotAcceptableError, PredictionError, quote
from ..example import _default

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS  # {0: p}: {"0": p}, as MLflow writes it

JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
PARQUET = "application/vnd.apache.parquet"
#: The response types, in the server's order of preference: JSON (MLflow's answer) first.
OFFERED = (JSON, ARROW_STREAM, ARROW_FILE, PARQUET)
#: Accept headers that mean JSON, answered without parsing them (what clients send nearly always).
_JSON_ACCEPTS = frozenset({"*/*", JSON, "application/*", "application/json, */*"})
#: The column of an array's predictions in an Arrow or Parquet answer.
PREDICTIONS = "predictions"


def response_type(accept: str | None) -> str:
    """The mimetype to answer in for this ``Accept`` header (:func:`negotiate`; NotAcceptableError, 406, before
    the model runs); the common headers are JSON at once."""
    if not accept or accept in _JSON_ACCEPTS:
        return JSON
    return negotiate(accept)


def encode_as(predictions: Any, mimetype: str) -> bytes:
    """``predictions`` as a response body of ``mimetype`` (one :func:`response_type` gave)."""
    if mimetype == JSON:
        return encode_predictions(predictions)
    return encode_table(predictions, mimetype)


def encode_response(predictions: Any, accept: str | None) -> tuple[bytes, str]:
    """The response body and its mimetype for ``predictions``, in the type the ``Accept`` header prefers
    (:func:`negotiate`): JSON (:func:`encode_predictions`) unless it asks for Arrow or Parquet."""
    mimetype = response_type(accept)
    return encode_as(predictions, mimetype), mimetype


_negotiated: dict[str, str | NotAcceptableError] = {}
_NEGOTIATED_LIMIT = 256  # distinct Accept headers remembered (a client's headers are unbounded),
_NEGOTIATED_LENGTH = 512  # up to this many characters each


def negotiate(accept: str) -> str:
    """The type of :data:`OFFERED` the ``Accept`` header prefers (RFC 9110): the highest ``q``; then the most
    specific range (``application/vnd.apache.parquet`` over ``*/*``); then the range the client lists first;
    then the server's order. A range with ``q=0`` refuses its types. A header without one well-formed media
    range is as none: JSON. NotAcceptableError (406) when it accepts none of them, naming those there are (and
    the ``arrow`` extra, without pyarrow). Remembered per header."""
    found = _negotiated.get(accept)
    if found is None:
        try:
            found = _choose(accept)
        except NotAcceptableError as exc:
            found = exc
        if len(_negotiated) < _NEGOTIATED_LIMIT and len(accept) <= _NEGOTIATED_LENGTH:
            _negotiated[accept] = found
    if isinstance(found, NotAcceptableError):
        raise NotAcceptableError(found.message)
    return found


def _choose(accept: str) -> str:
    ranges = _media_ranges(accept)
    if not ranges:
        return JSON
    offered = OFFERED if _has_pyarrow() else (JSON,)
    chosen = _best(ranges, offered)
    if chosen is not None:
        return chosen
    shown = quote(accept, 200)
    if offered != OFFERED and _best(ranges, OFFERED) is not None:
        raise NotAcceptableError(
            f"Accept {shown} asks for Arrow or Parquet, which need pyarrow, not installed where the model is "
            f"served: install it with pip install 'modelpack[arrow]', or accept {JSON}"
        )
    raise NotAcceptableError(f"Accept {shown} accepts none of the types this server answers in: {list(offered)}")


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    """The header's well-formed media ranges as (type, subtype, q), lowercase, in the client's order; a malformed
    range or ``q`` is left out, and so are parameters other than ``q``."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = part.split(";")
        kind, slash, sub = media.strip().lower().partition("/")
        if not slash or not kind or not sub or (kind == "*" and sub != "*"):
            continue
        q: float | None = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                q = _quality(value)
                break
        if q is not None:
            ranges.append((kind, sub, q))
    return ranges


def _quality(value: str) -> float | None:
    """A ``q`` value, 0 to 1, or None when it is none."""
    try:
        q = float(value.strip())
    except ValueError:
        return None
    return q if 0 <= q <= 1 else None  # NaN too


def _best(ranges: list[tuple[str, str, float]], offered: tuple[str, ...]) -> str | None:
    best, best_key = None, None
    for server_rank, mimetype in enumerate(offered):
        kind, _, sub = mimetype.partition("/")
        match = None  # the most specific range matching this type decides its q
        for client_rank, (k, s, q) in enumerate(ranges):
            specificity = 2 if (k, s) == (kind, sub) else 1 if (k, s) == (kind, "*") else 0 if k == "*" else -1
            if specificity >= 0 and (match is None or specificity > match[0]):
                match = (specificity, q, client_rank)
        if match is None or match[1] <= 0:
            continue
        key = (match[1], match[0], -match[2], -server_rank)
        if best_key is None or key > best_key:
            best, best_key = mimetype, key
    return best


_pyarrow: bool | None = None


def _has_pyarrow() -> bool:
    global _pyarrow
    if _pyarrow is None:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            _pyarrow = False
        else:
            _pyarrow = True
    return _pyarrow


def encode_table(predictions: Any, mimetype: str) -> bytes:
    """``predictions`` as one table (see the module doc) in ``mimetype``: an Arrow IPC stream or file, or Parquet.
    NotAcceptableError (406) when they are no table (outputs of different lengths, values Arrow has no type for):
    the client can ask for JSON."""
    import pyarrow as pa

    try:
        table = _table(pa, predictions)
        sink = pa.BufferOutputStream()
        if mimetype == PARQUET:
            import pyarrow.parquet as pq

            pq.write_table(table, sink)
        else:
            with (pa.ipc.new_file if mimetype == ARROW_FILE else pa.ipc.new_stream)(sink, table.schema) as writer:
                writer.write_table(table)
        body: bytes = sink.getvalue().to_pybytes()
        return body
    except NotAcceptableError:
        raise
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise NotAcceptableError(
            f"The model's predictions ({type(predictions).__name__}) cannot be written as {mimetype}: "
            f"{quote(str(exc), 300)}; accept {JSON} for them"
        ) from None


def _table(pa: Any, predictions: Any) -> Any:
    if isinstance(predictions, pd.Series):
        name = PREDICTIONS if predictions.name is None else predictions.name
        predictions = predictions.to_frame(name=name)
    if isinstance(predictions, pd.DataFrame):
        names = [str(name) for name in predictions.columns]
        columns = [_series_column(pa, predictions.iloc[:, i]) for i in range(predictions.shape[1])]
    elif isinstance(predictions, dict):
        names = [str(name) for name in predictions]
        columns = [_column(pa, value) for value in predictions.values()]
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise NotAcceptableError(
                f"The model's outputs {quote([*predictions][:20], 200)} have different lengths "
                f"({sorted(lengths)[:10]}), which one table cannot hold; accept {JSON} for them"
            )
    else:
        names, columns = [PREDICTIONS], [_column(pa, predictions)]
    return pa.Table.from_arrays(columns, names=names)


def _series_column(pa: Any, series: pd.Series) -> Any:
    if isinstance(series.dtype, np.dtype):
        return _column(pa, series.to_numpy())
    return pa.array(series, from_pandas=True)  # pandas' own dtypes (str, nullable ints, categories): NA is null


def _column(pa: Any, values: Any) -> Any:
    """One column of predictions: an array's rows (n-D: nested fixed-size lists), a list's items, one value."""
    if not isinstance(values, np.ndarray):
        if isinstance(values, (list, tuple)):
            return pa.array(values, from_pandas=True)
        if isinstance(values, (pd.Series, pd.Index)):
            return _series_column(pa, pd.Series(values))
        values = np.asarray(values)
    if values.ndim == 0:
        values = values.reshape(1)
    if values.ndim == 1:
        return pa.array(values, from_pandas=values.dtype.kind not in "fc")  # NaN stays NaN; None, NaT are null
    if values.dtype.kind in "biuf":
        column = pa.array(np.ascontiguousarray(values).reshape(-1))
        for size in reversed(values.shape[1:]):
            column = pa.FixedSizeListArray.from_arrays(column, size)
        return column
    return pa.array(values.tolist(), from_pandas=True)


def _jsonable(predictions: Any) -> Any:
    if isinstance(predictions, np.ndarray):
        # orjson serialises contiguous numeric arrays natively; others go through tolist().
        if predictions.dtype.kind in "biuf" and predictions.flags.c_contiguous:
            return predictions
        return predictions.tolist()
    if isinstance(predictions, pd.DataFrame):
        return predictions.to_dict(orient="records")
    if isinstance(predictions, pd.Series):
        return _jsonable(predictions.to_numpy())
    if isinstance(predictions, dict):
        return {str(k): _jsonable(v) for k, v in predictions.items()}
    return predictions


def encode_predictions(predictions: Any) -> bytes:
    """The response body for ``predictions`` (see the module doc for NaN, infinities and Series)."""
    if isinstance(predictions, pd.Series):
        predictions = predictions.to_frame()  # its name, or 0, is the column: [{"name": v}, ...]
    try:
        body = orjson.dumps({"predictions": _jsonable(predictions)}, default=_default, option=_OPTS)
    except TypeError:  # e.g. float16 arrays, integers past 64 bits, lone surrogates, exotic scalars
        return _encode_with_literals(predictions)
    if b"null" in body and _has_non_finite(predictions):
        return _encode_with_literals(predictions)
    return body


def _has_non_finite(value: Any) -> bool:
    """Whether ``value`` (predictions of any shape) holds a NaN or an infinity."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return not bool(np.isfinite(value).all())
        return value.dtype.kind == "O" and any(map(_has_non_finite, value.ravel().tolist()))
    if isinstance(value, (pd.Series, pd.Index)):
        return _has_non_finite(value.to_numpy())
    if isinstance(value, pd.DataFrame):
        return any(_has_non_finite(value.iloc[:, i].to_numpy()) for i in range(value.shape[1]))
    if isinstance(value, dict):
        return any(map(_has_non_finite, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_has_non_finite, value))
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    return False


def _plain(value: Any) -> Any:
    """``value`` as Python lists, dicts and scalars (floats kept as floats, NaN included)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.DataFrame):
        columns = [_plain(value.iloc[:, i]) for i in range(value.shape[1])]
        names = [str(name) for name in value.columns]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    if isinstance(value, pd.Series):
        if isinstance(value.dtype, np.dtype) and value.dtype.kind in "fc":
            return value.tolist()
        # a missing value in any other column (pandas' str NaN, NA, NaT) is null, as orjson writes it
        return value.astype(object).where(value.notna(), None).tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _default_with_missing(obj: Any) -> Any:
    if obj is pd.NA or obj is pd.NaT:
        return None
    return _default(obj)


def _encode_with_literals(predictions: Any) -> bytes:
    """``predictions`` written by the ``json`` module: NaN and infinities as literals; a string holding a lone
    surrogate (no UTF-8 for it) escaped as ``\\udXXX``, as MLflow writes every non-ASCII character."""
    try:
        plain = {"predictions": _plain(predictions)}
        text = json.dumps(plain, default=_default_with_missing, allow_nan=True, ensure_ascii=False,
                          separators=(",", ":"))
        try:
            return text.encode()
        except UnicodeEncodeError:
            return json.dumps(plain, default=_default_with_missing, allow_nan=True, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise PredictionError(
            f"The model returned predictions ({type(predictions).__name__}) that cannot be written as JSON",
            f"{type(exc).__name__}: {exc}",
        ) from exc
