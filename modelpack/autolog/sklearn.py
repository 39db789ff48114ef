"""scikit-learn autolog: ``modelpack.sklearn.autolog()``.

``fit`` (and ``fit_transform`` / ``fit_predict``) of every scikit-learn estimator that ``sklearn.utils.
all_estimators()`` lists (meta-estimators and pipelines included; the plain data transformers of
``sklearn.preprocessing``, ``impute``, ``feature_extraction`` and ``feature_selection`` and ``ColumnTransformer``
are left out, as MLflow does: they are logged as part of a pipeline) logs, in the active run or in one it
starts and ends:

- params: ``get_params(deep=True)`` (a parameter search logs its own params and the best ones as ``best_<name>``);
- tags ``estimator_name`` and ``estimator_class``;
- training metrics on the training data: ``training_mse``, ``training_rmse``, ``training_mae``, ``training_r2`` for
  a regressor; ``training_accuracy``, ``training_precision``, ``training_recall``, ``training_f1`` (weighted), and
  with ``predict_proba`` ``training_log_loss`` and ``training_roc_auc``, for a classifier;
- a parameter search: ``best_cv_score`` and ``cv_results.csv``;
- the fitted model as ``model`` (``log_model``: signature inferred from the first training rows and their
  prediction, which are its input example).

Afterwards, ``model.score(X, y)`` and the ``sklearn.metrics`` functions given a fitted model's prediction log
``<metric>_<dataset>`` to that model's run (``ElasticNet_score_X_test``, ``mean_squared_error_X_test``): a
prediction is recognised by the identity of the object ``predict`` returned, and the dataset is named after the
variable the caller passed to ``predict``/``score`` (else ``eval``), with ``-1``, ``-2``, ... for other objects of
the same name. Metric functions imported (``from sklearn.metrics import ...``) before ``autolog()`` are the
originals and log nothing.

The estimator classes are patched as their modules are imported (modelpack/autolog/patching.py), so enabling
autolog imports nothing and costs nothing for the parts of scikit-learn a script does not use.
"""

from __future__ import annotations

import csv
import functools
import inspect
import logging
import math
import sys
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from . import common, patching

if TYPE_CHECKING:
    from ..tracking.fluent import ActiveRun

logger = logging.getLogger("modelpack.autolog")

INTEGRATION = "sklearn"
#: The patches every scikit-learn-API integration needs (sklearn, xgboost, lightgbm): the metric functions
#: of post-training metrics, and the cross-validation helpers under which nothing is logged.
SHARED = "sklearn-api"

FIT_METHODS = ("fit", "fit_transform", "fit_predict")
PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
#: Helpers that fit clones over and over: their fits log nothing (as in MLflow). The private functions that fit
#: one fold are patched too: the helpers look them up when called, so even a helper imported before autolog()
#: (``from sklearn.model_selection import cross_val_score``) logs no run per fold.
NO_AUTOLOG_FUNCTIONS = ("cross_validate", "cross_val_predict", "cross_val_score", "learning_curve",
                        "permutation_test_score", "validation_curve")
NO_AUTOLOG_PRIVATE = ("_fit_and_score", "_fit_and_predict", "_permutation_test_score", "_incremental_fit_estimator")
#: Data transformers that do not start a run of their own (as in MLflow); inside a Pipeline they are logged.
EXCLUDED_MODULES = ("sklearn.preprocessing", "sklearn.impute", "sklearn.feature_extraction",
                    "sklearn.feature_selection")
EXCLUDED_CLASSES = ("sklearn.compose._column_transformer.ColumnTransformer",)
#: Modules all_estimators() skips.
_IGNORED_PARTS = frozenset({"tests", "externals", "setup", "conftest", "estimator_checks"})
#: sklearn.metrics names that are not metrics.
_NOT_METRICS = frozenset({"check_scoring", "get_scorer", "get_scorer_names", "make_scorer"})


def autolog(disable: bool = False, log_models: bool = True, log_input_examples: bool = True,
            log_post_training_metrics: bool = True, registered_model_name: str | None = None,
            extra_tags: Mapping[str, Any] | None = None) -> None:
    """Log scikit-learn training without logging code (see the module's docstring for what is logged).

    ``disable=True`` removes every patch, restoring the original methods. ``log_models=False`` logs no model;
    ``log_input_examples=False`` logs it without the example rows (still with the signature);
    ``log_post_training_metrics=False`` leaves ``score`` and ``sklearn.metrics`` alone;
    ``registered_model_name`` registers each logged model as a new version of that name; ``extra_tags`` are set
    on the runs autolog starts. Calling it again replaces the options.
    """
    if disable:
        disable_integration(INTEGRATION)
        return
    common.require("sklearn", "scikit-learn", INTEGRATION)
    common.configure(INTEGRATION, common.Config(
        log_models=bool(log_models), log_input_examples=bool(log_input_examples),
        log_post_training_metrics=bool(log_post_training_metrics), registered_model_name=registered_model_name,
        extra_tags=common.check_tags(extra_tags)))
    enable_shared(INTEGRATION)
    patching.when_imported(INTEGRATION, "sklearn", _on_sklearn_module)


