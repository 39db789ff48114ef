"""RUNS: create, end and read runs; log params (immutable), metrics (history + latest value) and tags.

Every function takes the :class:`Store` and a run id, so a tracking server can call them as the fluent API does.
Each call is one transaction: a metric's history row and its latest value are written together or not at all.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import quote
from .errors import InvalidTrackingRequestError, ParamChangeError, RunNotFoundError
from .experiments import Experiment
from .schema import NAME_LENGTH, PARAM_VALUE_LENGTH, latest_metrics, metrics, params, run_tags, runs
from .store import Store, now_ms

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
#: The states a run can end in.
END_STATUSES = (FINISHED, FAILED, KILLED)
#: Characters of a param, metric or tag key (those MLflow accepts).
_KEY_RE = re.compile(r"[\w\-. /:]+")


@dataclass(frozen=True)
class RunInfo:
    """What a run is: ids, name, status, times (ms since the epoch), who and what started it, where its files go."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    user_id: str
    source_name: str | None
    source_git_commit: str | None
    artifact_uri: str
    lifecycle_stage: str = "active"


@dataclass(frozen=True)
class RunData:
    """What a run logged: params, the latest value of each metric, and tags."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class Metric:
    """One logged value of a metric."""

    key: str
    value: float
    timestamp: int
    step: int


# -- runs -------------------------------------------------------------------------------------------------------


def create_run(store: Store, experiment: Experiment, *, run_name: str, user_id: str, source_name: str | None,
               source_git_commit: str | None, tags: Mapping[str, Any] | None = None,
               start_time: int | None = None) -> RunInfo:
    """A new RUNNING run in ``experiment`` (its artifact directory is made on first use)."""
    _check_run_name(run_name)
    run_id = uuid.uuid4().hex
    info = RunInfo(run_id=run_id, run_name=run_name, experiment_id=experiment.experiment_id, status=RUNNING,
                   start_time=start_time if start_time is not None else now_ms(), end_time=None,
                   user_id=user_id[:NAME_LENGTH], source_name=source_name, source_git_commit=source_git_commit,
                   artifact_uri=f"{experiment.artifact_location}/{run_id}/artifacts")
    tag_rows = [_tag_row(run_id, key, value) for key, value in (tags or {}).items()]
    with store.transaction() as conn:
        conn.execute(insert(runs).values(
            run_id=run_id, experiment_id=int(experiment.experiment_id), name=run_name, status=RUNNING,
            start_time=info.start_time, end_time=None, user_id=info.user_id, source_name=source_name,
            source_git_commit=source_git_commit, artifact_uri=info.artifact_uri))
        if tag_rows:
            conn.execute(insert(run_tags), tag_rows)
    return info


def resume_run(store: Store, run_id: str) -> RunInfo:
    """Mark an existing run RUNNING again (``start_run(run_id=...)``), keeping everything it logged."""
    with store.transaction() as conn:
        done = conn.execute(update(runs).where(runs.c.run_id == run_id).values(status=RUNNING, end_time=None))
        if done.rowcount == 0:
            raise _not_found(run_id, store)
    return get_info(store, run_id)


def end_run(store: Store, run_id: str, status: str = FINISHED, end_time: int | None = None) -> int:
    """Set a run's final status and end time (ms); returns the end time."""
    if status not in END_STATUSES:
        raise InvalidTrackingRequestError(f"A run ends as one of {list(END_STATUSES)}, got {quote(status)}")
    end = end_time if end_time is not None else now_ms()
    with store.transaction() as conn:
        done = conn.execute(update(runs).where(runs.c.run_id == run_id).values(status=status, end_time=end))
        if done.rowcount == 0:
            raise _not_found(run_id, store)
    return end


def get_info(store: Store, run_id: str) -> RunInfo:
    with store.reading() as conn:
        return _info(conn, run_id, store)


def get_run(store: Store, run_id: str) -> Run:
    """The run with its params, latest metrics and tags; :class:`RunNotFoundError` when there is none."""
    with store.reading() as conn:
        info = _info(conn, run_id, store)
        data = load_data(conn, [run_id])[run_id]
    return Run(info, data)


def load_data(conn: Connection, run_ids: list[str]) -> dict[str, RunData]:
    """Params, latest metrics and tags of many runs at once (three queries per 500 runs)."""
    found: dict[str, RunData] = {run_id: RunData() for run_id in run_ids}
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        for run_id, key, value in conn.execute(
                select(params.c.run_id, params.c.key, params.c.value).where(params.c.run_id.in_(chunk))):
            found[run_id].params[key] = value
        for run_id, key, value, is_nan in conn.execute(
                select(latest_metrics.c.run_id, latest_metrics.c.key, latest_metrics.c.value,
                       latest_metrics.c.is_nan).where(latest_metrics.c.run_id.in_(chunk))):
            found[run_id].metrics[key] = math.nan if is_nan else value
        for run_id, key, value in conn.execute(
                select(run_tags.c.run_id, run_tags.c.key, run_tags.c.value).where(run_tags.c.run_id.in_(chunk))):
            found[run_id].tags[key] = value
    return found


