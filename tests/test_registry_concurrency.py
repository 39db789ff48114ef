"""The registry under concurrency and faults, with real processes on SQLite and PostgreSQL: processes registering
one name at once get distinct numbers, a registration killed with SIGKILL leaves no version pointing at a partial
copy, and a reader never sees an alias missing while another process moves it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from postgres import postgres_server  # noqa: F401  (pytest fixture)
from registry_helpers import files_of, tracking_uri_fixture  # noqa: F401  (the fixture tracking_uri)

from modelpack.registry import (
    ModelNotFoundError,
    get_model_version_by_alias,
    list_model_versions,
    register_model,
    set_alias,
)
from modelpack.tracking.store import Store

#: Registers argv[2] as argv[3] once argv[1] exists (after the store is open, so the processes race at once).
RACER = """
import sys, time
from pathlib import Path
from modelpack.registry import register_model
from modelpack.tracking.store import Store
Store.open()
print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.001)
print(register_model(sys.argv[2], sys.argv[3]).version, flush=True)
"""

#: Registers argv[1] as argv[2] when a line arrives on stdin.
REGISTRAR = """
import sys, time
from modelpack.registry import register_model
from modelpack.tracking.store import Store
Store.open()
print("ready", flush=True)
sys.stdin.readline()
register_model(sys.argv[1], sys.argv[2])
print("done", flush=True)
"""

#: Moves alias 'champion' of 'flip' between versions 1 and 2, argv[1] times.
FLIPPER = """
import sys
from modelpack.registry import set_alias
print("ready", flush=True)
for i in range(int(sys.argv[1])):
    set_alias("flip", "champion", 1 + i % 2)
"""


def _spawn(code: str, *args: str | Path, stdin: bool = False) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            text=True, env=dict(os.environ))
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", f"{line!r}\n{proc.stderr.read() if proc.stderr else ''}"
    return proc


def test_processes_registering_one_name_at_once_get_distinct_numbers(tracking_uri, diabetes_model_dir, tmp_path):
    go = tmp_path / "go"
    racers = [_spawn(RACER, go, diabetes_model_dir, "diabetes") for _ in range(4)]
    go.touch()
    numbers = []
    for proc in racers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        numbers.append(int(out.strip()))
    assert sorted(numbers) == [1, 2, 3, 4]
    versions = list_model_versions("diabetes")
    assert [v.version for v in versions] == [1, 2, 3, 4]
    assert len({v.path for v in versions}) == 4
    expected = files_of(diabetes_model_dir)
    assert all(files_of(v.path) == expected for v in versions)
    assert sorted(p.name for p in versions[0].path.parent.iterdir()) == ["1", "2", "3", "4"]


@pytest.fixture
def large_model(tmp_path, diabetes_model_dir) -> Path:
    """The diabetes model with 12 MB of extra files: a copy that takes long enough to be killed in the middle."""
    model = tmp_path / "large_model"
    shutil.copytree(diabetes_model_dir, model)
    (model / "data").mkdir()
    block = os.urandom(32 * 1024)
    for i in range(400):
        (model / "data" / f"part-{i:04d}.bin").write_bytes(block[i:] + block[:i])
    return model


def test_a_registration_killed_at_any_moment_leaves_no_partial_version(tracking_uri, large_model):
    expected = files_of(large_model)
    proc = _spawn(REGISTRAR, large_model, "diabetes", stdin=True)
    started = time.monotonic()
    proc.communicate("go\n", timeout=120)
    took = time.monotonic() - started  # one whole registration, to spread the kills over
    assert proc.returncode == 0

    parent = Store.open().artifact_root / "registry" / "diabetes"
    left_staging = 0
    for fraction in (0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.1):
        proc = _spawn(REGISTRAR, large_model, "diabetes", stdin=True)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(took * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        left_staging += any(p.name.startswith(".version.staging-") for p in parent.iterdir())
        for version in list_model_versions("diabetes"):  # every version row points at a complete copy
            assert files_of(version.path) == expected, f"version {version.version} is incomplete"
    assert left_staging, f"no kill landed during a copy (a registration took {took:.2f}s): the test tested nothing"

    rows = len(list_model_versions("diabetes"))
    last = register_model(large_model, "diabetes")
    assert last.version == rows + 1 and files_of(last.path) == expected
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")], "stale staging directories remain"


def test_a_reader_never_sees_an_alias_missing_while_it_moves(tracking_uri, diabetes_model_dir):
    register_model(diabetes_model_dir, "flip")
    register_model(diabetes_model_dir, "flip")
    set_alias("flip", "champion", 1)
    flipper = _spawn(FLIPPER, 300)
    seen = set()
    while flipper.poll() is None:
        try:
            seen.add(get_model_version_by_alias("flip", "champion").version)
        except ModelNotFoundError as exc:  # pragma: no cover - the failure this test looks for
            flipper.kill()
            pytest.fail(f"the alias was missing while it moved: {exc}")
    assert flipper.returncode == 0, flipper.stderr.read() if flipper.stderr else ""
    assert seen == {1, 2}
