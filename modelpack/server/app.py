"""APP: the Flask application. Routes are thin: decode -> predict -> encode."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from .. import __version__
from ..config import ServeConfig
from .decode import RequestDecoder
from .encode import encode_predictions
from .errors import payload_too_large, to_response

JSON = "application/json"


def create_app(model: Any, config: ServeConfig) -> Flask:
    """A Flask app scoring ``model`` (a loaded :class:`~modelpack.pyfunc.PyFuncModel`)."""
    app = Flask("modelpack.server")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    version = b'{"version":"%s"}' % __version__.encode()
    metadata = _metadata_body(model)
    decode = RequestDecoder.for_model(model)  # the fast path or not, decided once

    @app.get("/ping")
    @app.get("/health")
    def ping() -> Response:
        return Response(b'{"status":"ok"}', mimetype=JSON)

    @app.get("/version")
    def get_version() -> Response:
        return Response(version, mimetype=JSON)

    @app.get("/metadata")
    def get_metadata() -> Response:
        return Response(metadata, mimetype=JSON)

    @app.post("/invocations")
    def invocations() -> Response:
        length, limit = request.content_length, config.max_body_bytes
        if length is not None and length > limit:  # refused before reading it
            raise payload_too_large(limit)
        if length is None and len(request.get_data()) >= limit and request.environ["wsgi.input"].read(1):
            # chunked: MAX_CONTENT_LENGTH stops reading at the limit without an error; a byte more is too large
            raise payload_too_large(limit)
        data, params = decode(request.mimetype, request.get_data(cache=False))
        predictions = model.predict(data, params=params)
        return Response(encode_predictions(predictions), mimetype=JSON)

    @app.errorhandler(Exception)
    def handle_error(exc: Exception) -> Response:
        status, body = to_response(exc)
        return Response(body, status=status, mimetype=JSON)

    # Werkzeug answers some errors before routing (e.g. 405 on HEAD); keep those JSON too.
    app.config["TRAP_HTTP_EXCEPTIONS"] = True
    return app


def _metadata_body(model: Any) -> bytes:
    """What a client needs to build a request: flavor, signature, example, versions (computed once)."""
    import platform

    import orjson

    from ..summary import describe

    summary = describe(model.model_dir, model.metadata, files=False)
    summary.pop("path")
    summary["server"] = {"modelpack_version": __version__, "python_version": platform.python_version()}
    return orjson.dumps(summary)
