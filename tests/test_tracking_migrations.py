"""Schema migrations (Alembic, modelpack/tracking/migrations): a new database comes up at head, a database made
by the first revision upgrades, schema.py and the revisions agree (Alembic's own comparison), a newer database
is refused, opening a store at head is one query without Alembic, and processes opening a new store at once
migrate it once - on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import postgres_server  # noqa: F401  (pytest fixture)
from sqlalchemy import create_engine, inspect, text

from modelpack.tracking import migrations
from modelpack.tracking.errors import StoreVersionError, TrackingError
from modelpack.tracking.schema import metadata
from modelpack.tracking.store import Store, _create_engine, _forget_stores

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "modelpack" / "tracking" / "migrations" / "versions"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database."""
    _forget_stores()
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        _forget_stores()
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("migrations")
    try:
        yield url
    finally:
        _forget_stores()
        server.drop_database(url)


def _revision_rows(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def test_head_is_the_newest_script_and_the_scripts_form_one_line():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations._config())
    assert script.get_heads() == [migrations.HEAD], "set migrations.HEAD to the newest revision"
    revisions = list(script.walk_revisions())  # newest first; raises on a branch or a missing parent
    assert revisions[-1].down_revision is None
    assert sorted(p.name for p in VERSIONS.glob("*.py") if p.name != "__init__.py") == sorted(
        Path(r.path).name for r in revisions)
    assert all(Path(r.path).name.startswith(f"v{r.revision}_") for r in revisions)


def test_a_new_database_comes_up_at_head_with_every_table(database):
    store = Store.open(database)
    assert migrations.current_revision(store.engine) == migrations.HEAD
    assert set(inspect(store.engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    assert _revision_rows(database) == [migrations.HEAD]


def test_the_revisions_and_schema_py_agree(database):
    """What the revisions build is what schema.py declares: Alembic's autogenerate finds nothing to change."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = Store.open(database).engine
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, metadata) == []


def test_a_database_made_by_the_first_revision_upgrades_to_head_keeping_its_data(database):
    from alembic import command

    engine = create_engine(database)
    with engine.connect() as conn:  # the first revision only, and rows written in its schema
        command.upgrade(migrations._config(conn), "0001")
        conn.execute(text("INSERT INTO experiments (name, artifact_location, creation_time, last_update_time) "
                          "VALUES ('old', '/tmp/old', 1, 1)"))
        conn.execute(text("INSERT INTO runs (run_id, experiment_id, name, status, start_time, user_id, "
                          "artifact_uri) SELECT 'r1', experiment_id, 'kept', 'FINISHED', 5, 'u', '/tmp/old/r1' "
                          "FROM experiments WHERE name = 'old'"))
        conn.execute(text("INSERT INTO params (run_id, key, value) VALUES ('r1', 'alpha', '0.5')"))
        conn.execute(text("INSERT INTO metrics (run_id, key, value, timestamp, step) VALUES ('r1', 'rmse', 3, 1, 0)"))
        conn.execute(text("INSERT INTO latest_metrics (run_id, key, value, timestamp, step) "
                          "VALUES ('r1', 'rmse', 3, 1, 0)"))
        conn.commit()
    engine.dispose()
    from modelpack.tracking.runs import get_run

    store = Store.open(database)
    assert migrations.current_revision(store.engine) == migrations.HEAD
    run = get_run(store, "r1")
    assert (run.info.run_name, run.data.params, run.data.metrics) == ("kept", {"alpha": "0.5"}, {"rmse": 3.0})


def test_a_database_from_a_newer_modelpack_is_refused_untouched(database):
    Store.open(database)
    _forget_stores()
    engine = create_engine(database)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    with pytest.raises(StoreVersionError, match=r"schema revision '0999'.*newest is '0001'.*upgrade modelpack"):
        Store.open(database)
    assert _revision_rows(database) == ["0999"]


def test_a_failed_upgrade_changes_nothing(database):
    """The revisions run in one transaction: a clash half-way leaves the database as it was."""
    engine = create_engine(database)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE run_tags (x INTEGER)"))  # clashes with a table the first revision makes
    engine.dispose()
    with pytest.raises(TrackingError, match=r"Could not bring the tracking database .* from schema revision None"):
        Store.open(database)
    engine = create_engine(database)
    try:
        assert set(inspect(engine).get_table_names()) == {"run_tags"}  # no experiments, runs, alembic_version
    finally:
        engine.dispose()


def test_opening_a_store_at_head_is_one_query_without_alembic(tmp_path):
    Store.open(str(tmp_path / "mlruns"))
    code = """\
import sys
from sqlalchemy import event
from modelpack.tracking.store import _create_engine
from modelpack.tracking.migrations import upgrade
engine = _create_engine(sys.argv[1])
seen = []
event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
upgrade(engine)
print(len(seen), "alembic" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code, f"sqlite:///{tmp_path / 'mlruns' / 'modelpack.db'}"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["1", "False"], out.stderr


OPEN_AT_ONCE = """\
import sys, time
from modelpack.tracking.store import Store
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
store = Store.open(sys.argv[1])
print("opened")
"""


def test_processes_opening_a_new_store_at_once_migrate_it_once(database):
    start = time.time() + 4  # after every interpreter has imported modelpack and SQLAlchemy
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, database, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in results]
    assert _revision_rows(database) == [migrations.HEAD]
    engine = _create_engine(database)
    try:
        assert set(inspect(engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_wheel_holds_the_migration_scripts(tmp_path):
    from helpers import checkout_copy

    source = checkout_copy(tmp_path / "checkout")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                          "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("modelpack-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    package = "modelpack/tracking/migrations"
    expected = {f"{package}/__init__.py", f"{package}/env.py", f"{package}/script.py.mako",
                *(f"{package}/versions/{p.name}" for p in VERSIONS.glob("v*.py"))}
    assert expected <= names, sorted(expected - names)
