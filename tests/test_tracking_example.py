"""examples/train_diabetes.py, run as a user runs it: two trainings into a temporary tracking store, compared
with search_runs, the best model loaded back from the run's artifacts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelpack
from modelpack.tracking.store import Store, _forget_stores

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_diabetes.py"


@pytest.fixture
def tracking_dir(tmp_path, monkeypatch):
    from modelpack.tracking import fluent, uri

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(store))
    monkeypatch.setattr(uri, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_experiment_name", None)
    _forget_stores()
    yield store
    _forget_stores()


def _train(tmp_path: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rmse=" in out.stdout
    return out.stdout.strip().splitlines()[-1].split()[1].rstrip(":")


def test_train_diabetes_example_tracks_params_metrics_and_the_model(tracking_dir, tmp_path, diabetes):
    from sklearn.linear_model import ElasticNet
    from sklearn.model_selection import train_test_split

    strong = _train(tmp_path, "1.0", "0.5")
    weak = _train(tmp_path, "0.01", "0.75")
    runs = modelpack.search_runs("diabetes", order_by=["metrics.rmse ASC"])
    assert runs["run_id"].tolist() == [weak, strong]  # less regularisation fits this data better
    best = runs.iloc[0]
    assert (best["params.alpha"], best["params.l1_ratio"], best["run_name"]) == ("0.01", "0.75", "en-0.01-0.75")
    assert best["metrics.rmse"] < runs.iloc[1]["metrics.rmse"] and 0 < best["metrics.r2"] < 1
    assert best["metrics.mae"] < best["metrics.rmse"] and set(runs["status"]) == {"FINISHED"}
    assert len(modelpack.search_runs("diabetes", "metrics.rmse < 60 and params.alpha = '0.01'")) == 1

    X, y = diabetes
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42)
    expected = ElasticNet(alpha=0.01, l1_ratio=0.75, random_state=42).fit(X_train, y_train).predict(X_test.head(5))
    model_dir = Path(best["artifact_uri"]) / "model"
    loaded = modelpack.load_model(model_dir)
    assert list(loaded.predict(X_test.head(5))) == pytest.approx(list(expected))
    assert (model_dir / "input_example.json").is_file()

    info = modelpack.get_run(weak).info
    assert info.source_name == str(EXAMPLE)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert info.source_git_commit == (head.stdout.strip() if head.returncode == 0 else None)
    from modelpack.tracking.models import logged_models_of

    assert [m["artifact_path"] for m in logged_models_of(Store.open(), weak)] == ["model"]
