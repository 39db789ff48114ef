"""The environment cache without real builds: publishing, unfinished builds, locks, list/remove/prune
(modelpack/env/cache.py, modelpack/cli/env.py, modelpack/cli/prepare_env.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from modelpack.env.cache import MARKER, USAGE, Cache, default_root
from modelpack.env.managers import get_manager
from modelpack.errors import EnvironmentBuildError


def fake_env(cache: Cache, key: str, *, last_used: float | None = None, models: tuple[str, ...] = ()):
    """A published 'environment' that is only a marker and an empty bin/python."""
    path = cache.new_build_dir(key)
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    (path / MARKER).write_text(json.dumps({"python": "3.11.7", "manager": "virtualenv"}))
    if last_used is not None:
        (path / USAGE).write_text(json.dumps({"last_used": last_used, "models": list(models)}))
    return cache.publish(key, path)


def unfinished_build(cache: Cache, key: str):
    path = cache.new_build_dir(key)
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")  # everything but the marker
    return path


def hold_lock(cache: Cache, key: str) -> subprocess.Popen:
    """Another process holding ``key``'s lock until it is killed."""
    code = ("import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    cache.locks.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(cache.locks / f"{key}.lock")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELPACK_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home"
    monkeypatch.delenv("MODELPACK_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "modelpack"


def test_only_published_complete_builds_are_found(tmp_path):
    cache = Cache(tmp_path)
    assert cache.get("a" * 16) is None
    partial = unfinished_build(cache, "a" * 16)
    assert cache.get("a" * 16) is None
    env = fake_env(cache, "b" * 16)
    assert cache.get("b" * 16) == env and env.python == env.path / "bin" / "python"
    assert os.readlink(cache.envs / ("b" * 16)) == f"../builds/{env.path.name}"  # relative: the root may move
    assert cache.environments() == [env]
    assert cache.unfinished() == [partial]
    # a published link whose target lost its marker counts as missing
    (env.path / MARKER).unlink()
    assert cache.get("b" * 16) is None


def test_discard_partial_keeps_other_keys_and_the_live_build(tmp_path):
    cache = Cache(tmp_path)
    live = fake_env(cache, "a" * 16)
    stale = unfinished_build(cache, "a" * 16)
    other = unfinished_build(cache, "b" * 16)
    cache.discard_partial("a" * 16)
    assert live.path.exists() and not stale.exists() and other.exists()


def test_record_use(tmp_path):
    env = fake_env(Cache(tmp_path), "a" * 16)
    env.record_use(tmp_path / "m1")
    env.record_use(tmp_path / "m2")
    env.record_use(tmp_path / "m1")
    usage = env.usage()
    assert usage["models"] == [str(tmp_path / "m1"), str(tmp_path / "m2")]
    assert time.time() - usage["last_used"] < 60


def test_remove_refuses_while_locked(tmp_path):
    cache = Cache(tmp_path)
    env = fake_env(cache, "a" * 16)
    holder = hold_lock(cache, "a" * 16)
    try:
        assert cache.remove("a" * 16) is False
        assert cache.get("a" * 16) == env
    finally:
        holder.kill()
        holder.wait()
    assert cache.remove("a" * 16) is True
    assert cache.get("a" * 16) is None and not env.path.exists()


def test_prune(tmp_path):
    cache = Cache(tmp_path)
    old = fake_env(cache, "a" * 16, last_used=time.time() - 40 * 86400)
    recent = fake_env(cache, "b" * 16, last_used=time.time())
    stale = unfinished_build(cache, "c" * 16)
    building = unfinished_build(cache, "d" * 16)
    cache.logs.mkdir()
    (cache.logs / "old.log").write_text("x")
    os.utime(cache.logs / "old.log", (time.time() - 40 * 86400,) * 2)
    holder = hold_lock(cache, "d" * 16)  # a build in progress is never pruned
    try:
        assert cache.prune(30, dry_run=True) == [
            f"environment {'a' * 16}", f"unfinished build {stale.name}", "log old.log"]
        assert old.path.exists() and stale.exists()
        cache.prune(30)
    finally:
        holder.kill()
        holder.wait()
    assert not old.path.exists() and not stale.exists() and not (cache.logs / "old.log").exists()
    assert recent.path.exists() and building.exists()
    cache.prune(0)
    assert cache.environments() == [] and cache.unfinished() == []


def test_uv_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("modelpack.env.managers.find_uv", lambda: None)
    with pytest.raises(EnvironmentBuildError, match="pip install uv"):
        get_manager("uv")


def cli(*args: str, home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "MODELPACK_HOME": str(home)})


def test_env_commands(tmp_path):
    cache = Cache(tmp_path / "home")
    out = cli("env", "list", home=cache.root)
    assert out.returncode == 0 and "No environments" in out.stdout
    fake_env(cache, "abc" + "0" * 13, last_used=time.time() - 3 * 86400, models=("/m/diabetes_model",))
    fake_env(cache, "abd" + "0" * 13, last_used=time.time())
    unfinished_build(cache, "f" * 16)

    out = cli("env", "list", home=cache.root)
    assert out.returncode == 0, out.stderr
    header, first, second = out.stdout.splitlines()[:3]
    assert header.split() == ["HASH", "PYTHON", "MANAGER", "SIZE", "LAST", "USED", "MODELS"]
    assert first.startswith("abc" + "0" * 13) and "3 days ago" in first and "diabetes_model" in first
    assert "1 unfinished build(s)" in out.stdout
    listing = json.loads(cli("env", "list", "--json", home=cache.root).stdout)
    assert [e["hash"] for e in listing["environments"]] == ["abc" + "0" * 13, "abd" + "0" * 13]

    out = cli("env", "remove", "ab", home=cache.root)
    assert out.returncode == 2 and "2 environments" in out.stderr
    out = cli("env", "remove", "abc", home=cache.root)
    assert out.returncode == 0 and out.stdout.strip() == f"Removed environment abc{'0' * 13}"
    out = cli("env", "prune", "--dry-run", home=cache.root)
    assert out.stdout.strip() == f"Would remove unfinished build {cache.unfinished()[0].name}"
    out = cli("env", "prune", "--older-than", "0", home=cache.root)
    assert out.returncode == 0 and cache.environments() == [] and cache.unfinished() == []


def test_local_env_manager_builds_nothing(tmp_path, custom_model_dir):
    home = tmp_path / "home"
    out = cli("prepare-env", "-m", str(custom_model_dir), "--env-manager", "local", home=home)
    assert out.returncode == 0 and out.stdout.strip() == sys.executable
    out = cli("prepare-env", "-m", str(custom_model_dir), "--env-manager", "local", "--python", "python3", home=home)
    assert out.returncode == 2 and "--python" in out.stderr
    assert not home.exists()


def test_virtualenv_is_the_default(tmp_path):
    for command in ("serve", "predict", "prepare-env"):
        text = " ".join(cli(command, "--help", home=tmp_path).stdout.split())  # unwrapped
        assert "[default: virtualenv]" in text and "--python PATH" in text
