"""LOAD: the models of a :class:`ServeConfig`, loaded, and the scoring app around them (in the gunicorn master
before fork, in each worker after it, and again on reload)."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from ..config import ServeConfig

logger = logging.getLogger("modelpack.server")


def load_app(config: ServeConfig) -> Any:
    """The scoring app with its model loaded (ModelpackError if the model cannot be)."""
    from .app import create_app
    from .observe import observe_app

    models, sources = load_models(config)
    return observe_app(create_app(models, config, sources), config)  # request ids, access log, metrics


def load_models(config: ServeConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """Every model of ``config`` loaded, by name, and the URI each was named by (ModelpackError naming the
    model that cannot be loaded, for a server of several)."""
    import time

    from ..errors import ModelpackError
    from ..pyfunc import load_model
    from .observe import note_model_load

    models: dict[str, Any] = {}
    sources: dict[str, str] = {}
    served = config.served_models()
    for model in served:
        started = time.perf_counter()
        try:
            models[model.name] = load_model(model.path)
        except ModelpackError as exc:
            if len(served) > 1:
                exc.message = f"model {model.name!r} ({model.uri or model.path}): {exc.message}"
            raise
        sources[model.name] = model.uri or str(model.path)
        seconds = time.perf_counter() - started
        note_model_load(model.name, seconds)
        logger.debug("Loaded model %r in %.3f s", model.name, seconds)
    return models, sources


def load_app_in_worker(config: ServeConfig) -> Any:
    """``load_app`` in a worker after fork; a model that cannot be loaded stops the server with exit code 3
    (gunicorn's "worker failed to boot")."""
    from ..errors import ModelpackError

    try:
        app = load_app(config)
    except ModelpackError as exc:
        logger.error("Error: %s", exc.message)
        sys.exit(3)
    gc.collect()
    gc.freeze()  # as the master does (below): full collections need not walk the model
    return app
