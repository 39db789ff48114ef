"""ARTIFACTS: a run's files, under ``<artifact root>/<experiment_id>/<run_id>/artifacts/``.

Each file is copied to a temporary name next to its destination and renamed into place, so a reader (or a
``runs:/`` URI) never sees half a file; logging the same path again replaces it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from ..errors import quote
from .errors import InvalidTrackingRequestError
from .runs import get_info
from .store import Store


def artifact_dir(artifact_uri: str) -> Path:
    """The local directory of a run's ``artifact_uri`` (a path, or a ``file://`` URI)."""
    return Path(artifact_uri[len("file://"):] if artifact_uri.startswith("file://") else artifact_uri)


def run_artifact_dir(store: Store, run_id: str) -> Path:
    """The artifact directory of a run (it may not exist yet: it is made by the first artifact logged)."""
    return artifact_dir(get_info(store, run_id).artifact_uri)


def destination(root: Path, artifact_path: str | None) -> Path:
    """``root / artifact_path`` for a relative path that stays inside ``root`` (else a clear error)."""
    if not artifact_path:
        return root
    parts = PurePosixPath(artifact_path.replace(os.sep, "/")).parts
    if artifact_path.startswith(("/", "\\")) or not parts or any(p in ("..", "") for p in parts) or ":" in parts[0]:
        raise InvalidTrackingRequestError(
            f"An artifact path is relative and stays inside the run's artifacts (no '..'), got {quote(artifact_path)}")
    return root.joinpath(*parts)


def log_artifact(root: Path, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> Path:
    """Copy the file ``local_path`` to ``root/artifact_path/<its name>``; returns where it went."""
    source = Path(local_path)
    if not source.is_file():
        raise InvalidTrackingRequestError(f"log_artifact takes an existing file, got {quote(str(local_path))}"
                                          + (" (a directory: use log_artifacts)" if source.is_dir() else ""))
    target = destination(root, artifact_path) / source.name
    _copy_file(source, target)
    return target


def log_artifacts(root: Path, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> Path:
    """Copy the contents of the directory ``local_dir`` into ``root/artifact_path``; returns that directory."""
    source = Path(local_dir)
    if not source.is_dir():
        raise InvalidTrackingRequestError(f"log_artifacts takes an existing directory, got {quote(str(local_dir))}")
    target = destination(root, artifact_path)
    target.mkdir(parents=True, exist_ok=True)
    for base, dirs, files in os.walk(source):
        dirs.sort()
        relative = Path(base).relative_to(source)
        for name in sorted(files):
            _copy_file(Path(base) / name, target / relative / name)
    return target


def list_artifacts(root: Path, artifact_path: str | None = None) -> list[str]:
    """The files under ``root/artifact_path``, as paths relative to ``root`` (sorted)."""
    base = destination(root, artifact_path)
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(root).as_posix()) for p in base.rglob("*") if p.is_file()
                  and not any(part.startswith(".") and ".staging-" in part for part in p.relative_to(root).parts))


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, temporary)
        shutil.copymode(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
