"""LAUNCH: run a project's entry point as a tracked run - the steps, in order:

1. fetch the source (source.py), read the project (spec.py), check the parameters and make the command
   (params.py): every mistake is a :class:`ProjectError` here, before anything is built or run;
2. get the environment (environment.py: from the cache, or built now with progress);
3. create the run in the tracking store, tagged with where it came from, and log the parameters;
4. start the command (``bash -c``, in the project directory, in its own process group) with the run handed
   over through ``MODELPACK_RUN_ID`` and the store through ``MODELPACK_TRACKING_URI``, so the script's
   ``modelpack.log_*`` calls land in this run;
5. end the run: FINISHED on exit code 0, FAILED otherwise (the code is the tag ``modelpack.project.exitCode``),
   KILLED when this process is interrupted.

Interrupts: while the command runs, SIGINT (Ctrl-C), SIGTERM and SIGHUP to this process are forwarded to the
command's process group; a second one, or :data:`KILL_GRACE_SECONDS` without the command ending, kills the group.
The run is then marked KILLED, the temporary checkout deleted, and the signal raised again in this process
(Ctrl-C: ``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..env.runner import Progress
from ..errors import ModelpackError
from .environment import CommandEnvironment, default_manager, prepare
from .errors import ProjectError
from .params import Resolved, render, resolve
from .source import Source, fetch
from .spec import EntryPoint, Project, load

if TYPE_CHECKING:
    from ..tracking.store import Store

logger = logging.getLogger(__name__)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
#: Seconds the command has to stop after an interrupt is forwarded to it, before it is killed.
KILL_GRACE_SECONDS = 10.0
#: The signals forwarded to the command while it runs.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Tags of a project run (besides the run's source_name and source_git_commit columns).
SOURCE_NAME_TAG = "modelpack.source.name"
SOURCE_TYPE_TAG = "modelpack.source.type"
GIT_COMMIT_TAG = "modelpack.source.git.commit"
GIT_REPO_URL_TAG = "modelpack.source.git.repoURL"
GIT_BRANCH_TAG = "modelpack.source.git.branch"
ENTRY_POINT_TAG = "modelpack.project.entryPoint"
ENV_TAG = "modelpack.project.env"
COMMAND_TAG = "modelpack.project.command"
EXIT_CODE_TAG = "modelpack.project.exitCode"


@dataclass
class SubmittedRun:
    """A project run that has ended: its run id, status (FINISHED, FAILED or KILLED) and the command's exit code
    (128 + N when signal N ended it)."""

    run_id: str
    status: str
    exit_code: int | None
    command: str
    entry_point: str
    project_name: str
    experiment_id: str

    def get_status(self) -> str:
        return self.status

    def wait(self) -> bool:
        """Whether the run succeeded (it has already ended: runs are synchronous)."""
        return self.status == FINISHED


class ProjectRunFailedError(ModelpackError):
    """The project's command ran and exited with a non-zero code, or was stopped: ``submitted_run`` is the FAILED
    (or KILLED) run; ``modelpack run`` exits with the command's exit code."""

    error_code = "PROJECT_RUN_FAILED"

    def __init__(self, message: str, submitted_run: SubmittedRun) -> None:
        super().__init__(message)
        self.submitted_run = submitted_run
        self.run_id = submitted_run.run_id
        #: The command's exit code (128 + N when signal N ended it): the CLI's exit code for this error.
        self.exit_code = submitted_run.exit_code or 1