def info_from_row(row: Any) -> RunInfo:
    m = row._mapping
    return RunInfo(run_id=m["run_id"], run_name=m["name"], experiment_id=str(m["experiment_id"]),
                   status=m["status"], start_time=m["start_time"], end_time=m["end_time"], user_id=m["user_id"],
                   source_name=m["source_name"], source_git_commit=m["source_git_commit"],
                   artifact_uri=m["artifact_uri"], lifecycle_stage=m["lifecycle_stage"])


def _info(conn: Connection, run_id: str, store: Store) -> RunInfo:
    row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
    if row is None:
        raise _not_found(run_id, store)
    return info_from_row(row)


def _not_found(run_id: object, store: Store) -> RunNotFoundError:
    return RunNotFoundError(f"No run with id {quote(run_id)} in the tracking store {store.uri}")


# -- params -----------------------------------------------------------------------------------------------------


def log_params(store: Store, run_id: str, values: Mapping[str, Any]) -> None:
    """Log params; a key logged before must keep its value (:class:`ParamChangeError` names both values).
    All or nothing: when one value conflicts, none of the call's params is logged."""
    rows = {check_key(key, "param"): _param_value(key, value) for key, value in values.items()}
    if not rows:
        return
    for attempt in range(2):
        try:
            with store.transaction() as conn:
                existing = dict(conn.execute(select(params.c.key, params.c.value).where(
                    params.c.run_id == run_id, params.c.key.in_(list(rows)))).all())
                for key, value in rows.items():
                    if key in existing and existing[key] != value:
                        raise ParamChangeError(
                            f"Param {quote(key)} of run {run_id} was logged with value {quote(existing[key])}; "
                            f"it cannot change to {quote(value)} (params are immutable: log the new value under "
                            "another key, or start a new run)")
                new = [{"run_id": run_id, "key": k, "value": v} for k, v in rows.items() if k not in existing]
                if new:
                    conn.execute(insert(params), new)
            return
        except IntegrityError as exc:
            _raise_if_no_run(store, run_id, exc)
            if attempt:  # a concurrent writer logged the same key between the read and the insert: read again
                raise


def _param_value(key: str, value: Any) -> str:
    text = str(value)
    if len(text) > PARAM_VALUE_LENGTH:
        raise InvalidTrackingRequestError(
            f"Param {quote(key)} has a value of {len(text)} characters; the most is {PARAM_VALUE_LENGTH} "
            "(log long values as an artifact)")
    return text


# -- metrics ----------------------------------------------------------------------------------------------------


def metric_row(run_id: str, key: str, value: Any, timestamp: int | None, step: int | None) -> dict[str, Any]:
    """The ``metrics`` row of one logged value (checked: a key, a number, an integer step and timestamp)."""
    check_key(key, "metric")
    if isinstance(value, (str, bytes)):
        raise InvalidTrackingRequestError(f"Metric {quote(key)} must be a number, got the string {quote(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidTrackingRequestError(
            f"Metric {quote(key)} must be a number, got {quote(value)} ({type(value).__name__})") from None
    is_nan = math.isnan(number)
    return {"run_id": run_id, "key": key, "value": 0.0 if is_nan else number, "is_nan": is_nan,
            "timestamp": now_ms() if timestamp is None else _integer(timestamp, "timestamp", key),
            "step": 0 if step is None else _integer(step, "step", key)}