# -- patching the estimator classes -----------------------------------------------------------------------------

_scanned: dict[str, set[type]] = {}


def _public_module(name: str) -> bool:
    parts = name.split(".")
    return not any(p.startswith("_") for p in parts) and not _IGNORED_PARTS.intersection(parts)


def _on_sklearn_module(module: ModuleType) -> None:
    """Patch the public estimator classes a public scikit-learn module exposes (what all_estimators() lists)."""
    # Never import here: this runs inside scikit-learn's own imports. A module that ends before BaseEstimator
    # exists (sklearn.base's dependencies) has no estimator.
    base = getattr(sys.modules.get("sklearn.base"), "BaseEstimator", None)
    if base is None or not _public_module(module.__name__):
        return

    scanned = _scanned.setdefault(INTEGRATION, set())
    for attr, value in list(vars(module).items()):
        if attr.startswith("_") or not isinstance(value, type) or value in scanned:
            continue
        scanned.add(value)
        if (not issubclass(value, base) or value is base or inspect.isabstract(value)
                or _excluded(value)):
            continue
        patch_estimator(INTEGRATION, value, _fit_hook)


def _excluded(cls: type) -> bool:
    module = cls.__module__ or ""
    return any(module == m or module.startswith(m + ".") for m in EXCLUDED_MODULES) \
        or f"{module}.{cls.__qualname__}" in EXCLUDED_CLASSES


def patch_estimator(integration: str, cls: type, fit_hook: Callable[..., Any]) -> None:
    """Patch a scikit-learn-API estimator class: its training methods with ``fit_hook``, its prediction methods
    and ``score`` with the post-training metric hooks."""
    for name in FIT_METHODS:
        patching.patch_method(integration, cls, name, fit_hook)
    for name in PREDICT_METHODS:
        patching.patch_method(integration, cls, name, _predict_hook, precheck=_tracked_self)
    patching.patch_method(integration, cls, "score", _score_hook, precheck=_tracked_self)


def disable_integration(integration: str) -> None:
    """Remove ``integration``'s patches (and the shared ones when no integration needs them any more)."""
    patching.unpatch(integration)
    _scanned.pop(integration, None)
    release_shared(integration)


_shared_users: set[str] = set()


def enable_shared(user: str) -> None:
    _shared_users.add(user)
    if not patching.is_enabled(SHARED):
        patching.set_enabled(SHARED, True)
        patching.when_imported(SHARED, "sklearn", _on_shared_module)


def release_shared(user: str) -> None:
    _shared_users.discard(user)
    if not _shared_users and patching.is_enabled(SHARED):
        patching.unpatch(SHARED)
        _models.clear()
        _predictions.clear()
        _datasets.clear()


def _on_shared_module(module: ModuleType) -> None:
    if module.__name__ == "sklearn.metrics":
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if name in _NOT_METRICS or name.startswith("plot_") or inspect.isclass(value) or not callable(value):
                continue
            patching.patch_function(SHARED, module, name, functools.partial(_metric_hook, name),
                                    precheck=_has_tracked_prediction)
    elif module.__name__ in ("sklearn.model_selection", "sklearn.model_selection._validation"):
        for name in (*NO_AUTOLOG_FUNCTIONS, *NO_AUTOLOG_PRIVATE):
            patching.patch_function(SHARED, module, name, _without_autolog)


