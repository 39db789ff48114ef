"""Errors of ``modelpack run``, in the one hierarchy of ``modelpack.errors``.

Whatever is wrong with the project, its source or the parameters is found before the command starts and is a
:class:`ProjectError` (exit code 2). A command that ran and failed is a ``launch.ProjectRunFailedError``
(next to the run it carries), whose exit code is the command's own, so ``modelpack run`` exits as the command did.
"""

from __future__ import annotations

from ..errors import ModelpackError


class ProjectError(ModelpackError):
    """An unusable project: a bad MLproject file, an unknown entry point, a missing or ill-typed parameter, a
    source or version that cannot be fetched."""

    error_code = "INVALID_PARAMETER_VALUE"
    status = 400
    exit_code = 2


__all__ = ["ProjectError"]
