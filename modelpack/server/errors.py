"""Exception -> HTTP status + JSON body, in one place.

Statuses and error codes are the error classes' own (``modelpack/errors.py``, the one table);
werkzeug's errors (unknown route, wrong method, the MAX_CONTENT_LENGTH backstop) and gunicorn's
errors reading a request body (a bad chunk size, a body cut short) become those classes here.
Clients get ``{"error_code": ..., "message": ...}``. A 5xx message ends with an error id, which is
the request's id (``X-Request-ID``, see observe.py) when there is one; the traceback and the error's
``detail`` (a model's own exception text) go to the server log only, on lines carrying that id; a
``MODEL_ERROR`` message also says that retrying cannot help
(:attr:`~modelpack.errors.PredictionError.advice`). An exception that is no ModelpackError is a
bug in modelpack: 500 ``INTERNAL_ERROR``, its type and an id, never a trace. Messages quote client
input only through ``modelpack.errors.quote``; :func:`error_body` caps every message as a backstop.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..errors import (
    MESSAGE_LIMIT,
    MalformedRequestError,
    ModelpackError,
    PayloadTooLargeError,
    PredictionError,
    cap_message,
    for_http_status,
)

logger = logging.getLogger("modelpack.server")

#: WSGI environ key of the request's id (set by observe.py's middleware).
REQUEST_ID_KEY = "modelpack.request_id"
#: WSGI environ key where :func:`to_response` leaves the :class:`ModelpackError` it answered (for the metrics).
ERROR_KEY = "modelpack.error"


def error_body(error_code: str, message: str) -> bytes:
    """The JSON error body; ``message`` is cut at ``MESSAGE_LIMIT`` characters (see modelpack/errors.py)."""
    message = cap_message(message)
    try:
        return orjson.dumps({"error_code": error_code, "message": message})
    except TypeError:  # a lone surrogate (no UTF-8 for it) from a body Python's json read: escape it
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        return orjson.dumps({"error_code": error_code, "message": message})


def payload_too_large(limit: int | None) -> PayloadTooLargeError:
    """The 413 error, for a body over ``limit`` bytes (None: werkzeug's MAX_CONTENT_LENGTH refused it)."""
    where = f" of {limit} bytes" if limit is not None else ""
    return PayloadTooLargeError(f"Request body is larger than the server's limit{where} (MODELPACK_MAX_BODY_BYTES)")


def to_response(exc: BaseException, environ: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """The status and JSON body for any exception raised while handling a request; with the request's WSGI
    ``environ``, a 5xx's error id is the request's id, and the error is left in it (:data:`ERROR_KEY`)."""
    error = as_modelpack_error(exc)
    if environ is not None:
        environ[ERROR_KEY] = error
    if error.status < 500:
        return error.status, error_body(error.error_code, error.message)
    error_id = (environ or {}).get(REQUEST_ID_KEY) or os.urandom(16).hex()
    logger.error("%s (error id %s): %s", error.error_code, error_id, error, exc_info=error.__cause__ or error)
    advice = f"; {error.advice}" if isinstance(error, PredictionError) else ""
    message = cap_message(error.message, MESSAGE_LIMIT // 2)  # the id must stay at the end, uncut
    message = f"{message}{advice}; details are in the server log under error id {error_id}"
    return error.status, error_body(error.error_code, message)


def as_modelpack_error(exc: BaseException) -> ModelpackError:
    """``exc`` as an error of modelpack's table (with ``exc`` as its ``__cause__`` when converted)."""
    if isinstance(exc, ModelpackError):
        return exc
    error: ModelpackError
    if isinstance(exc, RequestEntityTooLarge):  # MAX_CONTENT_LENGTH: the backstop behind the view's checks
        error = payload_too_large(None)
    elif type(exc).__module__.startswith("gunicorn.http"):  # the body read: bad chunk size, cut short...
        reason = cap_message(str(exc), 200)
        error = MalformedRequestError(f"Request body cannot be read: {type(exc).__name__}: {reason}")
    elif isinstance(exc, HTTPException):
        error = for_http_status(exc.code or 500, exc.description or exc.name)
    else:
        error = ModelpackError(f"modelpack raised {type(exc).__name__} while handling the request")
    error.__cause__ = exc
    return error
