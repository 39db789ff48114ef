"""Model environments: what a model needs (spec) and rebuilding it for serving.

``spec`` writes the environment files at save time; at serve time ``recorded`` reads them,
``python`` finds the interpreter, ``build`` gets the environment from the ``cache`` (building
it with a ``managers`` entry through ``runner`` when missing; ``failure`` explains errors).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .runner import Progress


def python_for_model(model_dir: Path, env_manager: str, python: str | None = None,
                     progress: Progress | None = None) -> str:
    """The interpreter that serves ``model_dir``: this one for ``local``, else the model's
    rebuilt environment (``virtualenv`` or ``uv``), from the cache or built now.

    ``python`` overrides the interpreter the environment is built with; ``progress``
    receives one line per build step.
    """
    if env_manager == "local":
        return sys.executable
    from .build import ensure_environment

    return str(ensure_environment(Path(model_dir), env_manager, python=python, progress=progress).python)


__all__ = ["Progress", "python_for_model"]
