"""XGBoost flavor: ``xgboost.Booster`` and the scikit-learn API (``XGBRegressor``, ``XGBClassifier``, ...).

Writes the model in XGBoost's own format (``model.ubj`` by default, ``model.json`` with
``model_format="json"``; never a pickle) and an MLmodel ``xgboost`` section with MLflow's
field names (``xgb_version``, ``data``, ``model_class``, ``model_format``, ``code``), and
``python_function.data`` naming the same file. That is exactly what MLflow's own loader reads, so
the directory names ``mlflow.xgboost`` as its ``loader_module`` and MLflow loads it without
modelpack installed; modelpack reads the directories of ``mlflow.xgboost`` the same way:
loading instantiates ``model_class`` and calls its ``load_model`` on ``data``.

The python_function side predicts like MLflow's: a Booster on ``DMatrix(input)``, a
scikit-learn API model with its own ``predict`` (labels for a classifier), both with
``validate_features=True``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, ModelLoadError
from modelpack.flavor import (
    Flavor,
    PredictParams,
    PyFuncImplementation,
    SavedFlavor,
    class_from_library,
    load_native,
    load_pyfunc_at,
)

if TYPE_CHECKING:
    from modelpack.float_rows import FloatRows

FLAVOR_NAME = "xgboost"
FORMATS = ("ubj", "json")
DEFAULT_CLASS = "xgboost.core.Booster"
#: Names the distributions that install the ``xgboost`` package: ``xgboost`` (what MLflow pins; on
#: Linux it pulls ``nvidia-nccl-cu12``, several hundred MB) and its CPU-only build ``xgboost-cpu``.
DISTRIBUTIONS = ("xgboost", "xgboost-cpu")
#: Written as loader_module: MLflow's own loader reads both formats this flavor writes (docs/flavors.md).
MLFLOW_LOADER = "mlflow.xgboost"


class XGBoostFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.xgboost"
    aliases = (MLFLOW_LOADER,)
    #: The scikit-learn API classes are scikit-learn estimators too: this flavor wins over sklearn's.
    priority = 10

    def can_save(self, model: Any) -> bool:
        return class_from_library(model, "xgboost") and callable(getattr(model, "save_model", None)) \
            and callable(getattr(model, "predict", None))

    def requirements(self, model: Any) -> list[str]:
        names = [_installed_distribution()]
        if class_from_library(model, "sklearn"):  # the scikit-learn API imports scikit-learn when loaded
            names.append("scikit-learn")
        return names

    def save(  # type: ignore[override]  # each flavor takes its own keyword options
        self, model: Any, path: Path, *, model_format: str = "ubj"
    ) -> SavedFlavor:
        if model_format not in FORMATS:
            raise FlavorError(f"model_format must be one of {list(FORMATS)}, got {model_format!r}")
        import xgboost

        if not isinstance(model, (xgboost.Booster, xgboost.XGBModel)):
            raise FlavorError(f"{type(model).__name__} is neither an xgboost.Booster nor an xgboost.XGBModel")
        file_name = f"model.{model_format}"
        model.save_model(str(path / file_name))
        cls = type(model)
        native = {
            "xgb_version": xgboost.__version__,
            "data": file_name,
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "model_format": model_format,
            "code": None,
        }
        return SavedFlavor(native=native, pyfunc={"data": file_name}, loader_module=MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        file_name = conf.get("data") or descriptor.pyfunc.get("data")
        if not file_name:
            raise ModelLoadError(f"Model at '{model_dir}' names no xgboost model file ('data')")
        path = model_dir / file_name
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        model = _model_class(conf.get("model_class") or DEFAULT_CLASS)()
        try:
            model.load_model(str(path))
        except Exception as exc:
            raise ModelLoadError(f"XGBoost cannot load '{path}': {type(exc).__name__}: {exc}") from exc
        return model

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> XGBoostPyFunc:
        return XGBoostPyFunc(self.load(model_dir, descriptor))


def _installed_distribution() -> str:
    """The installed distribution that provides the ``xgboost`` package (``xgboost`` if several do)."""
    from importlib import metadata

    found = metadata.packages_distributions().get("xgboost") or []
    for name in (*DISTRIBUTIONS, *found):
        if name in found:
            return name
    return "xgboost"  # not installed: the core's pin reports it


def _model_class(qualified: str) -> type:
    """The XGBoost model class named in MLmodel; only classes of the ``xgboost`` package are imported."""
    import xgboost

    module_name, _, class_name = str(qualified).rpartition(".")
    if module_name.split(".", 1)[0] != "xgboost":
        raise ModelLoadError(f"xgboost model_class '{qualified}' is not a class of the xgboost package")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"xgboost model_class '{qualified}' cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, (xgboost.Booster, xgboost.XGBModel))):
        raise ModelLoadError(f"xgboost model_class '{qualified}' is not a Booster or XGBModel class")
    return cls


class XGBoostPyFunc(PyFuncImplementation):
    """python_function wrapper, predicting like MLflow's ``mlflow.xgboost`` wrapper.

    ``params`` go to the predict method when it takes them (others are dropped with a
    warning, as MLflow does). The float-rows path skips pandas when the columns are the
    model's feature names: a Booster gets a DMatrix built from the float64 block with those
    names (one built from a DataFrame costs milliseconds with pandas 3), a scikit-learn API
    model the block itself where XGBoost predicts in place (not ``gblinear``, which needs
    the names). XGBoost reads the same values either way.
    """

    def __init__(self, model: Any) -> None:
        import xgboost

        self.model = model
        self._booster = model if isinstance(model, xgboost.Booster) else None
        booster = self._booster if self._booster is not None else model.get_booster()
        names = booster.feature_names
        self._feature_names = [str(n) for n in names] if names is not None else None
        types = booster.feature_types
        #: categorical features need the DataFrame's dtypes: no array shortcut then
        self._array_ok = types is None or all(t in ("float", "int", "i", "q") for t in types)
        if self._booster is None and getattr(model, "booster", None) == "gblinear":
            self._array_ok = False  # predict would build an unnamed DMatrix from the array and reject it
        self._params = PredictParams(model.predict, "xgboost", exclude={"data", "X", "validate_features"})

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        kwargs = self._params.kwargs(params)
        if self._booster is not None:
            import xgboost

            return self._booster.predict(xgboost.DMatrix(model_input), validate_features=True, **kwargs)
        return self.model.predict(model_input, validate_features=True, **kwargs)

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """The float64 block (in a named DMatrix for a Booster) when the columns are the model's features."""
        if params or not self._array_ok or (self._feature_names is not None and rows.columns != self._feature_names):
            return self.predict(rows.to_frame(), params)
        if self._booster is not None:
            import xgboost

            names = rows.columns
            matrix = xgboost.DMatrix(rows.array, feature_names=names, feature_types=["float"] * len(names))
            return self._booster.predict(matrix, validate_features=True)
        return self.model.predict(rows.array)



_FLAVOR = XGBoostFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save an XGBoost model; see :func:`modelpack.save_model` for the options (and ``model_format``)."""
    import modelpack

    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the native XGBoost model (a Booster or a scikit-learn API model) saved at ``path``."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook for directories naming ``modelpack.flavors.xgboost`` (written before they named
    ``mlflow.xgboost``): MLflow loads them when modelpack is installed."""
    return load_pyfunc_at(_FLAVOR, data_path)
