"""Custom Python models: a :class:`modelpack.PythonModel` (or a plain function) pickled
with cloudpickle, with named artifacts copied into ``artifacts/`` and code paths copied
into ``code/`` (put on ``sys.path`` before unpickling).

MLmodel holds only a ``python_function`` section, as MLflow writes for its own custom
models (``python_model``, ``cloudpickle_version``, ``artifacts``, ``code``, ``config``); MLflow's
``mlflow.pyfunc.model`` directories are read too (compressed pickles included, and a
``predict`` without ``context`` as MLflow 3 allows). Their pickle refers to
``mlflow.pyfunc.PythonModel``, so they load only where ``mlflow`` is installed: without it
the error says so and how to serve the model (in its rebuilt environment, which has it).

MLflow's "models from code" (``loader_module: mlflow.pyfunc.loaders.code_model``, a
``model_code_path`` script that calls ``mlflow.models.set_model``) can only be run by MLflow:
they are loaded with MLflow's own loader, so they too need ``mlflow`` installed.
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, ModelLoadError
from modelpack.flavor import Flavor, PyFuncImplementation, SavedFlavor, copy_code_paths, load_pyfunc_at
from modelpack.python_model import PythonModel, PythonModelContext

MODEL_FILE = "python_model.pkl"
ARTIFACTS_DIR = "artifacts"
CODE_DIR = "code"
#: The python_function key of ``model_config`` (MLflow's name); ``model_config`` is what modelpack wrote before.
CONFIG_KEY = "config"
#: MLflow's loader module for "models from code" and the python_function key naming the script.
MLFLOW_CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
MODEL_CODE_KEY = "model_code_path"
#: ``python_model_compression`` values MLflow writes, and the stdlib module that opens each.
_COMPRESSION = {"lzma": "lzma", "bzip2": "bz2", "gzip": "gzip"}
_MLFLOW_LINE_RE = re.compile(r"^\s*mlflow\s*(?:[\[=<>!~;@]|$)", re.IGNORECASE)


class FunctionModel(PythonModel):
    """Wraps a plain ``predict(model_input)`` function as a PythonModel."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def predict(self, context: PythonModelContext, model_input: Any, params: dict | None = None) -> Any:
        return self.func(model_input)


class PythonModelFlavor(Flavor):
    name = "python_model"
    loader_module = "modelpack.flavors.custom"
    aliases = ("mlflow.pyfunc.model", MLFLOW_CODE_LOADER)
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
            copy_code_paths(code_paths, path / CODE_DIR)
            pyfunc["code"] = CODE_DIR
        if model_config:
            pyfunc[CONFIG_KEY] = dict(model_config)
        with open(path / MODEL_FILE, "wb") as fh:
            cloudpickle.dump(model, fh)
        return SavedFlavor(native=None, pyfunc=pyfunc)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> PythonModel:
        return self.load_pyfunc(model_dir, descriptor).python_model

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> CustomPyFunc | MlflowPyFunc:
        conf = descriptor.pyfunc
        code = conf.get("code")
        if code:
            code_dir = str((model_dir / code).resolve())
            if code_dir not in sys.path:
                sys.path.insert(0, code_dir)
        if MODEL_CODE_KEY in conf:
            return _load_mlflow_code_model(model_dir, descriptor)
        path = model_dir / (conf.get("python_model") or MODEL_FILE)
        if not path.is_file():
            raise ModelLoadError(f"Model file '{path}' is missing")
        model = _unpickle(path, conf.get("python_model_compression"), model_dir, descriptor)
        artifacts = {}
        for name, spec in (conf.get("artifacts") or {}).items():
            rel = spec.get("path") if isinstance(spec, dict) else spec
            if not rel:
                raise ModelLoadError(f"Artifact '{name}' in MLmodel has no path")
            artifacts[name] = str((model_dir / rel).resolve())
        context = PythonModelContext(artifacts=artifacts, model_config=_model_config(conf))
        model.load_context(context)
        return CustomPyFunc(model, context)


