"""Shared fixtures: tiny models trained at test time and a real gunicorn server on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Server, start_server


@pytest.fixture(autouse=True)
def _clean_modelpack_environment(monkeypatch):
    """Every test starts without the caller's MODELPACK_* settings (they would change ports, caches,
    limits and log levels under it), and whatever a test sets is undone after it."""
    import os

    for name in [n for n in os.environ if n.startswith("MODELPACK_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def diabetes():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def elasticnet(diabetes):
    from sklearn.linear_model import ElasticNet

    X, y = diabetes
    return ElasticNet(alpha=0.01, l1_ratio=0.5).fit(X, y)


@pytest.fixture(scope="session")
def diabetes_model_dir(tmp_path_factory, diabetes, elasticnet) -> Path:
    """The README's diabetes model, saved once per session with an input example."""
    import modelpack

    X, _ = diabetes
    path = tmp_path_factory.mktemp("models") / "diabetes_model"
    modelpack.save_model(elasticnet, path, input_example=X.head(3))
    return path


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., Server]]:
    """Start servers for a test; every one is stopped (and must stop) at teardown."""
    servers: list[Server] = []

    def _serve(model_dir: Path, *extra: str, **kw) -> Server:
        server = start_server(model_dir, tmp_path, *extra, **kw)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        try:
            server.stop()
        except AssertionError:
            pass


@pytest.fixture(scope="session")
def custom_model_dir(tmp_path_factory) -> Path:
    """A custom PythonModel without a signature: doubles column 'x' times param 'scale',
    raises ValueError on negative input (to test the 500 path), echoes arrays as given."""
    import numpy as np
    import pandas as pd

    import modelpack

    class Doubler(modelpack.PythonModel):  # defined locally so cloudpickle stores it by value
        def predict(self, context, model_input, params=None):
            scale = (params or {}).get("scale", 1)
            if isinstance(model_input, pd.DataFrame):
                if (model_input["x"] < 0).any():
                    raise ValueError("negative input: secret-row-value")
                return model_input["x"].to_numpy() * 2 * scale
            if isinstance(model_input, dict):
                return {k: np.asarray(v).tolist() for k, v in model_input.items()}
            return np.asarray(model_input) * 2 * scale

    path = tmp_path_factory.mktemp("models") / "custom_model"
    modelpack.save_model(Doubler(), path)
    return path
