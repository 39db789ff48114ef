"""Real environment rebuilds (slow): serve and predict in a rebuilt virtualenv, cache reuse, a killed
build, concurrent builds, an unsatisfiable requirement, uv (modelpack/env/build.py and friends).

The models import small pure-Python packages that the test interpreter does not have, so a right
answer proves the model ran in its rebuilt environment. One cache root serves the whole module, so
each distinct environment is built once (about 30 s each from pip's cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import Server, start_server

import modelpack
from modelpack.env.managers import find_uv

pytestmark = pytest.mark.slow

BUILD_TIMEOUT = 600


class RomanModel(modelpack.PythonModel):
    def predict(self, context, model_input, params=None):
        import roman  # only in the rebuilt environment

        return [roman.toRoman(int(v)) for v in model_input["x"]]


class CamelModel(modelpack.PythonModel):
    def predict(self, context, model_input, params=None):
        import inflection  # only in the rebuilt environment

        return [inflection.camelize(v) for v in model_input["x"]]


def _save(model, path: Path, *requirements: str) -> Path:
    for requirement in requirements:
        module = requirement.split("==")[0]
        assert importlib.util.find_spec(module) is None, f"{module} must not be installed in the test interpreter"
    # Pickled by value: the class lives in this test module, which the environment cannot import.
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        modelpack.save_model(model, path, extra_pip_requirements=list(requirements))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One cache root for the module: the first test that needs an environment builds it."""
    return tmp_path_factory.mktemp("modelpack-home")


@pytest.fixture(scope="module")
def roman_model(tmp_path_factory) -> Path:
    return _save(RomanModel(), tmp_path_factory.mktemp("models") / "roman_model", "roman==4.2")


@pytest.fixture(scope="module")
def camel_model(tmp_path_factory) -> Path:
    return _save(CamelModel(), tmp_path_factory.mktemp("models") / "camel_model", "inflection==0.5.1")


def cli(*args: str, home: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, env={**os.environ, "MODELPACK_HOME": str(home)}, **kw)


def popen(*args: str, home: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "modelpack.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MODELPACK_HOME": str(home)})


def published(home: Path) -> set[str]:
    return {p.name for p in (home / "envs").iterdir()} if (home / "envs").is_dir() else set()


def builds(home: Path) -> set[str]:
    return {p.name for p in (home / "builds").iterdir()} if (home / "builds").is_dir() else set()


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n    {text}")


def serve_with_defaults(model_dir: Path, tmp_path: Path, home: Path) -> Server:
    """``modelpack serve -m MODEL -p PORT`` and nothing else: the default env manager rebuilds."""
    return start_server(model_dir, tmp_path, env={"MODELPACK_HOME": str(home)}, timeout=BUILD_TIMEOUT, local=False)


def test_serve_rebuilds_the_environment_then_reuses_it(roman_model, home, tmp_path, capsys):
    env = {"MODELPACK_HOME": str(home)}
    started = time.monotonic()
    server = serve_with_defaults(roman_model, tmp_path, home)  # the default env manager: virtualenv
    cold = time.monotonic() - started
    try:
        assert server.post(json.dumps({"dataframe_split": {"columns": ["x"], "data": [[4], [1999]]}})).json() == {
            "predictions": ["IV", "MCMXCIX"]}
        assert "Building environment" in server.log() and "Built environment" in server.log()
    finally:
        assert server.stop() == 0
    (key,) = published(home)

    started = time.monotonic()
    server = start_server(roman_model, tmp_path, "--env-manager", "virtualenv", env=env)
    warm = time.monotonic() - started
    try:
        log = server.log()
        assert f"Using cached environment {key}" in log
        assert "Building environment" not in log and "Installing" not in log  # no installer ran
        assert server.post('{"columns": ["x"], "data": [[9]]}').json() == {"predictions": ["IX"]}
    finally:
        server.stop()
    report(capsys, f"first /ping 200: cold build {cold:.1f}s, cached {warm:.1f}s")
    assert warm < max(10.0, cold / 3)

    # predict with the default env manager (no flag at all) uses the same environment
    (tmp_path / "in.json").write_text('{"columns": ["x"], "data": [[3]]}')
    out = cli("predict", "-m", str(roman_model), "-i", str(tmp_path / "in.json"), home=home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"predictions": ["III"]}
    assert f"Using cached environment {key}" in out.stderr
    listing = json.loads(cli("env", "list", "--json", home=home).stdout)["environments"]
    assert [e["hash"] for e in listing] == [key] and listing[0]["models"] == [str(roman_model)]


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read ``proc``'s stderr until a line contains ``marker``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen += lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, f"build ended before '{marker}':\n{seen}"
            continue
        if marker in seen:
            return seen
    raise AssertionError(f"no '{marker}' after {timeout}s:\n{seen}")


