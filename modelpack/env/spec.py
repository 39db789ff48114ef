"""What a model needs to run: pinned requirements and the environment files.

At save time the core pins, from the saving interpreter, the distributions the
flavor names plus the core's own (numpy, pandas, cloudpickle, modelpack), then writes
``requirements.txt``, ``python_env.yaml`` and ``conda.yaml`` (and ``constraints.txt``
when the user's requirements name constraint files), so the model directory alone is
enough to rebuild its environment.
"""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from ..errors import ModelSaveError
from . import reqfile

logger = logging.getLogger(__name__)

REQUIREMENTS_FILE = "requirements.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_FILE = "conda.yaml"
CONSTRAINTS_FILE = "constraints.txt"

#: Distributions every saved model needs besides its flavor's library.
CORE_REQUIREMENTS = ("modelpack", "numpy", "pandas", "cloudpickle")
BUILD_TOOLS = ("pip", "setuptools", "wheel")

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(requirement: str) -> str:
    """The normalised distribution name of a requirement line ('' for options like ``-r``)."""
    match = _NAME_RE.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def modelpack_requirement() -> str:
    """How to install this modelpack elsewhere.

    A release pins ``modelpack==X``. A development install (``pip install -e .`` or from a
    local directory) records ``modelpack @ file:///path`` so that ``pip install -r`` on the
    same machine installs the same code; ``modelpack serve`` puts the serving modelpack into
    a rebuilt environment anyway (see docs/environments.md).
    """
    from .modelpack_source import installed

    return installed().recorded_requirement


def pin(name: str) -> str:
    """``name==<installed version>``; a package that is not installed is a save error."""
    if canonical_name(name) == "modelpack":
        return modelpack_requirement()
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        raise ModelSaveError(
            f"Requirement '{name}' is not installed in this interpreter, so its version cannot be pinned"
        ) from None
    public = _public_version(version)
    if public != version:
        # A local label (torch's "+cpu") names a build that only its own index hosts: PyPI has none, so
        # "torch==2.13.0+cpu" cannot be installed from it, while "torch==2.13.0" matches the local build too.
        logger.info("Pinning %s==%s: the installed %s carries a local version label", name, public, version)
    return f"{name}=={public}"


def _public_version(version: str) -> str:
    """``version`` without its PEP 440 local label (``2.13.0+cpu`` -> ``2.13.0``)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).public
    except InvalidVersion:
        return version


def resolve_requirements(
    flavor_requirements: Iterable[str],
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
) -> list[str]:
    """The final requirement lines of a model.

    ``pip_requirements`` replaces the inferred list; ``extra_pip_requirements`` adds to it
    (an extra naming an inferred package replaces that pin). A ``-r other.txt`` line is
    replaced by that file's lines and ``-c constraints.txt`` gets an absolute path (both
    relative to the current directory), so that :func:`write_env_files` can copy the
    constraints into the model: the model directory must not depend on the saving machine.
    A line naming a file that does not exist is kept as written, with a warning.
    """
    if pip_requirements is not None:
        lines = _expand([str(r).strip() for r in pip_requirements if str(r).strip()])
    else:
        names: list[str] = []
        for name in (*CORE_REQUIREMENTS, *flavor_requirements):
            if canonical_name(name) not in {canonical_name(n) for n in names}:
                names.append(name)
        lines = [pin(name) for name in names]
    for extra in _expand([str(e).strip() for e in extra_pip_requirements or () if str(e).strip()]):
        key = canonical_name(extra)
        if key:
            lines = [line for line in lines if canonical_name(line) != key]
        if extra and extra not in lines:
            lines.append(extra)
    return lines


def _expand(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        try:
            out.extend(reqfile.expand([line], Path.cwd()))
        except OSError as exc:
            logger.warning("'%s': %s cannot be read (%s); the line is kept as written, so the file must be "
                           "next to requirements.txt when the environment is rebuilt",
                           line, exc.filename, exc.strerror or exc)
            out.append(line)
    return out


def bundle_constraints(model_dir: Path, requirements: Sequence[str]) -> list[str]:
    """Copy the local constraint files named by ``-c`` lines into ``constraints.txt``.

    The lines are merged into one file in the model directory and the ``-c`` lines are
    replaced by a single ``-c constraints.txt`` (pip reads it relative to requirements.txt).
    """
    merged: list[str] = []
    out: list[str] = []
    for line in requirements:
        path = reqfile.local_constraint(line)
        if path is None:
            out.append(line)
            continue
        if not path.is_absolute():
            path = Path.cwd() / path
        try:
            merged.extend(reqfile.constraint_lines(path))
        except OSError as exc:
            logger.warning("Constraints file %s cannot be read (%s); '%s' is kept as written",
                           exc.filename, exc.strerror or exc, line)
            out.append(line)
            continue
        if f"-c {CONSTRAINTS_FILE}" not in out:
            out.append(f"-c {CONSTRAINTS_FILE}")
    if merged:
        (model_dir / CONSTRAINTS_FILE).write_text("\n".join(dict.fromkeys(merged)) + "\n", encoding="utf-8")
    return out


def python_env(python_version: str | None = None) -> dict:
    """The ``python_env.yaml`` content: exact Python version, build tools, requirements file."""
    tools = []
    for tool in BUILD_TOOLS:
        try:
            tools.append(f"{tool}=={metadata.version(tool)}")
        except metadata.PackageNotFoundError:
            tools.append(tool)
    return {
        "python": python_version or platform.python_version(),
        "build_dependencies": tools,
        "dependencies": [f"-r {REQUIREMENTS_FILE}"],
    }


def write_env_files(model_dir: Path, requirements: Sequence[str]) -> dict[str, str]:
    """Write requirements.txt, python_env.yaml and conda.yaml (and constraints.txt when
    ``-c`` lines name local files); return MLmodel's ``env`` mapping."""
    import yaml

    requirements = bundle_constraints(model_dir, requirements)
    (model_dir / REQUIREMENTS_FILE).write_text("\n".join(requirements) + "\n", encoding="utf-8")
    env = python_env()
    (model_dir / PYTHON_ENV_FILE).write_text(yaml.safe_dump(env, sort_keys=False), encoding="utf-8")
    pip_tool = next(t for t in env["build_dependencies"] if canonical_name(t) == "pip")
    conda = {
        "name": "modelpack-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={env['python']}", pip_tool.replace("==", "<="), {"pip": list(requirements)}],
    }
    (model_dir / CONDA_FILE).write_text(yaml.safe_dump(conda, sort_keys=False), encoding="utf-8")
    return {"conda": CONDA_FILE, "virtualenv": PYTHON_ENV_FILE}


def get_model_dependencies(model_dir: str | Path) -> str:
    """Path of the model's ``requirements.txt`` (install it with ``pip install -r``)."""
    path = Path(model_dir) / REQUIREMENTS_FILE
    if not path.is_file():
        from ..errors import ModelLoadError

        raise ModelLoadError(f"No {REQUIREMENTS_FILE} in '{model_dir}'")
    return str(path)
