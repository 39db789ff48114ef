"""Custom Python models: a :class:`modelpack.PythonModel` (or a plain function) pickled
with cloudpickle, with named artifacts copied into ``artifacts/`` and code paths copied
into ``code/`` (put on ``sys.path`` before unpickling).

MLmodel holds only a ``python_function`` section, as MLflow writes for its own custom
models (``python_model``, ``cloudpickle_version``, ``artifacts``, ``code``); MLflow's
``mlflow.pyfunc.model`` directories are read too.
"""

from __future__ import annotations

import inspect
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, ModelLoadError
from modelpack.flavor import Flavor, PyFuncImplementation, SavedFlavor, load_pyfunc_at
from modelpack.python_model import PythonModel, PythonModelContext

MODEL_FILE = "python_model.pkl"
ARTIFACTS_DIR = "artifacts"
CODE_DIR = "code"


class FunctionModel(PythonModel):
    """Wraps a plain ``predict(model_input)`` function as a PythonModel."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def predict(self, context: PythonModelContext, model_input: Any, params: dict | None = None) -> Any:
        return self.func(model_input)


class PythonModelFlavor(Flavor):
    name = "python_model"
    loader_module = "modelpack.flavors.custom"
    aliases = ("mlflow.pyfunc.model",)
    priority = 10  # a PythonModel that happens to subclass a library class is still custom

    def can_save(self, model: Any) -> bool:
        return isinstance(model, PythonModel) or inspect.isfunction(model)

    def requirements(self, model: Any) -> list[str]:
        return ["cloudpickle"]

    def save(  # type: ignore[override]  # each flavor takes its own keyword options
        self,
        model: Any,
        path: Path,
        *,
        artifacts: dict[str, str | Path] | None = None,
        code_paths: Iterable[str | Path] | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> SavedFlavor:
        import cloudpickle

        if inspect.isfunction(model):
            model = FunctionModel(model)
        if not isinstance(model, PythonModel):
            raise FlavorError(f"Expected a modelpack.PythonModel or a function, got {type(model).__name__}")
        pyfunc: dict[str, Any] = {
            "python_model": MODEL_FILE,
            "cloudpickle_version": cloudpickle.__version__,
        }
        if artifacts:
            pyfunc["artifacts"] = _copy_artifacts(artifacts, path)
        if code_paths:
            _copy_code(code_paths, path / CODE_DIR)
            pyfunc["code"] = CODE_DIR
        if model_config:
            pyfunc["model_config"] = dict(model_config)
        with open(path / MODEL_FILE, "wb") as fh:
            cloudpickle.dump(model, fh)
        return SavedFlavor(native=None, pyfunc=pyfunc)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> PythonModel:
        return self.load_pyfunc(model_dir, descriptor).python_model

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> CustomPyFunc:
        conf = descriptor.pyfunc
        code = conf.get("code")
        if code:
            code_dir = str((model_dir / code).resolve())
            if code_dir not in sys.path:
                sys.path.insert(0, code_dir)
        path = model_dir / (conf.get("python_model") or MODEL_FILE)
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        import pickle

        try:
            with open(path, "rb") as fh:
                model = pickle.load(fh)
        except Exception as exc:
            raise ModelLoadError(f"Cannot unpickle '{path}': {type(exc).__name__}: {exc}") from exc
        artifacts = {}
        for name, spec in (conf.get("artifacts") or {}).items():
            rel = spec.get("path") if isinstance(spec, dict) else spec
            if not rel:
                raise ModelLoadError(f"Artifact '{name}' in MLmodel has no path")
            artifacts[name] = str((model_dir / rel).resolve())
        context = PythonModelContext(artifacts=artifacts, model_config=dict(conf.get("model_config") or {}))
        model.load_context(context)
        return CustomPyFunc(model, context)


class CustomPyFunc(PyFuncImplementation):
    """python_function wrapper: passes the context to the user's predict."""

    def __init__(self, python_model: PythonModel, context: PythonModelContext) -> None:
        self.python_model = python_model
        self.context = context
        self._takes_params = "params" in inspect.signature(python_model.predict).parameters

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        if self._takes_params:
            return self.python_model.predict(self.context, model_input, params=params)
        return self.python_model.predict(self.context, model_input)


def _copy_artifacts(artifacts: dict[str, str | Path], model_dir: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    target_root = model_dir / ARTIFACTS_DIR
    target_root.mkdir()
    for name, source in artifacts.items():
        src = Path(source)
        if not src.exists():
            raise FlavorError(f"Artifact '{name}' not found at '{src}'")
        dest = target_root / name / src.name
        dest.parent.mkdir(parents=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
        out[name] = {"path": dest.relative_to(model_dir).as_posix()}
    return out


def _copy_code(code_paths: Iterable[str | Path], code_dir: Path) -> None:
    code_dir.mkdir()
    for source in code_paths:
        src = Path(source)
        if not src.exists():
            raise FlavorError(f"Code path '{src}' not found")
        if src.is_dir():
            shutil.copytree(src, code_dir / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, code_dir / src.name)


_FLAVOR = PythonModelFlavor()


def save_model(python_model: PythonModel, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a custom model; ``artifacts``, ``code_paths``, ``model_config`` as in :func:`modelpack.save_model`."""
    import modelpack

    return modelpack.save_model(python_model, path, flavor=PythonModelFlavor.name, **kwargs)


def load_model(path: str | Path) -> PythonModel:
    """Load the user's PythonModel object (with ``load_context`` already called)."""
    model_dir = Path(path)
    return _FLAVOR.load(model_dir, ModelDescriptor.read(model_dir))


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook."""
    return load_pyfunc_at(_FLAVOR, data_path)
