"""ONNX flavor: an ``onnx.ModelProto`` (or a serialized model: bytes, or the path of a ``.onnx`` file), run
with ONNX Runtime.

Writes ``model.onnx`` (ONNX's protobuf; with ``save_as_external_data=True``, MLflow's default, the larger
initializers go to a ``.data`` file beside it) and an MLmodel ``onnx`` section with MLflow's field names
(``onnx_version``, ``data``, ``providers``, ``onnx_session_options``, ``code``). That is exactly what
``mlflow.onnx`` writes, so the directory names ``loader_module: mlflow.onnx`` and MLflow loads it without
modelpack; modelpack reads MLflow's directories through the same alias. Loading parses a protobuf and runs
no Python code from the model (docs/trust.md).

The python_function side predicts like MLflow's wrapper: an ``onnxruntime.InferenceSession`` on the recorded
providers that this onnxruntime has (the CPU provider otherwise), fed a DataFrame's whole value block when
the graph has one input and one column per input otherwise, a dict of arrays as is, float64 cast to float32
for float inputs; a DataFrame input gives a DataFrame of the flattened outputs, any other input a dict of
output name to array. Where MLflow fails, it answers instead: outputs of different lengths (a classifier's
labels and probability matrix) come back as that dict, and a one-dimensional column feeds an input of shape
``[N, 1]``. Wrong input names, types or ranks are the caller's mistake (InvalidInputError, a 400).

Threads: unless ``onnx_session_options`` sets ``intra_op_num_threads``, the session gets ``OMP_NUM_THREADS``
intra-op threads when that is set (the server sets it to each worker's share of the cores), so workers do not
each start a pool of every core.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.descriptor import ModelDescriptor
from modelpack.errors import FlavorError, InvalidInputError, ModelLoadError
from modelpack.flavor import (
    Flavor,
    PyFuncImplementation,
    SavedFlavor,
    class_from_library,
    load_native,
    load_pyfunc_at,
)

if TYPE_CHECKING:
    import numpy as np

    from modelpack.float_rows import FloatRows

logger = logging.getLogger(__name__)

FLAVOR_NAME = "onnx"
MODEL_FILE = "model.onnx"
#: Written as loader_module: MLflow's own loader reads exactly what this flavor writes (docs/flavors.md).
MLFLOW_LOADER = "mlflow.onnx"
CPU = "CPUExecutionProvider"
#: What MLflow records when no providers are given: the GPU first where this onnxruntime build has it.
DEFAULT_PROVIDERS = ["CUDAExecutionProvider", CPU]
#: Session options that take one of a few names or numbers (the others are plain SessionOptions attributes).
EXECUTION_MODES = ("sequential", "parallel")
OPTIMIZATION_LEVELS = (0, 1, 2, 99)
THREAD_OPTIONS = ("intra_op_num_threads", "inter_op_num_threads")
EXTRA_CONFIG = "extra_session_config"
#: ONNX tensor element types -> numpy dtype names, for the inputs this wrapper may cast to.
_FLOAT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16"}


class OnnxFlavor(Flavor):
    name = FLAVOR_NAME
    loader_module = "modelpack.flavors.onnx"
    aliases = (MLFLOW_LOADER,)

    def can_save(self, model: Any) -> bool:
        """An ``onnx.ModelProto``; bytes and paths are saved only when ``flavor="onnx"`` is named."""
        return class_from_library(model, "onnx") and type(model).__name__ == "ModelProto"

    def requirements(self, model: Any) -> list[str]:
        return ["onnx", _installed_runtime()]

    def save(  # type: ignore[override]  # each flavor takes its own keyword options
        self,
        model: Any,
        path: Path,
        *,
        onnx_execution_providers: list[Any] | None = None,
        onnx_session_options: dict[str, Any] | None = None,
        save_as_external_data: bool = True,
    ) -> SavedFlavor:
        """Write ``model.onnx``. ``onnx_execution_providers`` (names or ``(name, options)`` pairs, MLflow's
        default ``["CUDAExecutionProvider", "CPUExecutionProvider"]``) and ``onnx_session_options`` (a dict of
        ``onnxruntime.SessionOptions`` attributes, plus ``extra_session_config``) are recorded for loading;
        ``save_as_external_data`` puts initializers of 1 KB or more in a ``.data`` file (needed past 2 GB)."""
        import onnx

        providers = _checked_providers(onnx_execution_providers, FlavorError)
        session_options = _checked_session_options(onnx_session_options, FlavorError)
        proto = _as_model_proto(model)
        if save_as_external_data:
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)  # onnx moves the tensors of the proto it saves: leave the caller's alone
            proto = copy
        target = path / MODEL_FILE
        try:
            onnx.save_model(proto, str(target), save_as_external_data=save_as_external_data)
        except Exception as exc:
            raise FlavorError(f"onnx cannot write the model to '{target}': {type(exc).__name__}: {exc}") from exc
        try:
            onnx.checker.check_model(str(target))  # from the file: the check works past 2 GB too
        except Exception as exc:
            raise FlavorError(f"The model is not a valid ONNX model (onnx.checker): {type(exc).__name__}: {exc}") \
                from exc
        native = {
            "onnx_version": onnx.__version__,
            "data": MODEL_FILE,
            "providers": providers,
            "onnx_session_options": session_options,
            "code": None,
        }
        return SavedFlavor(native=native, pyfunc={"data": MODEL_FILE}, loader_module=MLFLOW_LOADER)

    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        import onnx

        path = _model_file(model_dir, descriptor)
        try:
            onnx.checker.check_model(str(path))
            return onnx.load(str(path))  # with its external data, read from beside it
        except Exception as exc:
            raise ModelLoadError(f"onnx cannot load '{path}': {type(exc).__name__}: {exc}") from exc

    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> OnnxPyFunc:
        conf = descriptor.flavors.get(FLAVOR_NAME) or {}
        path = _model_file(model_dir, descriptor)
        providers = _checked_providers(conf.get("providers"), ModelLoadError)
        options = _checked_session_options(conf.get("onnx_session_options"), ModelLoadError)
        return OnnxPyFunc(_session(path, providers, options))


def _installed_runtime() -> str:
    """The installed distribution that provides the ``onnxruntime`` package (``onnxruntime-gpu`` and others
    install it too); ``onnxruntime`` when none does, for the core's pin to report."""
    from importlib import metadata

    found = metadata.packages_distributions().get("onnxruntime") or []
    return "onnxruntime" if "onnxruntime" in found or not found else found[0]


