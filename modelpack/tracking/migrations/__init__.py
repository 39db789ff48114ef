"""MIGRATIONS: bring a store's database to this version's schema with Alembic (scripts in ``versions/``).

``upgrade(engine)`` runs every time a process opens a store, so the common case is cheap: one query reads
``alembic_version``, and Alembic is imported only when that revision is not :data:`HEAD`. The upgrade itself
holds a database-wide lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock) and
reads the revision again under it, so two processes opening a new store at once migrate it once; the DDL runs
in that same transaction (both databases have transactional DDL), so a killed upgrade leaves the old schema.

A database whose revision this modelpack does not know was written by a newer one: it is refused
(:class:`StoreVersionError`) rather than touched.

Adding a revision (a change to ``schema.py``): ``python -m modelpack.tracking.migrations revision "add x"``
writes ``versions/vNNNN_add_x.py`` from Alembic's comparison of ``schema.py`` with a database at the current
head; review it, then set :data:`HEAD` to the new id (tests/test_tracking_migrations.py checks both).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import __version__
from ..errors import StoreVersionError, TrackingError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

#: The newest revision in ``versions/`` (checked against Alembic's own view by the tests).
HEAD = "0001"
HERE = Path(__file__).resolve().parent
#: PostgreSQL advisory-lock key of the migration (any constant; "modelpack" in hex, cut to 63 bits).
_PG_LOCK_KEY = 0x6D6F64656C7061


def upgrade(engine: Engine) -> None:
    """Bring ``engine``'s database to :data:`HEAD` (a no-op costing one query when it is there already)."""
    if current_revision(engine) == HEAD:
        return
    _migrate(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision in ``alembic_version`` (None when the table is missing: a new database, or one that cannot
    be read, which :func:`_migrate` then reports)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except DBAPIError:
        return None
    return None if row is None else str(row[0])


def _migrate(engine: Engine) -> None:
    alembic_logger = logging.getLogger("alembic")
    if alembic_logger.level == logging.NOTSET:  # Alembic's step-by-step INFO lines are noise to our users
        alembic_logger.setLevel(logging.WARNING)
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    try:
        conn = engine.connect()
    except Exception as exc:
        raise TrackingError(f"Cannot connect to the tracking database {_safe_url(engine)}",
                            f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}") from exc
    with conn:
        _lock(conn)
        found = MigrationContext.configure(conn).get_current_revision()
        if found == HEAD:  # another process migrated it while this one waited for the lock
            conn.rollback()
            return
        if found is not None and not _known(script, found):
            conn.rollback()
            raise StoreVersionError(
                f"The tracking database {_safe_url(engine)} has schema revision {found!r}, which modelpack "
                f"{__version__} does not know (its newest is {HEAD!r}): it was written by a newer modelpack; "
                "upgrade modelpack to use it")
        if found is None:
            logger.info("Creating the tracking database %s (schema revision %s)", _safe_url(engine), HEAD)
        else:
            logger.info("Upgrading the tracking database %s from revision %s to %s", _safe_url(engine), found, HEAD)
        try:
            from alembic import command

            command.upgrade(_config(conn), "head")
            conn.commit()
        except Exception as exc:
            conn.rollback()
            if conn.dialect.name not in ("sqlite", "postgresql") and current_revision(engine) == HEAD:
                return  # unlocked databases: another process's concurrent migration won
            raise TrackingError(
                f"Could not bring the tracking database {_safe_url(engine)} from schema revision {found!r} "
                f"to {HEAD!r}", f"{type(exc).__name__}: {exc}") from exc


def _lock(conn: Connection) -> None:
    """Take the database-wide lock for the rest of ``conn``'s transaction."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write
    elif dialect == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
    # other databases: no lock; of two concurrent first migrations one fails, then finds the schema at HEAD


def _known(script: Any, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _config(connection: Connection | None = None) -> Config:
    """Alembic's configuration in code (no alembic.ini): the scripts here, and the connection to use."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")  # a module name mypy accepts
    config.attributes["connection"] = connection
    return config


def _safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def new_revision(message: str) -> Path:
    """Write the next revision script from the difference between ``schema.py`` and a database at :data:`HEAD`
    (a developer's tool: review the script it writes)."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    script = ScriptDirectory.from_config(_config())
    number = int(script.get_current_head() or "0") + 1
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/head.db")
        try:
            _migrate(engine)
            with engine.connect() as conn:
                result = command.revision(_config(conn), message, autogenerate=True, rev_id=f"{number:04d}")
        finally:
            engine.dispose()
    written = result[0] if isinstance(result, list) else result
    assert written is not None
    return Path(written.path)
