"""REGISTER: a new version of a registered model - resolve the source, copy it, number it, publish it.

1. The source (``runs:/``, ``models:/``, a directory) is resolved and read as a model directory whose paths stay
   inside it (docs/trust.md).
2. Its files are copied into a locked staging directory next to the versions (``registry/<name>/.version.staging-*``)
   and made read-only: the version's own copy, whatever later happens to the source.
3. One transaction creates the registered model or bumps its update time (on PostgreSQL this locks its row, so
   registrations of one name take their numbers one at a time), numbers the version ``max(version) + 1``, inserts
   its row, renames the staging directory to ``registry/<name>/<number>`` and commits. A primary-key conflict (two
   writers took one number where rows are not locked) rolls back, moves the copy back and tries the next number.

A process killed before the commit leaves a staging directory (removed by the next registration of that name) or a
numbered directory without a row; never a row without its complete files. Nothing already on disk is deleted: if
``<number>`` is taken (such a leftover, or another database sharing the artifact root), the copy goes to
``<number>.<random>`` beside it and ``storage_location`` says so.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..descriptor import ModelDescriptor
from ..errors import ModelSaveError
from ..model_uri import locate_model, parse_model_uri
from ..save import _new_staging, _remove, remove_stale_staging
from ..tracking import schema
from ..tracking.store import Store, now_ms
from .models import check_key, check_name, touch_model
from .versions import REGISTRY_DIR, ModelVersion, get_model_version

logger = logging.getLogger(__name__)

#: How many numbers one registration tries before giving up (each conflict means another writer won one).
MAX_ATTEMPTS = 50


def register_model(model_uri: str | os.PathLike[str], name: str, *, tags: Mapping[str, str] | None = None,
                   description: str | None = None) -> ModelVersion:
    """Register the model at ``model_uri`` as the next version of ``name`` (created if new) and return it.

    The version keeps its own read-only copy of the model's files; ``source`` records ``model_uri`` and
    ``run_id`` the run it came from (``runs:/<run_id>/<path>``, or the run of a registered version it copies)."""
    check_name(name)
    version_tags = {check_key(key): str(value) for key, value in (tags or {}).items()}
    location = locate_model(model_uri)
    ModelDescriptor.read(location.path).check_paths(location.path)
    source = str(location.path) if parse_model_uri(model_uri).kind == "path" else os.fspath(model_uri)

    store = Store.open()
    parent = store.artifact_root / REGISTRY_DIR / name
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    staging, lock = _new_staging(parent / "version")
    try:
        _copy_read_only(location.path, staging)
        ModelDescriptor.read(staging)
        number = _insert_version(store, name, staging, {
            "name": name, "source": source, "run_id": location.run_id, "description": description}, version_tags)
    except BaseException:
        _remove(staging)  # gone once published
        raise
    finally:
        if lock is not None:
            os.close(lock)
    logger.debug("Registered %s version %d from %s", name, number, source)
    return get_model_version(name, number)


def _copy_read_only(source: Path, staging: Path) -> None:
    """Copy the model's files (symlinks inside it followed) and take write permission off every file."""
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        for root, _dirs, files in os.walk(staging):
            for file in files:
                path = os.path.join(root, file)
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)
    except (OSError, shutil.Error) as exc:
        raise ModelSaveError(f"Copying the model at '{source}' into the registry failed: {exc}") from exc


def _insert_version(store: Store, name: str, staging: Path, row: dict[str, object],
                    tags: Mapping[str, str]) -> int:
    """Number, insert and publish the version in one transaction (see the module docstring); its number."""
    versions = schema.model_versions
    for attempt in range(MAX_ATTEMPTS):
        claimed: Path | None = None
        published = False
        try:
            with store.transaction() as conn:
                now = now_ms()
                touch_model(conn, name, now)  # first: the write that locks (see touch_model)
                number = conn.execute(select(func.coalesce(func.max(versions.c.version), 0) + 1)
                                      .where(versions.c.name == name)).scalar_one()
                target = staging.parent / str(number)
                conn.execute(insert(versions).values(**row, version=number, storage_location=str(target),
                                                     creation_time=now, last_updated_time=now))
                claimed = _claim(staging.parent, number)
                if claimed != target:
                    conn.execute(update(versions).where(versions.c.name == name, versions.c.version == number)
                                 .values(storage_location=str(claimed)))
                if tags:
                    conn.execute(insert(schema.model_version_tags),
                                 [{"name": name, "version": number, "key": k, "value": v} for k, v in tags.items()])
                os.replace(staging, claimed)
                published = True
            return int(number)
        except IntegrityError:
            _undo(claimed, published, staging)
            logger.debug("Version number taken by another registration of %s; retrying", name)
            time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        except BaseException:
            _undo(claimed, published, staging)
            raise
    raise ModelSaveError(f"Could not number a new version of '{name}': {MAX_ATTEMPTS} numbers were taken by "
                         "other registrations meanwhile")


def _claim(parent: Path, number: int) -> Path:
    """An empty directory for version ``number`` that only this registration made: ``<number>``, or when
    that exists (left by a registration killed before its commit) ``<number>.<random>``."""
    target = parent / str(number)
    try:
        target.mkdir()
        return target
    except FileExistsError:
        pass
    aside = parent / f"{number}.{secrets.token_hex(4)}"
    aside.mkdir()
    logger.warning("'%s' exists without a version row (a registration that did not finish, or another database "
                   "using this artifact root); version %d goes to '%s'", target, number, aside)
    return aside


def _undo(claimed: Path | None, published: bool, staging: Path) -> None:
    """After a rolled-back transaction: the copy back at ``staging`` and the claimed directory gone."""
    if claimed is None:
        return
    try:
        if published:
            os.replace(claimed, staging)
        else:
            claimed.rmdir()
    except OSError:
        logger.debug("Could not undo the claim of %s", claimed, exc_info=True)