def _as_model_proto(model: Any) -> Any:
    """``model`` as an ``onnx.ModelProto``: a ModelProto, the bytes of one, or the path of a ``.onnx`` file."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray, memoryview)):
            return onnx.load_from_string(bytes(model))
        if isinstance(model, (str, os.PathLike)):
            if not Path(model).is_file():
                raise FlavorError(f"ONNX model file '{model}' does not exist")
            return onnx.load(str(model))
    except FlavorError:
        raise
    except Exception as exc:
        raise FlavorError(f"Cannot read an ONNX model from {type(model).__name__}: {type(exc).__name__}: {exc}") \
            from exc
    raise FlavorError(
        f"The onnx flavor saves an onnx.ModelProto, the bytes of one or the path of a .onnx file; "
        f"got {type(model).__name__}"
    )


def _checked_providers(value: Any, error: type[FlavorError] | type[ModelLoadError]) -> list[Any]:
    """Execution providers as MLmodel records them: names, or ``[name, options]`` pairs (YAML has no tuples).
    Absent means MLflow's default; a lone name is a list of one (as MLflow reads it)."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return list(DEFAULT_PROVIDERS)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise error(f"onnx execution providers must be a list of names or (name, options) pairs, got {value!r}")
    providers: list[Any] = []
    for entry in value:
        if isinstance(entry, str):
            providers.append(entry)
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str) \
                and isinstance(entry[1], dict):
            providers.append([entry[0], dict(entry[1])])
        else:
            raise error(f"onnx execution provider {entry!r} is neither a name nor a (name, options) pair")
    return providers


