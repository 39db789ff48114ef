"""Packaging: flavors/ is the package modelpack.flavors, in the source tree (through the git-tracked symlink
modelpack/flavors -> ../flavors) and in every install: a wheel, an sdist, pip's normal and editable installs
and uv's. None of them makes a top-level ``flavors`` importable.

The tests bring what they need: each works on a copy of the checkout's git files (``helpers.checkout_copy``) and
builds in fresh venvs of the base interpreter (``python -m venv``, no system site packages) with pip's and uv's
normal build isolation, so setuptools comes from the package index, never from the interpreter running the
tests. ``import modelpack`` and the flavor modules need none of modelpack's dependencies, so installs here use
``--no-deps``; tests/test_readme.py installs everything, as the README does.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import checkout_copy

ROOT = Path(__file__).resolve().parents[1]
FLAVOR_MODULES = sorted(p.name for p in (ROOT / "flavors").glob("*.py"))


def base_python() -> str:
    """The interpreter the test venv was made from: what a user with only the base Python has."""
    return getattr(sys, "_base_executable", None) or sys.executable


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment less what would point a child Python at other packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600,
        input: str | None = None) -> str:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, input=input,
                         env=env or clean_env(), timeout=timeout)
    assert out.returncode == 0, (f"{' '.join(map(str, argv))} exited with {out.returncode}:\n"
                                 f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out.stdout


def make_venv(path: Path) -> Path:
    """A fresh venv of the base interpreter, with pip; returns its python."""
    run(base_python(), "-m", "venv", path, timeout=300)
    return path / "bin" / "python"


def pip_install(python: Path, *args: str | Path) -> None:
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", *args)


#: Run with the installed python from a directory outside the checkout: where each module comes from.
CHECK = """\
import importlib.util, json, modelpack, modelpack.flavors.sklearn as s
from modelpack.flavor_registry import get_registry
print(json.dumps({"modelpack": modelpack.__file__, "flavor": s.__file__,
                  "top_level_flavors": importlib.util.find_spec("flavors") is not None,
                  "registered": sorted(get_registry().names)}))
"""


def check_installed(python: Path, tmp_path: Path) -> dict:
    """What CHECK finds, run in an empty directory (python -c puts the current directory on sys.path)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    found = json.loads(run(python, "-c", CHECK, cwd=cwd).strip().splitlines()[-1])
    assert not found["top_level_flavors"], "a top-level `flavors` package is importable from the install"
    assert {"python_model", "sklearn"} <= set(found["registered"]), found
    return found


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def assert_installed_copy(venv: Path, found: dict) -> None:
    """A non-editable install: modelpack and its flavors are real files in the venv's site-packages."""
    package = site_packages(venv) / "modelpack"
    assert Path(found["modelpack"]) == package / "__init__.py", found
    assert Path(found["flavor"]) == package / "flavors" / "sklearn.py", found
    assert (package / "flavors").is_dir() and not (package / "flavors").is_symlink()
    assert sorted(p.name for p in (package / "flavors").glob("*.py")) == FLAVOR_MODULES
    assert not (site_packages(venv) / "flavors").exists()


def assert_editable(source: Path, found: dict) -> None:
    """An editable install: modules come from the checkout, the flavors through modelpack/flavors."""
    assert Path(found["modelpack"]) == source / "modelpack" / "__init__.py", found
    assert Path(found["flavor"]).resolve() == (source / "flavors" / "sklearn.py").resolve(), found


def test_the_checkout_links_modelpack_flavors_to_flavors():
    link = ROOT / "modelpack" / "flavors"
    assert link.is_symlink() and os.readlink(link) == "../flavors", "modelpack/flavors must be a relative symlink"
    assert sorted(p.name for p in link.glob("*.py")) == FLAVOR_MODULES
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-s", "--", "modelpack/flavors"],
                             capture_output=True, text=True, timeout=60).stdout
    assert tracked == "" or tracked.startswith("120000 "), f"git must store it as a symlink: {tracked}"


