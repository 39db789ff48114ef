"""ALIASES: a name (``champion``, ``challenger``) for one version of a registered model, moved atomically.

An alias is one row; ``set_alias`` is one upsert, so a reader sees the old version or the new one, never neither.
``latest`` is reserved: ``models:/<name>/latest`` always means the highest version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from ..errors import InvalidInputError, quote
from ..tracking import schema
from ..tracking.store import Store, now_ms
from .models import ModelNotFoundError, check_name, require_model, upsert
from .versions import ModelVersion, parse_version, read_version, require_version

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

#: Aliases no version may take (compared case-insensitively).
RESERVED_ALIASES = frozenset({"latest"})


def check_alias(alias: object) -> str:
    """``alias`` if a version may take it; InvalidInputError naming the problem otherwise."""
    check_name(alias, "alias")
    assert isinstance(alias, str)
    if alias.lower() in RESERVED_ALIASES:
        raise InvalidInputError(f"The alias {quote(alias)} is reserved: models:/<name>/latest always names the "
                                "highest version; choose another alias (e.g. 'champion')")
    return alias


def set_alias(name: str, alias: str, version: int | str) -> ModelVersion:
    """Point ``alias`` of the registered model ``name`` at ``version`` (moving it from the version it named)."""
    check_alias(alias)
    number = parse_version(version)
    now = now_ms()
    with Store.open().transaction() as conn:
        require_version(conn, name, number)
        upsert(conn, schema.registered_model_aliases, {"name": name, "alias": alias, "version": number},
               ["name", "alias"], {"version": number})
        conn.execute(update(schema.registered_models).where(schema.registered_models.c.name == name)
                     .values(last_updated_time=now))
        return read_version(conn, name, number)


def delete_alias(name: str, alias: str) -> None:
    """Remove ``alias`` from the registered model ``name``; ModelNotFoundError naming its aliases if it has none
    by that name."""
    a = schema.registered_model_aliases
    with Store.open().transaction() as conn:
        require_model(conn, name)
        if conn.execute(delete(a).where(a.c.name == name, a.c.alias == alias)).rowcount == 0:
            raise _no_alias(conn, name, alias)
        conn.execute(update(schema.registered_models).where(schema.registered_models.c.name == name)
                     .values(last_updated_time=now_ms()))


def read_alias(conn: Connection, name: str, alias: str) -> ModelVersion:
    """The version ``alias`` of ``name`` points at; ModelNotFoundError naming the model's aliases if none."""
    a = schema.registered_model_aliases
    number = conn.execute(select(a.c.version).where(a.c.name == name, a.c.alias == alias)).scalar()
    if number is None:
        require_model(conn, name)
        raise _no_alias(conn, name, alias)
    return read_version(conn, name, number)


def get_model_version_by_alias(name: str, alias: str) -> ModelVersion:
    """The version ``alias`` of the registered model ``name`` points at."""
    with Store.open().reading() as conn:
        return read_alias(conn, name, alias)


def _no_alias(conn: Connection, name: str, alias: str) -> ModelNotFoundError:
    a = schema.registered_model_aliases
    existing = conn.execute(select(a.c.alias, a.c.version).where(a.c.name == name).order_by(a.c.alias)).all()
    listed = (f"its aliases: {', '.join(f'{quote(al)} -> version {v}' for al, v in existing[:12])}"
              + (f", ... and {len(existing) - 12} more" if len(existing) > 12 else "")
              if existing else "it has no aliases")
    return ModelNotFoundError(f"Registered model {quote(name)} has no alias {quote(alias)}; {listed}")