def _checked_session_options(value: Any, error: type[FlavorError] | type[ModelLoadError]) -> dict[str, Any] | None:
    """``onnx_session_options``: settable ``onnxruntime.SessionOptions`` attributes and ``extra_session_config``
    (session config entries), with the values MLflow accepts."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise error(f"onnx_session_options must be a dict, got {type(value).__name__}")
    import onnxruntime

    settable = {k for k, v in vars(onnxruntime.SessionOptions).items() if isinstance(v, property)}
    for key, option in value.items():
        if key == EXTRA_CONFIG:
            if not isinstance(option, dict) or not all(isinstance(k, str) for k in option):
                raise error(f"onnx_session_options['{EXTRA_CONFIG}'] must be a dict of config keys to values, "
                            f"got {option!r}")
        elif key not in settable:
            raise error(f"onnx_session_options key {key!r} is not an onnxruntime SessionOptions attribute; "
                        f"known: {sorted(settable | {EXTRA_CONFIG})}")
        elif key == "execution_mode" and str(option).lower() not in EXECUTION_MODES:
            raise error(f"onnx_session_options['execution_mode'] must be one of {list(EXECUTION_MODES)}, "
                        f"got {option!r}")
        elif key == "graph_optimization_level" and option not in OPTIMIZATION_LEVELS:
            raise error(f"onnx_session_options['graph_optimization_level'] must be one of "
                        f"{list(OPTIMIZATION_LEVELS)}, got {option!r}")
        elif key in THREAD_OPTIONS and (isinstance(option, bool) or not isinstance(option, int) or option < 0):
            raise error(f"onnx_session_options[{key!r}] must be a whole number >= 0, got {option!r}")
    return dict(value)


def _model_file(model_dir: Path, descriptor: ModelDescriptor) -> Path:
    conf = descriptor.flavors.get(FLAVOR_NAME) or {}
    path = model_dir / (conf.get("data") or descriptor.pyfunc.get("data") or MODEL_FILE)
    if not path.is_file():
        raise ModelLoadError(f"ONNX model file '{path}' is missing")
    return path


def _session_options(options: dict[str, Any] | None) -> Any:
    """``onnxruntime.SessionOptions`` from the recorded options; intra-op threads from OMP_NUM_THREADS when
    the options leave them to onnxruntime (whose default is a thread per physical core, in every worker)."""
    import onnxruntime

    session_options = onnxruntime.SessionOptions()
    options = dict(options or {})
    for key, value in options.items():
        if key == EXTRA_CONFIG:
            for name, entry in value.items():
                session_options.add_session_config_entry(name, str(entry))
        elif key == "execution_mode":
            parallel = str(value).lower() == "parallel"
            session_options.execution_mode = onnxruntime.ExecutionMode.ORT_PARALLEL if parallel \
                else onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        elif key == "graph_optimization_level":
            session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel(value)
        elif value is not None:
            setattr(session_options, key, value)
    if not options.get("intra_op_num_threads"):
        threads = _omp_threads()
        if threads is not None:
            session_options.intra_op_num_threads = threads
    return session_options


def _omp_threads() -> int | None:
    """OMP_NUM_THREADS as a positive whole number (its first entry, as OpenMP reads a list), or None."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _session(path: Path, providers: list[Any], options: dict[str, Any] | None) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` with the recorded providers this build has (CPU if none)."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    wanted = [tuple(p) if isinstance(p, list) else p for p in providers]
    usable = [p for p in wanted if _provider_name(p) in available] or [CPU]
    missing = [_provider_name(p) for p in wanted if _provider_name(p) not in available]
    if missing:
        # MLflow's default names CUDA first; a CPU build lacking it is the normal case, not a warning
        level = logging.INFO if set(missing) <= set(DEFAULT_PROVIDERS) else logging.WARNING
        logger.log(level, "onnxruntime here has no %s (of the model's providers %s): using %s",
                   missing, [_provider_name(p) for p in wanted], [_provider_name(p) for p in usable])
    session_options = _session_options(options)
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=session_options, providers=usable)
    except Exception as exc:
        if usable == [CPU]:
            raise ModelLoadError(f"onnxruntime cannot load '{path}': {type(exc).__name__}: {exc}") from exc
        logger.warning("onnxruntime could not start the providers %s (%s: %s); using the CPU", usable,
                       type(exc).__name__, exc)
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=session_options, providers=[CPU])
    except Exception as exc:
        raise ModelLoadError(f"onnxruntime cannot load '{path}': {type(exc).__name__}: {exc}") from exc


def _provider_name(entry: Any) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


