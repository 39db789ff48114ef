"""Exception -> HTTP status + JSON body, in one place.

Clients get ``{"error_code": ..., "message": ...}``; stack traces and model error
details go to the server log only, under an error id quoted in the message.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from werkzeug.exceptions import HTTPException

from ..errors import ModelpackError

logger = logging.getLogger("modelpack.server")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def error_body(error_code: str, message: str) -> bytes:
    return orjson.dumps({"error_code": error_code, "message": message})


def to_response(exc: BaseException) -> tuple[int, bytes]:
    """The status and JSON body for any exception raised while handling a request."""
    if isinstance(exc, ModelpackError):
        if exc.status >= 500:
            logger.error("%s: %s", exc.error_code, exc.message)
        return exc.status, error_body(exc.error_code, exc.message)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        if status == 413:
            message = "Request body is larger than the server's limit (MODELPACK_MAX_BODY_BYTES)"
        else:
            message = exc.description or exc.name
        return status, error_body(_HTTP_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"), message)
    error_id = uuid.uuid4().hex[:12]
    logger.error("Model raised while predicting (error id %s)", error_id, exc_info=exc)
    message = (
        f"The model raised {type(exc).__name__} while predicting; "
        f"details are in the server log under error id {error_id}"
    )
    return 500, error_body("MODEL_ERROR", message)
