"""WORKER: a gunicorn worker that receives whole requests without blocking, then scores them one at a time.

gunicorn's sync worker reads each request from its socket in blocking calls before doing anything else, so one
client that sends its headers or body slowly - or opens a connection and sends nothing - holds the whole worker
until the timeout kills it. This worker runs one ``selectors`` loop instead: it accepts connections, receives
bytes from every connection as they arrive, and only when :func:`~modelpack.server.framing.request_end` says a
whole request is buffered does it parse it (gunicorn's own parser) and run the app on the worker's main thread.
Responses are written without blocking too, so a client that does not read its answer holds only its buffer.

What it keeps from the sync worker: the model runs on one thread per worker (the thread that scored the serving
example at start-up, which matters for OpenMP pools; see ``warm_up`` in gunicorn.py), no monkey-patching and no
extra dependency; gunicorn's parser, WSGI environ, access log, hooks, ``max_requests`` and signals. What it adds:
keep-alive (a client reuses its connection: no connect/close per request) and limits per connection:

- a connection that sends nothing is closed after the keep-alive time (``keepalive``, 5 s);
- a request's line and headers must arrive within :data:`HEADER_TIMEOUT` of its first byte, and its body may not
  pause longer than :data:`BODY_IDLE_TIMEOUT`; otherwise 408;
- framing errors are answered at once (400, 413 from ``Content-Length`` or chunk sizes before the body arrives,
  431), as JSON like every other error; so are the parser's errors (bad request line, bad headers);
- the bytes buffered for unfinished requests are capped (:data:`BUFFER_BUDGET_FACTOR` x the body limit): past
  it, the connection holding the most gets 503 and is closed.

While the model predicts, the loop waits (like the sync worker): a request that takes seconds delays the
others on this worker, and gunicorn's timeout still applies to it.
"""

from __future__ import annotations

import errno
import io
import math
import os
import selectors
import signal
import socket
import time
from collections.abc import Iterable
from typing import Any

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.base import Worker

from ..config import DEFAULT_MAX_BODY_BYTES
from ..errors import ModelpackError
from .balance import MAX_YIELDS, YIELD_SECONDS
from .errors import REQUEST_ID_KEY
from .framing import FramingError, request_end
from .observe import head_info, request_id_from, reset_request_id, set_request_id

HEADER_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its headers
BODY_IDLE_TIMEOUT = 10.0  # longest pause while a body arrives
BUFFER_BUDGET_FACTOR = 2  # unfinished requests of one worker may buffer this many times the body limit
RECV_BYTES = 256 * 1024
ACCEPT_BATCH = 16  # connections accepted per wake-up (the other workers get the rest)
DRAIN_IDLE_GRACE = 1.0  # seconds an idle keep-alive connection still gets once the worker is told to stop
LINGER_SECONDS = 2.0  # how long a closing connection's remaining request bytes are read and dropped
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Payload Too Large", 414: "URI Too Long",
            417: "Expectation Failed", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable"}


class _RequestTimedOut(BaseException):
    """Raised by SIGALRM in a request that runs too long; a BaseException, so that no ``except Exception`` on
    the way (the model's wrapper, Flask's error handler) turns it into an ordinary error."""


def _raise_timeout(signum: int, frame: Any) -> None:
    raise _RequestTimedOut


class _Connection:
    """One client connection: what it has sent and not yet been answered, and what is still to send."""

    __slots__ = ("sock", "addr", "server", "inbuf", "outbuf", "deadline", "started", "close_after_write",
                 "continued", "events", "draining")

    def __init__(self, sock: socket.socket, addr: Any, server: Any, deadline: float) -> None:
        self.sock = sock
        self.addr = addr
        self.server = server
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.deadline = deadline  # when waiting for this connection stops
        self.started = 0.0  # first byte of the request being received (0: between requests)
        self.close_after_write = False
        self.continued = False  # "100 Continue" sent for the request being received
        self.events = selectors.EVENT_READ
        self.draining = False  # answered and half-closed: what the client still sends is read and dropped


class _BufferedSocket:
    """The socket gunicorn's parser and response see for one buffered request: reads come from the request's
    bytes, writes go to the connection's output buffer (sent by the loop without blocking)."""

    def __init__(self, raw: bytes, conn: _Connection) -> None:
        self._in = io.BytesIO(raw)
        self._conn = conn

    def recv(self, size: int) -> bytes:
        return self._in.read(size)

    def sendall(self, data: bytes) -> None:
        self._conn.outbuf += data

    def send(self, data: bytes) -> int:
        if data != _CONTINUE:  # the whole body is here already: an interim 100 is pointless (and was sent early)
            self._conn.outbuf += data
        return len(data)

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return self._conn.sock.fileno()

    def getsockname(self) -> Any:
        return self._conn.server

    def getpeername(self) -> Any:
        return self._conn.addr


