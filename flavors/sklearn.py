"""scikit-learn flavor: any estimator with ``predict`` (``predict_proba`` selectable).

Writes ``model.pkl`` (cloudpickle by default, ``pickle`` on request) or ``model.skops``
(``serialization_format="skops"``, with the optional ``skops`` package) and an MLmodel
``sklearn`` section with MLflow's field names, so MLflow reads it natively. Also reads
directories written by ``mlflow.sklearn`` in all three formats (skops is MLflow 3's default).

Trust (docs/trust.md): unpickling runs code, so pickle formats are for trusted models only;
a skops file only constructs the types skops trusts by default plus the ones listed in the
MLmodel's ``skops_trusted_types`` (written at save time, as MLflow does).
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

FLAVOR_NAME = "sklearn"
MODEL_FILE = "model.pkl"
SKOPS_FILE = "model.skops"  # MLflow's name for the skops format
FORMATS = ("cloudpickle", "pickle", "skops")
PREDICT_FNS = ("predict", "predict_proba")
SKOPS_INSTALL_HINT = "pip install 'modelpack[skops]'"
#: Written as loader_module: MLflow's own loader reads every format this flavor writes (docs/flavors.md).
MLFLOW_LOADER = "mlflow.sklearn"


class SklearnFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.sklearn"
    aliases = (MLFLOW_LOADER,)

    def can_save(self, model: Any) -> bool:
        return class_from_library(model, "sklearn") and callable(getattr(model, "predict", None))

    def requirements(self, model: Any) -> list[str]:
        return ["scikit-learn", "cloudpickle"]

    def save(  # type: ignore[override]  # each flavor takes its own keyword options
        self,
        model: Any,
        path: Path,
        *,
        serialization_format: str = "cloudpickle",
        predict_fn: str = "predict",
        skops_trusted_types: list[str] | None = None,
    ) -> SavedFlavor:
        """Write the estimator; ``skops_trusted_types`` (skops only) names the extra types the file may
        construct when loaded, after you have reviewed them (recorded in MLmodel as MLflow does)."""
        if serialization_format not in FORMATS:
            raise FlavorError(
                f"serialization_format must be one of {list(FORMATS)}, got {serialization_format!r}"
            )
        if predict_fn not in PREDICT_FNS:
            raise FlavorError(f"predict_fn must be one of {list(PREDICT_FNS)}, got {predict_fn!r}")
        if not callable(getattr(model, predict_fn, None)):
            raise FlavorError(f"{type(model).__name__} has no method '{predict_fn}'")
        if skops_trusted_types is not None and serialization_format != "skops":
            raise FlavorError("skops_trusted_types applies only to serialization_format='skops'")
        import sklearn

        if serialization_format == "skops":
            trusted = _trusted_list(skops_trusted_types, FlavorError)
            _dump_skops(model, path / SKOPS_FILE, trusted)
            native = {
                "pickled_model": SKOPS_FILE,
                "sklearn_version": sklearn.__version__,
                "serialization_format": "skops",
                "code": None,
                "skops_trusted_types": trusted,
            }
            return SavedFlavor(native=native, pyfunc={"model_path": SKOPS_FILE, "predict_fn": predict_fn},
                               requirements=["skops"], loader_module=MLFLOW_LOADER)
        if serialization_format == "cloudpickle":
            import cloudpickle as pickler
        else:
            import pickle as pickler
        with open(path / MODEL_FILE, "wb") as fh:
            pickler.dump(model, fh)
        native = {
            "pickled_model": MODEL_FILE,
            "sklearn_version": sklearn.__version__,
            "serialization_format": serialization_format,
            "code": None,
        }
        return SavedFlavor(native=native, pyfunc={"model_path": MODEL_FILE, "predict_fn": predict_fn},
                           loader_module=MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        file_name = conf.get("pickled_model") or descriptor.pyfunc.get("model_path") or MODEL_FILE
        fmt = conf.get("serialization_format", "cloudpickle")
        path = model_dir / file_name
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        if fmt not in FORMATS:
            raise ModelLoadError(
                f"sklearn serialization_format '{fmt}' is not supported; supported: {list(FORMATS)}"
            )
        if fmt == "skops":
            return _load_skops(path, _trusted_list(conf.get("skops_trusted_types"), ModelLoadError))
        import pickle

        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)  # cloudpickle output is read by plain pickle
        except Exception as exc:
            raise ModelLoadError(f"Cannot unpickle '{path}': {type(exc).__name__}: {exc}") from exc

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> SklearnPyFunc:
        predict_fn = descriptor.pyfunc.get("predict_fn") or "predict"
        return SklearnPyFunc(self.load(model_dir, descriptor), predict_fn)


class SklearnPyFunc(PyFuncImplementation):
    """python_function wrapper: calls the recorded predict method.

    scikit-learn validates a DataFrame far more slowly than an array (about 0.6 ms per
    call with pandas 3). When the estimator is built only from scikit-learn's own
    numeric-array components and the frame's columns are exactly the fitted feature
    names, the frame is passed as its numpy array: the same values in the same order,
    so the same predictions (tests/test_sklearn_fast_path.py checks this).
    """

    def __init__(self, model: Any, predict_fn: str = "predict") -> None:
        if predict_fn not in PREDICT_FNS or not callable(getattr(model, predict_fn, None)):
            raise ModelLoadError(f"sklearn model has no usable predict_fn '{predict_fn}'")
        self.model = model
        self._predict = getattr(model, predict_fn)
        names = getattr(model, "feature_names_in_", None)
        self._feature_names = [str(n) for n in names] if names is not None else None
        self._array_ok = _accepts_arrays(model)
        if self._array_ok and self._feature_names is not None:
            _silence_feature_name_warning()

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        if self._array_ok and type(model_input).__name__ == "DataFrame":
            array = self._as_array(model_input)
            if array is not None:
                return self._predict(array)
        return self._predict(model_input)

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """The fast path: the array itself when the frame path would pass it, else the DataFrame."""
        if self._array_ok and (self._feature_names is None or rows.columns == self._feature_names):
            return self._predict(rows.array)
        return self.predict(rows.to_frame(), params)

    def _as_array(self, frame: Any) -> Any:
        if self._feature_names is not None and frame.columns.tolist() != self._feature_names:
            return None  # let scikit-learn report the mismatch in its own words
        array = frame.to_numpy()
        return array if array.dtype.kind in "biuf" else None


#: scikit-learn components that select or transform columns by name need the DataFrame.
_NEEDS_FRAME = {"ColumnTransformer", "FunctionTransformer", "FeatureUnion"}


def _accepts_arrays(model: Any) -> bool:
    """Whether ``model`` and every estimator nested in it (pipeline steps, ensemble members,
    search templates) are scikit-learn classes that treat their input as an array."""
    try:
        nested = [v for v in model.get_params(deep=True).values() if hasattr(v, "get_params")]
    except Exception:
        return False
    for part in (model, *nested):
        cls = type(part)
        if (cls.__module__ or "").split(".", 1)[0] != "sklearn" or cls.__name__ in _NEEDS_FRAME:
            return False
    return True


def _silence_feature_name_warning() -> None:
    """Columns were matched to the fitted names before dropping them, so this warning is moot."""
    import warnings

    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)


def _trusted_list(value: Any, error: type[FlavorError] | type[ModelLoadError]) -> list[str] | None:
    """``skops_trusted_types`` as a list of type names (None when empty or absent)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise error(f"skops_trusted_types must be a list of fully qualified type names, got {value!r}")
    return list(value) or None


