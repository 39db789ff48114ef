"""PyTorch flavor: a ``torch.nn.Module`` (or a ``torch.export.ExportedProgram``), saved in the form the user
chooses with ``serialization_format``:

* ``"pickle"`` (the default for a plain module): the whole module, ``torch.save`` with cloudpickle, as
  ``data/model.pth`` - MLflow's layout, so MLflow loads it. Works for any module, including classes defined in a
  notebook or ``__main__`` (stored by value), and needs no example input. Loading it runs code: trusted models only.
* ``"pt2"``: a ``torch.export`` program, ``data/model.pt2`` (MLflow 3's default form, which it loads too). Needs
  one example input (``example_inputs``) to trace the module; the batch dimension is exported as dynamic.
* ``"torchscript"``: ``torch.jit.script`` (or ``torch.jit.trace`` on ``example_inputs`` when given) saved as
  ``data/model.pth``, which MLflow's loader also reads. PyTorch 2.13 deprecates TorchScript; prefer ``"pt2"``.
* ``"state_dict"``: only the weights (``data/state_dict.pth``) plus the module's class, imported by its qualified
  name at load and built with the recorded ``init_kwargs``; ``code_paths`` ship the class's source with the model.
  The weights load with ``torch.load(weights_only=True)``, but importing the class runs its module's code.
  modelpack's own form: MLflow has no loader for it.

The MLmodel ``pytorch`` section has MLflow's fields (``pytorch_version``, ``model_data``, ``code``) plus
``serialization_format`` (and ``model_class``/``init_kwargs`` for a state dict). Directories that
``mlflow.pytorch`` wrote (pickle, TorchScript or pt2) load without MLflow installed: their
``pickle_module_info.txt`` names ``mlflow.pytorch.pickle_module``, which is only cloudpickle's pickler next to
the standard unpickler, so modelpack reads them with the standard unpickler.

The python_function side predicts like MLflow's wrapper: a DataFrame's values as one float tensor (the dtype of
the module's parameters, float32 usually, as MLflow's float32), the module called in eval mode under
``torch.inference_mode()`` on the CPU, the output tensor back as a DataFrame (for a DataFrame input, with its
index) or an array. ``predict_float_rows`` hands the float64 block to torch without pandas.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pickle
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, InvalidInputError, ModelLoadError
from modelpack.flavor import (
    Flavor,
    PyFuncImplementation,
    SavedFlavor,
    copy_code_paths,
    load_native,
    load_pyfunc_at,
)

if TYPE_CHECKING:
    import numpy as np

    from modelpack.float_rows import FloatRows

logger = logging.getLogger(__name__)

FLAVOR_NAME = "pytorch"
#: Written as loader_module for the forms MLflow's own loader reads (pickle, TorchScript, pt2).
MLFLOW_LOADER = "mlflow.pytorch"
FORMATS = ("pickle", "pt2", "torchscript", "state_dict")
DATA_DIR = "data"
MODEL_FILE = "model.pth"  # MLflow's name: a whole-module pickle or a TorchScript archive
PT2_FILE = "model.pt2"
STATE_DICT_FILE = "state_dict.pth"
PICKLE_INFO_FILE = "pickle_module_info.txt"
#: What MLflow writes into pickle_module_info.txt: cloudpickle's pickler with the standard unpickler. modelpack
#: writes the same name (MLflow imports it to load; ``cloudpickle`` itself has no ``Unpickler``) and reads it
#: without importing MLflow.
MLFLOW_PICKLE_MODULE = "mlflow.pytorch.pickle_module"
CODE_DIR = "code"
#: (module, qualified name) of the classes this flavor saves, matched along the model's MRO without importing torch.
_SAVEABLE = {("torch.nn.modules.module", "Module"), ("torch.export.exported_program", "ExportedProgram")}


class PyTorchFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.pytorch"
    aliases = (MLFLOW_LOADER,)

    def can_save(self, model: Any) -> bool:
        return any((getattr(c, "__module__", ""), c.__qualname__) in _SAVEABLE for c in type(model).__mro__)

    def requirements(self, model: Any) -> list[str]:
        return ["torch"]

    def save(  # type: ignore[override]  # each flavor takes its own keyword options
        self,
        model: Any,
        path: Path,
        *,
        serialization_format: str | None = None,
        example_inputs: Any = None,
        init_kwargs: dict[str, Any] | None = None,
        code_paths: Iterable[str | Path] | None = None,
    ) -> SavedFlavor:
        """Write ``model`` in ``serialization_format`` (default: ``"pt2"`` for an ExportedProgram,
        ``"torchscript"`` for a ScriptModule, ``"pickle"`` otherwise).

        ``example_inputs`` (a tensor, array or DataFrame: one input) is what ``"pt2"`` exports with and what
        ``"torchscript"`` traces with; ``init_kwargs`` are the constructor arguments that rebuild a
        ``"state_dict"`` model; ``code_paths`` (files or directories) are copied into ``code/``, which is put on
        ``sys.path`` before the model loads.
        """
        import torch

        fmt = serialization_format or _default_format(model)
        if fmt not in FORMATS:
            raise FlavorError(f"serialization_format must be one of {list(FORMATS)}, got {fmt!r}")
        if isinstance(model, torch.export.ExportedProgram):
            if fmt != "pt2":
                raise FlavorError(f"A torch.export.ExportedProgram is saved as 'pt2', not {fmt!r}")
        elif not isinstance(model, torch.nn.Module):
            raise FlavorError(f"Expected a torch.nn.Module or torch.export.ExportedProgram, got {type(model).__name__}")
        elif isinstance(model, torch.jit.ScriptModule) and fmt != "torchscript":
            raise FlavorError(f"A TorchScript module (torch.jit.ScriptModule) is saved as 'torchscript', not {fmt!r}")
        if init_kwargs is not None and fmt != "state_dict":
            raise FlavorError("init_kwargs applies only to serialization_format='state_dict'")
        if example_inputs is not None and fmt not in ("pt2", "torchscript"):
            raise FlavorError("example_inputs applies only to serialization_format='pt2' or 'torchscript'")

        data = path / DATA_DIR
        data.mkdir()
        code = copy_code_paths(code_paths, path / CODE_DIR) if code_paths else None
        native: dict[str, Any] = {
            "pytorch_version": str(torch.__version__),
            "model_data": DATA_DIR,
            "code": code,
            "serialization_format": fmt,
        }
        pyfunc: dict[str, Any] = {"data": DATA_DIR}
        if fmt == "pickle":
            torch.save(model, data / MODEL_FILE, pickle_module=_cloudpickle_module())
        elif fmt == "torchscript":
            _save_torchscript(model, data / MODEL_FILE, example_inputs)
        elif fmt == "pt2":
            _save_pt2(model, data / PT2_FILE, example_inputs)
        else:
            native.update(_save_state_dict(model, data / STATE_DICT_FILE, init_kwargs or {}))
        if fmt in ("pickle", "torchscript"):  # MLflow's loader reads the pickle module's name here first
            (data / PICKLE_INFO_FILE).write_text(MLFLOW_PICKLE_MODULE)
            pyfunc["pickle_module_name"] = MLFLOW_PICKLE_MODULE
        if code:
            pyfunc["code"] = code
        return SavedFlavor(native=native, pyfunc=pyfunc, loader_module=None if fmt == "state_dict" else MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        """The module in eval mode on the CPU (for pt2, the ExportedProgram's ``module()``, as MLflow returns)."""
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        pyfunc = descriptor.flavors.get("python_function") or {}
        _add_code_to_path(model_dir, conf.get("code") or pyfunc.get("code"))
        data = model_dir / str(conf.get("model_data") or pyfunc.get("data") or DATA_DIR)
        fmt = conf.get("serialization_format") or _detect_format(data)
        if fmt not in FORMATS:
            raise ModelLoadError(f"pytorch serialization_format '{fmt}' is not supported; supported: {list(FORMATS)}")
        file = data if data.is_file() else data / {"pt2": PT2_FILE, "state_dict": STATE_DICT_FILE}.get(fmt, MODEL_FILE)
        if not file.is_file():
            raise ModelLoadError(f"Model file '{file}' is missing")
        try:
            if fmt == "pickle":
                return _load_pickle(file)
            if fmt == "torchscript":
                return _load_torchscript(file)
            if fmt == "pt2":
                return _load_pt2(file)
            return _load_state_dict(file, conf)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"PyTorch cannot load '{file}' ({fmt}): {type(exc).__name__}: {exc}") from exc

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> PyTorchPyFunc:
        return PyTorchPyFunc(self.load(model_dir, descriptor))


