"""APP: the Flask application. Routes are thin: decode -> predict -> encode."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request

from .. import __version__
from ..config import ServeConfig
from ..errors import InputMismatchError, InvalidInputError
from .decode import RequestDecoder
from .encode import encode_predictions
from .errors import payload_too_large, to_response

JSON = "application/json"
#: ``app.extensions`` key of the app's :class:`Readiness` (gunicorn.py runs its check as each worker starts).
READINESS = "modelpack.readiness"


def create_app(model: Any, config: ServeConfig) -> Flask:
    """A Flask app scoring ``model`` (a loaded :class:`~modelpack.pyfunc.PyFuncModel`)."""
    app = Flask("modelpack.server")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    version = __version__.encode()
    metadata = _metadata_body(model)
    decode = RequestDecoder.for_model(model, config.max_body_bytes)  # the fast path or not, decided once
    readiness = app.extensions[READINESS] = Readiness(model, decode)

    @app.get("/ping", provide_automatic_options=False)
    @app.get("/health", provide_automatic_options=False)
    def ping() -> Response:
        if not readiness.ready:
            readiness.check()  # normally done already, as the worker started (gunicorn.py)
            if not readiness.ready:
                return Response(readiness.failure, status=503, mimetype=JSON)
        return Response(b'{"status":"ok"}', mimetype=JSON)

    @app.get("/version", provide_automatic_options=False)
    def get_version() -> Response:
        # the bare version, as MLflow's scoring server answers (its client returns the text as is)
        return Response(version, mimetype="text/plain")

    @app.get("/metadata", provide_automatic_options=False)
    def get_metadata() -> Response:
        return Response(metadata, mimetype=JSON)

    @app.post("/invocations", provide_automatic_options=False)
    def invocations() -> Response:
        length, limit = request.content_length, config.max_body_bytes
        if length is not None and length > limit:  # refused before reading it
            raise payload_too_large(limit)
        if length is None and len(request.get_data()) >= limit and request.environ["wsgi.input"].read(1):
            # chunked: MAX_CONTENT_LENGTH stops reading at the limit without an error; a byte more is too large
            raise payload_too_large(limit)
        data, params = decode(request.content_type, request.get_data(cache=False))
        try:
            predictions = model.predict(data, params=params)
        except InvalidInputError as exc:
            # read, but not fitting the model (its signature, a flavor's own checks): INVALID_PARAMETER_VALUE,
            # MLflow's code for a failed schema enforcement; faults of the body itself (the decoder's) stay
            # BAD_REQUEST
            if type(exc) is InvalidInputError:
                raise InputMismatchError(exc.message, exc.detail) from exc
            raise
        return Response(encode_predictions(predictions), mimetype=JSON)

    @app.errorhandler(Exception)
    def handle_error(exc: Exception) -> Response:
        status, body = to_response(exc)
        return Response(body, status=status, mimetype=JSON)

    # Werkzeug answers some errors before routing (e.g. 405 on HEAD); keep those JSON too. OPTIONS is no route
    # (provide_automatic_options=False above): Flask would answer it 200 with an empty text/html body.
    app.config["TRAP_HTTP_EXCEPTIONS"] = True
    return app


class Readiness:
    """Whether this process's model answers: ``ready`` once it has scored the model's saved serving example
    (``serving_input_example.json``) through the request path here, after fork; a model saved without an
    example, or with one that is no valid request (a 4xx), is ready once loaded. Until then /ping answers 503
    and retries the example each time."""

    def __init__(self, model: Any, decode: RequestDecoder) -> None:
        self.model = model
        self.decode = decode
        self.example = _serving_example(model)
        self.ready = self.example is None
        self.failure = b""

    def check(self) -> None:
        """Score the example once (on the calling thread: the one that serves requests); set ``ready``."""
        if self.ready or self.example is None:
            return
        from .errors import as_modelpack_error, error_body

        try:
            data, params = self.decode(JSON, self.example)
            encode_predictions(self.model.predict(data, params=params))
        except Exception as exc:
            error = as_modelpack_error(exc)
            if error.status < 500:  # the example does not fit the request path: it cannot tell, so do not block
                logging.getLogger("modelpack.server").warning(
                    "The model's serving example is not a valid request (%s); ready without checking it", error
                )
                self.ready = True
                return
            logging.getLogger("modelpack.server").error(
                "Not ready: the model's serving example failed: %s", error, exc_info=error.__cause__ or error
            )
            self.failure = error_body(
                "MODEL_NOT_READY", f"The model failed on its serving example: {error.error_code}: {error.message}"
            )
            return
        self.ready = True


def _serving_example(model: Any) -> bytes | None:
    """The body of the model's ``serving_input_example.json``, or None (no example, or not readable)."""
    info = getattr(getattr(model, "metadata", None), "saved_input_example_info", None) or {}
    name = info.get("serving_input_path")
    if not name:
        return None
    try:
        return (model.model_dir / name).read_bytes()
    except OSError:
        return None


def _metadata_body(model: Any) -> bytes:
    """What a client needs to build a request: flavor, signature, example, versions (computed once)."""
    import platform

    import orjson

    from ..summary import describe

    summary = describe(model.model_dir, model.metadata, files=False)
    summary.pop("path")
    summary["server"] = {"modelpack_version": __version__, "python_version": platform.python_version()}
    return orjson.dumps(summary)
