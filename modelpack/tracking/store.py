"""STORE: where tracking and registry data live - a SQLAlchemy database and an artifact root directory.

``Store.open(uri)`` resolves a tracking URI (``MODELPACK_TRACKING_URI`` or ``set_tracking_uri``; default
``./mlruns``) once per process:

- a directory path or ``file://`` URI: SQLite ``<dir>/modelpack.db``, artifacts under ``<dir>/artifacts``;
- any SQLAlchemy URL (``sqlite:///path/to.db``, ``postgresql+psycopg://user@host/db``): that database, artifacts
  under ``MODELPACK_ARTIFACT_ROOT``, or for SQLite the ``artifacts`` directory next to the database file.

The schema is brought to this version's head when the store is opened (migrations.py). Writers use
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

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

DEFAULT_TRACKING_DIR = "mlruns"
DB_FILE = "modelpack.db"
ARTIFACTS_DIR = "artifacts"

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
        from .uri import get_tracking_uri

        key = str(uri) if uri is not None else get_tracking_uri()
        with _lock:
            store = _stores.get(key)
            if store is None:
                store = _stores[key] = cls._connect(key)
        return store

    @classmethod
    def _connect(cls, uri: str) -> Store:
        from .uri import resolve

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
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite"):
        # WAL: readers never block the writer; busy_timeout: concurrent writers wait instead of failing.
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _forget_stores() -> None:
    """Drop the per-process cache (after a fork, or when tests switch tracking URIs)."""
    with _lock:
        for store in _stores.values():
            store.engine.dispose()
        _stores.clear()
