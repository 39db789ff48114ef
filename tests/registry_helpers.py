"""Shared by the registry, model URI and tracking CLI tests: a fresh tracking store per test (SQLite, or a new
database on the real PostgreSQL server of tests/postgres.py), and checks of a registered version's files.

A test module uses the fixture by importing it with the server fixture it needs::

    from postgres import postgres_server  # noqa: F401  (pytest fixture)
    from registry_helpers import tracking_uri_fixture  # noqa: F401  (the pytest fixture tracking_uri)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

STORES = ["sqlite", "postgresql"]


@pytest.fixture(params=STORES, name="tracking_uri")
def tracking_uri_fixture(request: pytest.FixtureRequest, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty tracking store for this test, named by MODELPACK_TRACKING_URI (so subprocesses use it too);
    PostgreSQL's artifacts go to MODELPACK_ARTIFACT_ROOT under tmp_path."""
    from modelpack.tracking.store import _forget_stores

    server = None
    if request.param == "sqlite":
        uri = str(tmp_path / "mlruns")
    else:
        server = request.getfixturevalue("postgres_server")
        uri = server.create_database("registry")
        monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MODELPACK_TRACKING_URI", uri)
    yield uri
    _forget_stores()  # close pooled connections (before the drop)
    if server is not None:
        server.drop_database(uri)


def files_of(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative POSIX path -> content)."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def writable_files(directory: Path) -> list[str]:
    """The files under ``directory`` that anyone may write (a registered version has none)."""
    return [p.relative_to(directory).as_posix() for p in directory.rglob("*")
            if p.is_file() and os.stat(p).st_mode & 0o222]


def python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with this environment (MODELPACK_TRACKING_URI included)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))
