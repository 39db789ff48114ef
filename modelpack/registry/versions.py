"""VERSIONS: reading the numbered versions of a registered model (register.py creates them).

A version's files are its own immutable copy under ``<artifact root>/registry/<name>/<version>/``
(``storage_location``); ``source`` is the URI or path it was registered from, ``run_id`` its run when it had one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from ..errors import InvalidInputError, quote, quote_names
from ..tracking import schema
from ..tracking.store import Store, now_ms
from .models import ModelNotFoundError, check_key, require_model, upsert

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

#: The directory under the artifact root that holds every registered version's files.
REGISTRY_DIR = "registry"


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model (``path`` is its directory of model files)."""

    name: str
    version: int
    source: str
    run_id: str | None
    storage_location: str
    description: str | None
    creation_timestamp: int
    last_updated_timestamp: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The version's model directory."""
        return Path(self.storage_location)

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source, "run_id": self.run_id,
                "storage_location": self.storage_location, "description": self.description,
                "creation_timestamp": self.creation_timestamp,
                "last_updated_timestamp": self.last_updated_timestamp, "tags": dict(self.tags),
                "aliases": list(self.aliases)}


def parse_version(version: object) -> int:
    """``version`` (an int or a string of digits) as a positive int; InvalidInputError otherwise."""
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInputError(f"A model version is a positive integer, got {quote(version)}")
    return version


def version_numbers(conn: Connection, name: str) -> list[int]:
    v = schema.model_versions
    return list(conn.execute(select(v.c.version).where(v.c.name == name).order_by(v.c.version)).scalars())


def describe_versions(numbers: list[int]) -> str:
    return f"its versions: {quote_names(numbers)}" if numbers else "it has no versions yet"


def _version(conn: Connection, row: Any) -> ModelVersion:
    t, a = schema.model_version_tags, schema.registered_model_aliases
    tags = dict(conn.execute(select(t.c.key, t.c.value).where(t.c.name == row.name, t.c.version == row.version))
                .all())
    aliases = tuple(conn.execute(select(a.c.alias).where(a.c.name == row.name, a.c.version == row.version)
                                 .order_by(a.c.alias)).scalars())
    return ModelVersion(row.name, row.version, row.source, row.run_id, row.storage_location, row.description,
                        row.creation_time, row.last_updated_time, tags, aliases)


def require_version(conn: Connection, name: str, version: int) -> Any:
    """The ``model_versions`` row; ModelNotFoundError naming the model's versions (or its models) if none."""
    v = schema.model_versions
    row = conn.execute(select(v).where(v.c.name == name, v.c.version == version)).first()
    if row is None:
        require_model(conn, name)
        raise ModelNotFoundError(f"Registered model {quote(name)} has no version {version}; "
                                 f"{describe_versions(version_numbers(conn, name))}")
    return row


def read_version(conn: Connection, name: str, version: int) -> ModelVersion:
    return _version(conn, require_version(conn, name, version))


def get_model_version(name: str, version: int | str) -> ModelVersion:
    """Version ``version`` of the registered model ``name``; ModelNotFoundError naming what exists if none."""
    number = parse_version(version)
    with Store.open().reading() as conn:
        return read_version(conn, name, number)


def get_latest_version(name: str) -> ModelVersion:
    """The highest version of ``name`` (what ``models:/<name>/latest`` names)."""
    with Store.open().reading() as conn:
        return read_latest(conn, name)


def read_latest(conn: Connection, name: str) -> ModelVersion:
    v = schema.model_versions
    latest = conn.execute(select(func.max(v.c.version)).where(v.c.name == name)).scalar()
    if latest is None:
        require_model(conn, name)
        raise ModelNotFoundError(f"Registered model {quote(name)} has no versions yet")
    return read_version(conn, name, latest)


def list_model_versions(name: str) -> list[ModelVersion]:
    """Every version of the registered model ``name``, oldest first."""
    v = schema.model_versions
    with Store.open().reading() as conn:
        require_model(conn, name)
        rows = conn.execute(select(v).where(v.c.name == name).order_by(v.c.version)).all()
        return [_version(conn, row) for row in rows]


def update_model_version(name: str, version: int | str, description: str | None) -> ModelVersion:
    """Set the description of a version (its files never change)."""
    number = parse_version(version)
    v = schema.model_versions
    with Store.open().transaction() as conn:
        require_version(conn, name, number)
        conn.execute(update(v).where(v.c.name == name, v.c.version == number)
                     .values(description=description, last_updated_time=now_ms()))
        return read_version(conn, name, number)


def set_model_version_tag(name: str, version: int | str, key: str, value: str) -> None:
    """Set tag ``key`` of a version (replacing its value)."""
    number = parse_version(version)
    check_key(key)
    with Store.open().transaction() as conn:
        require_version(conn, name, number)
        upsert(conn, schema.model_version_tags, {"name": name, "version": number, "key": key, "value": str(value)},
               ["name", "version", "key"], {"value": str(value)})
