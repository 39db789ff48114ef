"""Model environments: what a model needs (spec) and rebuilding it for serving."""

from __future__ import annotations

import sys
from pathlib import Path


def python_for_model(model_dir: Path, env_manager: str) -> str:
    """The interpreter that serves ``model_dir``: this one for ``local``."""
    if env_manager == "local":
        return sys.executable
    from ..errors import EnvironmentBuildError

    raise EnvironmentBuildError(f"--env-manager {env_manager} is not available yet; use --env-manager local")