def _without_autolog(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a cross-validation helper inside a session: the fits it makes are nested, so none logs."""
    return original(*args, **kwargs)


# -- fit --------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names of ``fn``'s positional parameters after ``self``."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds]
    return tuple(names[1:])


def training_data(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[Any, Any, Any]:
    """(X, y, sample_weight) of a ``fit(self, X, y, ...)`` call (``args`` without ``self``); None where absent."""
    names = _positional_names(fn)

    def argument(index: int, name: str | None) -> Any:
        if index < len(args):
            return args[index]
        return kwargs.get(name) if name else None

    x = argument(0, names[0] if names else "X")
    y = argument(1, names[1] if len(names) > 1 else "y")
    weight = argument(names.index("sample_weight"), "sample_weight") if "sample_weight" in names \
        else kwargs.get("sample_weight")
    return x, y, weight


def estimator_tags(estimator: Any) -> dict[str, str]:
    cls = type(estimator)
    return {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__qualname__}"}


def _is_search(estimator: Any) -> bool:
    try:
        from sklearn.model_selection._search import BaseSearchCV
    except ImportError:  # a scikit-learn that moved it
        return hasattr(estimator, "param_grid") or hasattr(estimator, "param_distributions")
    return isinstance(estimator, BaseSearchCV)


def _fit_hook(original: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
    settings = common.config(INTEGRATION)
    x, y, weight = training_data(original.fn, args, kwargs)
    example = common.head(x) if settings.log_models else None
    search = _is_search(self)
    with common.TrainingRun(INTEGRATION) as run:
        # A search's nested estimator holds untuned seed values: its own params and the best ones say more.
        common.attempt(INTEGRATION, "log params", lambda: common.log_params(
            run, self.get_params(deep=not search), INTEGRATION))
        common.attempt(INTEGRATION, "set tags", common.set_tags, run, estimator_tags(self))
        result = original(self, *args, **kwargs)
        common.attempt(INTEGRATION, "log training metrics", lambda: common.log_metrics(
            run.info.run_id, run.store, training_metrics(self, x, y, weight)))
        if search:
            common.attempt(INTEGRATION, "log the parameter search results", _log_search, run, self)
        if settings.log_models and hasattr(self, "predict"):
            common.attempt(INTEGRATION, f"log the model of {type(self).__name__}", common.log_model,
                           run, self, INTEGRATION, example, self.predict)
        track_model(self, run, INTEGRATION)
    return result


def training_metrics(model: Any, x: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
    """The training metrics of a fitted classifier or regressor on its training data (empty without labels);
    a metric that is not defined for the data (one class, multi-output, ...) is left out."""
    if y is None or x is None:
        return {}
    import sklearn.metrics as m
    from sklearn.base import is_classifier, is_regressor

    found: dict[str, float] = {}

    def add(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        try:
            value = common.number(fn(*args, **kwargs))
        except Exception as exc:
            logger.debug("autolog: %s not computed: %s: %s", key, type(exc).__name__, exc)
            return
        if value is not None:
            found[key] = value

    def predict(method: str) -> Any:
        try:
            return getattr(model, method)(x)
        except Exception as exc:  # e.g. a search with refit=False has no best estimator to predict with
            logger.debug("autolog: no training metrics from %s: %s: %s", method, type(exc).__name__, exc)
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autolog's own computations: their warnings are not the user's
        if is_classifier(model):
            predicted = predict("predict")
            if predicted is None:
                return found
            add("training_accuracy", m.accuracy_score, y, predicted)
            add("training_precision", m.precision_score, y, predicted, average="weighted", zero_division=0)
            add("training_recall", m.recall_score, y, predicted, average="weighted", zero_division=0)
            add("training_f1", m.f1_score, y, predicted, average="weighted", zero_division=0)
            proba = predict("predict_proba") if hasattr(model, "predict_proba") else None
            if proba is not None:
                labels = getattr(model, "classes_", None)
                add("training_log_loss", m.log_loss, y, proba, labels=labels)
                scores = proba[:, 1] if getattr(proba, "ndim", 0) == 2 and proba.shape[1] == 2 else proba
                add("training_roc_auc", m.roc_auc_score, y, scores, multi_class="ovo", average="weighted",
                    labels=labels if getattr(scores, "ndim", 1) == 2 else None)
        elif is_regressor(model) and (predicted := predict("predict")) is not None:
            add("training_mse", m.mean_squared_error, y, predicted)
            if "training_mse" in found:
                found["training_rmse"] = math.sqrt(found["training_mse"])
            add("training_mae", m.mean_absolute_error, y, predicted)
            add("training_r2", m.r2_score, y, predicted)
    return found


def _log_search(run: ActiveRun, search: Any) -> None:
    """A fitted parameter search: ``best_<param>`` params, ``best_cv_score``, and ``cv_results.csv``."""
    best = getattr(search, "best_params_", None)
    if isinstance(best, Mapping):
        common.log_params(run, {f"best_{k}": v for k, v in best.items()}, INTEGRATION)
    score = common.number(getattr(search, "best_score_", None))
    if score is not None:
        common.log_metrics(run.info.run_id, run.store, {"best_cv_score": score})
    results = getattr(search, "cv_results_", None)
    if isinstance(results, Mapping) and results:
        common.log_file(run, "cv_results.csv", functools.partial(_write_cv_results, results))


def _write_cv_results(results: Mapping[str, Any], path: Path) -> None:
    """``cv_results_`` as CSV, one row per candidate (masked entries empty), without needing pandas."""
    import numpy as np

    columns = list(results)
    cells = []
    for name in columns:
        values = results[name]
        mask = np.ma.getmaskarray(values) if isinstance(values, np.ma.MaskedArray) else None
        cells.append(["" if mask is not None and mask[i] else _cell(v) for i, v in enumerate(values)])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(zip(*cells, strict=True))


def _cell(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


# -- post-training metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    """Where a fitted model's post-training metrics go."""

    run_id: str
    store: Any
    integration: str


@dataclass
class _Prediction:
    """A tracked model's prediction: its run, the name of the data it was made from (the caller's variable or
    ``eval``), a weak reference to that data, and the dataset label once a metric used it."""

    model_run: ModelRun
    base: str
    data: weakref.ref[Any] | None
    label: str | None = None


#: id(model) -> its run; id(prediction) -> _Prediction; run_id -> base name -> the data sets labelled so far.
#: Nothing here keeps a model, a prediction or a data set alive: weak finalizers drop the id entries when their
#: object dies, and data sets are held by weak references.
_models: dict[int, ModelRun] = {}
_predictions: dict[int, _Prediction] = {}
_datasets: dict[str, dict[str, list[weakref.ref[Any] | None]]] = {}


def track_model(model: Any, run: ActiveRun, integration: str) -> None:
    """Send ``model``'s later ``score``/metric calls to ``run`` (when the integration logs post-training
    metrics)."""
    if not common.config(integration).log_post_training_metrics:
        return
    key = id(model)
    if key not in _models:
        try:
            weakref.finalize(model, _models.pop, key, None)
        except TypeError:  # not weakly referenceable: cannot be tracked safely
            return
    _models[key] = ModelRun(run.info.run_id, run.store, integration)


def _tracked_self(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return bool(_models) and bool(args) and id(args[0]) in _models


def _has_tracked_prediction(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if not _predictions:
        return False
    return any(id(a) in _predictions for a in args) or any(id(v) in _predictions for v in kwargs.values())


def _first_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if args:
        return args[0]
    return next(iter(kwargs.values()), None)


def _caller() -> FrameType | None:
    """The frame of the code that called the patched method (the first one outside modelpack.autolog)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(__package__ or "\0"):
        frame = frame.f_back
    return frame


def _variable_name(frame: FrameType | None, value: Any) -> str | None:
    """The name the caller's frame gives ``value`` (one frame only: cheap), if any."""
    if frame is None or value is None:
        return None
    for name, held in frame.f_locals.items():
        if held is value and name.isidentifier():
            return name
    return None


def _weak(value: Any) -> weakref.ref[Any] | None:
    try:
        return weakref.ref(value)
    except TypeError:  # a list, a tuple: cannot be recognised later
        return None


def dataset_label(run_id: str, base: str, data: weakref.ref[Any] | None) -> str:
    """``base`` for the first data set of that name a metric of the run uses, ``base-1``, ``base-2``, ... for
    other ones. A data set that is gone (a temporary such as ``X.iloc[:50]``) counts as a new one."""
    held = _datasets.setdefault(run_id, {}).setdefault(base, [])
    current = data() if data is not None else None
    if current is not None:
        for index, ref in enumerate(held):
            if ref is not None and ref() is current:
                return base if index == 0 else f"{base}-{index}"
    held.append(data if current is not None else None)
    index = len(held) - 1
    return base if index == 0 else f"{base}-{index}"


def _remember(prediction: Any, record: _Prediction) -> None:
    key = id(prediction)
    try:
        weakref.finalize(prediction, _predictions.pop, key, None)
    except TypeError:  # a list or a scalar: cannot be told apart safely later
        return
    _predictions[key] = record


def _predict_hook(original: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
    result = original(self, *args, **kwargs)
    model_run = _models.get(id(self))
    if model_run is not None:
        data = _first_argument(args, kwargs)
        _remember(result, _Prediction(model_run, _variable_name(_caller(), data) or "eval", _weak(data)))
    return result


def _score_hook(original: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
    result = original(self, *args, **kwargs)
    model_run = _models.get(id(self))
    value = common.number(result)
    if model_run is not None and value is not None:
        data = _first_argument(args, kwargs)
        name = dataset_label(model_run.run_id, _variable_name(_caller(), data) or "eval", _weak(data))
        _log_post_training(model_run, f"{type(self).__name__}_score_{name}", value)
    return result


def _metric_hook(metric: str, original: Any, *args: Any, **kwargs: Any) -> Any:
    result = original(*args, **kwargs)
    value = common.number(result)
    if value is None:
        return result
    for argument in (*args, *kwargs.values()):
        found = _predictions.get(id(argument))
        if found is not None:
            if found.label is None:  # later metrics of the same prediction use the same label
                found.label = dataset_label(found.model_run.run_id, found.base, found.data)
            _log_post_training(found.model_run, f"{metric}_{found.label}", value)
            break
    return result


def _log_post_training(model_run: ModelRun, key: str, value: float) -> None:
    try:
        common.log_metrics(model_run.run_id, model_run.store, {key: value})
    except Exception as exc:
        patching.warn(model_run.integration, f"log {key} to run {model_run.run_id}", exc)
