"""LightGBM flavor: ``lightgbm.Booster`` and the scikit-learn API (``LGBMRegressor``, ``LGBMClassifier``, ...).

Mirrors ``mlflow.lightgbm`` so each reads the other's directories: a Booster is written in
LightGBM's text model format (``model.lgb``); a scikit-learn API model cannot be rebuilt from
that text (LightGBM offers no supported way), so it is written with cloudpickle
(``model.pkl``; the Booster inside it is pickled as its text model). The MLmodel
``lightgbm`` section has MLflow's fields ``lgb_version``, ``data``, ``model_class``, ``code``
and, for a pickled model, ``serialization_format``; ``model_class`` says how to read ``data``.
That is exactly what MLflow's own loader reads, so the directory names ``mlflow.lightgbm`` as
its ``loader_module`` and MLflow loads it without modelpack installed.

Reading also takes what MLflow 3 writes for a scikit-learn API model by default: a skops file
(``model.skops``, ``serialization_format: skops``) with the extra types it may construct listed
in ``skops_trusted_types`` (it needs the optional ``skops`` package). Only the types skops trusts
and those listed are constructed; a pickle runs code when loaded (docs/trust.md).

The python_function side predicts like MLflow's: the model's own ``predict`` on the input
(labels for a classifier, raw scores or probabilities for a Booster, as its objective says).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, ModelLoadError
from modelpack.flavor import Flavor, PyFuncImplementation, SavedFlavor, class_from_library, load_native, load_pyfunc_at

if TYPE_CHECKING:
    from modelpack.float_rows import FloatRows

logger = logging.getLogger(__name__)

FLAVOR_NAME = "lightgbm"
BOOSTER_CLASS = "lightgbm.basic.Booster"
BOOSTER_FILE = "model.lgb"
PICKLE_FILE = "model.pkl"
#: Pickle formats this flavor reads for scikit-learn API models (cloudpickle output is plain pickle).
PICKLE_FORMATS = ("cloudpickle", "pickle")
#: MLflow 3's default format for scikit-learn API models; read only.
SKOPS_FORMAT = "skops"
SKOPS_INSTALL_HINT = "pip install 'modelpack[skops]'"
#: Written as loader_module: MLflow's own loader reads both forms this flavor writes (docs/flavors.md).
MLFLOW_LOADER = "mlflow.lightgbm"


class LightGBMFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.lightgbm"
    aliases = (MLFLOW_LOADER,)
    #: The scikit-learn API classes are scikit-learn estimators too: this flavor wins over sklearn's.
    priority = 10

    def can_save(self, model: Any) -> bool:
        return class_from_library(model, "lightgbm") and callable(getattr(model, "predict", None))

    def requirements(self, model: Any) -> list[str]:
        if class_from_library(model, "sklearn"):  # the scikit-learn API: unpickling imports scikit-learn
            return ["lightgbm", "scikit-learn", "cloudpickle"]
        return ["lightgbm"]

    def save(self, model: Any, path: Path) -> SavedFlavor:  # type: ignore[override]  # no options
        import lightgbm

        if isinstance(model, lightgbm.Booster):
            file_name = BOOSTER_FILE
            model.save_model(str(path / file_name))
        elif isinstance(model, lightgbm.LGBMModel):
            import cloudpickle

            file_name = PICKLE_FILE
            with open(path / file_name, "wb") as fh:
                cloudpickle.dump(model, fh)
        else:
            raise FlavorError(f"{type(model).__name__} is neither a lightgbm.Booster nor a lightgbm.LGBMModel")
        cls = type(model)
        native = {
            "lgb_version": lightgbm.__version__,
            "data": file_name,
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "code": None,
        }
        if file_name == PICKLE_FILE:  # MLflow's loader assumes cloudpickle when absent; say it anyway
            native["serialization_format"] = "cloudpickle"
        return SavedFlavor(native=native, pyfunc={"data": file_name}, loader_module=MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        file_name = conf.get("data") or descriptor.pyfunc.get("data")
        if not file_name:
            raise ModelLoadError(f"Model at '{model_dir}' names no lightgbm model file ('data')")
        path = model_dir / file_name
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        model_class = conf.get("model_class") or BOOSTER_CLASS
        import lightgbm

        if model_class == BOOSTER_CLASS:
            try:
                return lightgbm.Booster(model_file=str(path))
            except Exception as exc:
                raise ModelLoadError(f"LightGBM cannot load '{path}': {type(exc).__name__}: {exc}") from exc
        fmt = conf.get("serialization_format", "cloudpickle")
        if fmt == SKOPS_FORMAT:
            model = _load_skops(path, conf.get("skops_trusted_types"))
        elif fmt in PICKLE_FORMATS:
            import pickle

            try:
                with open(path, "rb") as fh:
                    model = pickle.load(fh)  # runs code (docs/trust.md)
            except Exception as exc:
                raise ModelLoadError(f"Cannot unpickle '{path}': {type(exc).__name__}: {exc}") from exc
        else:
            raise ModelLoadError(f"lightgbm serialization_format '{fmt}' is not supported; "
                                 f"supported: {[*PICKLE_FORMATS, SKOPS_FORMAT]}")
        if not isinstance(model, (lightgbm.Booster, lightgbm.LGBMModel)):
            raise ModelLoadError(f"'{path}' holds a {type(model).__name__}, not a LightGBM model")
        return model

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> LightGBMPyFunc:
        return LightGBMPyFunc(self.load(model_dir, descriptor))


class LightGBMPyFunc(PyFuncImplementation):
    """python_function wrapper: the model's own ``predict``, like MLflow's (``params`` are not used).

    The float-rows path hands the float64 block to ``predict`` when its columns are the
    model's feature names and no feature is a pandas categorical: LightGBM turns a float
    DataFrame into that same array, so the predictions are the same.
    """

    def __init__(self, model: Any) -> None:
        import lightgbm

        self.model = model
        names: list[str] | None
        if isinstance(model, lightgbm.Booster):
            booster, names = model, model.feature_name()
            if names == [f"Column_{i}" for i in range(len(names))]:
                names = None  # trained without names: LightGBM made these up
        else:  # a scikit-learn API model: scikit-learn checks the names it was fitted with
            booster, names = model.booster_, getattr(model, "feature_names_in_", None)
        self._feature_names = [str(n) for n in names] if names is not None else None
        self._array_ok = not booster.pandas_categorical
        if self._array_ok and self._feature_names is not None and not isinstance(model, lightgbm.Booster):
            _silence_feature_name_warning()

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        return self.model.predict(model_input)

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """The float64 block itself when the columns are the model's features, else the DataFrame."""
        if self._array_ok and (self._feature_names is None or rows.columns == self._feature_names):
            return self.model.predict(rows.array)
        return self.predict(rows.to_frame(), params)


