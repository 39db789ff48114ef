"""Container images for one model: ``context`` writes the build context, ``builder`` builds it."""

from __future__ import annotations

from .builder import build_image, find_builder
from .context import generate_build_context

__all__ = ["build_image", "find_builder", "generate_build_context"]