def run(uri: str = ".", entry_point: str = "main", version: str | None = None,
        parameters: Mapping[str, Any] | None = None, experiment_name: str | None = None,
        run_name: str | None = None, env_manager: str | None = None, python: str | None = None, *,
        cwd: str | os.PathLike[str] | None = None, progress: Progress | None = None,
        display: Callable[[], AbstractContextManager[Progress]] | None = None) -> SubmittedRun:
    """Run entry point ``entry_point`` of the project at ``uri`` (a directory, a git repository's path or URL;
    ``version``: a commit, branch or tag to check out) with ``parameters``, as a new run of the tracking store
    in effect, and wait for it.

    ``env_manager``: ``virtualenv`` (the default when the project declares an environment), ``uv``, or ``local``
    (the default otherwise: this interpreter). ``python`` builds the environment with that interpreter. A
    relative ``path`` parameter is taken from ``cwd`` (default: the current directory). Build steps go to
    ``progress`` (default: the log); ``display`` instead makes a context manager giving the progress callback,
    closed once the environment is ready (the CLI's build display).

    Returns the :class:`SubmittedRun` of a FINISHED run. A command that fails raises
    :class:`ProjectRunFailedError` (its ``submitted_run`` is the FAILED run); an interrupt (Ctrl-C) kills the
    command, marks the run KILLED and is raised again.
    """
    if env_manager is not None:
        from .environment import ENV_MANAGERS

        if env_manager not in ENV_MANAGERS:
            raise ProjectError(f"Unknown environment manager {env_manager!r}; expected one of "
                               f"{', '.join(ENV_MANAGERS)}")
    given = dict(parameters or {})
    with fetch(uri, version) as source:
        project = load(source.directory, source.name)
        entry = project.entry_point(entry_point)
        values = resolve(entry, given, project.directory, Path(cwd) if cwd is not None else None)
        command = render(entry, values)
        manager = env_manager or default_manager(project)
        from ..tracking.store import Store

        store = Store.open()  # before the build: an unusable tracking store fails first
        if experiment_name is not None:
            from ..tracking.experiments import check_name

            check_name(experiment_name)
        _check_run_name(run_name)
        from ..tracking.uri import resolve as resolve_uri

        with display() if display is not None else contextlib.nullcontext(progress) as shown:
            command_env = prepare(project, manager, python, shown, store_url=resolve_uri(store.uri)[0])
        interrupts = _Interrupts()
        submitted = _execute(store, source, project, entry, values, command, command_env, experiment_name,
                             run_name, interrupts)
    if interrupts.signum is not None:
        signal.raise_signal(interrupts.signum)  # this process's own handling of it, now that all is cleaned up
    if submitted.status == KILLED:  # the signal's handler here did not stop this process
        raise ProjectRunFailedError(f"Run {submitted.run_id} was killed: the command was stopped ({command})",
                                    submitted)
    if submitted.status != FINISHED:
        raise ProjectRunFailedError(
            f"Run {submitted.run_id} failed: the command exited with code {submitted.exit_code} ({command})",
            submitted)
    return submitted


def _execute(store: Store, source: Source, project: Project, entry: EntryPoint, values: Resolved, command: str,
             command_env: CommandEnvironment, experiment_name: str | None, run_name: str | None,
             interrupts: _Interrupts) -> SubmittedRun:
    """Create the run, run the command in it, end it."""
    from ..tracking import runs
    from ..tracking.experiments import check_name
    from ..tracking.fluent import PARENT_RUN_TAG, _current_experiment, _random_name, active_run

    tags = {SOURCE_NAME_TAG: source.uri, SOURCE_TYPE_TAG: "PROJECT", ENTRY_POINT_TAG: entry.name,
            ENV_TAG: command_env.manager, COMMAND_TAG: command}
    tags.update({tag: value for tag, value in ((GIT_COMMIT_TAG, source.git_commit),
                                               (GIT_REPO_URL_TAG, source.git_repo_url),
                                               (GIT_BRANCH_TAG, source.git_branch)) if value})
    parent = active_run()
    if parent is not None:
        tags[PARENT_RUN_TAG] = parent.info.run_id
    with interrupts:
        experiment = _current_experiment(store, check_name(experiment_name) if experiment_name else None)
        info = runs.create_run(store, experiment, run_name=run_name or _random_name(), user_id=_user(),
                               source_name=source.uri, source_git_commit=source.git_commit, tags=tags)
        run_id = info.run_id
        proc: subprocess.Popen[bytes] | None = None
        started = time.monotonic()
        try:
            runs.log_params(store, run_id, values.all)
            logger.info("=== Running %r of project %r in run %s (experiment %r, environment: %s) ===",
                        entry.name, project.name, run_id, experiment.name, command_env.manager)
            logger.info("=== %s ===", command)
            if interrupts.signum is None:
                env = command_env.environ(os.environ, _handover(store, run_id, experiment.name))
                proc = subprocess.Popen([shutil.which("bash") or "/bin/sh", "-c", command], cwd=project.directory,
                                        env=env, start_new_session=True)
                interrupts.started(proc)
                proc.wait()
        except BaseException:
            if proc is not None and proc.poll() is None:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
            runs.end_run(store, run_id, KILLED if interrupts.signum is not None else FAILED)
            raise
        code = _exit_code(proc.returncode) if proc is not None else None
        if interrupts.signum is not None:
            status = KILLED
            if proc is not None:
                _kill_group(proc, signal.SIGKILL)  # whatever the command left behind in its group
        else:
            status = FINISHED if code == 0 else FAILED
        if code is not None:
            runs.set_tags(store, run_id, {EXIT_CODE_TAG: str(code)})
        runs.end_run(store, run_id, status)
    took = time.monotonic() - started
    if status == KILLED:
        name = signal.Signals(interrupts.signum).name if interrupts.signum else "interrupt"
        logger.warning("=== Run %s KILLED (%s) after %.1fs ===", run_id, name, took)
    elif status == FINISHED:
        logger.info("=== Run %s FINISHED in %.1fs ===", run_id, took)
    return SubmittedRun(run_id, status, code, command, entry.name, project.name, experiment.experiment_id)


