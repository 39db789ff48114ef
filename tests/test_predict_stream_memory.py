"""``modelpack predict`` scores a large file in flat memory: peak RSS grows by less than 300 MB over the same
command on a 1,000-row file (the interpreter, pandas and the model), for a 1,000,000-row CSV file (~215 MB).

bench/predict_stream.py measures the same on 5,000,000 rows, with rows per second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BLOCK = 10_000


def write_csv(path: Path, block: pd.DataFrame, rows: int) -> None:
    """``rows`` rows: ``block`` (written once, with exact numbers) repeated."""
    header, _, body = block.to_csv(index=False, float_format="%.17g").encode().partition(b"\n")
    lines = body.splitlines(keepends=True)
    with open(path, "wb") as f:
        f.write(header + b"\n")
        for _ in range(rows // len(lines)):
            f.write(body)
        f.write(b"".join(lines[:rows % len(lines)]))


def peak_rss_mb(argv: list[str]) -> float:
    """Run ``argv`` (a child of this process) to the end; its peak resident memory in MB."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else b""
    return usage.ru_maxrss / 1024  # KB on Linux


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KB on Linux")
def test_a_million_rows_score_in_flat_memory(tmp_path, diabetes, elasticnet, diabetes_model_dir):
    X, _ = diabetes
    rng = np.random.default_rng(0)
    block = X.sample(BLOCK, replace=True, random_state=0) + rng.normal(0, 0.001, (BLOCK, X.shape[1]))
    block.insert(0, "id", np.arange(BLOCK))
    write_csv(tmp_path / "small.csv", block, 1_000)
    write_csv(tmp_path / "big.csv", block, 1_000_000)
    assert (tmp_path / "big.csv").stat().st_size > 200e6

    cli = [sys.executable, "-m", "modelpack.cli", "predict", "-m", str(diabetes_model_dir), "--keep", "id",
           "--env-manager", "local"]
    baseline = peak_rss_mb([*cli, "-i", str(tmp_path / "small.csv"), "-o", str(tmp_path / "small-out.csv")])
    peak = peak_rss_mb([*cli, "-i", str(tmp_path / "big.csv"), "-o", str(tmp_path / "out.csv")])
    assert peak - baseline < 300, f"peak RSS {peak:.0f} MB, {peak - baseline:.0f} MB over {baseline:.0f} MB"

    with open(tmp_path / "out.csv", "rb") as f:
        assert sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) == 1_000_001
    head = pd.read_csv(tmp_path / "out.csv", nrows=BLOCK)
    assert head["id"].tolist() == list(range(BLOCK))
    np.testing.assert_allclose(head["prediction"], elasticnet.predict(block.drop(columns="id")), rtol=1e-12)
    tail = pd.read_csv(tmp_path / "out.csv", skiprows=range(1, 1_000_000 - 4))  # the last 5 rows
    assert tail["id"].tolist() == list(range(BLOCK - 5, BLOCK))
