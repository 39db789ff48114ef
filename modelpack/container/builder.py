"""BUILDER: build a context into an image with docker, podman or buildah, whichever is usable."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import EnvironmentBuildError, InvalidInputError

logger = logging.getLogger(__name__)

BUILDERS = ("docker", "podman", "buildah")


def find_builder(preferred: str = "auto") -> str:
    """The builder to use: ``preferred`` if usable, or with ``auto`` the first usable of docker, podman, buildah.

    Docker counts only when its daemon answers: a docker client without an engine cannot build.
    """
    candidates = BUILDERS if preferred == "auto" else (preferred,)
    if preferred not in (*BUILDERS, "auto"):
        raise InvalidInputError(f"Unknown builder '{preferred}'; expected auto, {', '.join(BUILDERS)}")
    problems = []
    for name in candidates:
        if shutil.which(name) is None:
            problems.append(f"{name}: not installed")
            continue
        if name == "docker":
            reason = _docker_unreachable()
            if reason:
                problems.append(f"docker: installed, but its daemon does not answer ({reason})")
                logger.info("Not using docker: its daemon does not answer (%s)", reason)
                continue
        logger.debug("Using %s to build", name)
        return name
    hint = "install Docker (with a running engine), Podman or Buildah" if preferred == "auto" else (
        f"install {preferred}, or use --builder auto")
    raise EnvironmentBuildError(
        f"No container builder available ({'; '.join(problems)}): {hint}, or write the build context "
        "with `modelpack generate-dockerfile` and build it elsewhere"
    )


def build_command(builder: str, context: Path, name: str, build_args: Sequence[str] = (),
                  extra_args: Sequence[str] = ()) -> list[str]:
    """The command line that builds ``context`` into image ``name``.

    podman and buildah are asked for the Docker image format: the OCI format drops HEALTHCHECK.
    """
    argv = {"docker": ["docker", "build"], "podman": ["podman", "build", "--format", "docker"],
            "buildah": ["buildah", "bud", "--format", "docker"]}[builder]
    argv += ["--tag", name]
    for arg in build_args:
        argv += ["--build-arg", arg]
    return [*argv, *extra_args, str(context)]


def build_image(context: Path, name: str, *, builder: str = "auto", build_args: Sequence[str] = (),
                extra_args: Sequence[str] = ()) -> str:
    """Build ``context`` into image ``name`` with ``builder``; return the builder used.

    The builder's own output goes to this process's stdout and stderr.
    """
    builder = find_builder(builder)
    argv = build_command(builder, context, name, build_args, extra_args)
    logger.info("Running: %s", shlex.join(argv))
    code = subprocess.call(argv)
    if code != 0:
        raise EnvironmentBuildError(
            f"{builder} could not build image '{name}' (exit code {code}); see its output above"
        )
    return builder


def _docker_unreachable() -> str | None:
    """Why the docker daemon cannot be used, or None when it answers."""
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return None