def _processes_using(path: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_killed_build_is_not_reused_and_concurrent_builds_build_once(camel_model, home, capsys):
    before = published(home)
    killed = popen("prepare-env", "-m", str(camel_model), home=home)
    _read_until(killed, "Collecting", timeout=120)  # pip is installing
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert published(home) == before  # nothing was published
    (partial,) = builds(home) - {os.readlink(home / "envs" / k).rsplit("/", 1)[-1] for k in before}
    if sys.platform == "linux":  # the installer died with its parent: nothing writes into the dead build
        deadline = time.monotonic() + 10
        while _processes_using(home / "builds" / partial) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _processes_using(home / "builds" / partial)

    started = time.monotonic()
    first, second = (popen("prepare-env", "-m", str(camel_model), home=home) for _ in range(2))
    results = [(p.wait(BUILD_TIMEOUT), *p.communicate()) for p in (first, second)]
    report(capsys, f"two concurrent prepare-env: {time.monotonic() - started:.1f}s")
    assert [code for code, _, _ in results] == [0, 0], results
    pythons = {out.strip() for _, out, _ in results}
    assert len(pythons) == 1
    errs = [err for _, _, err in results]
    assert sum("Building environment" in err for err in errs) == 1, errs
    assert sum("just built by another process" in err for err in errs) == 1, errs
    (new_key,) = published(home) - before
    target = os.readlink(home / "envs" / new_key).rsplit("/", 1)[-1]
    assert partial not in builds(home) and target in builds(home)  # the killed build was deleted, not reused
    assert Path(pythons.pop()) == (home / "builds" / target).resolve() / "bin" / "python"

    out = subprocess.run([str(home / "envs" / new_key / "bin" / "python"), "-c",
                          "import inflection; print(inflection.camelize('model_pack'))"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ModelPack"


def test_unsatisfiable_requirement_fails_clearly_and_leaves_nothing(tmp_path):
    model = tmp_path / "broken_model"
    modelpack.save_model(lambda df: df, model, extra_pip_requirements=["nonexistent-package-xyz-modelpack==1.0"])
    home = tmp_path / "home"
    out = cli("prepare-env", "-m", str(model), home=home)
    assert out.returncode == 5, out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: Building the environment failed while installing the model's requirements "
                            "with pip: no version of 'nonexistent-package-xyz-modelpack==1.0' was found")
    assert "Traceback" not in out.stderr
    log = Path(error.rsplit("Full log: ", 1)[1])
    assert log.is_file() and "No matching distribution found for nonexistent-package-xyz-modelpack" in log.read_text()
    assert published(home) == set() and builds(home) == set()

    out = cli("serve", "-m", str(model), home=home)
    assert out.returncode == 5 and "nonexistent-package-xyz-modelpack==1.0" in out.stderr
    assert published(home) == set() and builds(home) == set()


@pytest.mark.skipif(find_uv() is None, reason="uv is not installed (pip install uv)")
def test_uv_env_manager(roman_model, home, tmp_path):
    (tmp_path / "in.json").write_text('{"columns": ["x"], "data": [[14]]}')
    out = cli("predict", "-m", str(roman_model), "-i", str(tmp_path / "in.json"), "--env-manager", "uv", home=home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"predictions": ["XIV"]}
    assert "(uv)" in out.stderr
    infos = json.loads(cli("env", "list", "--json", home=home).stdout)["environments"]
    assert "uv" in {e["manager"] for e in infos}
