"""CONTEXT: the build context of one model's image (model + requirements + Dockerfile).

``generate_build_context`` writes a directory any OCI builder accepts: the model under ``model/``, the
requirements the image installs under ``requirements/`` and a multi-stage Dockerfile that installs them
into a virtualenv at build time, so the container serves with ``--env-manager local`` and rebuilds nothing
when it starts. ``builder.py`` builds it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..env import reqfile
from ..errors import EnvironmentBuildError, InvalidInputError

logger = logging.getLogger(__name__)

#: Where the model lives inside the image, and the port it is served on.
MODEL_PATH_IN_IMAGE = "/opt/model"
IMAGE_PORT = 8080
#: Builders in the order ``auto`` tries them.

_REQUIREMENTS_DIR = "requirements"
_REQUIREMENTS_IN_BUILD = "/tmp/requirements"
#: A python one-liner, as slim images have no curl: exits non-zero unless /ping answers 2xx.
_HEALTHCHECK = ("import os, urllib.request; urllib.request.urlopen("
                "'http://127.0.0.1:%s/ping' % os.environ.get('MODELPACK_PORT', '{port}'), timeout=4)")
#: Wheels built here get fixed zip timestamps, so an unchanged source gives identical bytes (and layer cache hits).
_WHEEL_EPOCH = "315532800"

DOCKERFILE_TEMPLATE = """\
# Serves the model in model/ ({model_name}). Written by `modelpack generate-dockerfile` (modelpack {version}).
#   docker build -t {image_hint} .  &&  docker run -p {port}:{port} {image_hint}
# Settings (environment): MODELPACK_PORT, MODELPACK_WORKERS, MODELPACK_TIMEOUT, MODELPACK_HOST, MODELPACK_LOG_LEVEL.
ARG BASE_IMAGE={base_image}

FROM ${{BASE_IMAGE}} AS build
# Hooks for a private package index or a TLS-intercepting proxy; build arguments of this stage only.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_ROOT_USER_ACTION=ignore
COPY {requirements_dir}/ {requirements_in_build}/
# The model's recorded build tools, then exactly its recorded requirements.
RUN --mount=type=cache,target=/root/.cache/pip \\
    python3 -m venv /opt/venv \\
    && /opt/venv/bin/pip install {build_tools} \\
    && /opt/venv/bin/pip install -r {requirements_in_build}/requirements.txt

FROM ${{BASE_IMAGE}}
{system_packages}RUN useradd --uid 10001 --user-group --no-log-init --create-home --home-dir /home/modelpack \\
        --shell /usr/sbin/nologin modelpack
COPY --from=build /opt/venv /opt/venv
COPY model/ {model_path}/
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    MODELPACK_HOST=0.0.0.0 \\
    MODELPACK_PORT={port} \\
    MODELPACK_WORKERS=1 \\
    MODELPACK_TIMEOUT=60
WORKDIR /home/modelpack
USER 10001:10001
EXPOSE {port}
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
    CMD {healthcheck}
