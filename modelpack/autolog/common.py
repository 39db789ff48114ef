"""What every autolog integration logs with: its settings, the run a training call logs to, and the helpers
that log params, metrics, artifacts and the model so that a failure is a warning, never the user's problem."""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import logging
import math
import os
import re
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ModelpackError
from . import patching

if TYPE_CHECKING:
    from ..tracking.fluent import ActiveRun

logger = logging.getLogger("modelpack.autolog")

#: Tag of a run that autolog started, naming the integration (MLflow's is ``mlflow.autologging``).
AUTOLOG_TAG = "modelpack.autologging"
#: Rows of the training data kept as the logged model's input example.
EXAMPLE_ROWS = 5
_KEY_BAD = re.compile(r"[^\w\-. /:]")
T = TypeVar("T")


class AutologError(ModelpackError):
    """autolog cannot be enabled as asked (the library is not installed, a bad option)."""

    error_code = "INVALID_PARAMETER_VALUE"
    status = 400
    exit_code = 2


@dataclass
class Config:
    """The options an integration's ``autolog()`` was last called with."""

    log_models: bool = True
    log_input_examples: bool = True
    log_post_training_metrics: bool = True
    registered_model_name: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # the integration's own (importance_types, ...)


_configs: dict[str, Config] = {}


def config(integration: str) -> Config:
    return _configs.get(integration) or Config()


def configure(integration: str, settings: Config) -> None:
    _configs[integration] = settings
    patching.set_enabled(integration, True)


def require(module: str, distribution: str, integration: str) -> None:
    """Refuse to enable ``integration`` when ``module`` is not installed (without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise AutologError(f"modelpack.{integration}.autolog() needs {distribution}, which is not installed "
                           f"(no module '{module}'): pip install {distribution}")


def check_tags(extra_tags: Mapping[str, Any] | None) -> dict[str, str]:
    if extra_tags is None:
        return {}
    if not isinstance(extra_tags, Mapping):
        raise AutologError(f"extra_tags must be a mapping of tag names to values, got {type(extra_tags).__name__}")
    return {str(k): str(v) for k, v in extra_tags.items()}


# -- the run ----------------------------------------------------------------------------------------------------


class TrainingRun:
    """``with TrainingRun(integration) as run``: the active run, or one started for this training call and ended
    when it ends (FINISHED, FAILED when the training raised, KILLED on Ctrl-C), as ``start_run`` does.

    Under ``modelpack run``, the run it hands over (``MODELPACK_RUN_ID``) is not autolog's: the first training
    resumes it and leaves it active, as a ``log_*`` call does, so every training of the script logs into it and
    it ends with the command (docs/projects.md)."""

    def __init__(self, integration: str) -> None:
        self.integration = integration
        self.started: ActiveRun | None = None

    def __enter__(self) -> ActiveRun:
        from ..tracking import fluent

        active = fluent.active_run()
        if active is not None:
            return active
        handed_over = bool(os.environ.get(fluent.RUN_ID_ENV))
        run = fluent.start_run(tags={AUTOLOG_TAG: self.integration, **config(self.integration).extra_tags})
        if not handed_over:
            self.started = run
        return run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.started is None:
            return
        try:
            self.started.__exit__(exc_type, exc, tb)
        except Exception as error:  # never hide the training's own exception, never fail a training that worked
            patching.warn(self.integration, f"end run {self.started.info.run_id}", error)


def attempt(integration: str, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None with a warning when it fails: one failed piece of logging does not stop
    the others."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        patching.warn(integration, what, exc)
        return None


# -- params, metrics, tags, artifacts ---------------------------------------------------------------------------


def clean_key(key: Any) -> str:
    """A valid tracking key from any name: other characters become ``_``, ``@`` becomes ``_at_`` (as MLflow
    does for metrics such as ``ndcg@3``), at most 250 characters."""
    from ..tracking.schema import NAME_LENGTH

    text = _KEY_BAD.sub("_", str(key).replace("@", "_at_")) or "_"
    return text[:NAME_LENGTH]


def param_text(value: Any) -> str:
    """``str(value)``, cut to what the store takes (a long value ends with ``...``)."""
    from ..tracking.schema import PARAM_VALUE_LENGTH

    try:
        text = str(value)
    except Exception as exc:  # a broken __str__/__repr__ of a user object
        text = f"<{type(value).__name__}: str() failed: {type(exc).__name__}>"
    return text if len(text) <= PARAM_VALUE_LENGTH else text[:PARAM_VALUE_LENGTH - 3] + "..."


def log_params(run: ActiveRun, params: Mapping[str, Any], integration: str) -> None:
    """Log ``params`` (keys cleaned, values stringified and cut); a key the run already has with another value is
    skipped with a warning instead of losing all of them."""
    from ..tracking import runs
    from ..tracking.errors import ParamChangeError

    clean = {clean_key(k): param_text(v) for k, v in params.items()}
    try:
        runs.log_params(run.store, run.info.run_id, clean)
        return
    except ParamChangeError:
        pass
    kept = []
    for key, value in clean.items():
        try:
            runs.log_params(run.store, run.info.run_id, {key: value})
        except ParamChangeError:
            kept.append(key)
    logger.warning("modelpack autolog (%s): run %s already has params %s with other values; kept those "
                   "(params are immutable: one training per run)", integration, run.info.run_id, kept)


def number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool or a string), else None."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result


def log_metrics(run_id: str, store: Any, metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log the numeric values of ``metrics`` to the run, in one transaction (the run may have ended)."""
    from ..tracking.runs import log_metric_rows, metric_row
    from ..tracking.store import now_ms

    when = now_ms()
    rows = [metric_row(run_id, clean_key(k), v, when, step) for k, v in
            ((k, number(v)) for k, v in metrics.items()) if v is not None]
    log_metric_rows(store, run_id, rows)


