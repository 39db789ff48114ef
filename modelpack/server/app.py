"""APP: the Flask application. Routes are thin: decode -> predict -> encode."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request

from .. import __version__
from ..config import ServeConfig
from ..errors import EndpointNotFoundError, InputMismatchError, InvalidInputError, quote
from .decode import RequestDecoder
from .encode import encode_as, encode_predictions, response_type
from .errors import payload_too_large, to_response
from .observe import ROWS_KEY, row_count

JSON = "application/json"
#: ``app.extensions`` key of the app's :class:`Readiness` (gunicorn.py runs its check as each worker starts).
READINESS = "modelpack.readiness"
#: ``app.extensions`` key of the app's endpoints, by model name.
ENDPOINTS = "modelpack.endpoints"


class Endpoint:
    """One served model: its decoder (the fast path or not, decided once), readiness and metadata."""

    def __init__(self, name: str, model: Any, config: ServeConfig, source: str | None = None) -> None:
        self.name = name
        self.model = model
        self.source = source or str(model.model_dir)
        self.max_body_bytes = config.max_body_bytes
        self.decode = RequestDecoder.for_model(model, config.max_body_bytes)
        self.readiness = Readiness(model, self.decode)
        self.metadata = _metadata_body(model)

    def invoke(self) -> Response:
        """Score the current request's body with this model: decode -> predict -> encode."""
        length, limit = request.content_length, self.max_body_bytes
        if length is not None and length > limit:  # refused before reading it
            raise payload_too_large(limit)
        if length is None and len(request.get_data()) >= limit and request.environ["wsgi.input"].read(1):
            # chunked: MAX_CONTENT_LENGTH stops reading at the limit without an error; a byte more is too large
            raise payload_too_large(limit)
        answer_type = response_type(request.headers.get("Accept"))  # JSON unless Accept asks (406 before predicting)
        data, params = self.decode(request.content_type, request.get_data(cache=False))
        request.environ[ROWS_KEY] = row_count(data)  # for the metrics and the access log (observe.py)
        try:
            predictions = self.model.predict(data, params=params)
        except InvalidInputError as exc:
            # read, but not fitting the model (its signature, a flavor's own checks): INVALID_PARAMETER_VALUE,
            # MLflow's code for a failed schema enforcement; faults of the body itself (the decoder's) stay
            # BAD_REQUEST
            if type(exc) is InvalidInputError:
                raise InputMismatchError(exc.message, exc.detail, exc.columns) from exc
            raise
        return Response(encode_as(predictions, answer_type), mimetype=answer_type)

    def ready_response(self) -> Response:
        """200 once this model answered its serving example in this worker, else 503 saying why."""
        readiness = self.readiness
        if not readiness.ready:
            readiness.check()  # normally done already, as the worker started (gunicorn.py)
            if not readiness.ready:
                return Response(readiness.failure, status=503, mimetype=JSON)
        return Response(b'{"status":"ok"}', mimetype=JSON)

    def listing(self) -> dict[str, Any]:
        """This model's entry in ``GET /models``."""
        prefix = f"/models/{self.name}"
        return {"name": self.name, "source": self.source, "flavor": _flavor_name(self.model),
                "ready": self.readiness.ready, "invocations": f"{prefix}/invocations",
                "metadata": f"{prefix}/metadata", "ready_url": f"{prefix}/ready"}


