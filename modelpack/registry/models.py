"""REGISTERED MODELS: a name (created by its first ``register_model``), a description and tags.

Also the registry's shared pieces: name checks, the not-found error that names what exists, and the upsert
that moves an alias or touches a model in one statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, insert, select, update

from ..errors import InvalidInputError, ModelLoadError, quote, quote_names
from ..tracking import schema
from ..tracking.store import Store, now_ms

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

#: Characters a registered model name or an alias may not hold: they separate the parts of a ``models:/`` URI
#: (``/``, ``@``) or of a path (``\\``), and control characters.
_FORBIDDEN = re.compile(r"[/\\@\x00-\x1f\x7f]")


class ModelNotFoundError(ModelLoadError):
    """A model URI or registry call names a run, registered model, version or alias that does not exist;
    the message names the ones that do."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    status = 404


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model: its name, description, tags, aliases (alias -> version) and newest version."""

    name: str
    description: str | None
    creation_timestamp: int
    last_updated_timestamp: int
    latest_version: int | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "creation_timestamp": self.creation_timestamp,
                "last_updated_timestamp": self.last_updated_timestamp, "latest_version": self.latest_version,
                "tags": dict(self.tags), "aliases": dict(self.aliases)}


def check_name(name: object, what: str = "registered model name") -> str:
    """``name`` if it can be a registered model name (or, with ``what``, an alias); InvalidInputError if not."""
    a_what = f"{'an' if what[0] in 'aeiou' else 'a'} {what}"
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{a_what.capitalize()} must be a non-empty string, got {quote(name)}")
    if len(name) > schema.NAME_LENGTH:
        raise InvalidInputError(f"{a_what.capitalize()} is at most {schema.NAME_LENGTH} characters, got {len(name)}")
    bad = _FORBIDDEN.search(name)
    if bad:
        raise InvalidInputError(f"Invalid {what} {quote(name)}: it holds {bad.group()!r}; {a_what} may not contain "
                                "'/', '\\', '@' or control characters")
    if name in (".", "..") or name != name.strip():
        why = "is '.' or '..'" if name in (".", "..") else "has leading or trailing spaces"
        raise InvalidInputError(f"Invalid {what} {quote(name)}: it {why}")
    return name


def check_key(key: object) -> str:
    """``key`` if it can be a tag key (a non-empty string of at most NAME_LENGTH characters)."""
    if not isinstance(key, str) or not key or len(key) > schema.NAME_LENGTH:
        raise InvalidInputError(f"A tag key must be a string of 1 to {schema.NAME_LENGTH} characters, "
                                f"got {quote(key)}")
    return key


def registered_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(schema.registered_models.c.name).order_by(schema.registered_models.c.name))
                .scalars())


def require_model(conn: Connection, name: str) -> Any:
    """The ``registered_models`` row of ``name``; ModelNotFoundError naming the registered models if none."""
    row = conn.execute(select(schema.registered_models).where(schema.registered_models.c.name == name)).first()
    if row is None:
        names = registered_names(conn)
        listed = f"registered models: {quote_names(names)}" if names else "no model is registered yet"
        raise ModelNotFoundError(f"No registered model named {quote(name)}; {listed}")
    return row


def upsert(conn: Connection, table: Table, values: Mapping[str, Any], keys: Iterable[str],
           changes: Mapping[str, Any]) -> None:
    """Insert ``values`` into ``table``, or where a row with the same ``keys`` exists set ``changes`` on it: one
    statement on SQLite and PostgreSQL (so it is atomic, and on PostgreSQL it locks the row until commit)."""
    keys = list(keys)
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        statement: Any
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(table)
        else:
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            statement = postgresql_insert(table)
        conn.execute(statement.values(**values).on_conflict_do_update(index_elements=keys, set_=dict(changes)))
        return
    where = and_(*(table.c[k] == values[k] for k in keys))
    if conn.execute(update(table).where(where).values(**changes)).rowcount == 0:
        conn.execute(insert(table).values(**values))


def touch_model(conn: Connection, name: str, now: int) -> None:
    """Create the registered model ``name`` or bump its update time. The first write of a registration: on
    PostgreSQL it locks the model's row, so registrations of one name take their numbers one at a time."""
    upsert(conn, schema.registered_models,
           {"name": name, "creation_time": now, "last_updated_time": now}, ["name"], {"last_updated_time": now})


def _model(conn: Connection, row: Any) -> RegisteredModel:
    t, a, v = schema.registered_model_tags, schema.registered_model_aliases, schema.model_versions
    tags = dict(conn.execute(select(t.c.key, t.c.value).where(t.c.name == row.name)).all())
    aliases = dict(conn.execute(select(a.c.alias, a.c.version).where(a.c.name == row.name)
                                .order_by(a.c.alias)).all())
    latest = conn.execute(select(func.max(v.c.version)).where(v.c.name == row.name)).scalar()
    return RegisteredModel(row.name, row.description, row.creation_time, row.last_updated_time, latest, tags,
                           aliases)


def get_registered_model(name: str) -> RegisteredModel:
    """The registered model ``name``; ModelNotFoundError naming the registered models if there is none."""
    with Store.open().reading() as conn:
        return _model(conn, require_model(conn, name))


def list_registered_models() -> list[RegisteredModel]:
    """Every registered model, by name."""
    with Store.open().reading() as conn:
        rows = conn.execute(select(schema.registered_models).order_by(schema.registered_models.c.name)).all()
        return [_model(conn, row) for row in rows]


def update_registered_model(name: str, description: str | None) -> RegisteredModel:
    """Set the description of the registered model ``name``."""
    with Store.open().transaction() as conn:
        require_model(conn, name)
        conn.execute(update(schema.registered_models).where(schema.registered_models.c.name == name)
                     .values(description=description, last_updated_time=now_ms()))
    return get_registered_model(name)


def set_registered_model_tag(name: str, key: str, value: str) -> None:
    """Set tag ``key`` of the registered model ``name`` (replacing its value)."""
    check_key(key)
    with Store.open().transaction() as conn:
        require_model(conn, name)
        upsert(conn, schema.registered_model_tags, {"name": name, "key": key, "value": str(value)},
               ["name", "key"], {"value": str(value)})