CMD ["modelpack", "serve", "--model-uri", "{model_path}", "--env-manager", "local"]
"""


@dataclass(frozen=True)
class BuildContext:
    """A written build context: its directory and what its Dockerfile installs."""

    path: Path
    base_image: str
    requirements: list[str]

    @property
    def dockerfile(self) -> Path:
        return self.path / "Dockerfile"


def generate_build_context(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    base_image: str | None = None,
    modelpack_wheel: str | Path | None = None,
) -> BuildContext:
    """Write a build context for ``model_dir`` into ``output_dir`` (new or empty); nothing is left on failure.

    The image installs the model's ``requirements.txt``, with modelpack itself replaced by the modelpack
    running this (or ``modelpack_wheel``): a development checkout, which a build cannot reach as
    ``modelpack @ file:///dir``, is built into a wheel with ``pip wheel --no-deps`` and copied into the context.
    """
    from ..descriptor import ModelDescriptor
    from ..env.spec import REQUIREMENTS_FILE

    model_dir = Path(model_dir).expanduser().absolute()
    descriptor = ModelDescriptor.read(model_dir)
    output_dir = Path(output_dir).expanduser().absolute()
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise InvalidInputError(f"Output directory '{output_dir}' exists and is not empty")
    if output_dir == model_dir or output_dir.is_relative_to(model_dir):
        raise InvalidInputError(f"Output directory '{output_dir}' must be outside the model directory")
    base_image = base_image or default_base_image(descriptor.pyfunc.get("python_version"))

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        shutil.copytree(model_dir, staging / "model", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        req_dir = staging / _REQUIREMENTS_DIR
        req_dir.mkdir()
        requirements_file = model_dir / REQUIREMENTS_FILE
        recorded = reqfile.read_lines(requirements_file) if requirements_file.is_file() else []
        wheel = Path(modelpack_wheel).expanduser().absolute() if modelpack_wheel else None
        requirements = _with_modelpack(recorded, req_dir, wheel)
        _copy_referenced_files(requirements, model_dir, req_dir)
        (req_dir / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        (staging / "Dockerfile").write_text(
            render_dockerfile(base_image, _build_tools(model_dir), model_dir.name, requirements), encoding="utf-8"
        )
        _make_world_readable(staging)
        if output_dir.exists():
            output_dir.rmdir()
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Wrote a build context for %s to %s (base image %s)", model_dir, output_dir, base_image)
    return BuildContext(output_dir, base_image, requirements)


def default_base_image(python_version: str | None) -> str:
    """The official slim Python image of the model's recorded ``major.minor`` (this interpreter's if unknown)."""
    parts = str(python_version or "").split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return f"python:{parts[0]}.{parts[1]}-slim"
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


#: Debian packages a distribution's wheel loads from the system at run time (lightgbm's wheel links the system's
#: OpenMP runtime; xgboost, scikit-learn and torch bundle theirs).
SYSTEM_PACKAGES = {"lightgbm": ("libgomp1",)}


def system_packages(requirements: Sequence[str]) -> list[str]:
    """The Debian packages the final image needs for ``requirements`` (see :data:`SYSTEM_PACKAGES`)."""
    from ..env.spec import canonical_name

    names = {canonical_name(line) for line in requirements}
    return sorted({pkg for dist, pkgs in SYSTEM_PACKAGES.items() if dist in names for pkg in pkgs})


def render_dockerfile(base_image: str, build_tools: Sequence[str], model_name: str = "model",
                      requirements: Sequence[str] = ()) -> str:
    """The per-model Dockerfile text."""
    from .. import __version__

    packages = system_packages(requirements)
    apt = ("# Libraries the model's wheels load from the system.\n"
           "RUN apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)
           + " \\\n    && rm -rf /var/lib/apt/lists/*\n") if packages else ""
    return DOCKERFILE_TEMPLATE.format(
        system_packages=apt,
        model_name=model_name,
        version=__version__,
        image_hint=_image_hint(model_name),
        base_image=base_image,
        build_tools=" ".join(shlex.quote(t) for t in build_tools) or "pip",
        requirements_dir=_REQUIREMENTS_DIR,
        requirements_in_build=_REQUIREMENTS_IN_BUILD,
        model_path=MODEL_PATH_IN_IMAGE,
        port=IMAGE_PORT,
        healthcheck=json.dumps(["python", "-c", _HEALTHCHECK.format(port=IMAGE_PORT)]),
    )


def _with_modelpack(recorded: list[str], req_dir: Path, wheel: Path | None) -> list[str]:
    """The recorded requirements with their ``modelpack`` line replaced by one that installs in the build.

    The image gets the modelpack that builds it (as a rebuilt environment gets the serving one): ``wheel``
    if given, else the running modelpack's own requirement, with a development checkout built into a wheel.
    """
    from ..env.spec import canonical_name, modelpack_requirement

    lines = [line for line in recorded if canonical_name(line) != "modelpack"]
    saved_with = next((line for line in recorded if canonical_name(line) == "modelpack"), None)
    if wheel is None:
        mine = modelpack_requirement()
        local = _local_path(mine)
        if local is None:
            _log_replacement(saved_with, mine)
            return [mine, *lines]
        if not local.exists():
            raise InvalidInputError(f"This modelpack was installed from '{local}', which no longer exists; "
                                    "pass a modelpack wheel (--modelpack-wheel PATH)")
        wheel = local if local.is_file() else build_wheel(local, req_dir)
    if not wheel.is_file() or wheel.suffix != ".whl" or canonical_name(wheel.name.split("-")[0]) != "modelpack":
        raise InvalidInputError(f"'{wheel}' is not a modelpack wheel file (modelpack-<version>-...whl)")
    if wheel.parent != req_dir:
        shutil.copy2(wheel, req_dir / wheel.name)
    line = f"modelpack @ file://{_REQUIREMENTS_IN_BUILD}/{wheel.name}"
    _log_replacement(saved_with, line)
    return [line, *lines]


def _log_replacement(saved_with: str | None, line: str) -> None:
    if saved_with is None:  # e.g. a model saved by MLflow: the image still needs modelpack to serve it
        logger.info("The model does not require modelpack; the image installs %s", line)
    elif saved_with != line:
        logger.info("The model was saved with '%s'; the image installs '%s'", saved_with, line)


def build_wheel(source: Path, dest: Path) -> Path:
    """Build a modelpack wheel from a source tree with ``pip wheel --no-deps``; return its path."""
    logger.info("Building a modelpack wheel from %s", source)
    with tempfile.TemporaryDirectory(prefix="modelpack-wheel-") as tmp:
        # Build from a clean copy: setuptools' in-tree build/ directory can hold stale modules.
        src = Path(tmp) / "src"
        shutil.copytree(source, src, ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv*", ".*cache", "results"))
        out = Path(tmp) / "dist"
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", _WHEEL_EPOCH)}
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(src)],
            capture_output=True, text=True, env=env,
        )
        wheels = sorted(out.glob("modelpack-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise EnvironmentBuildError(
                f"Could not build a modelpack wheel from '{source}' (pip exited with {proc.returncode}):\n"
                + (proc.stderr or proc.stdout).strip()[-2000:]
            )
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def _copy_referenced_files(requirements: list[str], model_dir: Path, req_dir: Path) -> None:
    """Copy the model's files named by ``-c``/``-r`` lines (e.g. ``-c constraints.txt``) next to the
    requirements the image installs: pip reads them relative to that file."""
    for line in requirements:
        found = reqfile.include(line)
        if found is None:
            continue
        name = found[1]
        source = model_dir / name
        if reqfile.is_url(name) or Path(name).is_absolute() or not source.is_file():
            continue
        if not source.resolve().is_relative_to(model_dir.resolve()):
            raise InvalidInputError(f"requirements.txt names '{name}', which is outside the model directory")
        target = req_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _local_path(requirement: str) -> Path | None:
    """The local file or directory of a ``name @ file://...`` requirement, else None."""
    if "@" not in requirement:
        return None
    url = requirement.split("@", 1)[1].split(";", 1)[0].strip()
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _build_tools(model_dir: Path) -> list[str]:
    """The pinned pip/setuptools/wheel of ``python_env.yaml`` (pip alone when absent)."""
    import yaml

    from ..env.spec import PYTHON_ENV_FILE

    try:
        env = yaml.safe_load((model_dir / PYTHON_ENV_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        env = {}
    tools = env.get("build_dependencies") if isinstance(env, dict) else None
    return [str(t) for t in tools if str(t).strip()] if isinstance(tools, list) else ["pip"]


def _make_world_readable(root: Path) -> None:
    """Directories 755 and files 644 (755 if executable): the image's non-root user must read the model."""
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            Path(dirpath, name).chmod(0o755)
        for name in filenames:
            path = Path(dirpath, name)
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def _image_hint(model_name: str) -> str:
    hint = "".join(c if c.isalnum() or c in "._-" else "-" for c in model_name.lower()).strip("._-")
    return hint or "model"
