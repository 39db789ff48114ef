"""FLUENT: the active-run API (MLflow's names): ``set_experiment``, ``start_run``, ``log_metric``, ...

The active runs are a stack per process (``nested=True`` pushes a child run); a ``log_*`` call with no active
run starts one, as in MLflow. Each active run keeps the store it was started in, so ``set_tracking_uri`` during
a run does not move the run's logging.

How a run ends:

- ``with start_run(...)``: FINISHED when the block ends normally, FAILED when it raises, KILLED on Ctrl-C
  (KeyboardInterrupt);
- a run still active when the interpreter exits is ended by an ``atexit`` hook: FAILED when the program ends with
  an uncaught exception (seen by a ``sys.excepthook`` wrapper), KILLED when that exception is a KeyboardInterrupt,
  otherwise FINISHED (a normal end or ``sys.exit`` with any code, as in MLflow);
- a process killed by a signal Python does not handle (SIGKILL, or SIGTERM without a handler) runs no hook: its
  run stays RUNNING.

A forked child inherits the active runs and may log to them, but never ends them at its exit.
"""

from __future__ import annotations

import atexit
import functools
import getpass
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..config import env_str
from .errors import RunStateError
from .store import Store
from .uri import get_tracking_uri, set_tracking_uri

if TYPE_CHECKING:
    import pandas as pd

    from .experiments import Experiment
    from .models import ModelInfo
    from .runs import Run, RunData, RunInfo

logger = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
#: Tag naming the parent of a nested run.
PARENT_RUN_TAG = "modelpack.parentRunId"
#: A run for this process to log to, set by ``modelpack run`` for the command it starts: the first ``start_run``
#: without a run id (or ``log_*`` call without an active run) resumes it, and takes it out of the environment.
RUN_ID_ENV = "MODELPACK_RUN_ID"

_active: list[ActiveRun] = []
_lock = threading.RLock()
_experiment_name: str | None = None
_uncaught: list[type[BaseException] | None] = [None]
_hooks_installed = False


class ActiveRun:
    """A run started by :func:`start_run`: ``info`` (a :class:`RunInfo`), ``data`` (params, latest metrics and
    tags, read from the store when accessed). As a context manager it ends the run when the block ends."""

    def __init__(self, info: RunInfo, store: Store) -> None:
        self.info = info
        self.store = store
        self._pid = os.getpid()

    @property
    def data(self) -> RunData:
        from .runs import get_run

        return get_run(self.store, self.info.run_id).data

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            status = FINISHED
        else:
            status = KILLED if issubclass(exc_type, KeyboardInterrupt) else FAILED
        _end(self, status)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.info.run_id} {self.info.run_name!r} {self.info.status}>"


