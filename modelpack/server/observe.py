"""OBSERVE: request ids, the access log, log formats and the metrics of each request, around the Flask app.

:class:`ObservedApp` is a WSGI middleware wrapping the scoring app (so it works the same under every gunicorn
worker class). For each request it

- takes the client's ``X-Request-ID`` when it is a sane token (1-200 characters of letters, digits and
  ``-_.:/+=@~``), else makes one (32 hex digits), returns it on the response and puts it in the WSGI environ
  (``modelpack.request_id``) and in a context variable that every log line written while the request is handled
  reads (:class:`PlainFormatter`, :class:`JsonFormatter`): a 500's error id *is* the request id
  (``errors.to_response``), so the client's id, the error message and the log lines all match;
- counts it in the Prometheus metrics (``metrics.py``) by model, route *template* (``/models/<name>/invocations``,
  never the raw path; unknown paths are ``other``), method and status, with its duration, the rows it scored
  (``modelpack.rows``, set by the app) and what went wrong (``modelpack.error``, set by ``to_response``: the
  schema column at fault, a model error);
- writes one access log line (``modelpack.access``) with method, path, route, status, duration, rows, model,
  client and request id;
- answers ``GET /metrics`` itself (when metrics are on).

The buffering worker answers some requests without the app (408, 413, 431, 503, 504, framing errors): it
reports those through :meth:`ObservedApp.record_answer`, so they are counted and logged the same way.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from random import getrandbits
from typing import Any

from ..config import LOG_FORMATS
from ..errors import InputMismatchError, ModelpackError
from ..float_rows import FloatRows
from .errors import ERROR_KEY, REQUEST_ID_KEY, to_response

#: WSGI environ key where the app puts the number of rows a request scored.
ROWS_KEY = "modelpack.rows"
#: A client's X-Request-ID is used when it matches this; otherwise the server makes one.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:/+=@~-]{1,200}")
#: Methods counted under their own name (any other: ``OTHER``), so a client cannot add label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Route label of a path no route of the app serves.
OTHER_ROUTE = "other"
#: Routes of a server's only model (MLflow's protocol): their requests count under that model's name.
SINGLE_MODEL_ROUTES = frozenset({"/invocations", "/metadata"})
PLAIN_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
PLAIN_FORMAT_WITH_ID = "[%(asctime)s] [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"

access_logger = logging.getLogger("modelpack.access")
_request_id: ContextVar[str | None] = ContextVar("modelpack_request_id", default=None)
_formatter: logging.Formatter | None = None
_handler: logging.Handler | None = None  # the server's stderr handler (configure_logging)
_json = False
_load_seconds: dict[str, float] = {}
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


# -- request ids ------------------------------------------------------------------------------------------------

def new_request_id() -> str:
    """A fresh request id: 128 random bits as 32 hex digits (a UUID's worth of them, at a tenth of uuid4's
    cost: ``random``'s generator, which Python reseeds in every forked child; an id is no secret)."""
    return f"{getrandbits(128):032x}"


def request_id_from(value: str | None) -> str:
    """The client's id when it is a sane token (:data:`REQUEST_ID_PATTERN`), else a new one."""
    if value is not None and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request this thread (or greenlet) is handling, if any."""
    return _request_id.get()


def set_request_id(request_id: str | None) -> Any:
    """Make ``request_id`` the current one (for log lines written outside the middleware); returns the token
    for :func:`reset_request_id`."""
    return _request_id.set(request_id)


def reset_request_id(token: Any) -> None:
    _request_id.reset(token)


def row_count(data: Any) -> int | None:
    """How many rows a decoded request holds: a frame's or array's first axis, a dict of tensors' first
    tensor's, a list's length (None when it cannot tell)."""
    if type(data) is FloatRows:
        return len(data.array)
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple):
        return int(shape[0]) if shape else 1
    rows = getattr(data, "num_rows", None)  # a pyarrow table
    if isinstance(rows, int):
        return rows
    if isinstance(data, dict):
        first = next(iter(data.values()), None)
        return row_count(first) if first is not None else 0
    if isinstance(data, list):
        return len(data)
    return None


def note_model_load(name: str, seconds: float) -> None:
    """Remember how long model ``name`` took to load (``modelpack_model_load_seconds``)."""
    _load_seconds[name] = seconds


# -- log formats -------------------------------------------------------------------------------------------------

class PlainFormatter(logging.Formatter):
    """The server's plain lines: ``[time] [pid] [LEVEL] logger: message``; a line written for a request has
    ``[request id]`` after the level, and every further line of it (a traceback) starts with ``[request id]``
    too, so that grepping for the id finds all of them."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)
        self._with_id = logging.Formatter(PLAIN_FORMAT_WITH_ID)

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if not request_id:
            return super().format(record)
        record.request_id = request_id
        text = self._with_id.format(record)
        return text.replace("\n", f"\n[{request_id}] ") if "\n" in text else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``pid``,
    ``request_id`` (for a request's lines), the access fields on access lines, ``exception`` (a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        out: dict[str, Any] = {"ts": _utc_text(record.created), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage(), "pid": record.process}
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            out["request_id"] = request_id
        access = getattr(record, "access", None)
        if access:
            out.update(access)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {list(LOG_FORMATS)}, got {log_format!r}")
    return JsonFormatter() if log_format == "json" else PlainFormatter()


def configure_logging(level: str, log_format: str = "plain") -> None:
    """Send this process's log lines (and, through :func:`gunicorn_logger_class`, gunicorn's) to stderr in
    ``log_format``. The access log writes at INFO whatever ``level`` is (``--no-access-log`` turns it off)."""
    global _formatter, _handler, _json
    _formatter = make_formatter(log_format)
    _json = log_format == "json"
    handler = _handler = logging.StreamHandler()
    handler.setFormatter(_formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    access_logger.setLevel(logging.INFO)


def gunicorn_logger_class() -> type:
    """A gunicorn ``logger_class`` whose own lines (``gunicorn.error``: booting workers, signals) take this
    process's format, request ids included."""
    from gunicorn.glogging import Logger

    class ServerLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            if _formatter is not None:
                for handler in self.error_log.handlers:
                    if getattr(handler, "_gunicorn", False):
                        handler.setFormatter(_formatter)

    return ServerLogger


def _printable(path: str, limit: int = 300) -> str:
    """A client's path as it may go into a log line: control characters escaped, cut at ``limit``."""
    if not path.isprintable():
        path = path.encode("unicode_escape", "backslashreplace").decode("ascii")
    return path if len(path) <= limit else f"{path[:limit]}..."


# -- the middleware ----------------------------------------------------------------------------------------------

class _Route:
    """What a request path counts as: its route template and model, and the metric children for them (made in
    the process that serves, on first use)."""

    __slots__ = ("route", "model", "counts", "duration", "rows", "in_flight")

    def __init__(self, route: str, model: str) -> None:
        self.route = route
        self.model = model
        self.counts: dict[tuple[str, int], Any] = {}
        self.duration: Any = None
        self.rows: Any = None
        self.in_flight: Any = None

    def bind(self, metrics: Any) -> None:
        self.duration = metrics.duration.labels(self.model, self.route)
        self.rows = metrics.rows.labels(self.model) if self.model else None  # rows are scored by a model
        self.in_flight = metrics.in_flight.labels(self.model)


class ObservedApp:
    """The WSGI middleware (see the module docstring). Other attributes are the wrapped app's (``extensions``,
    ``config``), so code that expects the Flask app keeps working."""

    def __init__(self, app: Any, metrics: Any = None, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.endpoints: dict[str, Any] = dict(getattr(app, "extensions", {}).get("modelpack.endpoints") or {})
        self._routes = self._route_table()
        self._other = _Route(OTHER_ROUTE, "")
        self._announced = False

    def __getattr__(self, name: str) -> Any:
        try:
            app = self.__dict__["app"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(app, name)

    def _route_table(self) -> dict[str, _Route]:
        """Every path the app serves without a variable part, or with a model's name in it, to its _Route."""
        table: dict[str, _Route] = {}
        names = list(self.endpoints)
        only = names[0] if len(names) == 1 else ""
        url_map = getattr(self.app, "url_map", None)
        for rule in url_map.iter_rules() if url_map is not None else ():
            template = rule.rule
            arguments = set(rule.arguments)
            if not arguments:
                table[template] = _Route(template, only if template in SINGLE_MODEL_ROUTES else "")
            elif arguments == {"name"}:
                for name in names:
                    table[re.sub(r"<(?:[^<>:]+:)?name>", name, template)] = _Route(template, name)
        if self.metrics is not None:
            table["/metrics"] = _Route("/metrics", "")
        return table

    def _resolve(self, path: str, method: str) -> _Route:
        """The _Route of a path not in the table: a rule with other variables (or an unknown model's name: no
        label for it), else ``other``. Not cached: such paths are the client's to vary."""
        url_map = getattr(self.app, "url_map", None)
        if url_map is None:
            return self._other
        from werkzeug.exceptions import MethodNotAllowed

        adapter = url_map.bind("localhost")
        for attempt in (method, "GET", "POST"):
            try:
                rule, _ = adapter.match(path, attempt, return_rule=True)
            except MethodNotAllowed:
                continue
            except Exception:  # not found, a redirect (a missing slash): no route of ours
                return self._other
            return _Route(rule.rule, "")
        return self._other

    def route_of(self, path: str, method: str) -> _Route:
        return self._routes.get(path) or self._resolve(path, method)

    def announce(self) -> None:
        """Write this process's model info and load times (live gauges: they go when the process does). Run as
        each worker starts (gunicorn.py), or on its first request."""
        self._announced = True
        if self.metrics is None:
            return
        self.metrics.store.check()
        with self.metrics.store.lock:
            for name, endpoint in self.endpoints.items():
                self.metrics.info.labels(*model_info(name, endpoint)).set(1)
                if name in _load_seconds:
                    self.metrics.load_seconds.labels(name).set(_load_seconds[name])

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        if not self._announced:
            self.announce()
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if request_id is None or REQUEST_ID_PATTERN.fullmatch(request_id) is None:
            request_id = f"{getrandbits(128):032x}"
        environ[REQUEST_ID_KEY] = request_id
        token = _request_id.set(request_id)
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        route = self._routes.get(path) or self._resolve(path, method)
        metrics = self.metrics
        if metrics is not None:
            store = metrics.store
            if store.stale:
                store.check()  # the first request after fork: this process's own files
            with store.lock:  # gthread: several requests at once; a sample's first use appends it to a file
                if route.in_flight is None:
                    route.bind(metrics)
                route.in_flight.inc()
        status = "500"

        def respond(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = status_line
            headers.append(("X-Request-ID", request_id))
            return start_response(status_line, headers, exc_info)

        try:
            if metrics is not None and path == "/metrics" and method in ("GET", "HEAD"):
                body = metrics.wsgi_app()(environ, respond)
            else:
                body = self.app(environ, respond)
        except Exception as exc:  # the Flask app answers its own errors: this is a bug of ours, say so as JSON
            code, payload = to_response(exc, environ)
            respond(f"{code} Internal Server Error", [("Content-Type", "application/json"),
                                                      ("Content-Length", str(len(payload)))], sys.exc_info())
            body = [payload]
        finally:
            if metrics is not None:
                with store.lock:
                    route.in_flight.inc(-1.0)
            _request_id.reset(token)
        self._record(route, method, path, int(status[:3]), time.perf_counter() - started, request_id,
                     environ.get(ROWS_KEY), environ.get(ERROR_KEY), environ.get("REMOTE_ADDR"))
        return body

    def record_answer(self, method: str, path: str, status: int, seconds: float, request_id: str,
                      error: ModelpackError | None = None, client: str | None = None) -> None:
        """Count and log an answer the worker wrote itself (the app did not answer it)."""
        if not self._announced:
            self.announce()
        route = self.route_of(path, method) if path else self._other
        if self.metrics is not None:
            self.metrics.store.check()
            with self.metrics.store.lock:
                if route.in_flight is None:
                    route.bind(self.metrics)
        self._record(route, method, path, status, seconds, request_id, None, error, client)

    def _record(self, route: _Route, method: str, path: str, status: int, seconds: float, request_id: str,
                rows: int | None, error: ModelpackError | None, client: str | None) -> None:
        metrics = self.metrics
        if metrics is not None:
            label = method if method in METHODS else "OTHER"  # a client's made-up method adds no series
            with metrics.store.lock:
                counter = route.counts.get((label, status))
                if counter is None:
                    counter = route.counts[(label, status)] = metrics.requests.labels(
                        route.model, route.route, label, str(status))
                counter.inc()
                route.duration.observe(seconds)
                if rows is not None and route.rows is not None:
                    route.rows.observe(rows)
                if error is not None:
                    _count_error(metrics, route.model, error)
        if self.access_log:
            if method not in METHODS:
                method = _printable(method, 20) if method else "-"
            _log_access(method, path, route, status, seconds, rows, request_id, client)


def _count_error(metrics: Any, model: str, error: ModelpackError) -> None:
    if isinstance(error, InputMismatchError):
        for column in error.columns or ("",):
            metrics.schema_rejections.labels(model, column).inc()
    elif error.error_code in ("MODEL_ERROR", "PREDICTION_TIMEOUT"):
        metrics.model_errors.labels(model, error.error_code).inc()


def _log_access(method: str, path: str, route: _Route, status: int, seconds: float, rows: int | None,
                request_id: str, client: str | None) -> None:
    """One access line. With the server's own logging set up (the usual case) the line is formatted here and
    written straight to its handler's file descriptor, under the handler's lock: the same line as through
    ``logging`` at a third of the cost (no record object, no caller lookup, the time text made once a second,
    one ``write``). Should anything have added handlers, it goes through ``logging`` like any other line."""
    if len(path) > 300 or not path.isprintable():
        path = _printable(path)
    millis = seconds * 1000
    shown_rows = "-" if rows is None else rows
    model = route.model
    handler = _handler
    root_handlers = logging.root.handlers
    if (handler is None or access_logger.handlers or len(root_handlers) != 1 or root_handlers[0] is not handler
            or access_logger.disabled):
        if access_logger.isEnabledFor(logging.INFO):
            record = logging.LogRecord(
                "modelpack.access", logging.INFO, __file__, 0, _ACCESS_MESSAGE,
                (method, path, status, millis, shown_rows, model or "-", route.route, client or "-"), None)
            record.request_id = request_id
            record.access = {"method": method, "path": path, "route": route.route, "status": status,
                             "duration_ms": round(millis, 3), "rows": rows, "model": model or None,
                             "client": client}
            access_logger.handle(record)
        return
    if not access_logger.isEnabledFor(logging.INFO):
        return
    now = time.time()
    if _json:
        import orjson

        data = orjson.dumps({
            "ts": _utc_text(now), "level": "INFO", "logger": "modelpack.access",
            "message": _ACCESS_MESSAGE % (method, path, status, millis, shown_rows, model or "-", route.route,
                                          client or "-"),
            "pid": _pid, "request_id": request_id, "method": method, "path": path, "route": route.route,
            "status": status, "duration_ms": round(millis, 3), "rows": rows, "model": model or None,
            "client": client,
        }, option=orjson.OPT_APPEND_NEWLINE)
    else:
        second = int(now)
        if second != _local_second[0]:
            _local_second[:] = [second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))]
        data = (f"[{_local_second[1]},{int((now - second) * 1000):03d}] [{_pid}] [INFO] [{request_id}] "
                f"modelpack.access: {method} {path} {status} {millis:.3f}ms rows={shown_rows} "
                f"model={model or '-'} route={route.route} client={client or '-'}\n").encode()
    with handler.lock:  # type: ignore[union-attr]
        try:
            fd = handler.stream.fileno()  # type: ignore[attr-defined]
            while data:
                data = data[os.write(fd, data):]
        except (AttributeError, OSError, ValueError):  # no descriptor (a test's capture), or a closed one
            try:
                handler.stream.write(data.decode())  # type: ignore[attr-defined]
                handler.stream.flush()  # type: ignore[attr-defined]
            except Exception:
                handler.handleError(logging.makeLogRecord({"msg": data}))


_ACCESS_MESSAGE = "%s %s %d %.3fms rows=%s model=%s route=%s client=%s"
_local_second: list[Any] = [None, ""]  # the second and its text as logging's asctime shows it (local time)
_utc_second: list[Any] = [None, ""]


def _utc_text(now: float) -> str:
    """``now`` as the JSON lines' ``ts``: UTC, ISO 8601, milliseconds."""
    second = int(now)
    if second != _utc_second[0]:
        _utc_second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_utc_second[1]}.{int((now - second) * 1000):03d}Z"


def model_info(name: str, endpoint: Any) -> tuple[str, ...]:
    """The ``modelpack_model_info`` label values (:data:`~modelpack.server.metrics.INFO_LABELS`) of a model."""
    from .. import __version__

    metadata = getattr(getattr(endpoint, "model", None), "metadata", None)
    flavors: dict[str, Any] = getattr(metadata, "flavors", None) or {}
    native = list(getattr(metadata, "native_flavors", None) or [])
    flavor = native[0] if native else "python_function"
    section = flavors.get(flavor) or {}
    flavor_version = next((str(v) for k, v in section.items() if k.endswith("_version") and k != "python_version"),
                          "")
    source = str(getattr(endpoint, "source", "") or "")
    version = ""
    if source.startswith("models:/"):
        rest = source[len("models:/"):]
        version = f"@{rest.split('@', 1)[1]}" if "@" in rest else rest.rpartition("/")[2]
    uuid = str(getattr(metadata, "model_uuid", "") or "")
    return name, source, version, uuid, flavor, flavor_version, __version__


def observe_app(app: Any, config: Any) -> Any:
    """``app`` wrapped in :class:`ObservedApp` as ``config`` says (``metrics``, ``access_log``)."""
    metrics = None
    if getattr(config, "metrics", True):
        from .metrics import get_metrics

        metrics = get_metrics()
    return ObservedApp(app, metrics, access_log=getattr(config, "access_log", True))


def head_info(buf: bytes | bytearray, limit: int = 65536) -> tuple[str, str, str | None]:
    """Method, path and X-Request-ID of a request's raw bytes, as far as they have arrived ("" when its
    request line has not; None when no id header has): for the answers the worker writes itself."""
    head = bytes(buf[:limit])
    line_end = head.find(b"\r\n")
    method = path = ""
    if line_end > 0:
        parts = head[:line_end].split(b" ")
        if len(parts) == 3:
            method = parts[0].decode("latin-1")
            path = parts[1].split(b"?", 1)[0].decode("latin-1")
    request_id = None
    start = head.lower().find(b"\r\nx-request-id:")
    if start >= 0:
        end = head.find(b"\r\n", start + 2)
        if end > 0:
            request_id = head[start + 15:end].strip().decode("latin-1")
    return method, path, request_id
