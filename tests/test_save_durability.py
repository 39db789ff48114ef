"""A save killed at any moment: no half-written model, no staging directory left for good, and an overwrite
leaves the old or the new model at the target, never neither. Real processes, killed with SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import modelpack
from modelpack.errors import ModelSaveError

#: A child that saves custom models: ``save TARGET VALUE DELAY [overwrite]`` saves one whose pickling sleeps
#: DELAY seconds; ``loop TARGET N`` overwrites TARGET with values 0..N-1 as fast as it can. FALLBACK=1 takes
#: the overwrite path of systems without an atomic exchange (this machine has one).
CHILD = textwrap.dedent("""
    import os, sys, time
    import modelpack
    import modelpack.save

    if os.environ.get("FALLBACK") == "1":
        modelpack.save._renameat2_fn = False  # as on a system or filesystem without renameat2

    class Model(modelpack.PythonModel):
        def __init__(self, value, delay=0.0):
            self.value = value
            self.delay = delay

        def __getstate__(self):  # pickling it is slow: the save is caught in the middle
            time.sleep(self.delay)
            return dict(self.__dict__)

        def predict(self, context, model_input, params=None):
            return [self.value] * len(model_input)

    command, target = sys.argv[1], sys.argv[2]
    if command == "save":
        overwrite = len(sys.argv) > 5
        modelpack.save_model(Model(int(sys.argv[3]), float(sys.argv[4])), target, overwrite=overwrite,
                             pip_requirements=[])
        print("saved", flush=True)
    else:
        for value in range(int(sys.argv[3])):
            modelpack.save_model(Model(value), target, overwrite=True, pip_requirements=[])
            print(value, flush=True)
