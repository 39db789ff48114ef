"""LOAD: MLmodel -> loader_module -> flavor -> python_function model.

:func:`load_model` returns a :class:`PyFuncModel`, whose ``predict`` takes a pandas
DataFrame (or a numpy array, a list of dicts, a dict of columns), checks it against the
model's signature and calls the flavor's wrapper.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

from .descriptor import ModelDescriptor
from .errors import ModelLoadError, ModelpackError

logger = logging.getLogger(__name__)


class FloatRows(NamedTuple):
    """Rows of float64 numbers and their column names: what the server decodes a split, records
    or small CSV body of plain numbers into when every input column is a double.

    :meth:`PyFuncModel.predict` takes them without building a DataFrame when the columns are
    exactly the signature's (the case where enforcement would return the frame unchanged) and
    the flavor's wrapper has a ``predict_array`` hook; otherwise they become a DataFrame first.
    ``array`` is column-major, the layout pandas gives a frame's float block, so a model sees
    the same memory either way.
    """

    array: Any
    columns: list

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.array, columns=self.columns, copy=False)


class PyFuncModel:
    """A loaded model with a uniform ``predict``; ``metadata`` is the parsed MLmodel."""

    def __init__(self, impl: Any, metadata: ModelDescriptor, model_dir: Path) -> None:
        from .schema import SchemaEnforcer

        self._impl = impl
        self.metadata = metadata
        self.model_dir = model_dir
        self.signature = metadata.get_signature()
        self._enforcer = SchemaEnforcer(self.signature)
        # FloatRows with exactly these columns go straight to the wrapper's predict_array hook.
        self._predict_array = getattr(impl, "predict_array", None)
        self._array_columns = self._enforcer.input_names if self._predict_array and self.all_double_inputs else None

    @property
    def all_double_inputs(self) -> bool:
        """Whether the signature makes every input column a double (a decoding shortcut)."""
        import numpy as np

        return self._enforcer.numeric_dtype == np.float64

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
        if type(data) is FloatRows and data.columns == self._array_columns:
            return self._predict_array(data.array, data.columns, params=self._enforcer.params(params))
        data, params = self.validate(data, params)
        return self._impl.predict(data, params=params)

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


def load_model(model_uri: str | os.PathLike[str]) -> PyFuncModel:
    """Load the model directory at ``model_uri`` as a python_function model."""
    model_dir = Path(model_uri).expanduser()
    if str(model_uri).startswith("file://"):
        model_dir = Path(str(model_uri)[len("file://"):])
    return load_pyfunc_from(model_dir, ModelDescriptor.read(model_dir))


def load_pyfunc_from(model_dir: Path, descriptor: ModelDescriptor) -> PyFuncModel:
    """Build the PyFuncModel of an already-read descriptor."""
    from .registry import get_registry

    module = descriptor.loader_module
    flavor = get_registry().for_loader_module(module)
    try:
        if flavor is not None:
            impl = flavor.load_pyfunc(model_dir, descriptor)
        else:
            impl = _load_foreign(module, model_dir, descriptor)
    except ModelpackError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"Loading the model at '{model_dir}' with '{module}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    return PyFuncModel(impl, descriptor, model_dir)


def _load_foreign(module: str, model_dir: Path, descriptor: ModelDescriptor) -> Any:
    """A loader module no registered flavor claims: call its ``_load_pyfunc`` like MLflow does."""
    try:
        loader = importlib.import_module(module)
    except ImportError as exc:
        from .registry import get_registry

        raise ModelLoadError(
            f"Model at '{model_dir}' needs loader module '{module}', which no registered flavor "
            f"provides (registered: {get_registry().names}) and which cannot be imported: {exc}"
        ) from exc
    if not hasattr(loader, "_load_pyfunc"):
        raise ModelLoadError(f"Loader module '{module}' has no _load_pyfunc function")
    data = descriptor.pyfunc.get("model_path") or descriptor.pyfunc.get("data") or ""
    return loader._load_pyfunc(str(model_dir / data))