def _handover(store: Store, run_id: str, experiment_name: str) -> dict[str, str]:
    """The variables that make the command log to this run of this store, whatever its working directory."""
    from ..tracking.fluent import RUN_ID_ENV
    from ..tracking.uri import resolve as resolve_uri

    uri = store.uri
    if "://" not in uri or uri.startswith("file://"):
        # a tracking directory: the artifact root is <directory>/artifacts, so its parent is the directory
        tracking = {"MODELPACK_TRACKING_URI": str(store.artifact_root.parent)}
    else:
        url, _ = resolve_uri(uri)  # a relative sqlite:/// path made absolute
        tracking = {"MODELPACK_TRACKING_URI": url, "MODELPACK_ARTIFACT_ROOT": str(store.artifact_root)}
    return {RUN_ID_ENV: run_id, "MODELPACK_EXPERIMENT_NAME": experiment_name, **tracking}


def _check_run_name(name: str | None) -> None:
    from ..tracking.schema import NAME_LENGTH

    if name is not None and (not isinstance(name, str) or len(name) > NAME_LENGTH):
        raise ProjectError(f"A run name is a string of at most {NAME_LENGTH} characters, got {len(str(name))} "
                           "characters" if isinstance(name, str) else f"A run name is a string, got {name!r}")


def _exit_code(returncode: int) -> int:
    """A shell's exit code: 128 + N for a process ended by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # started in a new session: its process group id is its pid


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without an /etc/passwd entry)
        return "unknown"


class _Interrupts:
    """While entered (in the main thread; signals reach no other), the forwarded signals stop the command
    instead of this process: the first is passed on to the command's process group, and the group is killed
    :data:`KILL_GRACE_SECONDS` later or at the next signal. ``signum`` is the first one received."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._timer: threading.Timer | None = None
        self._previous: dict[int, Any] = {}
        self._blocked: set[int] = set()

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in FORWARDED:
                self._previous[sig] = signal.signal(sig, self._received)
            # A signal mask is inherited through fork and exec: if whatever started this process blocked one of
            # these, neither the handler here nor the command (which inherits the mask) would ever see it.
            self._blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED) & set(FORWARDED)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        if self._blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._blocked)
            self._blocked = set()

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        if self.signum is not None:  # it came while the command was being started
            self._forward(self.signum, first=True)

    def _received(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            logger.warning("Stopping the command (%s); again to kill it at once", signal.Signals(signum).name)
        if self._proc is not None:
            self._forward(signum, first)

    def _forward(self, signum: int, first: bool) -> None:
        assert self._proc is not None
        if not first:
            _kill_group(self._proc, signal.SIGKILL)
            return
        _kill_group(self._proc, signum)
        self._timer = threading.Timer(KILL_GRACE_SECONDS, _kill_group, (self._proc, signal.SIGKILL))
        self._timer.daemon = True
        self._timer.start()


__all__ = ["KILL_GRACE_SECONDS", "ProjectRunFailedError", "SubmittedRun", "run"]
