"""SOURCE: where a project's files come from, and the directory its command runs in.

- A local directory runs in place; when it is inside a git repository, the commit checked out is recorded.
- ``--version`` (a commit, branch or tag) needs a git repository: the repository is cloned into a temporary
  directory and that version checked out there, so the caller's checkout is never touched. A project in a
  subdirectory of the repository runs from the same subdirectory of the clone.
- A ``file://`` URL is the local path it names. A remote URL (``https://``, ``ssh://``, ``git@host:repo``) is
  always cloned (its default branch without ``--version``); git's own credentials apply.
- ``URI#sub/dir`` runs the project in that subdirectory of the repository or directory.

The temporary clone is deleted when the run ends. Git runs without prompting for credentials
(``GIT_TERMINAL_PROMPT=0``): a clone that needs them fails with git's message instead of waiting for input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import quote
from .errors import ProjectError

logger = logging.getLogger(__name__)

_REMOTE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://|[\w.-]+@[\w.-]+:)")
_SHA_RE = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True)
class Source:
    """A fetched project: the directory to run in, and what the run records about where it came from."""

    directory: Path
    uri: str  #: the source as recorded on the run (a local path made absolute)
    name: str  #: the project's name when its MLproject gives none: the directory's (or repository's) name
    git_commit: str | None = None
    git_repo_url: str | None = None
    git_branch: str | None = None  #: the branch ``--version`` named, when it named one
    cloned: bool = False


def split_subdirectory(uri: str) -> tuple[str, str]:
    """``("repo", "sub/dir")`` for ``repo#sub/dir``; the subdirectory may not climb out with ``..``."""
    if "#" not in uri or Path(uri).expanduser().exists():
        return uri, ""
    base, _, sub = uri.partition("#")
    sub = sub.strip("/")
    if not base or any(part == ".." for part in Path(sub).parts) or Path(sub).is_absolute():
        raise ProjectError(f"Invalid project URI {quote(uri)}: after '#' comes a subdirectory of the project, "
                           "without '..'")
    return base, sub


def is_remote(uri: str) -> bool:
    return bool(_REMOTE_RE.match(uri)) and not uri.startswith("file://")


@contextlib.contextmanager
def fetch(uri: str, version: str | None = None) -> Iterator[Source]:
    """The project at ``uri`` (at ``version``), ready to run; a temporary clone is deleted afterwards."""
    if version is not None and (not isinstance(version, str) or not version.strip()):
        raise ProjectError(f"--version must name a commit, branch or tag, got {quote(version)}")
    base, sub = split_subdirectory(uri)
    if is_remote(base):
        with _cloned(base, base, version, sub, name=Path(sub).name if sub else _repo_name(base)) as source:
            yield source
        return
    path = _local_path(base)
    if not path.exists():
        raise ProjectError(f"No project at {path} (no such directory)")
    top = _git(["rev-parse", "--show-toplevel"], path, check=False) if path.is_dir() else None
    bare = top is None and path.is_dir() and _git(["rev-parse", "--is-bare-repository"], path, check=False) == "true"
    if version is None and not bare:
        directory = path / sub if sub else path
        if not directory.is_dir():
            raise ProjectError(f"No project at {directory} (not a directory)")
        commit = _git(["rev-parse", "HEAD"], directory, check=False) if top else None
        yield Source(directory, _recorded(path, sub), directory.name, git_commit=_commit_or_none(commit),
                     git_repo_url=_origin(directory) if top else None)
        return
    if top is None and not bare:
        raise ProjectError(f"--version {version} needs a git repository, and {path} is not in one "
                           "(run it without --version, or give the repository's path or URL)")
    repo = path if bare else Path(top or path)
    inner = "" if bare else path.resolve().relative_to(repo.resolve()).as_posix()
    within = "/".join(p for p in (inner if inner != "." else "", sub) if p)
    name = Path(sub).name if sub else path.name if not bare else _repo_name(str(repo))
    with _cloned(str(repo), _recorded(path, sub), version, within, name=name, origin=_origin(repo)) as source:
        yield source


