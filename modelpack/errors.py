"""The modelpack error hierarchy.

Every error modelpack raises on purpose is a :class:`ModelpackError`. The classes
are the one table of error codes: each carries an ``error_code`` (the string clients
see in JSON error bodies), an HTTP ``status`` and a CLI ``exit_code``, the HTTP-only
routing errors included. Those mappings are *read* in exactly one place each:
``modelpack/server/errors.py`` (HTTP) and ``modelpack/cli/main.py`` (exit codes).
This module imports nothing heavy so anything may import it.
"""

from __future__ import annotations


class ModelpackError(Exception):
    """Base class of every error modelpack raises on purpose (raised as such: a bug in modelpack).

    ``message`` may be shown to HTTP clients; ``detail`` (e.g. the text of a model's own
    exception, which may quote input values) is for the CLI, the Python caller and the server
    log only. ``str(error)`` holds both.
    """

    error_code = "INTERNAL_ERROR"
    status = 500
    exit_code = 1

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(f"{message}: {detail}" if detail else message)
        self.message = message
        self.detail = detail


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


class EndpointNotFoundError(ModelpackError):
    """No route answers the requested path (HTTP only)."""

    error_code = "ENDPOINT_NOT_FOUND"
    status = 404
    exit_code = 2


class MethodNotAllowedError(ModelpackError):
    """The route exists but not for this HTTP method (HTTP only)."""

    error_code = "METHOD_NOT_ALLOWED"
    status = 405
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
    """The model itself raised while predicting (raised ``from`` the model's exception).

    ``message`` names only the exception's type; its text is the ``detail``."""

    error_code = "MODEL_ERROR"
    status = 500
    exit_code = 4


class EnvironmentBuildError(ModelpackError):
    """A model environment could not be created (install failed, no interpreter)."""

    error_code = "ENVIRONMENT_ERROR"
    exit_code = 5


def for_http_status(status: int, message: str) -> ModelpackError:
    """The error of this table for an HTTP error status raised outside modelpack's code
    (werkzeug's routing and body limit); an unknown status keeps its number."""
    for cls in _HTTP_ERRORS:
        if cls.status == status:
            return cls(message)
    error = InvalidInputError(message) if status < 500 else ModelpackError(message)
    error.status = status
    return error


#: The classes whose ``status`` stands for that HTTP status when werkzeug raised it.
_HTTP_ERRORS = (InvalidInputError, EndpointNotFoundError, MethodNotAllowedError, PayloadTooLargeError,
                UnsupportedMediaTypeError)

__all__ = [
    "EndpointNotFoundError",
    "EnvironmentBuildError",
    "FlavorError",
    "InvalidInputError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "ModelLoadError",
    "ModelSaveError",
    "ModelpackError",
    "PayloadTooLargeError",
    "PredictionError",
    "UnsupportedMediaTypeError",
    "for_http_status",
]
