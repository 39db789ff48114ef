"""The README's first command, run as a new user runs it, then Python started in the checkout's root.

The command is read from README.md (its first ```bash block) and run verbatim with ``bash -c`` in a fresh copy
of the checkout (``helpers.checkout_copy``: the files git tracks plus the untracked ones it
does not ignore, as a clone of the committed working tree would hold), with the base interpreter's ``python3``
first on PATH, no venv on PATH and VIRTUAL_ENV unset. The one substitution: its port, 5005, becomes a free
port (5005 may be taken on a CI machine). It makes .venv, installs modelpack into it (not editable), saves
the diabetes model and serves it; the test then scores the seed's body from the README's tour over HTTP.

Then, with that .venv, ``python -c``, ``python -`` and ``python -m`` started in the checkout's root load the
model. There the source tree comes first on sys.path and shadows the install, so it must be the same package,
flavors included (modelpack/flavors is a symlink to ../flavors; see docs/flavors.md).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from helpers import checkout_copy, free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_PORT = "5005"
SEED_BODY = (
    '{"columns":["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],"data":[[0.038076,0.050680,0.061696,'
    '0.021872,-0.044223,-0.034821,-0.043401,-0.002592,0.019908,-0.017646]]}'
)
#: pip installs modelpack and all its dependencies into a new venv first: minutes on a cold pip cache.
STARTUP_TIMEOUT = 900


def first_bash_command(text: str) -> str:
    """The content of the first fenced ```bash block."""
    match = re.search(r"^```bash[ \t]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ```bash block"
    return match.group(1).strip()


def base_user_env() -> dict[str, str]:
    """The environment of a user who has only the base Python: its bin directory first on PATH, no venv."""
    base_bin = Path(getattr(sys, "_base_executable", None) or sys.executable).parent
    assert (base_bin / "python3").exists(), f"no python3 next to the base interpreter in {base_bin}"
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p).parent / "pyvenv.cfg").is_file()]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, "PATH": os.pathsep.join([str(base_bin), *path])}


@dataclass
class ReadmeRun:
    checkout: Path
    url: str
    proc: subprocess.Popen
    log_path: Path
    ready: bool

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> Iterator[ReadmeRun]:
    """The README's first command, running in a fresh copy of the checkout until /ping answers (or it exits)."""
    tmp = tmp_path_factory.mktemp("readme")
    checkout = checkout_copy(tmp / "modelpack")
    command = first_bash_command(README.read_text(encoding="utf-8"))
    assert command.count(f"-p {README_PORT}") == 1, f"expected one '-p {README_PORT}' in {command!r}"
    port = free_port()
    command = command.replace(f"-p {README_PORT}", f"-p {port}")
    log_path = tmp / "readme-command.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "-c", command], cwd=checkout, env=base_user_env(), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    run = ReadmeRun(checkout, f"http://127.0.0.1:{port}", proc, log_path, ready=False)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f"{run.url}/ping", timeout=2).status_code == 200:
                    run.ready = True
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        yield run
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the command's whole process group (bash, modelpack serve, gunicorn and its workers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            proc.poll()  # reap bash, so that only live processes keep the group
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.wait(30)


@pytest.fixture(scope="module")
def expected_prediction() -> float:
    """What examples/diabetes.py's model predicts for the seed row, computed here the same way."""
    import pandas as pd
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    model = ElasticNet(alpha=0.01, l1_ratio=0.5).fit(*load_diabetes(return_X_y=True, as_frame=True))
    seed = json.loads(SEED_BODY)
    (value,) = model.predict(pd.DataFrame(seed["data"], columns=seed["columns"]))
    return float(value)


@pytest.mark.slow
def test_readme_first_command_serves_the_seed_request(readme_run, expected_prediction):
    assert SEED_BODY in README.read_text(encoding="utf-8"), "the README's tour no longer sends the seed's body"
    code = readme_run.proc.poll()
    assert readme_run.ready, ("the README's first command " + (f"exited with {code}" if code is not None else
                              f"did not serve /ping within {STARTUP_TIMEOUT}s") + f":\n{readme_run.log()}")
    response = requests.post(f"{readme_run.url}/invocations", data=SEED_BODY,
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert abs(prediction - expected_prediction) <= 1e-6, (prediction, expected_prediction)


SCRIPT = f"""\
import json, modelpack, pandas as pd
import modelpack.flavors.sklearn as flavor
seed = json.loads({SEED_BODY!r})
model = modelpack.load_model("diabetes_model")
(value,) = model.predict(pd.DataFrame(seed["data"], columns=seed["columns"]))
print(json.dumps({{"prediction": float(value), "modelpack": modelpack.__file__, "flavor": flavor.__file__}}))
"""


def _run(argv: list[str], cwd: Path, **kw) -> str:
    out = subprocess.run(argv, cwd=cwd, env=base_user_env(), capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{argv[1:3]} in the checkout's root exited with {out.returncode}:\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_python_in_the_checkout_root_loads_the_model(readme_run, expected_prediction):
    checkout, python = readme_run.checkout, readme_run.checkout / ".venv" / "bin" / "python"
    assert python.is_file() and (checkout / "diabetes_model" / "MLmodel").is_file(), (
        f"the README's first command did not install modelpack and save the model:\n{readme_run.log()}")
    (site,) = (checkout / ".venv").glob("lib/python3*/site-packages")
    assert (site / "modelpack" / "flavors" / "sklearn.py").is_file(), "the README installs modelpack, not editable"
    for argv, kw in (([str(python), "-c", SCRIPT], {}), ([str(python), "-"], {"input": SCRIPT})):
        found = json.loads(_run(argv, checkout, **kw).strip().splitlines()[-1])
        assert abs(found["prediction"] - expected_prediction) <= 1e-6, found
        for module in ("modelpack", "flavor"):
            path = Path(found[module]).resolve()
            assert path.is_relative_to(checkout.resolve()), found  # the checkout, or .venv inside it
    assert "serve" in _run([str(python), "-m", "modelpack.cli", "--help"], checkout)
    (checkout / "seed.json").write_text(SEED_BODY, encoding="utf-8")
    out = _run([str(python), "-m", "modelpack.cli", "predict", "-m", "diabetes_model", "-i", "seed.json",
                "--env-manager", "local"], checkout)
    (prediction,) = json.loads(out)["predictions"]
    assert abs(prediction - expected_prediction) <= 1e-6, out