def _import_skops(error: type[FlavorError] | type[ModelLoadError]) -> Any:
    try:
        import skops.io
    except ImportError as exc:
        raise error(f"The sklearn skops format needs the skops package: {SKOPS_INSTALL_HINT}") from exc
    return skops.io


def _untrusted(sio: Any, path: Path, trusted: list[str] | None) -> list[str]:
    """The types in the skops file at ``path`` that neither skops nor ``trusted`` trusts."""
    return sorted(set(sio.get_untrusted_types(file=path)) - set(trusted or ()))


def _dump_skops(model: Any, path: Path, trusted: list[str] | None) -> None:
    """Write ``model`` with skops and check that it loads back with ``trusted``, as it will be loaded."""
    sio = _import_skops(FlavorError)
    try:
        sio.dump(model, path)
    except Exception as exc:
        raise FlavorError(
            f"skops cannot serialize this {type(model).__name__} ({type(exc).__name__}: {exc}); classes and "
            "functions must be importable by name (not defined in __main__ or inside a function), "
            "or save with serialization_format='cloudpickle'"
        ) from exc
    untrusted = _untrusted(sio, path, trusted)
    if untrusted:
        raise FlavorError(
            f"The skops file holds types that skops does not trust: {untrusted}. Review them and, if they are "
            "safe to construct, pass skops_trusted_types=[...] naming them"
        )


def _load_skops(path: Path, trusted: list[str] | None) -> Any:
    """Load a skops file, constructing only skops's default types and ``trusted``."""
    sio = _import_skops(ModelLoadError)
    try:
        untrusted = _untrusted(sio, path, trusted)
    except Exception as exc:
        raise ModelLoadError(f"Cannot read skops file '{path}': {type(exc).__name__}: {exc}") from exc
    if untrusted:
        raise ModelLoadError(
            f"skops file '{path}' holds types that are not trusted: {untrusted}. Only the types skops trusts "
            "and those in the MLmodel's sklearn.skops_trusted_types are loaded; add them there only after "
            "reviewing them (docs/trust.md)"
        )
    if trusted:
        logger.info("Loading '%s' with the trusted types recorded in its MLmodel: %s", path, trusted)
    try:
        return sio.load(path, trusted=trusted)
    except Exception as exc:
        raise ModelLoadError(f"Cannot load skops file '{path}': {type(exc).__name__}: {exc}") from exc


_FLAVOR = SklearnFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a scikit-learn estimator; see :func:`modelpack.save_model` for the options."""
    import modelpack

    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the native scikit-learn estimator saved at ``path``."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook: lets MLflow load a modelpack sklearn model (given modelpack installed)."""
    return load_pyfunc_at(_FLAVOR, data_path)