@pytest.fixture(scope="module")
def builder(tmp_path_factory) -> Path:
    """A fresh venv with pip and `build`, shared by the tests that build a wheel or an sdist."""
    python = make_venv(tmp_path_factory.mktemp("builder") / "venv")
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "build")
    return python


@pytest.fixture(scope="module")
def wheel(builder, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = checkout_copy(tmp / "checkout")
    run(builder, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", tmp / "dist", source)
    (built,) = (tmp / "dist").glob("modelpack-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_every_flavor_under_modelpack(wheel):
    with zipfile.ZipFile(wheel) as whl:
        infos = {info.filename: info for info in whl.infolist()}
        dist_info = next(n.split("/")[0] for n in infos if n.endswith(".dist-info/RECORD"))
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
        top_level = whl.read(f"{dist_info}/top_level.txt").decode().split()
    for module in FLAVOR_MODULES:
        info = infos.get(f"modelpack/flavors/{module}")
        assert info is not None, f"modelpack/flavors/{module} is not in the wheel"
        assert stat.S_ISREG(info.external_attr >> 16) and info.file_size > 0, f"{module} is not a regular file"
    assert {n.split("/")[0] for n in infos} == {"modelpack", dist_info}, "the wheel has another top-level entry"
    sources = {Path(folder, name).relative_to(ROOT).as_posix()  # through the symlink modelpack/flavors
               for folder, _, names in os.walk(ROOT / "modelpack", followlinks=True) for name in names
               if name.endswith(".py")}
    assert sources <= set(infos), f"not in the wheel (a package missing from `packages`?): {sources - set(infos)}"
    assert top_level == ["modelpack"]
    assert "[modelpack.flavors]" in entry_points
    assert "sklearn = modelpack.flavors.sklearn:SklearnFlavor" in entry_points


@pytest.mark.slow
def test_wheel_installs_flavors_under_modelpack(wheel, tmp_path):
    venv = tmp_path / "venv"
    pip_install(make_venv(venv), wheel)
    assert_installed_copy(venv, check_installed(venv / "bin" / "python", tmp_path))


@pytest.mark.slow
def test_sdist_holds_flavors_as_files_and_installs(builder, tmp_path):
    source = checkout_copy(tmp_path / "checkout")
    run(builder, "-m", "build", "--sdist", "--outdir", tmp_path / "dist", source)
    (sdist,) = (tmp_path / "dist").glob("modelpack-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    for module in FLAVOR_MODULES:
        member = members.get(f"modelpack/flavors/{module}")
        assert member is not None and member.isfile(), f"modelpack/flavors/{module} is not a file in the sdist"
    assert not [n for n, m in members.items() if m.issym() or m.islnk()], "the sdist holds links"
    assert not [n for n in members if n.startswith("flavors/")], "the sdist has a top-level flavors/"
    venv = tmp_path / "venv"
    pip_install(make_venv(venv), sdist)
    assert_installed_copy(venv, check_installed(venv / "bin" / "python", tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["normal", "editable"])
def test_pip_install_imports_flavors_under_modelpack(tmp_path, editable):
    source = checkout_copy(tmp_path / "checkout")
    venv = tmp_path / "venv"
    pip_install(make_venv(venv), *(["-e"] if editable else []), source)
    found = check_installed(venv / "bin" / "python", tmp_path)
    if editable:
        assert_editable(source, found)
    else:
        assert_installed_copy(venv, found)


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["normal", "editable"])
def test_uv_pip_install_imports_flavors_under_modelpack(tmp_path, editable):
    from modelpack.env.managers import find_uv

    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed (it is in the [test] extra)")
    source = checkout_copy(tmp_path / "checkout")
    venv = tmp_path / "venv"
    run(uv, "venv", "-q", "--python", base_python(), venv)
    python = venv / "bin" / "python"
    run(uv, "pip", "install", "-q", "--python", python, "--no-deps", *(["-e"] if editable else []), source)
    found = check_installed(python, tmp_path)
    if editable:
        assert_editable(source, found)
    else:
        assert_installed_copy(venv, found)
