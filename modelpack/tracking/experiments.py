"""EXPERIMENTS: named groups of runs, created on first use; each has an artifact directory under the root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from ..errors import quote, quote_names
from .errors import ExperimentNotFoundError, InvalidTrackingRequestError
from .schema import NAME_LENGTH, experiment_tags, experiments
from .store import Store, now_ms

#: The experiment of runs started without one (as in MLflow).
DEFAULT_EXPERIMENT = "Default"


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored; ids are strings, as MLflow users handle them."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


def check_name(name: object) -> str:
    """``name`` when it is a usable experiment name, else a clear error."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH:
        raise InvalidTrackingRequestError(
            f"An experiment name must be a non-empty string of at most {NAME_LENGTH} characters, got {quote(name)}")
    return name


def get_or_create(store: Store, name: str) -> Experiment:
    """The experiment called ``name``, created (with its artifact directory) when it does not exist yet."""
    check_name(name)
    found = get_by_name(store, name)
    if found is not None:
        return found
    try:
        with store.transaction() as conn:
            now = now_ms()
            created = conn.execute(experiments.insert().values(
                name=name, artifact_location="", creation_time=now, last_update_time=now)).inserted_primary_key
            assert created is not None
            new_id = created[0]
            location = store.artifact_root / str(new_id)
            conn.execute(update(experiments).where(experiments.c.experiment_id == new_id)
                         .values(artifact_location=str(location)))
    except IntegrityError:  # another process created it between the read and the insert
        pass
    found = get_by_name(store, name)
    assert found is not None, f"experiment {name!r} vanished right after it was created"
    return found


def get_by_name(store: Store, name: str) -> Experiment | None:
    with store.reading() as conn:
        row = conn.execute(select(experiments).where(experiments.c.name == name)).first()
        return None if row is None else _experiment(conn, row)


def get(store: Store, experiment_id: str | int) -> Experiment:
    """The experiment with this id, or :class:`ExperimentNotFoundError` naming the ones that exist."""
    try:
        key = int(experiment_id)
    except (TypeError, ValueError):
        key = -1
    with store.reading() as conn:
        row = conn.execute(select(experiments).where(experiments.c.experiment_id == key)).first()
        if row is not None:
            return _experiment(conn, row)
    raise ExperimentNotFoundError(f"No experiment with id {quote(experiment_id)} in {store.uri}; "
                                  f"experiments: {_names(store)}")


def by_names(store: Store, names: list[str]) -> list[Experiment]:
    """The experiments called ``names``; one unknown name is an error naming the ones that exist."""
    found = []
    for name in names:
        experiment = get_by_name(store, name)
        if experiment is None:
            raise ExperimentNotFoundError(f"No experiment called {quote(name)} in {store.uri}; "
                                          f"experiments: {_names(store)}")
        found.append(experiment)
    return found


def list_experiments(store: Store) -> list[Experiment]:
    """Every active experiment, oldest first."""
    with store.reading() as conn:
        rows = conn.execute(select(experiments).where(experiments.c.lifecycle_stage == "active")
                            .order_by(experiments.c.experiment_id)).all()
        return [_experiment(conn, row) for row in rows]


def _experiment(conn: Connection, row: Row[Any]) -> Experiment:
    m = row._mapping
    tags = dict(conn.execute(
        select(experiment_tags.c.key, experiment_tags.c.value)
        .where(experiment_tags.c.experiment_id == m["experiment_id"])).all())
    return Experiment(str(m["experiment_id"]), m["name"], m["artifact_location"], m["lifecycle_stage"],
                      m["creation_time"], m["last_update_time"], tags)


def _names(store: Store) -> str:
    with store.reading() as conn:
        return quote_names(conn.execute(select(experiments.c.name).order_by(experiments.c.experiment_id)).scalars())
