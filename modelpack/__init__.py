"""modelpack: package trained models into self-describing directories and serve them.

The public API is the names in ``__all__``; they are imported lazily so that
``import modelpack`` stays light (no pandas, Flask, gunicorn or model library).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "save_model": "modelpack.save",
    "load_model": "modelpack.pyfunc",
    "PyFuncModel": "modelpack.pyfunc",
    "PythonModel": "modelpack.python_model",
    "PythonModelContext": "modelpack.python_model",
    "ModelDescriptor": "modelpack.descriptor",
    "infer_signature": "modelpack.signature_inference",
    "ModelSignature": "modelpack.signature",
    "get_model_dependencies": "modelpack.env.spec",
    "ModelpackError": "modelpack.errors",
    # tracking (docs/tracking.md)
    **{name: "modelpack.tracking.fluent" for name in (
        "set_tracking_uri", "get_tracking_uri", "set_experiment", "start_run", "end_run", "active_run",
        "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "log_artifact",
        "log_artifacts", "log_model", "search_runs", "get_run")},
    # model registry
    **{name: "modelpack.registry" for name in ("register_model", "set_alias", "delete_alias", "get_model_version")},
    # autolog (docs/autolog.md)
    "autolog": "modelpack.autolog",
    # Spark (docs/spark.md); pyspark is imported only when it is called
    "spark_udf": "modelpack.spark",
}

#: Public names that are modules, imported on first use: ``modelpack.sklearn.autolog()`` and the others.
_LAZY_MODULES = {
    "sklearn": "modelpack.autolog.sklearn",
    "xgboost": "modelpack.autolog.xgboost",
    "lightgbm": "modelpack.autolog.lightgbm",
    "projects": "modelpack.projects",  # modelpack.projects.run(...) (docs/projects.md)
}

__all__ = [
    *(name for name, module in _LAZY.items() if module.startswith(("modelpack.tracking", "modelpack.registry"))),
    "ModelDescriptor",
    "ModelSignature",
    "ModelpackError",
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "__version__",
    "autolog",
    "get_model_dependencies",
    "infer_signature",
    "lightgbm",
    "load_model",
    "projects",
    "save_model",
    "sklearn",
    "spark_udf",
    "xgboost",
]

if TYPE_CHECKING:
    from . import projects as projects
    from .autolog import autolog
    from .autolog import lightgbm as lightgbm
    from .autolog import sklearn as sklearn
    from .autolog import xgboost as xgboost
    from .descriptor import ModelDescriptor
    from .errors import ModelpackError
    from .pyfunc import PyFuncModel, load_model
    from .python_model import PythonModel, PythonModelContext
    from .save import save_model
    from .signature import ModelSignature
    from .signature_inference import infer_signature
    from .spark import spark_udf


def __getattr__(name: str) -> Any:
    submodule = _LAZY_MODULES.get(name)
    if submodule is not None:
        loaded = importlib.import_module(submodule)
        globals()[name] = loaded
        if submodule.startswith("modelpack.autolog."):
            package = importlib.import_module("modelpack.autolog")
            if globals().get("autolog") is package:  # importing the package named it here: the function it is
                globals()["autolog"] = package.autolog
        return loaded
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelpack' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
