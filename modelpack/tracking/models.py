"""MODELS: ``log_model`` saves a model into a run's artifacts through ``save_model``, then records it.

``save_model`` writes into a staging directory renamed into place when complete, and the ``logged_models`` row
is inserted only after that rename: a process killed at any moment leaves no row pointing at a missing or
half-written model (at worst a complete model directory without a row, which logging again replaces).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import quote
from .artifacts import artifact_dir, destination
from .errors import InvalidTrackingRequestError
from .runs import get_info
from .schema import logged_models
from .store import Store, now_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """A model logged into a run: where it is and how to name it (``model_uri``, ``runs:/<run_id>/<path>``)."""

    run_id: str
    artifact_path: str
    model_uri: str
    path: str
    model_uuid: str
    flavors: tuple[str, ...]
    creation_time: int
    registered_model_version: int | None = None


def log_model(store: Store, run_id: str, model: Any, artifact_path: str = "model", *, input_example: Any = None,
              signature: Any = None, registered_model_name: str | None = None, **save_kwargs: Any) -> ModelInfo:
    """Save ``model`` at ``<run artifacts>/<artifact_path>``, record it, and register it under
    ``registered_model_name`` when given (``modelpack.registry.register_model``)."""
    from ..save import save_model

    info = get_info(store, run_id)
    target = destination(artifact_dir(info.artifact_uri), artifact_path)
    if target == artifact_dir(info.artifact_uri):
        raise InvalidTrackingRequestError("log_model needs an artifact_path inside the run's artifacts, e.g. 'model'")
    path_key = target.relative_to(artifact_dir(info.artifact_uri)).as_posix()
    with store.reading() as conn:
        if conn.execute(select(logged_models.c.run_id).where(logged_models.c.run_id == run_id,
                                                             logged_models.c.artifact_path == path_key)).first():
            raise InvalidTrackingRequestError(
                f"Run {run_id} already has a model at {quote(path_key)}; log this one under another artifact_path")
    # A directory without a row is a model whose process died between the save and the insert: replace it.
    descriptor = save_model(model, target, input_example=input_example, signature=signature,
                            overwrite=target.exists(), **save_kwargs)
    flavors = tuple(descriptor.flavors)
    created = now_ms()
    try:
        with store.transaction() as conn:
            conn.execute(insert(logged_models).values(run_id=run_id, artifact_path=path_key,
                                                      model_uuid=descriptor.model_uuid, flavors=",".join(flavors),
                                                      creation_time=created))
    except IntegrityError as exc:
        raise InvalidTrackingRequestError(
            f"Run {run_id} got another model at {quote(path_key)} while this one was saved (a concurrent "
            "log_model); the directory holds the last one saved") from exc
    model_uri = f"runs:/{run_id}/{path_key}"
    version = None
    if registered_model_name is not None:
        from ..registry import register_model

        registered = register_model(model_uri, registered_model_name)
        version = getattr(registered, "version", None)
        version = int(version) if version is not None else None
    logger.info("Logged model %s (%s)", model_uri, ", ".join(flavors))
    return ModelInfo(run_id, path_key, model_uri, str(target), descriptor.model_uuid, flavors, created, version)


def logged_models_of(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The models logged into a run: artifact_path, model_uuid, flavors (a list), creation_time."""
    with store.reading() as conn:
        rows = conn.execute(select(logged_models).where(logged_models.c.run_id == run_id)
                            .order_by(logged_models.c.creation_time)).all()
    return [{"artifact_path": r.artifact_path, "model_uuid": r.model_uuid, "flavors": r.flavors.split(","),
             "creation_time": r.creation_time} for r in rows]
