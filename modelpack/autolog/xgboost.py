"""XGBoost autolog: ``modelpack.xgboost.autolog()``.

``xgboost.train(...)`` and ``fit`` of the scikit-learn API (``XGBRegressor``, ``XGBClassifier``, ``XGBRanker``,
the ``XGBRF*`` models) log, in the active run or in one they start and end:

- params: ``train``'s ``params`` and its other arguments (``num_boost_round``, ``early_stopping_rounds``, ...), or
  the scikit-learn model's ``get_params()``;
- per-iteration evaluation metrics of the ``evals`` / ``eval_set`` data sets, as ``<data>-<metric>`` (MLflow's
  names: ``validation_0-rmse``, ``train-logloss``) at step = the iteration, through a training callback; with
  early stopping also ``best_iteration``, ``stopped_iteration`` and the best iteration's metrics at the step after
  the last;
- ``feature_importance_<type>.json`` for each of ``importance_types`` (default ``weight``);
- the model (a ``Booster`` from ``train``, the scikit-learn model from ``fit``) with a signature and an input
  example from the first training rows (for ``train``: the rows the ``DMatrix`` was built from).

A scikit-learn API model's ``score`` and ``sklearn.metrics`` on its predictions log post-training metrics as
with scikit-learn (modelpack/autolog/sklearn.py).
"""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import common, patching
from . import sklearn as sklearn_api

if TYPE_CHECKING:
    from ..tracking.fluent import ActiveRun

INTEGRATION = "xgboost"
#: ``train`` arguments that are data or code, not settings: not logged as params.
_UNLOGGED = frozenset({"params", "dtrain", "evals", "obj", "evals_result", "xgb_model", "callbacks",
                       "custom_metric", "feval"})
MODEL_FORMATS = ("ubj", "json")

#: The first rows each DMatrix was built from (the input example of a Booster trained on it).
_examples: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def autolog(disable: bool = False, log_models: bool = True, log_input_examples: bool = True,
            log_post_training_metrics: bool = True, importance_types: Sequence[str] = ("weight",),
            model_format: str = "ubj", registered_model_name: str | None = None,
            extra_tags: Mapping[str, Any] | None = None) -> None:
    """Log XGBoost training without logging code (see the module's docstring for what is logged).

    ``importance_types`` are the ``Booster.get_score`` types written as ``feature_importance_<type>.json``;
    ``model_format`` is the xgboost flavor's (``ubj`` or ``json``). The other options are those of
    ``modelpack.sklearn.autolog``; ``disable=True`` restores the original functions and methods.
    """
    if disable:
        sklearn_api.disable_integration(INTEGRATION)
        return
    common.require("xgboost", "xgboost", INTEGRATION)
    if isinstance(importance_types, str) or not all(isinstance(t, str) for t in importance_types):
        raise common.AutologError(f"importance_types must be a list of importance type names such as "
                                  f"['weight', 'gain'], got {importance_types!r}")
    if model_format not in MODEL_FORMATS:
        raise common.AutologError(f"model_format must be one of {list(MODEL_FORMATS)}, got {model_format!r}")
    common.configure(INTEGRATION, common.Config(
        log_models=bool(log_models), log_input_examples=bool(log_input_examples),
        log_post_training_metrics=bool(log_post_training_metrics), registered_model_name=registered_model_name,
        extra_tags=common.check_tags(extra_tags),
        options={"importance_types": tuple(importance_types), "model_format": model_format}))
    sklearn_api.enable_shared(INTEGRATION)
    patching.when_imported(INTEGRATION, "xgboost", _on_xgboost_module)


def _on_xgboost_module(module: ModuleType) -> None:
    """Patch what has been imported: the scikit-learn API once ``xgboost.sklearn`` has executed, ``train`` and
    ``DMatrix`` once the package has (each patch is made once)."""
    if module.__name__ == "xgboost.sklearn" or (module.__name__ == "xgboost" and "xgboost.sklearn" in sys.modules):
        api = sys.modules["xgboost.sklearn"]
        patching.patch_function(INTEGRATION, api, "train", _train_hook, inner=_inner_train)
        base = getattr(api, "XGBModel", None)
        for value in list(vars(api).values()):
            if isinstance(value, type) and base is not None and issubclass(value, base):
                sklearn_api.patch_estimator(INTEGRATION, value, _fit_hook)
    if module.__name__ == "xgboost":
        patching.patch_function(INTEGRATION, module, "train", _train_hook)
        for name in ("DMatrix", "QuantileDMatrix"):
            cls = getattr(module, name, None)
            if isinstance(cls, type):
                patching.patch_method(INTEGRATION, cls, "__init__", _dmatrix_init)