def _unpickle(path: Path, compression: str | None, model_dir: Path, descriptor: ModelDescriptor) -> Any:
    """The object in ``path`` (plain or compressed as MLflow's ``python_model_compression`` says)."""
    import pickle

    if compression and compression not in _COMPRESSION:
        raise ModelLoadError(f"MLmodel's python_model_compression is '{compression}'; "
                             f"expected one of {sorted(_COMPRESSION)}")
    opener: Callable[..., Any] = importlib.import_module(_COMPRESSION[compression]).open if compression else open
    try:
        with opener(path, "rb") as fh:
            return pickle.load(fh)
    except ModuleNotFoundError as exc:
        if _is_mlflow_module(exc.name):
            raise _needs_mlflow(model_dir, descriptor, exc.name or "mlflow") from exc
        raise ModelLoadError(f"Cannot unpickle '{path}': {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ModelLoadError(f"Cannot unpickle '{path}': {type(exc).__name__}: {exc}") from exc


def _load_mlflow_code_model(model_dir: Path, descriptor: ModelDescriptor) -> MlflowPyFunc:
    """An MLflow "model from code": its script sets the model through ``mlflow.models.set_model``,
    so only MLflow's loader can run it (with the MLmodel's model config, as MLflow passes it)."""
    try:
        loader = importlib.import_module(MLFLOW_CODE_LOADER)
    except ModuleNotFoundError as exc:
        if _is_mlflow_module(exc.name):
            raise _needs_mlflow(model_dir, descriptor, exc.name or "mlflow", "an MLflow model from code") from exc
        raise
    return MlflowPyFunc(loader._load_pyfunc(str(model_dir), _model_config(descriptor.pyfunc) or None))


def _model_config(conf: dict[str, Any]) -> dict[str, Any]:
    return dict(conf.get(CONFIG_KEY) or conf.get("model_config") or {})


def _is_mlflow_module(name: str | None) -> bool:
    return bool(name) and (name == "mlflow" or str(name).startswith("mlflow."))


def _needs_mlflow(model_dir: Path, descriptor: ModelDescriptor, missing: str,
                  kind: str = "an MLflow PythonModel") -> ModelLoadError:
    """The one-line error for an MLflow model loaded where ``mlflow`` (or the module ``missing`` of it)
    cannot be imported: which mlflow it needs and the two ways to get it."""
    from importlib import metadata

    recorded = _recorded_mlflow(model_dir)
    version = descriptor.extra.get("mlflow_version")
    wanted = recorded or (f"mlflow=={version}" if version else "mlflow")
    try:
        have: str | None = metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        have = None
    if have is None:
        problem = f"needs the 'mlflow' package ({wanted}), which is not installed in this Python"
    else:
        problem = f"needs {wanted}; this Python has mlflow {have}, which has no module '{missing}'"
    if recorded:
        fix = (f"serve it with --env-manager virtualenv (the default) or uv, which install {recorded} from the "
               f"model's requirements.txt, or run `pip install '{wanted}'` here")
    else:
        fix = f"run `pip install '{wanted}'` here (the model's requirements.txt does not list mlflow)"
    return ModelLoadError(f"The model at '{model_dir}' is {kind} and {problem}: {fix}")


def _recorded_mlflow(model_dir: Path) -> str | None:
    """The ``mlflow`` line of the model's requirements.txt (MLflow writes ``mlflow==X``), if any."""
    try:
        text = (model_dir / "requirements.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if _MLFLOW_LINE_RE.match(line):
            return line
    return None


class CustomPyFunc(PyFuncImplementation):
    """python_function wrapper: passes the context (unless ``predict`` has none) and params to the user's
    predict. As MLflow decides: ``predict`` takes a context when it has a parameter named ``context``
    or two parameters besides ``params``."""

    def __init__(self, python_model: Any, context: PythonModelContext) -> None:
        self.python_model = python_model  # a modelpack.PythonModel, or an mlflow.pyfunc.PythonModel
        self.context = context
        parameters = inspect.signature(python_model.predict).parameters
        self._takes_params = "params" in parameters
        self._takes_context = "context" in parameters or len([p for p in parameters if p != "params"]) == 2

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        args = (self.context, model_input) if self._takes_context else (model_input,)
        if self._takes_params:
            return self.python_model.predict(*args, params=params)
        return self.python_model.predict(*args)


class MlflowPyFunc(PyFuncImplementation):
    """The python_function model MLflow's own loader returned (models from code)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.python_model = getattr(model, "python_model", model)

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        return self.model.predict(model_input, params=params)


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


_FLAVOR = PythonModelFlavor()


def save_model(python_model: PythonModel, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a custom model; ``artifacts``, ``code_paths``, ``model_config`` as in :func:`modelpack.save_model`."""
    import modelpack

    return modelpack.save_model(python_model, path, flavor=PythonModelFlavor.name, **kwargs)


def load_model(path: str | Path) -> PythonModel:
    """Load the user's PythonModel object (with ``load_context`` already called)."""
    model_dir = Path(path)
    descriptor = ModelDescriptor.read(model_dir)
    descriptor.check_paths(model_dir)  # as every loader does before flavor code runs (docs/trust.md)
    return _FLAVOR.load(model_dir, descriptor)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook."""
    return load_pyfunc_at(_FLAVOR, data_path)