def _load_skops(path: Path, trusted: Any) -> Any:
    """Load a skops file constructing only the types skops trusts and ``trusted`` (the MLmodel's list)."""
    if trusted is not None and not (isinstance(trusted, (list, tuple)) and all(isinstance(t, str) for t in trusted)):
        raise ModelLoadError(f"lightgbm skops_trusted_types must be a list of type names, got {trusted!r}")
    try:
        import skops.io as sio
    except ImportError as exc:
        raise ModelLoadError(f"'{path}' is in the skops format, which needs the skops package: "
                             f"{SKOPS_INSTALL_HINT}") from exc
    trusted_list = list(trusted or ())
    try:
        untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(trusted_list))
    except Exception as exc:
        raise ModelLoadError(f"Cannot read skops file '{path}': {type(exc).__name__}: {exc}") from exc
    if untrusted:
        raise ModelLoadError(
            f"skops file '{path}' holds types that are not trusted: {untrusted}. Only the types skops trusts "
            "and those in the MLmodel's lightgbm.skops_trusted_types are loaded; add them there only after "
            "reviewing them (docs/trust.md)"
        )
    try:
        return sio.load(path, trusted=trusted_list or None)
    except Exception as exc:
        raise ModelLoadError(f"Cannot load skops file '{path}': {type(exc).__name__}: {exc}") from exc


def _silence_feature_name_warning() -> None:
    """Columns were matched to the fitted names before passing the array, so this warning is moot."""
    import warnings

    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)


_FLAVOR = LightGBMFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a LightGBM model; see :func:`modelpack.save_model` for the options."""
    import modelpack

    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the native LightGBM model (a Booster or a scikit-learn API model) saved at ``path``."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook for directories naming ``modelpack.flavors.lightgbm`` (written before they named
    ``mlflow.lightgbm``): MLflow loads them when modelpack is installed."""
    return load_pyfunc_at(_FLAVOR, data_path)
