"""Run one build command (virtualenv, pip, uv): output to the build log, progress to a callback.

The child gets a clean environment for installing (no ``PYTHONPATH``, no user/target
installs) and, on Linux, is killed when the building process dies, so an interrupted build
never keeps writing into a directory a later build may be reusing or deleting.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Receives one short line per build step ("Collecting pandas==2.2.2", "Installing 27 packages").
Progress = Callable[[str], None]

#: Installer output worth showing while building (pip's and uv's).
_STATUS_RE = re.compile(
    r"^\s*(Collecting|Obtaining|Downloading|Building|Installing collected|Successfully installed|"
    r"Resolved|Prepared|Installed|Built|Uninstalled)\b"
)
_FROM_RE = re.compile(r"\s+\(from .*\)$")
#: Variables that would make an install leak out of (or into) the new environment.
_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_USER", "PIP_TARGET", "PIP_PREFIX",
         "PIP_REQUIRE_VIRTUALENV", "PIP_NO_COMPILE", "VIRTUAL_ENV", "CONDA_PREFIX", "UV_SYSTEM_PYTHON")



@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, looked up in the parent: nothing may be loaded after fork."""
    if sys.platform != "linux":
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


@dataclass
class Result:
    returncode: int
    lines: list[str]


def build_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(PYTHONUNBUFFERED="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", NO_COLOR="1")
    return env


def _die_with_parent(prctl: Callable[..., int], parent: int) -> Callable[[], None]:
    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def run(argv: Sequence[str], log: IO[str], progress: Progress, cwd: Path | None = None) -> Result:
    """Run ``argv`` to completion; every output line goes to ``log``, status lines to ``progress``."""
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    prctl = _prctl()
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, errors="replace", bufsize=1, cwd=cwd, env=build_environ(),
        preexec_fn=_die_with_parent(prctl, os.getpid()) if prctl else None,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            line = line.rstrip()
            lines.append(line)
            if _STATUS_RE.match(line):
                progress(_FROM_RE.sub("", line.strip()))
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        log.flush()
    log.write(f"[exit code {returncode}]\n\n")
    log.flush()
    return Result(returncode, lines)
