"""The executor side's loaded models: one scorer per model and Python worker process, kept across tasks.

Spark reuses its Python worker processes between tasks (``spark.python.worker.reuse``, on by default), and
this module lives as long as the process, so a model is loaded once per worker, not once per batch or task.
The key is the shipped model's identity (its path and uuid on the driver, and a digest of its files) with the
environment manager, so two UDFs of one model share the loaded copy.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from .results import Columns, output_columns
from .ship import ShippedModel

logger = logging.getLogger(__name__)


class Scorer(Protocol):
    def alive(self) -> bool: ...

    def predict(self, frame: Any, params: dict[str, Any] | None) -> Columns: ...


class LocalScorer:
    """The model loaded in this interpreter (``env_manager="local"``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def alive(self) -> bool:
        return True

    def predict(self, frame: Any, params: dict[str, Any] | None) -> Columns:
        return output_columns(self.model.predict(frame, params), len(frame))


_scorers: dict[tuple[str, str], Scorer] = {}
_lock = threading.Lock()


def scorer_for(shipped: ShippedModel, env_manager: str) -> Scorer:
    """The scorer of ``shipped`` in this process, loading it (and building its environment) on first use."""
    key = (shipped.key, env_manager)
    with _lock:
        scorer = _scorers.get(key)
        if scorer is not None and scorer.alive():
            return scorer
        started = time.monotonic()
        model_dir = shipped.local_dir()
        if env_manager == "local":
            from ..pyfunc import load_model

            scorer = LocalScorer(load_model(model_dir))
        else:
            from ..env.build import ensure_environment
            from .worker import ScoringProcess

            env = ensure_environment(model_dir, env_manager)
            scorer = ScoringProcess(str(env.python), model_dir)
        _scorers[key] = scorer
        logger.info("Loaded model %s (%s) in %.2fs", shipped.source, env_manager, time.monotonic() - started)
        return scorer