class OnnxPyFunc(PyFuncImplementation):
    """python_function wrapper around an ``onnxruntime.InferenceSession``, predicting like MLflow's.

    The float-rows path feeds the float64 block, cast to the input's float type and C-contiguous, when the
    graph has a single float input of rank 2: the array the DataFrame path feeds (the frame's value block,
    cast the same way), without building the frame.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = [(i.name, i.type, list(i.shape)) for i in session.get_inputs()]
        if not self.inputs:
            raise ModelLoadError("The ONNX model has no inputs")
        self.output_names = [o.name for o in session.get_outputs()]
        self._input_names = [name for name, _, _ in self.inputs]
        name, kind, shape = self.inputs[0]
        self._rows_input = (name, _FLOAT_TYPES[kind]) \
            if len(self.inputs) == 1 and kind in _FLOAT_TYPES and len(shape) == 2 else None

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        import numpy as np
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            if len(self.inputs) == 1:
                feeds = {self._input_names[0]: model_input.values}
            else:
                missing = [n for n in self._input_names if n not in model_input.columns]
                if missing:
                    raise InvalidInputError(
                        f"The ONNX model's inputs {self._input_names} are fed one column each; the input has no "
                        f"column {missing} (columns: {[str(c) for c in model_input.columns]})"
                    )
                feeds = {n: _column(model_input[n]) for n in self._input_names}
            return self._frame(self._run(feeds))
        if isinstance(model_input, dict):
            unknown = [str(k) for k in model_input if k not in self._input_names]
            missing = [n for n in self._input_names if n not in model_input]
            if unknown or missing:
                raise InvalidInputError(
                    f"The ONNX model takes the inputs {self._input_names}; received {[str(k) for k in model_input]}"
                )
            return self._named(self._run({k: np.asarray(v) for k, v in model_input.items()}))
        if isinstance(model_input, np.ndarray):
            if len(self.inputs) != 1:
                raise InvalidInputError(
                    f"A single array feeds only a model with one input; this ONNX model takes {self._input_names}: "
                    "send them as a DataFrame (one column each) or as named tensors"
                )
            return self._named(self._run({self._input_names[0]: model_input}))
        raise InvalidInputError(
            "The ONNX model takes a DataFrame, a numpy array or a dict of arrays; "
            f"received {type(model_input).__name__}"
        )

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """The float64 block, cast as the DataFrame path casts the frame's values, for a single float input."""
        if self._rows_input is None:
            return self.predict(rows.to_frame(), params)
        import numpy as np

        name, dtype = self._rows_input
        return self._frame(self._run({name: np.ascontiguousarray(rows.array, dtype=dtype)}))

    def _run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run the session on ``feeds`` cast and shaped for the graph; onnxruntime's InvalidArgument (wrong
        type, rank or dimension) is the caller's mistake."""
        for name, kind, shape in self.inputs:
            feeds[name] = _fit(feeds[name], kind, shape)
        try:
            return self.session.run(self.output_names, feeds)
        except Exception as exc:
            if type(exc).__name__ == "InvalidArgument":
                raise InvalidInputError(f"The ONNX model refused the input: {_ort_message(exc)}") from exc
            raise

    def _frame(self, outputs: list[Any]) -> Any:
        """A DataFrame of each output flattened (MLflow's answer to a DataFrame); a dict of the outputs when
        their lengths differ, where MLflow fails."""
        import numpy as np
        import pandas as pd

        columns = [np.asarray(value).reshape(-1) for value in outputs]
        if len({len(c) for c in columns}) > 1:
            return self._named(outputs)
        if len({c.dtype for c in columns}) == 1 and columns[0].dtype.kind in "biuf":
            # the same frame as from a dict of columns, built as one block: 17 us instead of 24 for one row
            block = columns[0].reshape(-1, 1) if len(columns) == 1 else np.column_stack(columns)
            return pd.DataFrame(block, columns=self.output_names, copy=False)
        return pd.DataFrame.from_dict(dict(zip(self.output_names, columns, strict=True)))

    def _named(self, outputs: list[Any]) -> dict[str, Any]:
        return dict(zip(self.output_names, outputs, strict=True))


def _column(series: Any) -> Any:
    """A DataFrame column as the array MLflow feeds (``.values``); text columns of pandas' string dtype
    become the object array of str that onnxruntime takes."""
    import numpy as np

    values = series.values
    return values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)


def _fit(value: Any, kind: str, shape: list[Any]) -> np.ndarray:
    """``value`` for an input of ONNX type ``kind`` and ``shape``: numbers cast to a float input's dtype
    (float64 -> float32 as MLflow does; integers too, which onnxruntime would refuse), a one-dimensional
    column reshaped for a ``[N, 1]`` input and a one-column block for a one-dimensional input."""
    import numpy as np

    array = np.asarray(value)
    target = _FLOAT_TYPES.get(kind)
    if target is not None and array.dtype.kind in "iuf" and array.dtype != target:
        array = array.astype(target)
    if array.ndim == 1 and len(shape) == 2 and shape[1] == 1:
        array = array.reshape(-1, 1)
    elif array.ndim == 2 and array.shape[1] == 1 and len(shape) == 1:
        array = array.reshape(-1)
    return array


def _ort_message(exc: Exception) -> str:
    """onnxruntime's message without its ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefix."""
    text = str(exc)
    return text.split(" : ", 3)[-1] if text.startswith("[ONNXRuntimeError]") else text


_FLAVOR = OnnxFlavor()


def save_model(model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save an ONNX model (a ModelProto, its bytes or a ``.onnx`` path); see :func:`modelpack.save_model` for
    the options, and ``onnx_execution_providers``, ``onnx_session_options``, ``save_as_external_data``."""
    import modelpack

    return modelpack.save_model(model, path, flavor=FLAVOR_NAME, **kwargs)


def load_model(path: str | Path) -> Any:
    """Load the ``onnx.ModelProto`` saved at ``path`` (with its external data)."""
    return load_native(_FLAVOR, path)


def _load_pyfunc(data_path: str) -> PyFuncImplementation:
    """MLflow's loader hook: lets MLflow load a modelpack onnx model (given modelpack installed)."""
    return load_pyfunc_at(_FLAVOR, data_path)
