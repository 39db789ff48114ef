"""ENCODE: predictions -> ``{"predictions": ...}`` JSON bytes, without Python-level loops.

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
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import PredictionError
from ..example import _default

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS  # {0: p}: {"0": p}, as MLflow writes it


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
