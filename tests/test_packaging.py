"""Packaging: flavors/ installs as modelpack.flavors (never a top-level `flavors`),
in a wheel, a normal install and an editable install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAVOR_MODULES = sorted(p.name for p in (ROOT / "flavors").glob("*.py"))


def _copy_source(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv*", "results")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def _pip(python: Path | str, *args: str) -> None:
    out = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_wheel_contains_every_flavor_under_modelpack(tmp_path):
    src = _copy_source(tmp_path / "src")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("modelpack-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in FLAVOR_MODULES:
        assert f"modelpack/flavors/{module}" in names
    assert not [n for n in names if n.startswith("flavors/")]
    eps = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(eps).decode()
    assert "[modelpack.flavors]" in text and "sklearn = modelpack.flavors.sklearn:SklearnFlavor" in text


CHECK = (
    "import importlib.util, modelpack, modelpack.flavors.sklearn as s; "
    "from modelpack.registry import get_registry; "
    "print(modelpack.__file__); print(s.__file__); "
    "print(importlib.util.find_spec('flavors')); print(get_registry().names)"
)


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["normal", "editable"])
def test_install_imports_flavors_under_modelpack(tmp_path, editable):
    src = _copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip(python, *(["-e"] if editable else []), str(src))
    out = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    init, flavor, top_level, names = out.stdout.strip().splitlines()
    base = src if editable else venv
    assert Path(init).is_relative_to(base), init
    assert Path(flavor).is_relative_to(base), flavor
    if editable:
        assert Path(flavor) == src / "flavors" / "sklearn.py"
    assert top_level == "None"
    assert "'python_model'" in names and "'sklearn'" in names