def _default_format(model: Any) -> str:
    """The form the object already is: pt2 for an exported program, TorchScript for a scripted module, else pickle
    (the one form that saves any module, needs no example and that MLflow reads)."""
    names = {c.__qualname__ for c in type(model).__mro__}
    if "ExportedProgram" in names:
        return "pt2"
    if "ScriptModule" in names:
        return "torchscript"
    return "pickle"


def _cloudpickle_module() -> Any:
    """The pickle module ``torch.save`` writes a whole module with: cloudpickle's pickler (a class defined in
    ``__main__`` or in a function is stored by value), as MLflow's ``mlflow.pytorch.pickle_module`` does."""
    import types

    import cloudpickle

    module = types.ModuleType("cloudpickle")
    module.Pickler = cloudpickle.CloudPickler  # type: ignore[attr-defined]
    module.dump = cloudpickle.dump  # type: ignore[attr-defined]
    return module


class _MlflowPickleUnpickler(pickle.Unpickler):
    """The standard unpickler (which reads cloudpickle's output), resolving ``mlflow.pytorch.pickle_module``
    (a re-export of cloudpickle) to cloudpickle so that MLflow's pickles load without MLflow."""

    def find_class(self, module: str, name: str) -> Any:
        if module == MLFLOW_PICKLE_MODULE:
            module = "cloudpickle"
        return super().find_class(module, name)