class BufferingWorker(Worker):
    """gunicorn worker class ``modelpack.server.worker.BufferingWorker`` (the server's default)."""

    def init_process(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, _Connection] = {}
        self.accepting = False
        self._environ: dict[str, Any] | None = None  # of the request the app is handling
        # balance.py: the connection counts of all workers, and this worker's slot (given by the master)
        self.board = getattr(self.app, "board", None)
        self.board_slot: int | None = getattr(self, "board_slot", None)
        if self.board is None or self.board_slot is None:
            self.board = None
        self.accept_resume = 0.0  # no accepting before this time (balance.py: yielding to a less loaded worker)
        self.yields = 0
        super().init_process()

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGALRM, _raise_timeout)  # once; each request only arms the timer

    # -- the loop -------------------------------------------------------------------------------------------------

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        self._set_accepting(True)
        while self.alive:
            self.notify()
            self._set_accepting(len(self.connections) < self.cfg.worker_connections
                                and time.monotonic() >= self.accept_resume)
            self._poll(self._wait_time())
            self._expire(time.monotonic())
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
        self._drain()

    def _poll(self, timeout: float) -> None:
        try:
            events = self.selector.select(timeout)
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
            return
        for key, mask in events:
            if key.data is None:
                self._accept(key.fileobj)  # type: ignore[arg-type]
                continue
            conn: _Connection = key.data
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
                if conn.inbuf and not conn.outbuf and conn.sock.fileno() >= 0:
                    self._handle_buffered(conn, time.monotonic())  # pipelined requests waited for this answer
            if mask & selectors.EVENT_READ and conn.sock.fileno() >= 0:
                self._receive(conn)

    def _wait_time(self) -> float:
        soonest = min((c.deadline for c in self.connections.values()), default=math.inf)
        if not self.accepting:
            soonest = min(soonest, self.accept_resume)
        return max(0.0, min(1.0, soonest - time.monotonic()))

    def _drain(self) -> None:
        """After the stop signal: finish what is buffered or being written, for up to ``graceful_timeout``."""
        self._set_accepting(False)
        now = time.monotonic()
        deadline = now + self.cfg.graceful_timeout
        for conn in list(self.connections.values()):
            if not conn.outbuf and not conn.started:
                # An idle keep-alive connection: its client may be sending its next request right now, and
                # closing would reset it (a failed request during a reload). What arrives within
                # DRAIN_IDLE_GRACE is answered with "Connection: close"; then it closes (_expire).
                conn.deadline = min(conn.deadline, now + DRAIN_IDLE_GRACE)
        while self.connections and time.monotonic() < deadline:
            self.notify()
            self._poll(0.2)
            self._expire(time.monotonic())
        for conn in list(self.connections.values()):
            self._close(conn)
        for listener in self.sockets:
            listener.close()

    def _set_accepting(self, accepting: bool) -> None:
        if accepting == self.accepting:
            return
        for listener in self.sockets:
            if accepting:
                self.selector.register(listener, selectors.EVENT_READ, None)
            else:
                self.selector.unregister(listener)
        self.accepting = accepting

    # -- connections ----------------------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.board is not None and self._should_yield():
                break
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log.warning("accept() failed: %s", exc)
                    return
                raise
            sock.setblocking(False)
            util.close_on_exec(sock.fileno())
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, addr, listener.getsockname(), time.monotonic() + self.cfg.keepalive)
            self.connections[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            if self.board is not None:
                self.board.publish(self.board_slot, len(self.connections))

    def _should_yield(self) -> bool:
        """Whether to leave the next connection to a worker holding fewer (balance.py); after MAX_YIELDS turns
        in a row, accept anyway. Yielding stops accepting for YIELD_SECONDS."""
        assert self.board is not None and self.board_slot is not None
        least = self.board.least_other(self.board_slot)
        if least is None or len(self.connections) <= least or self.yields >= MAX_YIELDS:
            self.yields = 0
            return False
        self.yields += 1
        self.accept_resume = time.monotonic() + YIELD_SECONDS
        self._set_accepting(False)
        return True

    def _should_shed(self) -> bool:
        """Whether to close this connection after its answer: this worker holds two or more connections more than
        the least loaded one (the client reconnects, and balance.py sends it there)."""
        assert self.board is not None and self.board_slot is not None
        least = self.board.least_other(self.board_slot)
        return least is not None and len(self.connections) > least + 1

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.selector.unregister(conn.sock)
            self.connections.pop(fd, None)
            if self.board is not None:
                self.board.publish(self.board_slot, len(self.connections))
        util.close(conn.sock)

    def _watch(self, conn: _Connection, events: int) -> None:
        if events != conn.events:
            self.selector.modify(conn.sock, events, conn)
            conn.events = events

    def _linger(self, conn: _Connection) -> None:
        """Close after the last answer without losing it: closing a socket with unread request bytes makes the
        kernel send a reset, which can destroy the answer before the client reads it (a 413 sent while the body
        still arrives). So half-close, then read and drop what the client still sends for up to
        :data:`LINGER_SECONDS`, and close when it closes its side."""
        if conn.draining:
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.draining = True
        conn.inbuf.clear()
        conn.started = 0.0
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self._watch(conn, selectors.EVENT_READ)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.connections.values() if c.deadline <= now]:
            if conn.outbuf or not conn.started:  # not reading its answer, idle keep-alive, or done lingering
                self._close(conn)
            else:
                self._refuse(conn, 408, "The request was not received in time: headers must arrive within "
                                        f"{HEADER_TIMEOUT:.0f} s and a body may not pause for "
                                        f"{BODY_IDLE_TIMEOUT:.0f} s")

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client closed (or half-closed) its side
            self._close(conn)
            return
        if conn.draining:
            return  # the rest of a refused request: dropped, so that closing does not reset the answer
        now = time.monotonic()
        if not conn.started:
            conn.started = now
        conn.inbuf += data
        self._handle_buffered(conn, now)
        self._enforce_budget()

    def _handle_buffered(self, conn: _Connection, now: float) -> None:
        """Answer every complete request buffered on ``conn``, in order, while its answers can be sent."""
        while conn.inbuf and not conn.outbuf and not conn.close_after_write:
            try:
                end = request_end(conn.inbuf, self.max_body)
            except FramingError as exc:
                self._refuse(conn, exc.status, exc.message)
                return
            if end is None:
                self._wait_for_rest(conn, now)
                return
            raw = bytes(conn.inbuf[:end])
            del conn.inbuf[:end]
            conn.continued = False
            self._handle_request(conn, raw)
            conn.started = now if conn.inbuf else 0.0
            self._flush(conn)
            if conn.sock.fileno() < 0:
                return
        if not conn.inbuf and not conn.outbuf:
            conn.deadline = now + (self.cfg.keepalive if self.alive else DRAIN_IDLE_GRACE)
            conn.started = 0.0

    def _wait_for_rest(self, conn: _Connection, now: float) -> None:
        head_end = conn.inbuf.find(b"\r\n\r\n")
        if head_end < 0:
            conn.deadline = conn.started + HEADER_TIMEOUT
            return
        conn.deadline = now + BODY_IDLE_TIMEOUT
        if not conn.continued and b"100-continue" in bytes(conn.inbuf[:head_end]).lower():
            conn.continued = True  # the client waits for this before it sends the body
            conn.outbuf += _CONTINUE
            self._flush(conn)

    def _enforce_budget(self) -> None:
        budget = BUFFER_BUDGET_FACTOR * self.max_body
        buffered = sum(len(c.inbuf) for c in self.connections.values())
        while buffered > budget:
            largest = max(self.connections.values(), key=lambda c: len(c.inbuf))
            buffered -= len(largest.inbuf)
            self._refuse(largest, 503, "The server is receiving too many large requests at once; retry later")

    def _flush(self, conn: _Connection) -> None:
        """Send what can be sent now; wait for writability for the rest (and stop reading meanwhile)."""
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.outbuf[:sent]
        if conn.outbuf:
            conn.deadline = time.monotonic() + max(self.cfg.timeout, BODY_IDLE_TIMEOUT)
            self._watch(conn, selectors.EVENT_WRITE)
            return
        if conn.close_after_write:
            self._linger(conn)
            return
        if not self.alive:  # stopping, after an answer that promised keep-alive: as for idle ones in _drain
            conn.deadline = min(conn.deadline, time.monotonic() + DRAIN_IDLE_GRACE)
        self._watch(conn, selectors.EVENT_READ)

    # -- requests -------------------------------------------------------------------------------------------------

    @property
    def max_body(self) -> int:
        """The body limit (``MODELPACK_MAX_BODY_BYTES``) of the :class:`ScoringServer` this worker serves."""
        config = getattr(self.app, "serve_config", None)
        return config.max_body_bytes if config is not None else DEFAULT_MAX_BODY_BYTES

    def _handle_request(self, conn: _Connection, raw: bytes) -> None:
        """Parse one complete request with gunicorn's parser and run the app; the answer goes to ``outbuf``."""
        sock = _BufferedSocket(raw, conn)
        req = None
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, max(0.5, self.cfg.timeout - 1.0))  # before the master kills us
        try:
            req = next(iter(http.get_parser(self.cfg, sock, conn.addr)))
            self._run_app(req, sock, conn)
        except _RequestTimedOut:
            # Interrupted wherever it was (possibly inside a library): answer, then replace this worker.
            request = self._request_info(conn, raw)
            token = set_request_id(request[2])
            self.log.error("A request ran past the %d s timeout; answering 504 and restarting the worker",
                           self.cfg.timeout)
            reset_request_id(token)
            self.alive = False
            conn.outbuf.clear()
            self._refuse(conn, 504, f"The prediction did not finish within the server's timeout of "
                                    f"{self.cfg.timeout} s (--timeout / MODELPACK_TIMEOUT)", request, started)
        except Exception as exc:
            self._answer_error(conn, raw, exc, started)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._environ = None

    def _run_app(self, req: Any, sock: _BufferedSocket, conn: _Connection) -> None:
        self.cfg.pre_request(self, req)
        resp, environ = wsgi.create(req, sock, conn.addr, conn.server, self.cfg)
        self._environ = environ
        self.nr += 1
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        if not self.alive or (self.board is not None and self._should_shed()):
            resp.force_close()
        respiter: Iterable[bytes] = self.wsgi(environ, resp.start_response)
        try:
            for item in respiter:
                resp.write(item)
            resp.close()
        finally:  # the access log line is observe.py's (gunicorn's own is off)
            close = getattr(respiter, "close", None)
            if close is not None:
                close()
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        if resp.should_close():
            conn.close_after_write = True

    def _answer_error(self, conn: _Connection, raw: bytes, exc: Exception, started: float) -> None:
        """A request the parser refused (the client's mistake), or a failure outside the app (ours)."""
        from gunicorn.http import errors as gerrors

        request = self._request_info(conn, raw)
        token = set_request_id(request[2])
        try:
            if isinstance(exc, LimitRequestLine):
                status = 414
            elif isinstance(exc, LimitRequestHeaders):
                status = 431
            elif isinstance(exc, gerrors.ParseException):
                status = 501 if type(exc).__name__ == "UnsupportedTransferCoding" else 400
            else:
                self.log.exception("Error handling request")
                status = 500
            if status < 500:
                self.log.warning("Invalid request from %s: %s", conn.addr, exc)
        finally:
            reset_request_id(token)
        self._refuse(conn, status, f"{_REASONS.get(status, 'Error')}: {exc}" if status < 500 else
                     f"modelpack failed while handling the request; see the server log under request id "
                     f"{request[2]}", request, started)

    def _request_info(self, conn: _Connection, raw: bytes | bytearray | None = None) -> tuple[str, str, str]:
        """Method, path and request id of the request being refused: the app's environ when it ran, else what
        its bytes (``raw``, or the connection's buffer) show; a new id when the client sent none."""
        environ = self._environ
        if environ is not None:
            request_id = environ.get(REQUEST_ID_KEY) or request_id_from(environ.get("HTTP_X_REQUEST_ID"))
            return environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), request_id
        method, path, request_id = head_info(conn.inbuf if raw is None else raw)
        return method, path, request_id_from(request_id)

    def _refuse(self, conn: _Connection, status: int, message: str, request: tuple[str, str, str] | None = None,
                started: float | None = None) -> None:
        """Answer ``status`` with a JSON error body (and the request's ``X-Request-ID``) and close the connection
        once it is sent; the answer is counted and access-logged (observe.py) like the app's."""
        from ..errors import for_http_status
        from .errors import error_body

        method, path, request_id = request or self._request_info(conn)
        error = for_http_status(status, message)
        body = error_body(error.error_code, message[:1000])
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Request-ID: {request_id}\r\nConnection: close\r\n\r\n"
                ).encode("latin-1")
        began = started or conn.started or time.monotonic()
        conn.inbuf.clear()
        conn.outbuf += head + body
        conn.close_after_write = True
        conn.started = 0.0
        self._record(conn, method, path, status, time.monotonic() - began, request_id, error)
        self._flush(conn)

    def _record(self, conn: _Connection, method: str, path: str, status: int, seconds: float, request_id: str,
                error: ModelpackError) -> None:
        record = getattr(self.wsgi, "record_answer", None)
        if record is None:
            return
        client = conn.addr[0] if isinstance(conn.addr, tuple) and conn.addr else None
        try:
            record(method, path, status, seconds, request_id, error, client)
        except Exception:  # counting must never stop an answer
            self.log.exception("Could not record the answer")
