"""AUTOLOG: log training without logging code (docs/autolog.md).

``modelpack.autolog()`` enables every integration whose library is installed; ``modelpack.sklearn.autolog()``,
``modelpack.xgboost.autolog()`` and ``modelpack.lightgbm.autolog()`` enable one, with its own options.

Layout: ``patching.py`` is the one patch/unpatch mechanism (safe wrappers, nested calls, import watching),
``common.py`` what the integrations log with (the run, params, metrics, artifacts, the model), and
``sklearn.py``, ``xgboost.py``, ``lightgbm.py`` the integrations. Nothing here imports a model library: each
integration patches its library when that library is imported.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Mapping
from typing import Any

from .common import AutologError

#: The integrations, by the module that must be installed for each.
INTEGRATIONS = ("sklearn", "xgboost", "lightgbm")


def autolog(disable: bool = False, log_models: bool = True, log_input_examples: bool = True,
            log_post_training_metrics: bool = True, extra_tags: Mapping[str, Any] | None = None) -> None:
    """Enable (or with ``disable=True`` disable) autolog for every supported library that is installed:
    scikit-learn, XGBoost, LightGBM. Each is patched when it is imported, so this imports none of them.

    The options are the integrations' common ones (``modelpack.sklearn.autolog``); use an integration's own
    ``autolog`` for the rest (``importance_types``, ``registered_model_name``, ...).
    """
    from . import lightgbm, sklearn, xgboost

    for name, integration in (("sklearn", sklearn), ("xgboost", xgboost), ("lightgbm", lightgbm)):
        if disable:
            integration.autolog(disable=True)
        elif importlib.util.find_spec(name) is not None:
            integration.autolog(log_models=log_models, log_input_examples=log_input_examples,
                                log_post_training_metrics=log_post_training_metrics, extra_tags=extra_tags)


class _CallableModule(types.ModuleType):
    """Importing ``modelpack.autolog.sklearn`` makes ``modelpack.autolog`` name this package rather than the
    function: calling the package calls the function, so ``modelpack.autolog()`` works either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        autolog(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["INTEGRATIONS", "AutologError", "autolog"]
