"""CatBoost flavor: ``catboost.CatBoost`` and its scikit-learn-style classes (``CatBoostRegressor``,
``CatBoostClassifier``; ``CatBoostRanker`` too).

Writes the model in CatBoost's own binary format (``model.cb``, ``save_model(format="cbm")``;
never a pickle) and an MLmodel ``catboost`` section with MLflow's field names
(``catboost_version``, ``model_type``, ``save_format``, ``data``, ``code``) and
``python_function.data`` naming the same file: exactly what MLflow's own loader reads, so the
directory names ``mlflow.catboost`` as its ``loader_module`` and MLflow loads it without modelpack
installed. modelpack reads the directories of ``mlflow.catboost`` the same way: loading
instantiates the catboost class named by ``model_type`` (only the known CatBoost classes; a
subclass is saved as its CatBoost base, which MLflow can instantiate too) and calls its
``load_model(data, format=save_format)``.

The python_function side predicts like MLflow's: the model's own ``predict`` (labels for a
classifier, raw values for a plain ``CatBoost``).
"""

from __future__ import annotations

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

FLAVOR_NAME = "catboost"
MODEL_FILE = "model.cb"
SAVE_FORMAT = "cbm"
#: The classes ``model_type`` may name (MLflow's set); nothing else is instantiated on load.
MODEL_TYPES = ("CatBoost", "CatBoostClassifier", "CatBoostRegressor", "CatBoostRanker")
#: Written as loader_module: MLflow's own loader reads what this flavor writes (docs/flavors.md).
MLFLOW_LOADER = "mlflow.catboost"


class CatBoostFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.catboost"
    aliases = (MLFLOW_LOADER,)
    #: Wins over sklearn's flavor should a CatBoost model ever look like a scikit-learn estimator.
    priority = 10

    def can_save(self, model: Any) -> bool:
        return class_from_library(model, "catboost") and callable(getattr(model, "save_model", None)) \
            and callable(getattr(model, "predict", None))

    def requirements(self, model: Any) -> list[str]:
        return ["catboost"]

    def save(self, model: Any, path: Path) -> SavedFlavor:  # type: ignore[override]  # no options
        import catboost

        if not isinstance(model, catboost.CatBoost):
            raise FlavorError(f"{type(model).__name__} is not a catboost.CatBoost model")
        if not model.is_fitted():
            raise FlavorError(f"{type(model).__name__} is not fitted: there is no model to save")
        model.save_model(str(path / MODEL_FILE), format=SAVE_FORMAT)
        native = {
            "catboost_version": catboost.__version__,
            "model_type": _model_type(model),
            "save_format": SAVE_FORMAT,
            "data": MODEL_FILE,
            "code": None,
        }
        return SavedFlavor(native=native, pyfunc={"data": MODEL_FILE}, loader_module=MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        file_name = conf.get("data") or descriptor.pyfunc.get("data") or MODEL_FILE
        path = model_dir / file_name
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        model = _model_class(conf.get("model_type") or "CatBoost")()
        save_format = conf.get("save_format") or SAVE_FORMAT
        try:
            model.load_model(str(path), format=save_format)
        except Exception as exc:
            raise ModelLoadError(f"CatBoost cannot load '{path}' (format {save_format!r}): "
                                 f"{type(exc).__name__}: {exc}") from exc
        return model

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> CatBoostPyFunc:
        return CatBoostPyFunc(self.load(model_dir, descriptor))


def _model_type(model: Any) -> str:
    """The nearest class of ``model`` that ``model_type`` may name (a user's subclass is saved as its base)."""
    for cls in type(model).__mro__:
        if cls.__name__ in MODEL_TYPES and (cls.__module__ or "").split(".", 1)[0] == "catboost":
            return cls.__name__
    return "CatBoost"


def _model_class(name: str) -> type:
    """The CatBoost class named by ``model_type``; only the classes in ``MODEL_TYPES`` are accepted."""
    import catboost

    cls = getattr(catboost, str(name), None) if name in MODEL_TYPES else None
    if not isinstance(cls, type):
        raise ModelLoadError(f"catboost model_type '{name}' is not one of {list(MODEL_TYPES)}")
    return cls


class CatBoostPyFunc(PyFuncImplementation):
    """python_function wrapper, predicting like MLflow's ``mlflow.catboost`` wrapper (the model's ``predict``).

    ``params`` go to ``predict`` when it takes them (``prediction_type``, ``ntree_end``, ...; others
    are dropped with a warning). The float-rows path passes the float64 block itself when its
    columns are the model's ``feature_names_`` and no feature is categorical, text or embedding
    (those need the DataFrame's values); CatBoost reads the same numbers either way.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        names = getattr(model, "feature_names_", None)
        self._feature_names = [str(n) for n in names] if names is not None else None
        self._array_ok = self._feature_names is not None and not any(
            len(getattr(model, method)())
            for method in ("get_cat_feature_indices", "get_text_feature_indices", "get_embedding_feature_indices")
            if callable(getattr(model, method, None))
        )
        self._params = PredictParams(model.predict, "catboost", exclude={"data"})

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        return self.model.predict(model_input, **self._params.kwargs(params))

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """The float64 block itself when the columns are the model's features and all are numeric."""
        if params or not self._array_ok or rows.columns != self._feature_names:
            return self.predict(rows.to_frame(), params)
        return self.model.predict(rows.array)



_FLAVOR = CatBoostFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a CatBoost model; see :func:`modelpack.save_model` for the options."""
    import modelpack

    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the native CatBoost model (``CatBoost``, ``CatBoostRegressor``, ...) saved at ``path``."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook for directories naming ``modelpack.flavors.catboost`` (written before they named
    ``mlflow.catboost``): MLflow loads them when modelpack is installed."""
    return load_pyfunc_at(_FLAVOR, data_path)
