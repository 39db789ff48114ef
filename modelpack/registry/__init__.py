"""The Model Registry: named models, numbered immutable versions, and aliases (docs/tracking.md, "Registry").

``register_model`` (register.py) copies a model into the registry as the next version of a name; versions.py
reads versions, aliases.py moves aliases, models.py holds the registered models themselves. Everything is in the
tracking store (``modelpack.tracking.store``) and its artifact root.
"""

from __future__ import annotations

from .aliases import RESERVED_ALIASES, delete_alias, get_model_version_by_alias, set_alias
from .models import (
    ModelNotFoundError,
    RegisteredModel,
    get_registered_model,
    list_registered_models,
    set_registered_model_tag,
    update_registered_model,
)
from .register import register_model
from .versions import (
    ModelVersion,
    get_latest_version,
    get_model_version,
    list_model_versions,
    set_model_version_tag,
    update_model_version,
)

__all__ = [
    "RESERVED_ALIASES",
    "ModelNotFoundError",
    "ModelVersion",
    "RegisteredModel",
    "delete_alias",
    "get_latest_version",
    "get_model_version",
    "get_model_version_by_alias",
    "get_registered_model",
    "list_model_versions",
    "list_registered_models",
    "register_model",
    "set_alias",
    "set_model_version_tag",
    "set_registered_model_tag",
    "update_model_version",
    "update_registered_model",
]
