"""The modelpack error hierarchy.

Every error modelpack raises on purpose is a :class:`ModelpackError`. The classes
are the one table of error codes: each carries an ``error_code`` (the string clients
see in JSON error bodies), an HTTP ``status`` and a CLI ``exit_code``, the HTTP-only
routing errors included. Those mappings are *read* in exactly one place each:
``modelpack/server/errors.py`` (HTTP) and ``modelpack/cli/main.py`` (exit codes).
This module imports nothing heavy so anything may import it.

Messages quote what a client sent (a value, a column name, a key) only through :func:`quote`
and :func:`quote_names`, which cap what they show: an error must never echo a megabyte of input
back. :data:`MESSAGE_LIMIT` caps a whole message as the server sends it (the backstop).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The most characters of one quoted value (a value, a name, a key) an error message shows.
QUOTE_LIMIT = 60
#: The most names a quoted list shows (the rest are counted).
QUOTE_ITEMS = 12
#: The most characters of a whole message a client receives (longer ones are cut, saying so).
MESSAGE_LIMIT = 2000


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` (numpy scalars as their Python value), cut to ``limit`` characters when longer,
    saying how long it was: the one way an error message shows what a client sent."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        value = item()
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 3]}... ({len(text)} characters)"


def quote_names(names: Iterable[Any], limit: int = QUOTE_ITEMS) -> str:
    """A list of names (columns, keys, parameters) as ``['a', 'b', ... and 3 more]``: at most ``limit``
    names, each cut by :func:`quote`."""
    shown: list[str] = []
    count = 0
    for count, name in enumerate(names, 1):
        if count <= limit:
            shown.append(quote(name))
    more = f", ... and {count - limit} more" if count > limit else ""
    return f"[{', '.join(shown)}{more}]"


def cap_message(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` cut to ``limit`` characters (the server's backstop behind :func:`quote`)."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... (message cut: {len(message)} characters)"


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
    """The input cannot be scored: malformed body, wrong columns, wrong types.

    ``columns`` names the input columns (or tensors) at fault as the model's signature names them (an unnamed
    column by its position), when the error is about some: structured, for the server's metrics, which must
    not read it out of the message."""

    error_code = "BAD_REQUEST"
    status = 400
    exit_code = 2

    def __init__(self, message: str, detail: str = "", columns: Iterable[Any] = ()) -> None:
        super().__init__(message, detail)
        self.columns: tuple[str, ...] = tuple(str(c) for c in columns)


class MalformedRequestError(InvalidInputError):
    """The request body cannot be parsed at all (bad JSON, bad CSV, bad Parquet, broken framing).

    Its code is MLflow's for the same case, ``BAD_REQUEST``, so a client written for MLflow's scoring
    server reads it unchanged; the class stays apart for Python callers."""


class InputMismatchError(InvalidInputError):
    """The input was read but does not fit the model: its signature (a missing column, a type that cannot be
    cast, a missing value in a required column, a parameter of the wrong type) or a flavor's own input checks.

    ``INVALID_PARAMETER_VALUE`` is the code MLflow's scoring server gives a schema enforcement failure."""

    error_code = "INVALID_PARAMETER_VALUE"


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


class NotAcceptableError(ModelpackError):
    """The request's ``Accept`` names no type the server answers in, or the predictions cannot be written in the
    one it names (HTTP only)."""

    error_code = "NOT_ACCEPTABLE"
    status = 406
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


class RequestTimeoutError(InvalidInputError):
    """The client did not send its whole request in time (HTTP only: the worker's read limits)."""

    error_code = "REQUEST_TIMEOUT"
    status = 408


class HeadersTooLargeError(InvalidInputError):
    """The request line and headers are over the server's limit (HTTP only)."""

    error_code = "HEADERS_TOO_LARGE"
    status = 431


class ServerBusyError(ModelpackError):
    """The server is receiving too many large requests at once; retrying later can succeed (HTTP only)."""

    error_code = "SERVER_BUSY"
    status = 503


class PredictionTimeoutError(ModelpackError):
    """A prediction ran past the server's ``--timeout``; the worker that ran it is replaced (HTTP only)."""

    error_code = "PREDICTION_TIMEOUT"
    status = 504


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

    ``message`` names only the exception's type; its text is the ``detail``. Input reaches a model only
    after the server's checks (body format, and the model's signature when it has one), so the server tells
    the client :attr:`advice`: retrying cannot help, the model or its signature is at fault."""

    error_code = "MODEL_ERROR"
    status = 500
    exit_code = 4
    #: Added to the message a server client receives.
    advice = ("the request passed the server's input checks (the model's signature, when it has one), "
              "so sending it again fails the same way: the model or its signature needs fixing")


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
                NotAcceptableError, UnsupportedMediaTypeError, RequestTimeoutError, HeadersTooLargeError,
                ServerBusyError, PredictionTimeoutError)

__all__ = [
    "EndpointNotFoundError",
    "EnvironmentBuildError",
    "FlavorError",
    "HeadersTooLargeError",
    "InputMismatchError",
    "InvalidInputError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "NotAcceptableError",
    "ModelLoadError",
    "ModelSaveError",
    "ModelpackError",
    "PayloadTooLargeError",
    "PredictionError",
    "PredictionTimeoutError",
    "RequestTimeoutError",
    "ServerBusyError",
    "UnsupportedMediaTypeError",
    "cap_message",
    "for_http_status",
    "quote",
    "quote_names",
]
