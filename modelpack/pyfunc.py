"""LOAD: MLmodel -> path check -> loader_module -> flavor -> python_function model.

:func:`load_model` returns a :class:`PyFuncModel`, whose ``predict`` takes a pandas
DataFrame (or a numpy array, a list of dicts, a dict of columns), checks it against the
model's signature and calls the flavor's wrapper.

A model directory is untrusted input (docs/trust.md): every path its MLmodel names must lie inside it, and its
``loader_module`` is imported only when a registered flavor claims it (then the flavor loads the model and
nothing is imported) or when the user trusts it (``trusted_loader_modules``, MODELPACK_TRUSTED_LOADER_MODULES,
``--trust-loader-module``): importing a module runs its code.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .descriptor import ModelDescriptor
from .errors import FlavorError, ModelLoadError, ModelpackError, PredictionError
from .flavor import PyFuncImplementation
from .float_rows import FloatRows, float_rows_columns

logger = logging.getLogger(__name__)


class PyFuncModel:
    """A loaded model with a uniform ``predict``; ``metadata`` is the parsed MLmodel."""

    def __init__(self, impl: PyFuncImplementation, metadata: ModelDescriptor, model_dir: Path) -> None:
        from .enforce import SchemaEnforcer

        self._impl = impl
        self.metadata = metadata
        self.model_dir = model_dir
        self.signature = metadata.get_signature()
        self._enforcer = SchemaEnforcer(self.signature)
        #: FloatRows with exactly these columns go straight to ``impl.predict_float_rows``
        #: (None: this model does not take the fast path; see modelpack/float_rows.py).
        self.float_rows_columns = float_rows_columns(self.signature)

    @property
    def loader_module(self) -> str:
        return self.metadata.loader_module

    def unwrap_python_model(self) -> Any:
        """The flavor's own wrapper object (for custom models: holds ``python_model``)."""
        return self._impl

    def validate(self, data: Any, params: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any] | None]:
        """``data`` and ``params`` as the model will receive them; InvalidInputError if they do not fit."""
        return self._enforcer.inputs(as_model_input(data)), self._enforcer.params(params)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predict on ``data`` after checking it (and ``params``) against the signature."""
        if type(data) is FloatRows and data.columns == self.float_rows_columns:
            try:
                return self._impl.predict_float_rows(data, params=self._enforcer.params(params))
            except ModelpackError:
                raise
            except Exception as exc:
                raise _model_raised(exc) from exc
        data, params = self.validate(data, params)
        try:
            return self._impl.predict(data, params=params)
        except ModelpackError:  # e.g. a flavor's own input checks
            raise
        except Exception as exc:
            raise _model_raised(exc) from exc

    def __repr__(self) -> str:
        flavors = ", ".join(self.metadata.native_flavors) or "python_function"
        return f"PyFuncModel(path='{self.model_dir}', flavor={flavors})"


def as_model_input(data: Any) -> Any:
    """Turn the accepted Python inputs into a DataFrame or numpy array (others pass through)."""
    if type(data) is FloatRows:
        return data.to_frame()
    if isinstance(data, list) and data and isinstance(data[0], dict):
        import pandas as pd

        return pd.DataFrame.from_records(data)
    if isinstance(data, dict) and data and not any(isinstance(v, dict) for v in data.values()):
        import numpy as np
        import pandas as pd

        arrays = {k: np.asarray(v) for k, v in data.items()}
        if all(a.ndim == 1 for a in arrays.values()) and len({len(a) for a in arrays.values()}) == 1:
            return pd.DataFrame(arrays)
        if all(a.ndim == 0 for a in arrays.values()):
            return pd.DataFrame({k: [a.item()] for k, a in arrays.items()})
        return arrays
    if isinstance(data, (list, tuple)):
        import numpy as np

        return np.asarray(data)
    return data


def load_model(model_uri: str | os.PathLike[str], *, trusted_loader_modules: Iterable[str] = ()) -> PyFuncModel:
    """Load the model directory at ``model_uri`` as a python_function model.

    A ``loader_module`` that no registered flavor provides (a third-party MLflow flavor, say) is imported only
    when it, or a package holding it, is in ``trusted_loader_modules`` or MODELPACK_TRUSTED_LOADER_MODULES.
    Loading a pickle runs code whatever the loader: see docs/trust.md."""
    from .model_uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    return load_pyfunc_from(model_dir, ModelDescriptor.read(model_dir), trusted_loader_modules)


def load_pyfunc_from(model_dir: Path, descriptor: ModelDescriptor,
                     trusted_loader_modules: Iterable[str] = ()) -> PyFuncModel:
    """Build the PyFuncModel of an already-read descriptor (after checking the paths its MLmodel names)."""
    from .flavor_registry import get_registry

    module = descriptor.loader_module
    descriptor.check_paths(model_dir)
    flavor = get_registry().for_loader_module(module)
    try:
        if flavor is not None:
            impl = flavor.load_pyfunc(model_dir, descriptor)
        else:
            impl = _load_foreign(module, model_dir, descriptor, trusted_loader_modules)
    except ModelpackError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"Loading the model at '{model_dir}' with '{module}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(impl, PyFuncImplementation):
        if not callable(getattr(impl, "predict", None)):
            raise FlavorError(
                f"Flavor '{flavor.name if flavor else module}' returned {type(impl).__name__} from load_pyfunc, "
                "which has no predict method"
            )
        impl = ForeignPyFunc(impl)
    return PyFuncModel(impl, descriptor, model_dir)


class ForeignPyFunc(PyFuncImplementation):
    """Any object with ``predict`` (what an MLflow-style ``_load_pyfunc`` or a duck-typed flavor
    returns) under the flavor contract; it gets the default ``predict_float_rows``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        if params:
            return self.model.predict(model_input, params=params)
        return self.model.predict(model_input)


