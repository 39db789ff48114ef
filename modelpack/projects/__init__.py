"""Projects: run anyone's training code - a directory or a git repository, with an optional MLproject file -
in the environment it declares, as a tracked run (``modelpack run``; docs/projects.md).

``source`` fetches the project (a local directory in place, a git version into a temporary clone), ``spec``
reads it (MLproject, or the directory's scripts), ``params`` checks the parameters and makes the shell-quoted
command, ``environment`` gets the environment from the model-environment cache, ``launch`` creates the run,
runs the command with the run handed over (``MODELPACK_RUN_ID``) and ends the run with the command's outcome.
"""

from __future__ import annotations

from .errors import ProjectError
from .launch import ProjectRunFailedError, SubmittedRun, run

__all__ = ["ProjectError", "ProjectRunFailedError", "SubmittedRun", "run"]