def _local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ProjectError(f"A file:// URI names a path on this machine, got host {quote(parsed.netloc)} "
                               f"in {quote(uri)}")
        return Path(unquote(parsed.path))
    return Path(os.path.abspath(os.path.expanduser(uri)))


def _recorded(path: Path, sub: str) -> str:
    return f"{path}#{sub}" if sub else str(path)


def _repo_name(uri: str) -> str:
    tail = uri.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git") or "project"


@contextlib.contextmanager
def _cloned(repo: str, recorded: str, version: str | None, sub: str, name: str,
            origin: str | None = None) -> Iterator[Source]:
    """Clone ``repo`` into a temporary directory and check out ``version`` (default: its HEAD)."""
    tmp = Path(tempfile.mkdtemp(prefix="modelpack-project-"))
    try:
        checkout = tmp / _repo_name(repo)
        logger.debug("Cloning %s into %s", repo, checkout)
        _git(["clone", "--quiet", "--no-checkout", "--", repo, str(checkout)], tmp,
             failure=f"Cannot clone {repo}")
        commit, branch = _resolve_version(checkout, version, repo)
        _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit], checkout,
             failure=f"Cannot check out {version or 'HEAD'} of {repo}")
        if (checkout / ".gitmodules").is_file():
            _git(["submodule", "update", "--init", "--recursive", "--quiet"], checkout,
                 failure=f"Cannot fetch the submodules of {repo}")
        logger.info("Checked out %s of %s (commit %s) into a temporary clone", version or "HEAD", repo, commit[:12])
        directory = checkout / sub if sub else checkout
        if not directory.is_dir():
            raise ProjectError(f"{repo} has no directory {quote(sub)} at {version or 'HEAD'} ({commit[:12]})")
        yield Source(directory, recorded, name, git_commit=commit, git_repo_url=origin or repo, git_branch=branch,
                     cloned=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resolve_version(checkout: Path, version: str | None, repo: str) -> tuple[str, str | None]:
    """(full commit, branch name or None) of ``version`` in a fresh clone: a commit, tag, or branch of the
    repository cloned (which the clone knows as ``origin/<branch>``)."""
    if version is None:
        return _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], checkout,
                    failure=f"{repo} has no commit to check out") or "", None
    if version.startswith("-"):
        raise ProjectError(f"--version must name a commit, branch or tag, got {quote(version)}")
    branch = _git(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{version}^{{commit}}"], checkout,
                  check=False)
    if branch:
        return branch, version
    found = _git(["rev-parse", "--verify", "--quiet", f"{version}^{{commit}}"], checkout, check=False)
    if found:
        return found, None
    hint = "" if _SHA_RE.fullmatch(version) else " (a branch, tag or commit of that repository)"
    raise ProjectError(f"{repo} has no version {quote(version)}{hint}")


def _origin(directory: Path) -> str | None:
    return _git(["remote", "get-url", "origin"], directory, check=False)


def _commit_or_none(commit: str | None) -> str | None:
    return commit if commit and _SHA_RE.fullmatch(commit) else None


def _git(args: list[str], cwd: Path, check: bool = True, failure: str = "git failed") -> str | None:
    """Run git; its stdout stripped, or None (``check=False``) when it fails. Git never prompts."""
    git = shutil.which("git")
    if git is None:
        if not check:
            return None
        raise ProjectError("Fetching this project needs git, which is not on PATH")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "LC_ALL": "C"}
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    try:
        out = subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, env=env,
                             stdin=subprocess.DEVNULL)
    except OSError as exc:
        if not check:
            return None
        raise ProjectError(f"{failure}: {exc}") from None
    if out.returncode != 0:
        if not check:
            return None
        message = next((line.strip() for line in reversed(out.stderr.splitlines())
                        if line.strip().startswith(("fatal:", "error:"))), "")
        message = message or (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        raise ProjectError(f"{failure}: {message}")
    return out.stdout.strip()


__all__ = ["Source", "fetch", "is_remote", "split_subdirectory"]
