"""STORE: where tracking and registry data live - a SQLAlchemy database and an artifact root directory.

``Store.open(uri)`` resolves a tracking URI (``MODELPACK_TRACKING_URI`` or ``set_tracking_uri``; default
``./mlruns``) once per process:

- a directory path or ``file://`` URI: SQLite ``<dir>/modelpack.db``, artifacts under ``<dir>/artifacts``;
- any SQLAlchemy URL (``sqlite:///path/to.db``, ``postgresql+psycopg://user@host/db``): that database, artifacts
  under ``MODELPACK_ARTIFACT_ROOT``, or for SQLite the ``artifacts`` directory next to the database file.

The schema is brought to this version's head when the store is opened (migrations/). Writers use
``with store.transaction() as conn:``; every write of one call (a metric and its latest value, a version and
its number) is one transaction.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TrackingError
from .uri import get_tracking_uri, resolve

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


_stores: dict[str, Store] = {}
_lock = threading.Lock()


def now_ms() -> int:
    """Milliseconds since the epoch: the unit of every time in the store."""
    return time.time_ns() // 1_000_000


@dataclass
class Store:
    """An open store: the engine and the artifact root (see the module docstring)."""

    uri: str
    engine: Engine
    artifact_root: Path

    @classmethod
    def open(cls, uri: str | os.PathLike[str] | None = None) -> Store:
        """The store at ``uri`` (default: the tracking URI in effect), opened once per process and URI."""
        key = str(uri) if uri is not None else get_tracking_uri()
        with _lock:
            store = _stores.get(key)
            if store is None:
                store = _stores[key] = cls._connect(key)
        return store

    @classmethod
    def _connect(cls, uri: str) -> Store:
        url, artifact_root = resolve(uri)
        engine = _create_engine(url)
        from .migrations import upgrade

        upgrade(engine)
        return cls(uri, engine, artifact_root)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction, committed when the block ends (rolled back if it raises)."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads."""
        with self.engine.connect() as conn:
            yield conn


def _create_engine(url: str) -> Engine:
    try:
        from sqlalchemy import create_engine, event
    except ImportError as exc:
        raise TrackingError("Tracking needs SQLAlchemy and Alembic, which are not installed: "
                            "pip install 'modelpack[tracking]'") from exc
    if url.startswith("sqlite"):
        # WAL: readers never block the writer; busy_timeout: concurrent writers wait instead of failing.
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=60000")  # first: switching to WAL may wait for a lock
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # in WAL: durable across a crash of the process
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:  # the URL's driver (psycopg for postgresql+psycopg://)
        hint = " (pip install 'modelpack[postgres]')" if url.startswith("postgres") else ""
        raise TrackingError(f"The database driver of tracking URI {_safe(url)} is not installed{hint}",
                            str(exc)) from exc
    except Exception as exc:  # a malformed URL or an unknown dialect
        raise TrackingError(f"Tracking URI {_safe(url)} is not a usable SQLAlchemy URL", str(exc)) from exc


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return "(unparsable URL)"


def _after_fork_in_child() -> None:
    # A forked child must not use the parent's pooled connections (SQLAlchemy's advice): new ones per process.
    for store in list(_stores.values()):
        store.engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _forget_stores() -> None:
    """Drop the per-process cache (after a fork, or when tests switch tracking URIs)."""
    with _lock:
        for store in _stores.values():
            store.engine.dispose()
        _stores.clear()
