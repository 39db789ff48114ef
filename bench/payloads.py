"""The benchmark model and request bodies, built at run time (nothing here is committed data)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

SEED = 20240601
ROW_COUNTS = (1, 100, 10_000)
# Table name of each request format -> Content-Type. "v2" is MLServer's tensor body.
CONTENT_TYPES = {
    "split": "application/json",
    "records": "application/json",
    "csv": "text/csv",
    "v2": "application/json",
}


@dataclass(frozen=True)
class Payload:
    """One request body, the rows it carries and the predictions it should produce."""

    rows: int
    kind: str
    content_type: str
    body: bytes
    expected: np.ndarray
    #: Relative tolerance of the prediction check: float32 models' answers pass through decimal JSON.
    rtol: float = 1e-9


#: --model choices: the library each needs beside scikit-learn (None: scikit-learn only).
MODELS = {"elasticnet": None, "xgboost": "xgboost", "lightgbm": "lightgbm"}


def train_model(kind: str = "elasticnet") -> tuple[Any, pd.DataFrame]:
    """Fit a model on the diabetes data: the product's reference ElasticNet, or a 100-tree
    gradient-boosted regressor of xgboost's or lightgbm's scikit-learn API."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    if kind == "xgboost":
        from xgboost import XGBRegressor

        return XGBRegressor(n_estimators=100, max_depth=4, random_state=0).fit(X, y), X
    if kind == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(n_estimators=100, num_leaves=15, random_state=0, verbose=-1).fit(X, y), X
    from sklearn.linear_model import ElasticNet

    return ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y), X


def write_model(model: Any, X: pd.DataFrame, workdir: Path) -> tuple[Path, Path]:
    """Write the fitted model (joblib) and a 3-row input example (split JSON) for the savers."""
    model_path = workdir / "model.joblib"
    joblib.dump(model, model_path)
    example_path = workdir / "input_example.json"
    example_path.write_text(X.head(3).to_json(orient="split", index=False, double_precision=15))
    return model_path, example_path


def sample_rows(X: pd.DataFrame, n: int) -> pd.DataFrame:
    """n rows of X drawn with replacement, reproducibly."""
    rng = np.random.default_rng(SEED + n)
    return X.iloc[rng.integers(0, len(X), size=n)].reset_index(drop=True)


def encode(frame: pd.DataFrame, kind: str) -> bytes:
    """Serialize rows in one request format; floats use repr so every server parses equal values."""
    columns = [str(c) for c in frame.columns]
    values = frame.to_numpy(dtype=np.float64).tolist()
    if kind == "split":
        return json.dumps({"dataframe_split": {"columns": columns, "data": values}}).encode()
    if kind == "records":
        records = [dict(zip(columns, row, strict=True)) for row in values]
        return json.dumps({"dataframe_records": records}).encode()
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([repr(v) for v in row] for row in values)
        return out.getvalue().encode()
    if kind == "v2":
        flat = [v for row in values for v in row]
        tensor = {"name": "input-0", "shape": [len(values), len(columns)], "datatype": "FP64"}
        return json.dumps({"inputs": [{**tensor, "data": flat}]}).encode()
    raise ValueError(f"unknown payload kind {kind!r}; expected one of {sorted(CONTENT_TYPES)}")


def build_payloads(
    model: Any, X: pd.DataFrame, row_counts: tuple[int, ...], kinds: set[str]
) -> dict[tuple[int, str], Payload]:
    """All bodies keyed by (rows, kind), with the locally computed reference predictions."""
    payloads: dict[tuple[int, str], Payload] = {}
    for n in row_counts:
        frame = sample_rows(X, n)
        predicted = np.asarray(model.predict(frame))
        rtol = 1e-6 if predicted.dtype == np.float32 else 1e-9
        expected = predicted.astype(np.float64)
        for kind in sorted(kinds):
            body = encode(frame, kind)
            payloads[(n, kind)] = Payload(n, kind, CONTENT_TYPES[kind], body, expected, rtol)
    return payloads
