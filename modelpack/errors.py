"""The modelpack error hierarchy.

Every error modelpack raises on purpose is a :class:`ModelpackError`. Each class
carries an ``error_code`` (the string clients see in JSON error bodies), an HTTP
``status`` and a CLI ``exit_code``. Those two mappings are *read* in exactly one
place each: ``modelpack/server/errors.py`` (HTTP) and ``modelpack/cli/main.py``
(exit codes). This module imports nothing heavy so anything may import it.
"""

from __future__ import annotations


class ModelpackError(Exception):
    """Base class of every error modelpack raises on purpose."""

    error_code = "INTERNAL_ERROR"
    status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(ModelpackError):
    """The input cannot be scored: malformed body, wrong columns, wrong types."""

    error_code = "BAD_REQUEST"
    status = 400
    exit_code = 2


class MalformedRequestError(InvalidInputError):
    """The request body cannot be parsed at all (bad JSON, bad CSV)."""

    error_code = "MALFORMED_REQUEST"


class UnsupportedMediaTypeError(ModelpackError):
    """The request's content type is not one the server decodes."""

    error_code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    exit_code = 2


class PayloadTooLargeError(ModelpackError):
    """The request body is over the configured limit."""

    error_code = "PAYLOAD_TOO_LARGE"
    status = 413
    exit_code = 2


class ModelLoadError(ModelpackError):
    """A model directory is missing, unreadable or names an unknown flavor."""

    error_code = "MODEL_LOAD_ERROR"
    status = 500
    exit_code = 3


class ModelSaveError(ModelpackError):
    """A model could not be saved (nothing is left on disk when this is raised)."""

    error_code = "MODEL_SAVE_ERROR"
    exit_code = 3


class FlavorError(ModelpackError):
    """A flavor plugin is broken, unknown, or cannot handle the given model."""

    error_code = "FLAVOR_ERROR"
    exit_code = 3


class PredictionError(ModelpackError):
    """The model itself raised while predicting."""

    error_code = "MODEL_ERROR"
    status = 500
    exit_code = 4


class EnvironmentBuildError(ModelpackError):
    """A model environment could not be created (install failed, no interpreter)."""

    error_code = "ENVIRONMENT_ERROR"
    exit_code = 5


__all__ = [
    "EnvironmentBuildError",
    "FlavorError",
    "InvalidInputError",
    "MalformedRequestError",
    "ModelLoadError",
    "ModelSaveError",
    "ModelpackError",
    "PayloadTooLargeError",
    "PredictionError",
    "UnsupportedMediaTypeError",
]
