"""What a model needs to run: pinned requirements and the environment files.

At save time the core pins, from the saving interpreter, the distributions the
flavor names plus the core's own (numpy, pandas, cloudpickle, modelpack), then writes
``requirements.txt``, ``python_env.yaml`` and ``conda.yaml``.
"""

from __future__ import annotations

import json
import logging
import platform
import re
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from ..errors import ModelSaveError

logger = logging.getLogger(__name__)

REQUIREMENTS_FILE = "requirements.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_FILE = "conda.yaml"

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
    local directory) records ``modelpack @ file:///path`` so the serving machine installs
    the same code; see docs/environments.md.
    """
    dist = metadata.distribution("modelpack")
    direct = dist.read_text("direct_url.json")
    if direct:
        try:
            info = json.loads(direct)
        except ValueError:
            info = {}
        url = info.get("url", "")
        if url.startswith("file://") and "dir_info" in info:
            return f"modelpack @ {url}"
    return f"modelpack=={dist.version}"


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
    return f"{name}=={version}"


def resolve_requirements(
    flavor_requirements: Iterable[str],
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
) -> list[str]:
    """The final requirement lines of a model.

    ``pip_requirements`` replaces the inferred list; ``extra_pip_requirements`` adds to it
    (an extra naming an inferred package replaces that pin). Lines such as
    ``-r other.txt`` or ``-c constraints.txt`` are kept as written.
    """
    if pip_requirements is not None:
        lines = [str(r).strip() for r in pip_requirements if str(r).strip()]
    else:
        names: list[str] = []
        for name in (*CORE_REQUIREMENTS, *flavor_requirements):
            if canonical_name(name) not in {canonical_name(n) for n in names}:
                names.append(name)
        lines = [pin(name) for name in names]
    for extra in extra_pip_requirements or ():
        extra = str(extra).strip()
        key = canonical_name(extra)
        if key:
            lines = [line for line in lines if canonical_name(line) != key]
        if extra and extra not in lines:
            lines.append(extra)
    return lines


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
    """Write requirements.txt, python_env.yaml and conda.yaml; return MLmodel's ``env`` mapping."""
    import yaml

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
