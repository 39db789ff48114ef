"""A real PostgreSQL server for the tests, started with ``initdb`` + ``pg_ctl`` in a temporary directory.

Use the fixtures by importing them into a test module::

    from postgres import postgres_server, postgres_url, store_uri_fixture  # noqa: F401  (pytest fixtures)

- ``postgres_server`` (session): one server per test process on a free port of 127.0.0.1, trust
  authentication, stopped when the process exits; ``server.create_database()`` returns the
  ``postgresql+psycopg://`` URL of a new database.
- ``postgres_url`` (module): a database of its own for each test module.
- ``store_uri`` (function, parametrized ``sqlite`` / ``postgresql``): the process's tracking URI for one test.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` system user (which Debian's
package creates) through ``runuser``. Tests skip, saying why, only when no PostgreSQL binaries are installed
(``.ci/run`` installs them) or psycopg is missing; any other failure to start the server fails them.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import free_port

#: Where distributions put the server binaries when they are not on PATH (Debian: /usr/lib/postgresql/15/bin).
BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
             "/opt/homebrew/opt/postgresql*/bin")
SERVER_USER = "postgres"
#: Test-only settings: durability off (a test server is thrown away), connections on 127.0.0.1 only.
SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 "
            "-c listen_addresses=127.0.0.1")


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (PATH first, then the distributions' places)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = []
    for pattern in BIN_GLOBS:
        candidates += [p for p in Path("/").glob(pattern.lstrip("/")) if (p / "initdb").is_file()]
    candidates.sort(key=lambda p: [int(n) for n in re.findall(r"\d+", str(p))] or [0])
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    port: int
    run_as: str | None  # the system user running the server (None: this process's user)
    host: str = "127.0.0.1"
    user: str = "postgres"
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on the ``postgres`` database."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{secrets.token_hex(4)}"
        self.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def command(self, *argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv]
        if self.run_as:
            args = ["runuser", "-u", self.run_as, "--", *args]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        log = self.data_dir.parent / "server.log"
        out = self.command(self.bin_dir / "pg_ctl", "-D", self.data_dir, "-l", log, "-w", "-t", "60", "-o",
                           f"-p {self.port} -c unix_socket_directories={self.data_dir} {SETTINGS}", "start")
        if out.returncode != 0:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n{text}")

    def stop(self) -> None:
        self.command(self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w", "stop")


def start_postgres() -> PostgresServer:
    """Initialise a cluster in a new temporary directory and start it (as ``postgres`` when this is root)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin): "
                    "apt-get install postgresql, as .ci/run does")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'modelpack[postgres]')")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.fail(f"PostgreSQL refuses to run as root and there is no {SERVER_USER!r} user to run it as "
                        "(Debian's postgresql package creates one)")
        if shutil.which("runuser") is None:
            pytest.fail("PostgreSQL refuses to run as root and runuser is missing to run it as another user")
        run_as = SERVER_USER
    base = Path(tempfile.mkdtemp(prefix="modelpack-pg-"))  # under /tmp: reachable by the server's user
    data = base / "data"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, data, 0, run_as)
    out = server.command(bin_dir / "initdb", "-D", data, "-U", server.user, "--auth=trust", "--encoding=UTF8",
                         "--locale=C", "--no-sync", timeout=300)
    if out.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    for attempt in range(3):  # a free port may be taken between choosing it and binding it
        server.port = free_port()
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                shutil.rmtree(base, ignore_errors=True)
                raise
    return server


def _remove(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)


_shared: list[PostgresServer] = []


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The test process's one server: every module importing this fixture shares it (pytest would otherwise
    make one per importing module); it is stopped when the process exits."""
    if not _shared:
        server = start_postgres()
        atexit.register(_remove, server)
        _shared.append(server)
    return _shared[0]


@pytest.fixture(scope="module")
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this test module's own on the session's server."""
    url = postgres_server.create_database(request.module.__name__.rpartition(".")[2])
    yield url
    try:
        from modelpack.tracking.store import _forget_stores

        _forget_stores()  # close pooled connections before the drop
    finally:
        postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"], name="store_uri")
def store_uri_fixture(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The tracking URI of this test, made the process's: a new SQLite store in ``tmp_path``, or the module's
    PostgreSQL database (artifacts under ``tmp_path``; experiments there outlive the test, so tests use names
    of their own). Active runs, the current experiment and open stores are reset afterwards."""
    from modelpack.tracking import fluent, uri
    from modelpack.tracking.store import _forget_stores

    if request.param == "sqlite":
        chosen = str(tmp_path / "mlruns")
    else:
        chosen = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    _forget_stores()
    monkeypatch.setattr(uri, "_tracking_uri", chosen)
    monkeypatch.setattr(fluent, "_experiment_name", None)
    try:
        yield chosen
    finally:
        while fluent._active:
            try:
                fluent.end_run("KILLED")
            except Exception:
                fluent._active.clear()
        _forget_stores()
