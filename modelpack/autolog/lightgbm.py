"""LightGBM autolog: ``modelpack.lightgbm.autolog()``.

``lightgbm.train(...)`` and ``fit`` of the scikit-learn API (``LGBMRegressor``, ``LGBMClassifier``,
``LGBMRanker``) log, in the active run or in one they start and end:

- params: ``train``'s ``params`` and its other settings (``num_boost_round``, ...), or the scikit-learn model's
  ``get_params()``;
- per-iteration evaluation metrics of the validation sets as ``<data>-<metric>`` (MLflow's names:
  ``valid_0-l2``, ``training-binary_logloss``) at step = the iteration, through a callback; with early stopping
  also ``best_iteration`` (LightGBM's, counted from 1), ``stopped_iteration`` and the best iteration's metrics
  at the step after the last;
- ``feature_importance_<type>.json`` for each of ``importance_types`` (default ``split`` and ``gain``);
- the model (a ``Booster`` from ``train``, the scikit-learn model from ``fit``) with a signature and an input
  example from the first training rows (for ``train``: the rows the ``Dataset`` was built from).

A scikit-learn API model's ``score`` and ``sklearn.metrics`` on its predictions log post-training metrics as
with scikit-learn (modelpack/autolog/sklearn.py).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import common, patching
from . import sklearn as sklearn_api

if TYPE_CHECKING:
    from ..tracking.fluent import ActiveRun

INTEGRATION = "lightgbm"
#: ``train`` arguments that are data or code, not settings: not logged as params.
_UNLOGGED = frozenset({"params", "train_set", "valid_sets", "valid_names", "fobj", "feval", "init_model",
                       "callbacks", "learning_rates"})
IMPORTANCE_TYPES = ("split", "gain")
#: LightGBM runs callbacks by ``order``; early stopping's is 30: record each iteration before it may stop.
_CALLBACK_ORDER = 25

#: The first rows each Dataset was built from (the input example of a Booster trained on it).
_examples: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def autolog(disable: bool = False, log_models: bool = True, log_input_examples: bool = True,
            log_post_training_metrics: bool = True, importance_types: Sequence[str] = IMPORTANCE_TYPES,
            registered_model_name: str | None = None, extra_tags: Mapping[str, Any] | None = None) -> None:
    """Log LightGBM training without logging code (see the module's docstring for what is logged).

    ``importance_types`` are the ``Booster.feature_importance`` types (``split``, ``gain``) written as
    ``feature_importance_<type>.json``. The other options are those of ``modelpack.sklearn.autolog``;
    ``disable=True`` restores the original functions and methods.
    """
    if disable:
        sklearn_api.disable_integration(INTEGRATION)
        return
    common.require("lightgbm", "lightgbm", INTEGRATION)
    if isinstance(importance_types, str) or not all(t in IMPORTANCE_TYPES for t in importance_types):
        raise common.AutologError(f"importance_types must be a list of {list(IMPORTANCE_TYPES)}, "
                                  f"got {importance_types!r}")
    common.configure(INTEGRATION, common.Config(
        log_models=bool(log_models), log_input_examples=bool(log_input_examples),
        log_post_training_metrics=bool(log_post_training_metrics), registered_model_name=registered_model_name,
        extra_tags=common.check_tags(extra_tags), options={"importance_types": tuple(importance_types)}))
    sklearn_api.enable_shared(INTEGRATION)
    patching.when_imported(INTEGRATION, "lightgbm", _on_lightgbm_module)


def _on_lightgbm_module(module: ModuleType) -> None:
    """Patch the scikit-learn API once ``lightgbm.sklearn`` has executed, ``train`` and ``Dataset`` once the
    package has (each patch is made once)."""
    if module.__name__ == "lightgbm.sklearn":
        patching.patch_function(INTEGRATION, module, "train", _train_hook, inner=_inner_train)
        base = getattr(module, "LGBMModel", None)
        for value in list(vars(module).values()):
            if isinstance(value, type) and base is not None and issubclass(value, base):
                sklearn_api.patch_estimator(INTEGRATION, value, _fit_hook)
    elif module.__name__ == "lightgbm":
        patching.patch_function(INTEGRATION, module, "train", _train_hook)
        dataset = getattr(module, "Dataset", None)
        if isinstance(dataset, type):
            patching.patch_method(INTEGRATION, dataset, "__init__", _dataset_init)


def _dataset_init(original: Any, self: Any, *args: Any, **kwargs: Any) -> None:
    original(self, *args, **kwargs)
    example = common.head(args[0] if args else kwargs.get("data"))
    if example is not None:
        _examples[self] = example


def _params(bound: Any) -> dict[str, Any]:
    found: dict[str, Any] = dict(bound.arguments.get("params") or {})
    for key, value in bound.arguments.items():
        if key not in _UNLOGGED and key not in found:
            found[key] = value
    return found


def _recorder(sink: common.MetricSink) -> Any:
    """A LightGBM callback handing each iteration's evaluation results to ``sink``; never breaks training."""

    def record_metrics(env: Any) -> None:
        try:
            values = {f"{item[0]}-{item[1]}": item[2] for item in env.evaluation_result_list or ()}
            sink.record(env.iteration, values)
        except Exception as exc:
            if not sink.failed:
                sink.failed = True
                patching.warn(INTEGRATION, "log per-iteration metrics", exc)

    record_metrics.order = _CALLBACK_ORDER  # type: ignore[attr-defined]
    return record_metrics


def _with_callback(bound: Any, sink: common.MetricSink) -> None:
    bound.arguments["callbacks"] = [*(bound.arguments.get("callbacks") or ()), _recorder(sink)]


def _finish(run: ActiveRun, booster: Any, sink: common.MetricSink) -> None:
    """After training: the buffered metrics, the early-stopping summary and the feature importances."""
    sink.flush()
    best = common.number(getattr(booster, "best_iteration", 0)) or 0
    if best > 0:  # LightGBM sets it (counted from 1) only when an early-stopping callback ran
        common.attempt(INTEGRATION, "log the early-stopping metrics", sink.log_best, int(best), int(best) - 1)
    for kind in common.config(INTEGRATION).options.get("importance_types", IMPORTANCE_TYPES):
        common.attempt(INTEGRATION, f"log feature importance ({kind})", lambda kind=kind: common.log_json(
            run, f"feature_importance_{kind}.json",
            dict(zip(booster.feature_name(), booster.feature_importance(importance_type=kind).tolist(), strict=True))))


def _train_hook(original: Any, *args: Any, **kwargs: Any) -> Any:
    settings = common.config(INTEGRATION)
    bound = common.bind(original.fn, args, kwargs)
    example = common.example_of(_examples, bound.arguments.get("train_set"))
    with common.TrainingRun(INTEGRATION) as run:
        common.attempt(INTEGRATION, "log params", common.log_params, run, _params(bound), INTEGRATION)
        sink = common.MetricSink(INTEGRATION, run)
        _with_callback(bound, sink)
        try:
            booster = original(*bound.args, **bound.kwargs)
        finally:  # what was trained is logged, also when training fails or is interrupted
            sink.flush()
        _finish(run, booster, sink)
        if settings.log_models:
            common.attempt(INTEGRATION, "log the model", common.log_model, run, booster, INTEGRATION, example,
                           booster.predict)
    return booster


def _inner_train(original: Any, session: patching.Session, *args: Any, **kwargs: Any) -> Any:
    """``train`` called by a scikit-learn API ``fit`` that autolog is logging: add the metrics callback."""
    sink = session.data.get("sink")
    if sink is None:
        return original(*args, **kwargs)
    bound = common.bind(original.fn, args, kwargs)
    _with_callback(bound, sink)
    return original(*bound.args, **bound.kwargs)


def _fit_hook(original: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
    settings = common.config(INTEGRATION)
    x, _, _ = sklearn_api.training_data(original.fn, args, kwargs)
    example = common.head(x) if settings.log_models else None
    with common.TrainingRun(INTEGRATION) as run:
        common.attempt(INTEGRATION, "log params", lambda: common.log_params(run, self.get_params(), INTEGRATION))
        common.attempt(INTEGRATION, "set tags", common.set_tags, run, sklearn_api.estimator_tags(self))
        sink = common.MetricSink(INTEGRATION, run)
        session = patching.current_session()
        if session is not None:
            session.data["sink"] = sink
        try:
            result = original(self, *args, **kwargs)
        finally:
            sink.flush()
        booster = getattr(self, "booster_", None)
        if booster is not None:
            _finish(run, booster, sink)
        if settings.log_models:
            common.attempt(INTEGRATION, f"log the model of {type(self).__name__}", common.log_model, run, self,
                           INTEGRATION, example, self.predict)
        sklearn_api.track_model(self, run, INTEGRATION)
    return result

