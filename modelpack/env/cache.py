"""The environment cache: where rebuilt environments live, and how they are found, locked and removed.

Layout under the cache root (``MODELPACK_HOME``, default ``$XDG_CACHE_HOME/modelpack`` or
``~/.cache/modelpack``)::

    envs/<key>            -> ../builds/<key>.<id>   symlink: the environment of <key>; exists only when complete
    builds/<key>.<id>/    a virtualenv, built in place (virtualenvs cannot be moved)
    locks/<key>.lock      held while <key> is built or removed
    logs/<key>-<time>.log installer output of failed builds

A build happens in a fresh ``builds/<key>.<id>`` and is published by atomically renaming a
symlink to ``envs/<key>``, after the completion marker is written: a killed build leaves
an unlinked directory that is never used and is deleted by the next build of that key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = "modelpack-env.json"
USAGE = "modelpack-usage.json"
BUILD_LOG = "modelpack-build.log"
_MAX_MODELS = 20


def default_root() -> Path:
    """``MODELPACK_HOME``, else the user's cache directory."""
    from ..config import env_str

    home = env_str("MODELPACK_HOME", "")
    if home:
        return Path(home).expanduser().absolute()
    cache = env_str("XDG_CACHE_HOME", "") or str(Path.home() / ".cache")
    return Path(cache).expanduser().absolute() / "modelpack"


@dataclass(frozen=True)
class Environment:
    """A complete environment in the cache."""

    key: str
    path: Path  #: the physical build directory

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def info(self) -> dict:
        """The completion marker's content (what was installed, with which Python)."""
        try:
            return json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def usage(self) -> dict:
        try:
            return json.loads((self.path / USAGE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def record_use(self, model_dir: Path) -> None:
        """Remember when and by which model this environment was last used (best effort)."""
        usage = self.usage()
        models = [m for m in usage.get("models", []) if m != str(model_dir)]
        usage = {"last_used": time.time(), "models": [str(model_dir), *models][:_MAX_MODELS]}
        with contextlib.suppress(OSError):
            _write_json(self.path / USAGE, usage)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


class Cache:
    """One cache root."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_root()
        self.envs = self.root / "envs"
        self.builds = self.root / "builds"
        self.locks = self.root / "locks"
        self.logs = self.root / "logs"

    # -- finding ------------------------------------------------------------------
    def get(self, key: str) -> Environment | None:
        """The complete environment of ``key``, or None (missing, or not finished)."""
        link = self.envs / key
        if not link.is_symlink():
            return None
        target = link.resolve()
        if (target / MARKER).is_file() and (target / "bin" / "python").exists():
            return Environment(key, target)
        return None

    def environments(self) -> list[Environment]:
        if not self.envs.is_dir():
            return []
        found = (self.get(link.name) for link in sorted(self.envs.iterdir()) if not link.name.startswith("."))
        return [env for env in found if env is not None]

    def match(self, prefix: str) -> list[Environment]:
        """The environments whose key starts with ``prefix``."""
        return [env for env in self.environments() if env.key.startswith(prefix)]

    # -- building -----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, on_wait: Callable[[float], None] | None = None,
             blocking: bool = True) -> Iterator[bool]:
        """Hold ``key``'s lock; ``on_wait(seconds)`` is called while another process holds it.

        Yields False (without the lock) when ``blocking`` is False and the lock is busy.
        """
        from filelock import FileLock, Timeout

        self.locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.locks / f"{key}.lock"))
        started = time.monotonic()
        while True:
            try:
                lock.acquire(timeout=0.2 if blocking else 0)
                break
            except Timeout:
                if not blocking:
                    yield False
                    return
                if on_wait:
                    on_wait(time.monotonic() - started)
        try:
            yield True
        finally:
            lock.release()

    def new_build_dir(self, key: str) -> Path:
        self.builds.mkdir(parents=True, exist_ok=True)
        return self.builds / f"{key}.{secrets.token_hex(4)}"

    def new_log(self, key: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.log"

    def publish(self, key: str, build_dir: Path) -> Environment:
        """Make ``build_dir`` the environment of ``key``: one atomic rename of a symlink."""
        self.envs.mkdir(parents=True, exist_ok=True)
        tmp = self.envs / f".{key}.{secrets.token_hex(4)}"
        os.symlink(os.path.relpath(build_dir, self.envs), tmp)
        os.replace(tmp, self.envs / key)
        return Environment(key, build_dir.resolve())

    def discard_partial(self, key: str) -> None:
        """Delete unfinished builds of ``key`` (call with its lock held)."""
        link = self.envs / key
        current = link.resolve() if link.is_symlink() else None
        if link.is_symlink() and self.get(key) is None:
            link.unlink()
            current = None
        for path in self._builds_of(key):
            if path.resolve() != current:
                logger.debug("Removing unfinished build %s", path)
                shutil.rmtree(path, ignore_errors=True)
        for tmp in self.envs.glob(f".{key}.*") if self.envs.is_dir() else ():
            tmp.unlink(missing_ok=True)  # a link whose publishing was interrupted

    def _builds_of(self, key: str) -> list[Path]:
        if not self.builds.is_dir():
            return []
        return [p for p in self.builds.iterdir() if p.name.startswith(f"{key}.")]

    # -- removing -----------------------------------------------------------------
    def remove(self, key: str) -> bool:
        """Delete environment ``key`` and its unfinished builds; False if it is being built."""
        with self.lock(key, blocking=False) as locked:
            if not locked:
                return False
            link = self.envs / key
            target = link.resolve() if link.is_symlink() else None
            if link.is_symlink():
                link.unlink()  # unpublish first: from here on nobody picks it up
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
            self.discard_partial(key)
            return True

    def unfinished(self) -> list[Path]:
        """Build directories no environment points to (killed builds, or builds in progress)."""
        if not self.builds.is_dir():
            return []
        live = {env.path for env in self.environments()}
        return [p for p in sorted(self.builds.iterdir()) if p.resolve() not in live]

    def prune(self, older_than_days: float, dry_run: bool = False) -> list[str]:
        """Remove environments unused for ``older_than_days``, unfinished builds and old logs.

        Returns what was (or, with ``dry_run``, would be) removed. Builds in progress are kept.
        """
        cutoff = time.time() - older_than_days * 86400
        removed = []
        for env in self.environments():
            if last_used(env) <= cutoff and (dry_run or self.remove(env.key)):
                removed.append(f"environment {env.key}")
        for path in self.unfinished():
            with self.lock(path.name.split(".")[0], blocking=False) as idle:
                if idle and path.exists():
                    if not dry_run:
                        shutil.rmtree(path, ignore_errors=True)
                    removed.append(f"unfinished build {path.name}")
        for log in sorted(self.logs.glob("*.log")) if self.logs.is_dir() else ():
            if log.stat().st_mtime <= cutoff:
                if not dry_run:
                    log.unlink(missing_ok=True)
                removed.append(f"log {log.name}")
        return removed


def last_used(env: Environment) -> float:
    """When ``env`` was last used (or built)."""
    stamp = env.usage().get("last_used")
    if isinstance(stamp, (int, float)):
        return float(stamp)
    try:
        return (env.path / MARKER).stat().st_mtime
    except OSError:
        return 0.0


def size_of(path: Path) -> int:
    """Bytes used by the files under ``path`` (hard links counted once)."""
    total, seen = 0, set()
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total
