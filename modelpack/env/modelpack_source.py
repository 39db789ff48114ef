"""How this modelpack is installed, and how to install the same modelpack elsewhere.

A model records the saving modelpack in requirements.txt; a rebuilt environment gets the
*serving* modelpack instead (see docs/environments.md): the CLI starts
``python -m modelpack.server`` inside the environment, so both sides must be the same code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Installed:
    """Where the running modelpack comes from."""

    version: str
    source: Path | None = None  #: checkout directory of a development install
    editable: bool = False
    archive: Path | None = None  #: local wheel or sdist it was installed from

    @property
    def recorded_requirement(self) -> str:
        """The requirements.txt line written at save time."""
        if self.source is not None:
            return f"modelpack @ {self.source.as_uri()}"
        return f"modelpack=={self.version}"

    @property
    def install_args(self) -> list[str]:
        """pip arguments that install this same modelpack into another environment."""
        if self.source is not None:
            return ["-e", str(self.source)] if self.editable else [str(self.source)]
        if self.archive is not None and self.archive.is_file():
            return [f"modelpack @ {self.archive.as_uri()}"]
        return [f"modelpack=={self.version}"]

    def fingerprint(self) -> str:
        """What an environment built from this modelpack depends on, for the cache key."""
        if self.source is None:
            return " ".join(self.install_args)
        project = self.source / "pyproject.toml"
        deps = project.read_text(encoding="utf-8") if project.is_file() else ""
        return f"{' '.join(self.install_args)}\n{deps}"


def _file_path(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


@lru_cache(maxsize=1)
def installed() -> Installed:
    """Describe the modelpack this process imported (not whatever metadata is first on sys.path:
    a checkout's own ``*.egg-info`` shadows the real install when run from the checkout)."""
    import modelpack

    package_dir = Path(modelpack.__file__).resolve().parent
    version = modelpack.__version__
    found = []
    for dist in metadata.distributions(name="modelpack"):
        try:
            info = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            info = {}
        path = _file_path(info.get("url", ""))
        if info.get("dir_info", {}).get("editable") and path and package_dir.is_relative_to(path.resolve()):
            return Installed(version, source=path, editable=True)
        found.append((dist, info, path))
    for dist, info, path in found:
        if not info or package_dir.parent != Path(str(dist.locate_file(""))).resolve():
            continue  # another copy's metadata, or a checkout's own egg-info on sys.path
        if path is not None and "dir_info" in info:
            return Installed(version, source=path)
        if path is not None and "archive_info" in info:
            return Installed(version, archive=path)
    checkout = package_dir.parent
    if (checkout / "pyproject.toml").is_file() and "site-packages" not in package_dir.parts:
        # imported straight from a checkout (PYTHONPATH), never installed
        return Installed(version, source=checkout, editable=True)
    return Installed(version)