def _dmatrix_init(original: Any, self: Any, *args: Any, **kwargs: Any) -> None:
    original(self, *args, **kwargs)
    example = common.head(args[0] if args else kwargs.get("data"))
    if example is not None:
        _examples[self] = example


def _params(bound: inspect.BoundArguments) -> dict[str, Any]:
    """``params`` (a dict, or pairs where a key may repeat, as XGBoost allows) and the other settings."""
    params = bound.arguments.get("params") or {}
    found: dict[str, Any] = {}
    if isinstance(params, Mapping):
        found.update(params)
    else:
        for key, value in params:
            found[key] = f"{found[key]},{value}" if key in found else value
    for key, value in bound.arguments.items():
        if key not in _UNLOGGED and key not in found:
            found[key] = value
    return found


def _with_callback(bound: inspect.BoundArguments, sink: common.MetricSink) -> None:
    # First: XGBoost stops asking callbacks once one says stop, and each iteration's results are wanted.
    bound.arguments["callbacks"] = [_recorder_class()(sink), *(bound.arguments.get("callbacks") or ())]


@functools.cache
def _recorder_class() -> type:
    import xgboost

    class MetricRecorder(xgboost.callback.TrainingCallback):
        """Hands each iteration's evaluation results to a MetricSink; never stops or breaks training."""

        def __init__(self, sink: common.MetricSink) -> None:
            super().__init__()
            self.sink = sink

        def after_iteration(self, model: Any, epoch: int, evals_log: Mapping[str, Mapping[str, Any]]) -> bool:
            try:
                values = {}
                for data, metrics in evals_log.items():
                    for metric, history in metrics.items():
                        last = history[-1]
                        values[f"{data}-{metric}"] = last[0] if isinstance(last, tuple) else last
                self.sink.record(epoch, values)
            except Exception as exc:
                if not self.sink.failed:
                    self.sink.failed = True
                    patching.warn(INTEGRATION, "log per-iteration metrics", exc)
            return False

    return MetricRecorder


def _finish(run: ActiveRun, booster: Any, sink: common.MetricSink) -> None:
    """After training: the buffered metrics, the early-stopping summary and the feature importances."""
    sink.flush()
    best = common.attempt(INTEGRATION, "read best_iteration", booster.attr, "best_iteration")
    if best is not None:
        common.attempt(INTEGRATION, "log the early-stopping metrics", sink.log_best, int(best), int(best))
    for kind in common.config(INTEGRATION).options.get("importance_types", ("weight",)):
        common.attempt(INTEGRATION, f"log feature importance ({kind})", lambda kind=kind: common.log_json(
            run, f"feature_importance_{kind}.json", booster.get_score(importance_type=kind)))


def _train_hook(original: Any, *args: Any, **kwargs: Any) -> Any:
    settings = common.config(INTEGRATION)
    bound = common.bind(original.fn, args, kwargs)
    dtrain = bound.arguments.get("dtrain")
    example = common.example_of(_examples, dtrain)
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
                           functools.partial(_predict_booster, booster),
                           model_format=settings.options.get("model_format", "ubj"))
    return booster


def _predict_booster(booster: Any, rows: Any) -> Any:
    import xgboost

    return booster.predict(xgboost.DMatrix(rows))


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
        booster = common.attempt(INTEGRATION, "read the booster", self.get_booster)
        if booster is not None:
            _finish(run, booster, sink)
        if settings.log_models:
            common.attempt(INTEGRATION, f"log the model of {type(self).__name__}", common.log_model, run, self,
                           INTEGRATION, example, self.predict, model_format=settings.options.get("model_format", "ubj"))
        sklearn_api.track_model(self, run, INTEGRATION)
    return result
