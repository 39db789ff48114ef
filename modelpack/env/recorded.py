"""What a saved model records about its environment, and the cache key of a rebuild.

Read from ``python_env.yaml`` (Python version, build tools, ``-r requirements.txt``), or for
older or foreign directories from MLmodel's ``python_version`` and ``requirements.txt``.
The key hashes everything an install reads: the interpreter's exact version, the platform,
the env manager, the build tools, every requirement line after ``-r`` files are inlined,
the content of ``-c`` constraint files, and the modelpack that will be installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError
from . import reqfile
from .modelpack_source import installed
from .spec import PYTHON_ENV_FILE, REQUIREMENTS_FILE, canonical_name

logger = logging.getLogger(__name__)

#: Bump when the layout or the build steps change, so old environments are not reused.
KEY_FORMAT = "1"


@dataclass(frozen=True)
class RecordedEnv:
    """A model's environment as recorded at save time."""

    model_dir: Path
    python: str
    build_dependencies: tuple[str, ...]
    requirements: tuple[str, ...]  #: ``-r`` inlined, ``-c`` paths absolute

    @classmethod
    def from_model(cls, model_dir: Path) -> RecordedEnv:
        import yaml

        model_dir = Path(model_dir).absolute()
        env_file = model_dir / PYTHON_ENV_FILE
        try:
            if env_file.is_file():
                env = yaml.safe_load(env_file.read_text(encoding="utf-8")) or {}
                python = str(env.get("python") or "")
                build = [str(d) for d in env.get("build_dependencies") or ()]
                lines = [str(d) for d in env.get("dependencies") or ()]
            else:
                python, build, lines = _recorded_python(model_dir), ["pip"], []
                if (model_dir / REQUIREMENTS_FILE).is_file():
                    lines = [f"-r {REQUIREMENTS_FILE}"]
            requirements = reqfile.expand(lines, model_dir)
        except OSError as exc:
            raise ModelLoadError(f"Cannot read the model's environment file '{exc.filename}': "
                                 f"{exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ModelLoadError(f"'{env_file}' is not valid YAML: {exc}") from None
        if not python:
            raise ModelLoadError(f"'{model_dir}' does not record the Python version it needs "
                                 f"(no {PYTHON_ENV_FILE} and no python_version in MLmodel)")
        return cls(model_dir, python, tuple(build), tuple(requirements))

    def install_lines(self) -> list[str]:
        """The requirement lines to install: the recorded ones, with the serving modelpack."""
        this = installed()
        lines = []
        for line in self.requirements:
            if canonical_name(line) == "modelpack":
                if line.replace(" ", "") != f"modelpack=={this.version}" and line != this.recorded_requirement:
                    logger.debug("The model records '%s'; its environment gets the serving modelpack (%s)",
                                line, " ".join(this.install_args))
                continue
            lines.append(line)
        return [*lines, " ".join(this.install_args)]

    def key(self, python_version: str, manager: str) -> str:
        """The cache key (16 hex digits) of this environment built with Python ``python_version``."""
        constraints = []
        for line in self.requirements:
            path = reqfile.local_constraint(line)
            if path is not None:
                try:
                    constraints.append(reqfile.constraint_lines(path))
                except OSError:
                    constraints.append(["<unreadable>"])
        material = {
            "format": KEY_FORMAT,
            "manager": manager,
            "python": f"{sys.implementation.name}-{python_version}",
            "platform": f"{sys.platform}-{platform.machine()}",
            "build": sorted(self.build_dependencies),
            "requirements": sorted(line for line in self.install_lines() if reqfile.local_constraint(line) is None),
            "constraints": constraints,
            "modelpack": installed().fingerprint(),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def _recorded_python(model_dir: Path) -> str:
    from ..descriptor import ModelDescriptor

    version = ModelDescriptor.read(model_dir).flavors.get("python_function", {}).get("python_version")
    return str(version or "")
