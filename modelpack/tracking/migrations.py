"""MIGRATIONS: bring a store's schema to this version's head (provisional: create_all; Alembic replaces it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def upgrade(engine: Engine) -> None:
    from .schema import metadata

    metadata.create_all(engine)