""")


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    procs: list[subprocess.Popen] = []

    def start(*args: object, fallback: bool = False) -> subprocess.Popen:
        env = {**os.environ, "FALLBACK": "1" if fallback else "0"}
        proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _staging_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name)


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _pickling_staging(parent: Path, name: str) -> list[Path]:
    """Staging directories of ``name`` whose python_model.pkl is being written (the save is mid-pickle)."""
    return [p for p in parent.glob(f".{name}.staging-*") if (p / "python_model.pkl").exists()]


def _value(model_dir: Path) -> int:
    """The value the complete model at ``model_dir`` predicts (loading fails on anything incomplete)."""
    return int(modelpack.load_model(model_dir).predict([[0]])[0])


def test_a_save_killed_mid_pickle_leaves_a_staging_dir_that_the_next_save_removes(tmp_path, child):
    parent = tmp_path / "models"
    parent.mkdir()
    killed = []
    for i in range(3):  # three dead saves, as a tester's repeated kill -9 leaves them
        proc = child("save", parent / "victim", i, 30)
        staging = _wait_for(lambda: _pickling_staging(parent, "victim"), what="the save to start pickling")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        killed += staging
    assert not (parent / "victim").exists()  # never a half-written model
    assert set(killed) <= set(_staging_dirs(parent)) and len(killed) == 3  # what the tester saw pile up

    modelpack.save_model(lambda df: df, parent / "other", pip_requirements=[])  # any save into the parent

    assert _staging_dirs(parent) == []
    assert sorted(p.name for p in parent.iterdir()) == ["other"]


def test_a_live_save_keeps_its_staging_dir_while_another_save_cleans_up(tmp_path, child):
    parent = tmp_path / "models"
    parent.mkdir()
    dead = child("save", parent / "dead", 1, 30)
    _wait_for(lambda: _pickling_staging(parent, "dead"), what="the first save to start pickling")
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    live = child("save", parent / "live", 7, 3)  # still pickling while the save below cleans up
    live_staging = _wait_for(lambda: _pickling_staging(parent, "live"), what="the live save to start pickling")

    modelpack.save_model(lambda df: df, parent / "other", pip_requirements=[])

    assert [p.name for p in _staging_dirs(parent)] == [live_staging[0].name]  # the dead one only is gone
    out, err = live.communicate(timeout=60)
    assert live.returncode == 0, err
    assert out.strip() == "saved"
    assert _value(parent / "live") == 7
    assert _staging_dirs(parent) == []


def test_concurrent_saves_into_one_parent_never_remove_each_others_staging(tmp_path, child):
    """Four processes saving 60 times each into one parent: every save cleans the parent up first, and none
    removes another's live staging directory (that save would fail)."""
    parent = tmp_path / "models"
    parent.mkdir()
    procs = [child("loop", parent / f"m{i}", 60) for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert [_value(parent / f"m{i}") for i in range(4)] == [59] * 4
    assert _staging_dirs(parent) == []


def test_overwrite_killed_at_random_moments_always_leaves_a_complete_model(tmp_path, child):
    """25 overwrite loops killed with SIGKILL at random moments: the target always loads, holding a value some
    save wrote; the leftovers are only staging directories, which the next save removes."""
    target = tmp_path / "models" / "m"
    modelpack.save_model(lambda df: [-1] * len(df), target, pip_requirements=[])
    rng = random.Random(12)
    left_behind = 0
    seen = set()
    for _ in range(25):
        proc = child("loop", target, 10_000)
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one save done: the loop is hot
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert (target / "MLmodel").is_file()
        seen.add(_value(target))
        left_behind += bool(_staging_dirs(target.parent))
    assert left_behind > 0  # the kills did land in the middle of saves
    assert min(seen) >= 0  # each loop's first save replaced the model, and only ever with a whole one
    modelpack.save_model(lambda df: [-2] * len(df), target, overwrite=True, pip_requirements=[])
    assert _value(target) == -2
    assert _staging_dirs(target.parent) == []


def _observe_overwrites(child, target: Path, fallback: bool, saves: int = 400) -> tuple[int, int]:
    """(times the target had no MLmodel, times it was looked at) while a child overwrites it ``saves`` times."""
    proc = child("loop", target, saves, fallback=fallback)
    missing = looks = 0
    mlmodel = target / "MLmodel"
    while proc.poll() is None:
        looks += 1
        if not os.path.exists(mlmodel):
            missing += 1
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return missing, looks


def test_overwrite_is_one_atomic_exchange(tmp_path, child):
    """A reader watching the target while it is overwritten 400 times never finds it missing. The control: the
    same reader does catch the gap of the rename-aside fallback (old model out, new one not yet in), so it would
    catch a non-atomic overwrite here."""
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is Linux's")
    target = tmp_path / "m"
    modelpack.save_model(lambda df: [-1] * len(df), target, pip_requirements=[])

    missing, looks = _observe_overwrites(child, target, fallback=False)
    assert looks > 1000 and missing == 0

    gaps = 0
    for _ in range(5):  # the gap is microseconds wide: look until the reader has seen one
        gaps, _ = _observe_overwrites(child, target, fallback=True)
        if gaps:
            break
    assert gaps > 0, "the reader never saw the fallback's gap: it cannot tell an atomic overwrite either"
    assert _value(target) == 399


def test_fallback_overwrite_killed_between_its_renames_is_restored_by_the_next_load(tmp_path, child):
    """Where no atomic exchange exists, an overwrite renames the old model aside, then the new one in. A kill
    between the two (the state built here with the same renames, since no kill lands in a microsecond window
    reliably) leaves no model at the target: the next load puts the old one back, the next save cleans up."""
    target = tmp_path / "m"
    modelpack.save_model(lambda df: [1] * len(df), target, pip_requirements=[])
    proc = child("save", target, 2, 30, "overwrite", fallback=True)
    staging = _wait_for(lambda: _pickling_staging(tmp_path, "m"), what="the overwrite to start pickling")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.rename(target, tmp_path / ".m.old-a1b2c3d4")  # the overwrite's first rename, then it died
    assert not target.exists()

    assert _value(target) == 1  # the old model is back
    assert not (tmp_path / ".m.old-a1b2c3d4").exists()
    assert staging[0].exists()
    modelpack.save_model(lambda df: [3] * len(df), target, overwrite=True, pip_requirements=[])
    assert _value(target) == 3
    assert _staging_dirs(tmp_path) == []


def test_fallback_overwrite_killed_at_random_moments_leaves_a_model_that_loads(tmp_path, child):
    target = tmp_path / "models" / "m"
    modelpack.save_model(lambda df: [-1] * len(df), target, pip_requirements=[])
    rng = random.Random(7)
    for _ in range(15):
        proc = child("loop", target, 10_000, fallback=True)
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _value(target) >= 0  # loads, restoring the aside copy if the kill fell between the renames
    modelpack.save_model(lambda df: [-2] * len(df), target, overwrite=True, pip_requirements=[])
    assert _staging_dirs(target.parent) == []


def test_a_new_target_taken_by_another_save_meanwhile_is_not_replaced(tmp_path, child):
    """Without overwrite, a save that finds its target created while it was saving fails and leaves that model."""
    target = tmp_path / "m"
    slow = child("save", target, 1, 3)
    _wait_for(lambda: _pickling_staging(tmp_path, "m"), what="the slow save to start pickling")
    modelpack.save_model(lambda df: [2] * len(df), target, pip_requirements=[])
    _, err = slow.communicate(timeout=60)
    assert slow.returncode != 0
    assert "was created by someone else while this model was saved; pass overwrite=True" in err
    assert _value(target) == 2
    assert _staging_dirs(tmp_path) == []


def test_overwrite_refuses_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(ModelSaveError, match="is not a model directory"):
        modelpack.save_model(lambda df: df, tmp_path / "data", overwrite=True, pip_requirements=[])
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"
    assert _staging_dirs(tmp_path) == []