# -- experiments ------------------------------------------------------------------------------------------------


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make runs started from now on go to this experiment (created when it does not exist); returns it."""
    global _experiment_name
    if experiment_name is None and experiment_id is None:
        raise RunStateError("set_experiment needs an experiment_name or an experiment_id")
    store = Store.open()  # first: it says what to install when SQLAlchemy is missing
    from . import experiments

    if experiment_name is not None:
        experiment = experiments.get_or_create(store, experiment_name)
    else:
        experiment = experiments.get(store, experiment_id or "")
    _experiment_name = experiment.name
    return experiment


def _current_experiment(store: Store, name: str | None = None) -> Experiment:
    from . import experiments

    chosen = name or _experiment_name or env_str("MODELPACK_EXPERIMENT_NAME", "") or experiments.DEFAULT_EXPERIMENT
    return experiments.get_or_create(store, chosen)


# -- runs -------------------------------------------------------------------------------------------------------


def start_run(run_name: str | None = None, experiment: str | None = None, nested: bool = False, *,
              run_id: str | None = None, tags: Mapping[str, Any] | None = None) -> ActiveRun:
    """Start a run (or resume ``run_id``) and make it the active one; use it as a context manager.

    ``experiment`` names the experiment (default: ``set_experiment``'s, else ``MODELPACK_EXPERIMENT_NAME``,
    else ``Default``). While a run is active, another needs ``nested=True`` (it records its parent in the tag
    ``modelpack.parentRunId``). Without ``run_id`` and an active run, the run that ``MODELPACK_RUN_ID`` names
    (``modelpack run`` sets it for the command it starts) is resumed.
    """
    with _lock:
        if _active and not nested:
            raise RunStateError(
                f"Run {_active[-1].info.run_id} is already active; end it first (end_run() or leave its "
                "'with' block), or start this one as a child run with start_run(..., nested=True)")
        if run_id is None and not _active:
            run_id = os.environ.pop(RUN_ID_ENV, "") or None  # handed over by `modelpack run`
        store = Store.open()
        from . import experiments, runs

        run_tags = dict(tags or {})
        if _active:
            run_tags[PARENT_RUN_TAG] = _active[-1].info.run_id
        if run_id is not None:
            if any(r.info.run_id == run_id for r in _active):
                raise RunStateError(f"Run {run_id} is already active")
            info = runs.resume_run(store, run_id)
            if run_tags:
                runs.set_tags(store, run_id, run_tags)
        else:
            target = _current_experiment(store, experiments.check_name(experiment) if experiment else None)
            user, source, commit = _who_and_what()
            name = _random_name() if run_name is None else run_name
            info = runs.create_run(store, target, run_name=name, user_id=user, source_name=source,
                                   source_git_commit=commit, tags=run_tags)
        run = ActiveRun(info, store)
        _active.append(run)
        _install_exit_hooks()
    logger.debug("Started run %s (%s) in experiment %s", info.run_id, info.run_name, info.experiment_id)
    return run


def end_run(status: str = FINISHED) -> None:
    """End the active run (the innermost one) with ``status`` (FINISHED, FAILED or KILLED); no-op without one."""
    from .runs import END_STATUSES

    if status not in END_STATUSES:
        raise RunStateError(f"A run ends as one of {list(END_STATUSES)}, got {status!r}")
    with _lock:
        run = _active[-1] if _active else None
    if run is not None:
        _end(run, status)


def active_run() -> ActiveRun | None:
    """The active run (the innermost one), or None."""
    return _active[-1] if _active else None


def get_run(run_id: str) -> Run:
    """A run of the current store with its params, latest metrics and tags."""
    store = Store.open()
    from .runs import get_run as read

    return read(store, run_id)


def _end(run: ActiveRun, status: str) -> None:
    """End ``run`` and the runs started inside it that are still active (innermost first)."""
    from .runs import end_run as write_end

    with _lock:
        if run not in _active:
            return  # already ended (end_run() inside its with block)
        index = _active.index(run)
        ending = _active[index:][::-1]
        del _active[index:]
    for each in ending:
        end_time = write_end(each.store, each.info.run_id, status)
        each.info = replace(each.info, status=status, end_time=end_time)


def _get_or_start() -> ActiveRun:
    if _active:
        return _active[-1]
    with _lock:  # two threads logging at once start one run
        return _active[-1] if _active else start_run()


# -- logging ----------------------------------------------------------------------------------------------------


def log_param(key: str, value: Any) -> Any:
    """Log a param of the active run (a string of ``str(value)``; immutable once logged); returns ``value``."""
    log_params({key: value})
    return value


def log_params(params: Mapping[str, Any]) -> None:
    """Log several params at once, all or none (a key already logged with another value is an error)."""
    from .runs import log_params as write

    run = _get_or_start()
    write(run.store, run.info.run_id, params)


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """Log a metric value of the active run (step default 0, timestamp default now, in ms)."""
    from .runs import log_metric_rows, metric_row

    run = _get_or_start()
    run_id = run.info.run_id
    log_metric_rows(run.store, run_id, [metric_row(run_id, key, value, timestamp, step)])


def log_metrics(metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
    """Log several metrics at the same step and time, in one transaction."""
    from .runs import log_metric_rows, metric_row
    from .store import now_ms

    run = _get_or_start()
    run_id = run.info.run_id
    when = now_ms() if timestamp is None else timestamp
    log_metric_rows(run.store, run_id, [metric_row(run_id, k, v, when, step) for k, v in metrics.items()])


def set_tag(key: str, value: Any) -> None:
    """Set a tag of the active run (tags may change)."""
    set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    from .runs import set_tags as write

    run = _get_or_start()
    write(run.store, run.info.run_id, tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Copy a file into the active run's artifacts (under ``artifact_path`` when given)."""
    from .artifacts import artifact_dir
    from .artifacts import log_artifact as copy

    run = _get_or_start()
    copy(artifact_dir(run.info.artifact_uri), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Copy a directory's contents into the active run's artifacts (under ``artifact_path`` when given)."""
    from .artifacts import artifact_dir
    from .artifacts import log_artifacts as copy

    run = _get_or_start()
    copy(artifact_dir(run.info.artifact_uri), local_dir, artifact_path)


def log_model(model: Any, artifact_path: str = "model", input_example: Any = None, signature: Any = None,
              registered_model_name: str | None = None, **save_kwargs: Any) -> ModelInfo:
    """Save ``model`` into the active run's artifacts (``modelpack.save_model``, with ``save_kwargs``), record it,
    and register it as a new version of ``registered_model_name`` when given; ``model_uri`` of the result is
    ``runs:/<run_id>/<artifact_path>``."""
    from .models import log_model as write

    run = _get_or_start()
    return write(run.store, run.info.run_id, model, artifact_path, input_example=input_example, signature=signature,
                 registered_model_name=registered_model_name, **save_kwargs)


# -- search -----------------------------------------------------------------------------------------------------


def search_runs(experiment_names: str | list[str] | None = None, filter_string: str = "",
                order_by: list[str] | str | None = None, max_results: int | None = None, *,
                experiment_ids: str | list[str] | None = None, filter: str | None = None) -> pd.DataFrame:
    """The runs of some experiments (default: the current one) matching ``filter_string`` (``filter`` is the
    same), in ``order_by`` order, as a pandas DataFrame with MLflow's columns. The filter language:
    ``modelpack.tracking.search``; e.g. ``"metrics.rmse < 60 and params.alpha = '0.01'"``."""
    store = Store.open()
    from . import experiments
    from .search import MAX_RESULTS, search, to_frame

    ids: list[str] = []
    if experiment_ids is not None:
        ids += [experiments.get(store, e).experiment_id
                for e in ([experiment_ids] if isinstance(experiment_ids, (str, int)) else experiment_ids)]
    if experiment_names is not None:
        names = [experiment_names] if isinstance(experiment_names, str) else list(experiment_names)
        ids += [e.experiment_id for e in experiments.by_names(store, names)]
    if experiment_ids is None and experiment_names is None:
        ids.append(_current_experiment(store).experiment_id)
    found = search(store, ids, filter if filter is not None else filter_string, order_by,
                   MAX_RESULTS if max_results is None else max_results)
    return to_frame(found)


# -- process context --------------------------------------------------------------------------------------------


@functools.cache
def _who_and_what() -> tuple[str, str | None, str | None]:
    """(user, source name, git commit of the source's repository): what every run of this process records."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without /etc/passwd entry)
        user = "unknown"
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    script = Path(argv0) if argv0 and argv0 != "-c" else None
    source = str(script.resolve()) if script is not None and script.is_file() else (argv0 or None)
    commit = _git_commit(script.resolve().parent if script is not None and script.is_file() else None)
    return user, source, commit


def _git_commit(directory: Path | None) -> str | None:
    """``git rev-parse HEAD`` in ``directory``; None outside a repository, without git, or on any failure."""
    if directory is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                             timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit or any(c not in "0123456789abcdef" for c in commit) or len(commit) > 64:
        return None
    return commit


_ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fair", "glad", "hardy", "keen", "lucid", "merry",
               "noble", "proud", "quick", "rapid", "sly", "tidy", "vivid", "warm", "zesty")
_NOUNS = ("otter", "heron", "lynx", "finch", "badger", "crane", "gecko", "ibis", "koala", "marten", "newt",
          "orca", "panda", "quail", "raven", "seal", "tapir", "viper", "wren", "yak")


def _random_name() -> str:
    """A readable run name such as ``keen-otter-417``."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000):03d}"


def _install_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def _note_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        _uncaught[0] = kind
        previous(kind, value, tb)

    sys.excepthook = _note_uncaught
    atexit.register(_end_runs_at_exit)


def _end_runs_at_exit() -> None:
    uncaught = _uncaught[0]
    if uncaught is None:
        status = FINISHED
    else:
        status = KILLED if issubclass(uncaught, KeyboardInterrupt) else FAILED
    mine = [run for run in _active if run._pid == os.getpid()]
    if not mine:
        return
    try:
        _end(mine[0], status)
    except Exception as exc:  # the store is gone at exit: say so, never raise from atexit
        logger.warning("Could not end run %s as %s at exit: %s", mine[0].info.run_id, status, exc)


__all__ = [
    "ActiveRun", "active_run", "end_run", "get_run", "get_tracking_uri", "log_artifact", "log_artifacts",
    "log_metric", "log_metrics", "log_model", "log_param", "log_params", "search_runs", "set_experiment",
    "set_tag", "set_tags", "set_tracking_uri", "start_run",
]