class _MlflowPickleModule:
    """What ``torch.load`` needs of a pickle module (``Unpickler``, ``load``), for MLflow's pickle module."""

    __name__ = MLFLOW_PICKLE_MODULE
    Unpickler = _MlflowPickleUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _MlflowPickleUnpickler(file, **kwargs).load()


def _pickle_module(data_dir: Path) -> Any:
    """The pickle module named by ``pickle_module_info.txt`` (MLflow's, or absent: the standard one)."""
    info = data_dir / PICKLE_INFO_FILE
    name = info.read_text().strip() if info.is_file() else ""
    if name in ("", MLFLOW_PICKLE_MODULE, "pickle", "cloudpickle"):
        return _MlflowPickleModule
    try:  # e.g. dill: the file was written with it and only it reads the file back
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModelLoadError(f"The model was pickled with module '{name}' (named in '{info}'), which cannot be "
                             f"imported: {exc}") from exc


def _load_pickle(file: Path) -> Any:
    import torch

    if _is_torchscript(file):  # MLflow saves a ScriptModule as model.pth too
        return _load_torchscript(file)
    model = torch.load(file, map_location="cpu", pickle_module=_pickle_module(file.parent), weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"'{file}' holds a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _is_torchscript(file: Path) -> bool:
    """Whether ``file`` is a TorchScript archive (a zip with ``constants.pkl``, as torch itself tells)."""
    try:
        with zipfile.ZipFile(file) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _detect_format(data: Path) -> str:
    """The form of an MLflow-written ``data`` directory (MLflow records none): model.pth (a pickle or a
    TorchScript archive), else model.pt2."""
    if data.is_file():
        return "torchscript" if _is_torchscript(data) else "pickle"
    if (data / MODEL_FILE).is_file():
        return "torchscript" if _is_torchscript(data / MODEL_FILE) else "pickle"
    if (data / PT2_FILE).is_file():
        return "pt2"
    raise ModelLoadError(f"No PyTorch model in '{data}': expected '{MODEL_FILE}' or '{PT2_FILE}'")


def _save_torchscript(model: Any, file: Path, example_inputs: Any) -> None:
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        if example_inputs is not None:
            raise FlavorError("The module is already TorchScript; example_inputs would trace it again")
        scripted = model
    else:
        with _eval_mode(model):
            try:
                if example_inputs is None:
                    scripted = torch.jit.script(model)
                else:
                    scripted = torch.jit.trace(model, (_example_tensor(model, example_inputs),))
            except Exception as exc:
                how = "torch.jit.script" if example_inputs is None else "torch.jit.trace"
                hint = "; pass example_inputs to trace it instead" if example_inputs is None else ""
                raise FlavorError(f"{how} failed on {type(model).__name__}: {type(exc).__name__}: {exc}{hint}") \
                    from exc
    torch.jit.save(scripted, str(file))


def _load_torchscript(file: Path) -> Any:
    import torch

    return torch.jit.load(str(file), map_location="cpu").eval()


def _save_pt2(model: Any, file: Path, example_inputs: Any) -> None:
    """Export with a dynamic batch dimension (a one-row example is doubled: torch.export would make a batch
    dimension of size 1 a constant), then check that the program takes another batch size."""
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        if example_inputs is not None:
            raise FlavorError("The model is already an ExportedProgram; example_inputs would export it again")
        program = model
    else:
        if example_inputs is None:
            raise FlavorError(
                "serialization_format='pt2' needs example_inputs (one input: a tensor, array or DataFrame) to "
                "export the module with torch.export; modelpack.flavors.pytorch.save_model takes it from "
                "input_example"
            )
        example = _example_tensor(model, example_inputs)
        if example.dim() == 0:
            raise FlavorError("example_inputs must have a batch dimension; got a 0-dimensional tensor")
        if example.shape[0] == 1:
            example = torch.cat([example, example])
        dim = getattr(torch.export.Dim, "AUTO", None) or torch.export.Dim("batch")
        with _eval_mode(model):
            try:
                program = torch.export.export(model, (example,), dynamic_shapes=({0: dim},))
            except Exception as exc:
                raise FlavorError(f"torch.export failed on {type(model).__name__}: {type(exc).__name__}: {exc}") \
                    from exc
        try:
            with torch.inference_mode():
                program.module()(torch.cat([example, example[:1]]))
        except Exception as exc:
            raise FlavorError(
                f"The exported program accepts only a batch of {example.shape[0]} rows (torch.export made the batch "
                f"dimension a constant: {type(exc).__name__}: {exc}); use serialization_format='pickle' or "
                "'state_dict' for this module"
            ) from exc
    torch.export.save(program, str(file))


def _load_pt2(file: Path) -> Any:
    import torch

    module = torch.export.load(str(file)).module()
    off_cpu = {t.device.type for t in (*module.parameters(), *module.buffers())} - {"cpu"}
    if off_cpu:
        raise ModelLoadError(f"The exported program in '{file}' holds weights on {sorted(off_cpu)}; it can only be "
                             "loaded there (export the module from the CPU to serve it here)")
    return module


def _save_state_dict(model: Any, file: Path, init_kwargs: dict[str, Any]) -> dict[str, Any]:
    import torch

    cls = type(model)
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise FlavorError(
            f"serialization_format='state_dict' imports the module's class by name when loading, and "
            f"'{qualified}' cannot be imported elsewhere; define it in a module (ship it with code_paths=[...]) "
            "or use serialization_format='pickle'"
        )
    if _import_class(qualified, FlavorError) is not cls:
        raise FlavorError(f"'{qualified}' imports as a different class than the module's; state_dict cannot rebuild "
                          "it")
    if not isinstance(init_kwargs, dict) or not all(isinstance(k, str) for k in init_kwargs):
        raise FlavorError(f"init_kwargs must be a dict of keyword arguments, got {init_kwargs!r}")
    _check_plain(init_kwargs, "init_kwargs")
    torch.save(model.state_dict(), file)
    return {"model_class": qualified, "init_kwargs": dict(init_kwargs)}


def _check_plain(value: Any, where: str) -> None:
    """init_kwargs are written into MLmodel (YAML): only plain values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for k, item in value.items():
            _check_plain(item, f"{where}[{k!r}]")
        return
    raise FlavorError(f"{where} is a {type(value).__name__}; init_kwargs hold only str, int, float, bool, None, "
                      "lists and dicts (they are written into MLmodel)")


def _load_state_dict(file: Path, conf: dict[str, Any]) -> Any:
    """Rebuild the module from its class and ``init_kwargs``, then load the weights with the weights-only
    unpickler (tensors and plain containers, nothing else)."""
    import torch

    qualified = conf.get("model_class")
    if not qualified:
        raise ModelLoadError(f"The pytorch section names no model_class to rebuild '{file}' into")
    cls = _import_class(str(qualified), ModelLoadError)
    kwargs = conf.get("init_kwargs") or {}
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"'{file}' is not a plain state dict (the weights-only unpickler refused it): "
                             f"{type(exc).__name__}: {exc}") from exc
    model = _build_on_meta(cls, kwargs, state)
    if model is not None:
        return model.eval()
    try:
        model = cls(**kwargs)
    except Exception as exc:
        raise ModelLoadError(f"{qualified}(**{kwargs!r}) failed: {type(exc).__name__}: {exc}") from exc
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ModelLoadError(f"The weights in '{file}' do not fit {qualified}(**{kwargs!r}): {exc}") from exc
    return model.eval()


def _build_on_meta(cls: type, kwargs: dict[str, Any], state: dict[str, Any]) -> Any:
    """The module built on the meta device (no memory, no random initialisation) and given the loaded tensors,
    or None when that does not work for this class (its constructor computes with tensors, or a buffer missing
    from the state dict would stay empty): the caller then builds it for real.

    Besides the time and memory, this keeps a server's master free of OpenMP threads: initialising a large layer
    runs a parallel region, whose thread pool would hang forked workers (modelpack/server/__main__.py re-executes
    to load in each worker then, and the workers share nothing)."""
    import torch

    try:
        with torch.device("meta"):
            model = cls(**kwargs)
        model.load_state_dict(state, assign=True)
    except Exception as exc:
        logger.debug("Building %s on the meta device failed (%s: %s); building it on the CPU",
                     cls.__qualname__, type(exc).__name__, exc)
        return None
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return None
    return model


def _import_class(qualified: str, error: type[Exception]) -> type:
    """The ``torch.nn.Module`` subclass named ``module.Class`` (importing its module runs that module's code)."""
    import torch

    module_name = ""
    obj: Any = None
    # the module is the longest importable prefix: "pkg.mod.Outer.Inner" -> pkg.mod, then Outer.Inner
    parts = qualified.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name) and split > 1:
                continue  # this prefix is no module: try a shorter one
            raise error(f"pytorch model_class '{qualified}' cannot be imported: {exc}; install the package that "
                        "defines it, or save the model with code_paths=[...] holding its module") from exc
        except Exception as exc:
            raise error(f"Importing module '{module_name}' for model_class '{qualified}' failed: "
                        f"{type(exc).__name__}: {exc}") from exc
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        break
    else:
        raise error(f"pytorch model_class '{qualified}' is not a qualified class name (module.Class)")
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        found = "nothing" if obj is None else type(obj).__name__
        raise error(f"pytorch model_class '{qualified}' is not a torch.nn.Module subclass (found {found} in "
                    f"module '{module_name}')")
    return obj


class _eval_mode:
    """Put a module in eval mode for export or tracing and restore its training flag afterwards."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.training = bool(getattr(model, "training", False))

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.training)


def _example_tensor(model: Any, example: Any) -> Any:
    """``example_inputs`` as the one tensor the python_function wrapper would feed the module."""
    import numpy as np
    import pandas as pd
    import torch

    if isinstance(example, (list, tuple)):
        if len(example) != 1:
            raise FlavorError(f"example_inputs must be one input (the python_function wrapper passes one tensor); "
                              f"got {len(example)}")
        example = example[0]
    if isinstance(example, torch.Tensor):
        return example.detach().cpu()
    if isinstance(example, (pd.DataFrame, np.ndarray)):
        return _to_tensor(example, _input_dtype(model))
    raise FlavorError(f"example_inputs must be a torch.Tensor, numpy array or pandas DataFrame, got "
                      f"{type(example).__name__}")


def _input_dtype(model: Any) -> Any:
    """The dtype float input is cast to: the module's first floating parameter or buffer, else float32."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _to_tensor(data: Any, dtype: Any) -> Any:
    """A DataFrame's values (every column) or a float array as a CPU tensor of ``dtype``; other arrays as they are.

    numpy has no bfloat16: such models get float32 values converted by torch."""
    import numpy as np
    import pandas as pd
    import torch

    numpy_dtype = {torch.float64: np.float64, torch.float16: np.float16}.get(dtype, np.float32)
    if isinstance(data, pd.DataFrame):
        array = data.to_numpy(dtype=numpy_dtype)
    elif data.dtype.kind == "f":
        array = data.astype(numpy_dtype, copy=False)
    else:
        array = data
    if not array.flags.writeable:  # torch shares the memory and warns about read-only arrays
        array = array.copy()
    tensor = torch.from_numpy(array)
    return tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor


class PyTorchPyFunc(PyFuncImplementation):
    """python_function wrapper, predicting like MLflow's ``mlflow.pytorch`` wrapper.

    A DataFrame becomes one tensor of its values in the module's float dtype (float32 for MLflow's float32
    models; a float64 module gets float64 where MLflow's wrapper fails), a float array is cast the same way and
    other arrays pass as they are. The module runs in eval mode under ``torch.inference_mode()`` on the CPU and
    must return one tensor: a DataFrame of it (the input's index) for a DataFrame, an array otherwise. ``params``
    go to ``forward`` as keyword arguments when it takes them (others are dropped with a warning).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.dtype = _input_dtype(model)
        self._accepted, self._any_kwarg = _forward_keywords(model)

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        import numpy as np
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            out = self._forward(_to_tensor(model_input, self.dtype), params)
            return pd.DataFrame(out, index=model_input.index)
        if isinstance(model_input, np.ndarray):
            return self._forward(_to_tensor(model_input, self.dtype), params)
        raise InvalidInputError(
            f"The PyTorch model takes a DataFrame or an array (one tensor), received {type(model_input).__name__}"
        )

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """The float64 block cast to the module's dtype, into torch without pandas; a DataFrame of the output."""
        import pandas as pd

        return pd.DataFrame(self._forward(_to_tensor(rows.array, self.dtype), params))

    def _forward(self, tensor: Any, params: dict | None) -> np.ndarray:
        import torch

        kwargs = self._kwargs(params)
        with torch.inference_mode():
            out = self.model(tensor, **kwargs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"The PyTorch model returned {type(out).__name__}; its python_function takes one output "
                            "tensor")
        out = out.detach().cpu()
        return (out.float() if out.dtype == torch.bfloat16 else out).numpy()

    def _kwargs(self, params: dict | None) -> dict:
        if not params:
            return {}
        if self._any_kwarg:
            return dict(params)
        unknown = sorted(set(params) - self._accepted)
        if unknown:
            logger.warning("Params %s are not arguments of the PyTorch model's forward; ignoring them", unknown)
        return {k: v for k, v in params.items() if k in self._accepted}


def _forward_keywords(model: Any) -> tuple[frozenset[str], bool]:
    """The keyword arguments ``forward`` takes besides its input, and whether it takes any (``**kwargs``)."""
    schema = getattr(getattr(model, "forward", None), "schema", None)
    if schema is not None:  # TorchScript: (self, input, *keywords)
        return frozenset(a.name for a in schema.arguments[2:]), False
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):  # e.g. some compiled forwards: pass params through
        return frozenset(), True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset(), True
    named = [p.name for p in parameters
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    return frozenset(named[1:]), False


def _add_code_to_path(model_dir: Path, code: Any) -> None:
    """Put the model's ``code/`` directory first on ``sys.path`` (its modules are imported when the model loads)."""
    if not code:
        return
    code_dir = str((model_dir / str(code)).resolve())
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)


_FLAVOR = PyTorchFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save a PyTorch module; see :func:`modelpack.save_model` for the options, and ``serialization_format``,
    ``example_inputs``, ``init_kwargs``, ``code_paths`` above. For ``"pt2"`` without ``example_inputs``, the
    ``input_example`` is what the module is exported with."""
    import modelpack

    if kwargs.get("serialization_format") == "pt2" and kwargs.get("example_inputs") is None \
            and kwargs.get("input_example") is not None and _default_format(model) != "pt2":
        kwargs["example_inputs"] = kwargs["input_example"]
    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the PyTorch module saved at ``path`` (eval mode, CPU; a pt2 program's ``module()``)."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> PyFuncImplementation:
    """MLflow's loader hook: lets MLflow load a modelpack pytorch model (given modelpack installed). MLflow passes
    the ``data`` directory, inside the model directory."""
    path = Path(data_path)
    model_dir = path if (path / "MLmodel").is_file() else path.parent
    if not (model_dir / "MLmodel").is_file():
        model_dir = model_dir.parent
    return load_pyfunc_at(_FLAVOR, model_dir)
