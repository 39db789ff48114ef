"""ENCODE: predictions -> ``{"predictions": ...}`` JSON bytes, without Python-level loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..example import _default

_OPTS = orjson.OPT_SERIALIZE_NUMPY


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
    try:
        return orjson.dumps({"predictions": _jsonable(predictions)}, default=_default, option=_OPTS)
    except TypeError:
        # e.g. float16 arrays or exotic scalars: fall back to Python objects.
        return orjson.dumps({"predictions": np.asarray(predictions).tolist()}, default=_default)