def _load_foreign(module: str, model_dir: Path, descriptor: ModelDescriptor,
                  trusted_loader_modules: Iterable[str] = ()) -> Any:
    """A loader module no registered flavor claims: if the user trusts it, import it and call its
    ``_load_pyfunc`` like MLflow does; otherwise refuse before importing anything."""
    from .config import TRUSTED_LOADER_MODULES_VAR
    from .config import trusted_loader_modules as trusted_from_env

    trusted = [*trusted_from_env(), *(_checked_module_name(n, "trusted_loader_modules")
                                      for n in trusted_loader_modules)]
    _checked_module_name(module, f"Model at '{model_dir}': python_function.loader_module")
    if not any(module == name or module.startswith(name + ".") for name in trusted):
        top = module.partition(".")[0]
        allow = (f"set {TRUSTED_LOADER_MODULES_VAR}={module} (comma-separated module or package names), pass "
                 f"--trust-loader-module {module} to modelpack serve/predict, or "
                 f"load_model(..., trusted_loader_modules=['{module}'])")
        if importlib.util.find_spec(top) is None:  # a top-level lookup imports nothing
            raise ModelLoadError(
                f"Model at '{model_dir}' needs loader module '{module}', which no registered flavor provides "
                f"(their loader modules: {_claimed_loader_modules()}) and which cannot be imported: no module "
                f"named '{top}'. Install the flavor plugin that provides it; a loader module that no flavor claims "
                f"is also imported only when trusted: {allow}"
            )
        raise ModelLoadError(
            f"Model at '{model_dir}' names loader module '{module}', which no registered flavor provides (their "
            f"loader modules: {_claimed_loader_modules()}); modelpack imports such a module only when you trust "
            f"it, since importing it runs its code. To allow it: {allow}"
        )
    try:
        loader = importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"Model at '{model_dir}' needs loader module '{module}', which no registered flavor "
            f"provides (their loader modules: {_claimed_loader_modules()}) and which cannot be imported: {exc}"
        ) from exc
    if not hasattr(loader, "_load_pyfunc"):
        raise ModelLoadError(f"Loader module '{module}' has no _load_pyfunc function")
    data = descriptor.pyfunc.get("model_path") or descriptor.pyfunc.get("data") or ""
    return loader._load_pyfunc(str(model_dir / data))


def _claimed_loader_modules() -> list[str]:
    """Every loader module a registered flavor provides (its own and its aliases)."""
    from .flavor_registry import get_registry

    registry = get_registry()
    return sorted({m for name in registry.names for f in [registry.get(name)] for m in (f.loader_module, *f.aliases)})


def _checked_module_name(name: str, where: str) -> str:
    """``name`` when it is an absolute dotted module name (``pkg.mod``); ModelLoadError otherwise."""
    from .config import is_module_name

    if not is_module_name(name):
        raise ModelLoadError(f"{where} must be a dotted module name such as 'package.module', got {name!r}")
    return name


def _model_raised(exc: Exception) -> PredictionError:
    """The error for an exception the model itself raised: its type in ``message``, its text as ``detail``."""
    return PredictionError(f"The model raised {type(exc).__name__} while predicting", detail=str(exc))