def set_tags(run: ActiveRun, tags: Mapping[str, Any]) -> None:
    from ..tracking import runs

    runs.set_tags(run.store, run.info.run_id, {clean_key(k): str(v) for k, v in tags.items()})


def log_json(run: ActiveRun, file_name: str, data: Any) -> None:
    """Write ``data`` as JSON into the run's artifacts under ``file_name``."""
    from ..tracking.artifacts import artifact_dir, log_artifact

    with tempfile.TemporaryDirectory(prefix="modelpack-autolog-") as tmp:
        path = Path(tmp) / file_name
        path.write_text(json.dumps(data, indent=2, default=_jsonable), encoding="utf-8")
        log_artifact(artifact_dir(run.info.artifact_uri), path)


def log_file(run: ActiveRun, file_name: str, write: Callable[[Path], None]) -> None:
    """``write(path)`` a file named ``file_name`` and copy it into the run's artifacts."""
    from ..tracking.artifacts import artifact_dir, log_artifact

    with tempfile.TemporaryDirectory(prefix="modelpack-autolog-") as tmp:
        path = Path(tmp) / file_name
        write(path)
        log_artifact(artifact_dir(run.info.artifact_uri), path)


def _jsonable(value: Any) -> Any:
    as_float = number(value)
    if as_float is not None:
        return as_float if math.isfinite(as_float) else str(as_float)
    return str(value)


class MetricSink:
    """Per-iteration metrics of a boosting library's callback: buffered and written at most once a second (and at
    the end), so a long training shows its progress without a transaction per iteration. The whole history is
    kept for the early-stopping summary. A failure stops the sink with one warning; training goes on."""

    def __init__(self, integration: str, run: ActiveRun, flush_seconds: float = 1.0) -> None:
        self.integration = integration
        self.run_id = run.info.run_id
        self.store = run.store
        self.flush_seconds = flush_seconds
        self.history: list[dict[str, float]] = []
        self._rows: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self.failed = False

    def record(self, step: int, values: Mapping[str, Any]) -> None:
        if self.failed:
            return
        try:
            from ..tracking.runs import metric_row
            from ..tracking.store import now_ms

            clean = {clean_key(k): v for k, v in ((k, number(v)) for k, v in values.items()) if v is not None}
            self.history.append(clean)
            when = now_ms()
            self._rows.extend(metric_row(self.run_id, k, v, when, step) for k, v in clean.items())
            if time.monotonic() - self._last >= self.flush_seconds:
                self.flush()
        except Exception as exc:
            self.failed = True
            patching.warn(self.integration, "log per-iteration metrics", exc)

    def flush(self) -> None:
        if self.failed or not self._rows:
            return
        from ..tracking.runs import log_metric_rows

        rows, self._rows = self._rows, []
        self._last = time.monotonic()
        try:
            log_metric_rows(self.store, self.run_id, rows)
        except Exception as exc:
            self.failed = True
            patching.warn(self.integration, "log per-iteration metrics", exc)

    def log_best(self, best_iteration: int, best_index: int) -> None:
        """After early stopping: ``best_iteration`` (as the library numbers it) and ``stopped_iteration``, and
        the metrics of the best iteration (``history[best_index]``) again at the step after the last, so that
        each metric's latest value is the best model's (as MLflow does)."""
        self.flush()
        if self.failed or not self.history:
            return
        log_metrics(self.run_id, self.store, {"best_iteration": best_iteration,
                                              "stopped_iteration": len(self.history) - 1})
        if 0 <= best_index < len(self.history):
            log_metrics(self.run_id, self.store, self.history[best_index], step=len(self.history))


def example_of(examples: weakref.WeakKeyDictionary[Any, Any], data: Any) -> Any:
    """The rows kept for a training data set (a DMatrix, a Dataset), or None (built before autolog, from a
    file, ...)."""
    try:
        return examples.get(data)
    except TypeError:  # None or an object that cannot be weakly referenced
        return None


@functools.lru_cache(maxsize=64)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    """The arguments of a call of ``fn``, defaults included (a hook edits them, e.g. adds a callback)."""
    bound = _signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


# -- the model --------------------------------------------------------------------------------------------------


def head(data: Any, rows: int = EXAMPLE_ROWS) -> Any:
    """The first ``rows`` rows of training data as a copy (a DataFrame, an array, a list), else None."""
    if data is None or isinstance(data, (str, bytes)):
        return None
    if hasattr(data, "iloc"):
        return data.iloc[:rows].copy()
    if type(data).__module__ == "numpy" and hasattr(data, "copy"):
        return data[:rows].copy() if getattr(data, "ndim", 0) >= 1 else None
    if isinstance(data, (list, tuple)):
        return list(data[:rows])
    return None


def log_model(run: ActiveRun, model: Any, integration: str, example: Any,
              predict: Callable[[Any], Any] | None, **save_kwargs: Any) -> Any:
    """Log ``model`` as the run's ``model`` with the signature inferred from ``example`` (training rows) and
    ``predict(example)``, and ``example`` as its input example unless the settings say not to. An example whose
    prediction fails is left out (with the signature) rather than failing the model."""
    from ..tracking.models import log_model as write

    settings = config(integration)
    signature = None
    if example is not None and predict is not None:
        try:
            from ..signature_inference import infer_signature

            signature = infer_signature(example, predict(example))
        except Exception as exc:
            logger.info("modelpack autolog (%s): no signature for the model (%s: %s); logging it without "
                        "signature and input example", integration, type(exc).__name__, exc)
            example = None
    if not settings.log_input_examples:
        example = None
    return write(run.store, run.info.run_id, model, "model", input_example=example, signature=signature,
                 registered_model_name=settings.registered_model_name, **save_kwargs)
