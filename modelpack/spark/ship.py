"""Get a model directory to every executor through Spark itself, so no shared filesystem is needed.

On the driver, :func:`ship_model` writes the model directory into one uncompressed tar (model files are
mostly binary and compress poorly; a plain tar costs only the copy) named after a digest of the model's
path, uuid and bytes, and registers it with ``SparkContext.addFile``; Spark copies it to each executor
before that executor's first task that needs it. The same model in the same application is archived once.

On an executor, :meth:`ShippedModel.local_dir` unpacks it once into ``<SparkFiles root>/<archive name>``:
the first Python worker to need it takes a file lock, unpacks into a hidden directory and renames it into
place; the others wait on the lock and then find it. The directory goes away with the application's
SparkFiles root.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import secrets
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..descriptor import MLMODEL_FILE, ModelDescriptor

logger = logging.getLogger(__name__)

_PREFIX = "modelpack-model-"
_SUFFIX = ".tar"


@dataclass(frozen=True)
class ShippedModel:
    """A model registered with ``SparkContext.addFile``: what an executor needs to find and name it."""

    name: str  #: the archive's file name in SparkFiles
    key: str  #: identity of the model: digest of its path, uuid and content
    source: str  #: the model directory on the driver (for messages)
    model_uuid: str

    def local_dir(self) -> Path:
        """The model directory on this executor, unpacked from the archive on first use (executor side)."""
        from filelock import FileLock
        from pyspark import SparkFiles

        root = Path(SparkFiles.getRootDirectory())
        target = root / self.name[: -len(_SUFFIX)]
        if target.is_dir():
            return target
        with FileLock(str(root / f".{target.name}.lock")):
            if not target.is_dir():
                archive = Path(SparkFiles.get(self.name))
                if not archive.is_file():
                    from ..errors import ModelLoadError

                    raise ModelLoadError(f"The archive of model '{self.source}' ({self.name}) did not reach this "
                                         f"executor's SparkFiles directory {root}")
                partial = root / f".{target.name}.{secrets.token_hex(4)}"
                try:
                    with tarfile.open(archive) as tar:
                        _extract(tar, partial)
                    os.replace(partial, target)
                finally:
                    shutil.rmtree(partial, ignore_errors=True)
                logger.info("Unpacked model %s (uuid %s) into %s", self.source, self.model_uuid, target)
        return target


def _extract(tar: tarfile.TarFile, target: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+: no absolute paths, no links out
        tar.extractall(target, filter="data")
    else:  # pragma: no cover - older patch releases; the archive is our own, written by ship_model
        tar.extractall(target)


# ---------------------------------------------------------------- the driver


_shipped: dict[tuple[Any, ...], ShippedModel] = {}
_lock = threading.Lock()
_archive_dir: Path | None = None


def ship_model(spark_context: Any, model_dir: Path, descriptor: ModelDescriptor) -> ShippedModel:
    """Archive ``model_dir`` and register it with ``spark_context`` (once per model and application)."""
    stat = (model_dir / MLMODEL_FILE).stat()
    stamp = (spark_context.applicationId, str(model_dir), descriptor.model_uuid, stat.st_mtime_ns, stat.st_size)
    with _lock:
        shipped = _shipped.get(stamp)
        if shipped is None:
            shipped = _archive_and_add(spark_context, model_dir, descriptor)
            _shipped[stamp] = shipped
    return shipped


def _archive_and_add(spark_context: Any, model_dir: Path, descriptor: ModelDescriptor) -> ShippedModel:
    directory = _archives()
    partial = directory / f".partial-{secrets.token_hex(4)}{_SUFFIX}"
    try:
        with tarfile.open(partial, "w") as tar:
            for entry in sorted(model_dir.iterdir()):
                tar.add(str(entry), arcname=entry.name)
        digest = hashlib.sha256()
        with open(partial, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        key = hashlib.sha256(f"{model_dir}\0{descriptor.model_uuid}\0{digest.hexdigest()}".encode()).hexdigest()[:24]
        archive = directory / f"{_PREFIX}{key}{_SUFFIX}"
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    spark_context.addFile(str(archive))
    logger.info("Shipping model %s to the executors as %s (%.1f MB)", model_dir, archive.name,
                archive.stat().st_size / 1e6)
    return ShippedModel(name=archive.name, key=key, source=str(model_dir), model_uuid=descriptor.model_uuid)


def _archives() -> Path:
    """This driver process's directory of model archives (Spark reads them until the application ends)."""
    global _archive_dir
    if _archive_dir is None:
        _archive_dir = Path(tempfile.mkdtemp(prefix="modelpack-spark-"))
        atexit.register(shutil.rmtree, _archive_dir, True)
    return _archive_dir
