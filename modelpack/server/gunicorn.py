"""GUNICORN: a gunicorn application hosting the scoring app.

The model is normally loaded once in the master before the workers fork (``preload_app``), so
every worker starts with it in memory (shared copy-on-write). A model whose loading starts threads
(an OpenMP pool: xgboost, lightgbm) is loaded in each worker after fork instead, since a forked
child has none of its parent's threads (``__main__.py`` decides; docs/performance.md, "Fork safety").
Either way each worker scores the model's serving example once, on the thread that serves requests,
before it accepts a connection (:func:`warm_up`): /ping is 200 only from a worker whose model has answered.

Ctrl-C is a graceful stop, like SIGTERM. gunicorn treats SIGINT as a *quick* stop: the master
(``Arbiter.handle_int``) sends SIGQUIT to the workers, and a worker that receives SIGINT or SIGQUIT
(``Worker.handle_quit``) calls ``sys.exit(0)`` from its signal handler, so ``SystemExit`` is raised in
whatever the worker is doing - in the middle of ``predict`` or while writing a response - and the
request in flight fails with a logged traceback. A terminal's Ctrl-C reaches the master and every worker
(the whole foreground process group), so both are changed; SIGQUIT, and a second SIGINT during the
graceful stop (which gunicorn turns into SIGQUIT for the workers), still stop at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from ..config import ServeConfig

#: Short names of worker classes; any other value goes to gunicorn as is ("sync", "gthread", a dotted path).
WORKER_CLASSES = {"buffered": "modelpack.server.worker.BufferingWorker"}


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GracefulInterruptArbiter(Arbiter):
    """gunicorn's master, except that SIGINT stops it gracefully, exactly as SIGTERM does."""

    def handle_int(self) -> None:
        self.handle_term()


def sigint_stops_worker_gracefully(worker: Worker) -> None:
    """``post_worker_init`` hook (gunicorn has installed the worker's own handlers by then): SIGINT gets
    the worker's SIGTERM handler, which lets the current request finish and then leaves the loop."""
    signal.signal(signal.SIGINT, worker.handle_exit)
    signal.siginterrupt(signal.SIGINT, False)  # as gunicorn does for SIGTERM


def warm_up(worker: Worker) -> None:
    """Score the model's serving example once in this worker, on the thread that serves requests (an OpenMP
    pool is per calling thread), before it accepts a connection; see ``Readiness`` in app.py.

    gunicorn's timeout counts from a worker's first heartbeat, which a new worker only sends from its run
    loop: a worker stuck here would never be killed. So it beats first, and a prediction that hangs in C
    (where no Python signal handler runs) is SIGKILLed by the master after ``--timeout`` like a stuck
    request, and the worker replaced; the log says why well before that."""
    from .app import READINESS

    readiness = getattr(worker.wsgi, "extensions", {}).get(READINESS)
    if readiness is None or readiness.ready:
        return
    worker.notify()
    timeout = worker.cfg.timeout
    watchdog = threading.Timer(min(10.0, timeout / 2), lambda: logging.getLogger("modelpack.server").error(
        "Worker %d: the model has not answered its serving example %.0f s after the worker started (it is "
        "killed after %d s, the timeout). A hang here is usually a thread pool started before fork: see "
        "MODELPACK_PRELOAD in docs/performance.md", worker.pid, min(10.0, timeout / 2), timeout))
    watchdog.daemon = True
    watchdog.start()
    try:
        readiness.check()
    finally:
        watchdog.cancel()


def post_worker_init(worker: Worker) -> None:
    sigint_stops_worker_gracefully(worker)
    warm_up(worker)


class ScoringServer(BaseApplication):
    """gunicorn master configured from a :class:`ServeConfig`, serving a WSGI app: ``app``, loaded in the
    master before fork, or, with ``app=None``, the one ``load_app()`` returns in each worker after fork."""

    def __init__(self, app: Any, config: ServeConfig, load_app: Callable[[], Any] | None = None) -> None:
        if (app is None) == (load_app is None):
            raise ValueError("give exactly one of app and load_app")
        self.application = app
        self.load_app = load_app
        self.serve_config = config
        super().__init__()

    def load_config(self) -> None:
        c = self.serve_config
        settings = {
            "bind": bind_address(c.host, c.port),
            "workers": c.workers,
            "worker_class": WORKER_CLASSES.get(c.worker_class, c.worker_class),
            "timeout": c.timeout,
            "graceful_timeout": 10,
            "keepalive": 5,
            "preload_app": self.application is not None,
            "loglevel": c.log_level,
            "accesslog": None,
            "errorlog": "-",
            "proc_name": f"modelpack[{c.model_path.name}]",
            "post_worker_init": post_worker_init,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 27's control socket sits at one path per user (~/.gunicorn/gunicorn.ctl), shared by
            # every server on the machine; modelpack does not use it.
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        if self.application is None:  # in a worker, after fork (preload_app is off)
            assert self.load_app is not None
            self.application = self.load_app()
        return self.application

    def run(self) -> None:
        """``BaseApplication.run`` with :class:`GracefulInterruptArbiter` as the master."""
        try:
            GracefulInterruptArbiter(self).run()
        except RuntimeError as exc:
            logging.getLogger(__name__).error("Error: %s", exc)
            sys.exit(1)
