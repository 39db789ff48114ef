"""URI: which store a process uses - ``set_tracking_uri``, ``MODELPACK_TRACKING_URI``, or ``./mlruns``."""

from __future__ import annotations

import os
from pathlib import Path

#: The tracking directory when nothing names one; in it, the SQLite database and the artifact root.
DEFAULT_TRACKING_DIR = "mlruns"
DB_FILE = "modelpack.db"
ARTIFACTS_DIR = "artifacts"

_tracking_uri: str | None = None


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Use the store at ``uri`` from now on in this process (a directory, ``file://`` URI or SQLAlchemy URL)."""
    global _tracking_uri
    _tracking_uri = str(uri)


def get_tracking_uri() -> str:
    """The tracking URI in effect: ``set_tracking_uri``'s, else ``MODELPACK_TRACKING_URI``, else ``./mlruns``."""
    if _tracking_uri is not None:
        return _tracking_uri
    from ..config import env_str

    return env_str("MODELPACK_TRACKING_URI", "") or DEFAULT_TRACKING_DIR


def resolve(uri: str) -> tuple[str, Path]:
    """(SQLAlchemy URL, artifact root) of a tracking URI; a directory is created when missing."""
    from ..config import env_str

    if "://" not in uri or uri.startswith("file://"):
        root = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser().absolute()
        root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{root / DB_FILE}", root / ARTIFACTS_DIR
    explicit = env_str("MODELPACK_ARTIFACT_ROOT", "")
    if explicit:
        return uri, Path(explicit).expanduser().absolute()
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        db = Path(uri[len("sqlite:///"):]).expanduser().absolute()
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}", db.parent / ARTIFACTS_DIR
    return uri, Path(DEFAULT_TRACKING_DIR).absolute() / ARTIFACTS_DIR