def create_app(models: Any, config: ServeConfig, sources: dict[str, str] | None = None) -> Flask:
    """A Flask app scoring ``models``: one loaded :class:`~modelpack.pyfunc.PyFuncModel`, or a dict of them by
    name (each at ``/models/<name>/...``; ``/invocations`` and ``/metadata`` serve a server's only model)."""
    if not isinstance(models, dict):
        models = {config.served_models()[0].name: models}
    sources = sources or {}
    app = Flask("modelpack.server", static_folder=None)  # page.py serves static/ (its files only, with a CSP)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    version = __version__.encode()
    endpoints = {name: Endpoint(name, model, config, sources.get(name)) for name, model in models.items()}
    app.extensions[ENDPOINTS] = endpoints
    readiness = app.extensions[READINESS] = AllReady([e.readiness for e in endpoints.values()])
    only = next(iter(endpoints.values())) if len(endpoints) == 1 else None

    def endpoint(name: str) -> Endpoint:
        found = endpoints.get(name)
        if found is None:
            raise EndpointNotFoundError(f"No model named {quote(name)} on this server; it serves "
                                        f"{sorted(endpoints)} (GET /models)")
        return found

    def the_only_model() -> Endpoint:
        if only is None:
            raise EndpointNotFoundError(f"This server serves several models: use /models/<name>/invocations "
                                        f"and /models/<name>/metadata with a name of {sorted(endpoints)}")
        return only

    @app.get("/health/live", provide_automatic_options=False)
    def live() -> Response:
        # the worker answers: no model call (Kubernetes' livenessProbe: a restart cannot fix a failing model)
        return Response(b'{"status":"ok"}', mimetype=JSON)

    @app.get("/ping", provide_automatic_options=False)
    @app.get("/health", provide_automatic_options=False)
    @app.get("/health/ready", provide_automatic_options=False)  # Kubernetes' readinessProbe
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
        return Response(the_only_model().metadata, mimetype=JSON)

    if only is not None:
        app.add_url_rule("/invocations", "invocations", only.invoke, methods=["POST"],
                         provide_automatic_options=False)
    else:
        @app.post("/invocations", provide_automatic_options=False)
        def invocations() -> Response:
            return the_only_model().invoke()

    @app.get("/models", provide_automatic_options=False)
    def list_models() -> Response:
        import orjson

        return Response(orjson.dumps({"models": [e.listing() for e in endpoints.values()]}), mimetype=JSON)

    @app.post("/models/<name>/invocations", provide_automatic_options=False)
    def model_invocations(name: str) -> Response:
        return endpoint(name).invoke()

    @app.get("/models/<name>/metadata", provide_automatic_options=False)
    def model_metadata(name: str) -> Response:
        return Response(endpoint(name).metadata, mimetype=JSON)

    @app.get("/models/<name>/ready", provide_automatic_options=False)
    def model_ready(name: str) -> Response:
        return endpoint(name).ready_response()

    from .openapi import openapi_body
    from .page import add_page_routes

    # GET / (a page to try the models), /static/<file>, and /openapi.json made once here from the models' metadata
    add_page_routes(app, openapi_body([(name, e.metadata) for name, e in endpoints.items()]))

    @app.errorhandler(Exception)
    def handle_error(exc: Exception) -> Response:
        status, body = to_response(exc, request.environ)  # a 5xx's error id is the request id
        return Response(body, status=status, mimetype=JSON)

    # Werkzeug answers some errors before routing (e.g. 405 on HEAD); keep those JSON too. OPTIONS is no route
    # (provide_automatic_options=False above): Flask would answer it 200 with an empty text/html body.
    app.config["TRAP_HTTP_EXCEPTIONS"] = True
    return app


class AllReady:
    """The readiness of every model of a server: ready when each is (``/ping``, and each worker's warm-up)."""

    def __init__(self, parts: list[Readiness]) -> None:
        self.parts = parts

    @property
    def ready(self) -> bool:
        return all(part.ready for part in self.parts)

    @property
    def failure(self) -> bytes:
        return next((part.failure for part in self.parts if not part.ready), b"")

    def check(self) -> None:
        for part in self.parts:
            part.check()


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


def _flavor_name(model: Any) -> str | None:
    """The flavor a model was saved with (the first that is not python_function), for listings."""
    flavors = getattr(getattr(model, "metadata", None), "flavors", None) or {}
    return next((name for name in flavors if name != "python_function"), None)
