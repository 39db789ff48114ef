"""Input examples: written at save time as ``input_example.json`` and a ready-to-send
``serving_input_example.json``; read back with :func:`load_input_example`."""

from __future__ import annotations

import base64
import datetime as _dt
from pathlib import Path
from typing import Any

from .errors import ModelSaveError

EXAMPLE_FILE = "input_example.json"
SERVING_EXAMPLE_FILE = "serving_input_example.json"


def _default(obj: Any) -> Any:
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if hasattr(obj, "isoformat"):  # pandas.Timestamp
        return obj.isoformat()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays of object dtype
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any, indent: bool = False) -> bytes:
    """JSON with numpy, datetime and bytes support; NaN becomes null."""
    import orjson

    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(obj, default=_default, option=option)


def normalize_example(example: Any) -> Any:
    """A DataFrame for tabular examples (DataFrame, Series, list of dicts, dict of columns),
    a numpy array for arrays and lists of lists."""
    import numpy as np
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        return example
    if isinstance(example, pd.Series):
        return example.to_frame()
    if isinstance(example, np.ndarray):
        return example
    if isinstance(example, dict):
        try:
            return pd.DataFrame({k: np.atleast_1d(v) for k, v in example.items()})
        except ValueError as exc:
            raise ModelSaveError(f"input_example dict cannot be read as columns: {exc}") from exc
    if isinstance(example, list) and example and all(isinstance(r, dict) for r in example):
        return pd.DataFrame.from_records(example)
    if isinstance(example, (list, tuple)):
        return np.asarray(example)
    raise ModelSaveError(
        f"input_example must be a pandas DataFrame/Series, numpy array, list or dict, got {type(example).__name__}"
    )


def frame_split(df: Any) -> dict[str, Any]:
    """A DataFrame as pandas split orientation without the index, with Python scalars."""
    columns = [df[c].tolist() for c in df.columns]
    return {"columns": [str(c) for c in df.columns], "data": [list(row) for row in zip(*columns, strict=True)]}


def save_example(example: Any, model_dir: Path) -> dict[str, Any]:
    """Write both example files; return MLmodel's ``saved_input_example_info``."""
    import numpy as np

    data = normalize_example(example)
    if isinstance(data, np.ndarray):
        payload: dict[str, Any] = {"inputs": data}
        serving = payload
        info = {"artifact_path": EXAMPLE_FILE, "type": "ndarray", "format": "tf-serving"}
    else:
        payload = frame_split(data)
        serving = {"dataframe_split": payload}
        info = {"artifact_path": EXAMPLE_FILE, "type": "dataframe", "pandas_orient": "split"}
    (model_dir / EXAMPLE_FILE).write_bytes(dumps(payload))
    (model_dir / SERVING_EXAMPLE_FILE).write_bytes(dumps(serving, indent=True))
    info["serving_input_path"] = SERVING_EXAMPLE_FILE
    return info


def load_input_example(model_dir: str | Path, info: dict[str, Any] | None) -> Any:
    """The saved input example as a DataFrame or numpy array, or None."""
    if not info:
        return None
    import numpy as np
    import orjson
    import pandas as pd

    raw = orjson.loads((Path(model_dir) / info.get("artifact_path", EXAMPLE_FILE)).read_bytes())
    if info.get("type") == "ndarray":
        return np.asarray(raw["inputs"])
    return pd.DataFrame(raw["data"], columns=raw["columns"])