def log_metric_rows(store: Store, run_id: str, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` (from :func:`metric_row`) to each key's history and update the latest values, in one
    transaction."""
    if not rows:
        return
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # one row per key for the upsert: the one that would win
        held = latest.get(row["key"])
        if held is None or (row["step"], row["timestamp"]) >= (held["step"], held["timestamp"]):
            latest[row["key"]] = row
    try:
        with store.transaction() as conn:
            conn.execute(_METRICS_INSERT, rows)
            _upsert_latest(conn, list(latest.values()))
    except IntegrityError as exc:
        _raise_if_no_run(store, run_id, exc)
        raise


def metric_history(store: Store, run_id: str, key: str) -> list[Metric]:
    """Every value logged for ``key`` in the run, by step then timestamp."""
    with store.reading() as conn:
        rows = conn.execute(
            select(metrics.c.key, metrics.c.value, metrics.c.timestamp, metrics.c.step, metrics.c.is_nan)
            .where(metrics.c.run_id == run_id, metrics.c.key == key)
            .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)).all()
    return [Metric(k, math.nan if nan else v, ts, step) for k, v, ts, step, nan in rows]


_METRICS_INSERT = insert(metrics)
_LATEST_UPSERTS: dict[str, Any] = {}


def _upsert_latest(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Keep each key's latest value: the highest step, then the latest timestamp (a tie goes to the newer call)."""
    dialect = conn.dialect.name
    statement = _LATEST_UPSERTS.get(dialect)
    if statement is None and dialect in ("sqlite", "postgresql"):
        statement = _LATEST_UPSERTS[dialect] = _dialect_upsert(dialect)
    if statement is not None:
        conn.execute(statement, rows)
        return
    for row in rows:  # other databases: update when newer, insert when missing
        t = latest_metrics.c
        newer = or_(t.step < row["step"], and_(t.step == row["step"], t.timestamp <= row["timestamp"]))
        values = {k: row[k] for k in ("value", "timestamp", "step", "is_nan")}
        done = conn.execute(update(latest_metrics).where(t.run_id == row["run_id"], t.key == row["key"], newer)
                            .values(**values))
        if done.rowcount == 0 and conn.execute(select(t.key).where(t.run_id == row["run_id"],
                                                                   t.key == row["key"])).first() is None:
            conn.execute(insert(latest_metrics).values(**row))


def _dialect_insert(dialect: str, table: Table) -> Any:
    """INSERT with ON CONFLICT of SQLite or PostgreSQL (the same construct in both)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    return postgresql_insert(table)


def _dialect_upsert(dialect: str) -> Any:
    statement = _dialect_insert(dialect, latest_metrics)
    new, held = statement.excluded, latest_metrics.c
    return statement.on_conflict_do_update(
        index_elements=[held.run_id, held.key],
        set_={"value": new.value, "timestamp": new.timestamp, "step": new.step, "is_nan": new.is_nan},
        where=or_(new.step > held.step, and_(new.step == held.step, new.timestamp >= held.timestamp)),
    )


def _integer(value: Any, what: str, key: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or isinstance(value, bool) or number != value:
        raise InvalidTrackingRequestError(f"The {what} of metric {quote(key)} must be an integer, got {quote(value)}")
    return number


# -- tags -------------------------------------------------------------------------------------------------------


def set_tags(store: Store, run_id: str, values: Mapping[str, Any]) -> None:
    """Set tags (a tag's value may change; the last write wins)."""
    rows = [_tag_row(run_id, key, value) for key, value in values.items()]
    if not rows:
        return
    try:
        with store.transaction() as conn:
            dialect = conn.dialect.name
            if dialect in ("sqlite", "postgresql"):
                conn.execute(_tag_upsert(dialect), rows)
            else:
                conn.execute(delete(run_tags).where(run_tags.c.run_id == run_id,
                                                    run_tags.c.key.in_([r["key"] for r in rows])))
                conn.execute(insert(run_tags), rows)
    except IntegrityError as exc:
        _raise_if_no_run(store, run_id, exc)
        raise


def _tag_upsert(dialect: str) -> Any:
    statement = _dialect_insert(dialect, run_tags)
    return statement.on_conflict_do_update(index_elements=[run_tags.c.run_id, run_tags.c.key],
                                           set_={"value": statement.excluded.value})


def _tag_row(run_id: str, key: str, value: Any) -> dict[str, Any]:
    return {"run_id": run_id, "key": check_key(key, "tag"), "value": str(value)}


# -- checks -----------------------------------------------------------------------------------------------------


def check_key(key: Any, kind: str) -> str:
    """``key`` when it is a valid param, metric or tag key: letters, digits, ``_ - . / :`` and spaces."""
    if not isinstance(key, str) or len(key) > NAME_LENGTH or not _KEY_RE.fullmatch(key):
        raise InvalidTrackingRequestError(
            f"Invalid {kind} key {quote(key)}: a key is 1 to {NAME_LENGTH} letters, digits, spaces and '_-./:'")
    return key


def _check_run_name(name: Any) -> None:
    if not isinstance(name, str) or not name or len(name) > NAME_LENGTH:
        raise InvalidTrackingRequestError(
            f"A run name must be a non-empty string of at most {NAME_LENGTH} characters, got {quote(name)}")


def _raise_if_no_run(store: Store, run_id: str, exc: Exception) -> None:
    with store.reading() as conn:
        if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is None:
            raise _not_found(run_id, store) from exc


__all__ = ["END_STATUSES", "FAILED", "FINISHED", "KILLED", "RUNNING", "Metric", "Run", "RunData", "RunInfo",
           "create_run", "end_run", "get_info", "get_run", "load_data", "log_metric_rows", "log_params",
           "metric_history", "metric_row", "resume_run", "set_tags"]
