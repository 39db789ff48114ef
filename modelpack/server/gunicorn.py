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
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from ..config import ServeConfig, ServedModel
from .observe import gunicorn_logger_class

logger = logging.getLogger("modelpack.server")

#: Short names of worker classes; any other value goes to gunicorn as is ("sync", "gthread", a dotted path).
WORKER_CLASSES = {"buffered": "modelpack.server.worker.BufferingWorker"}


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GracefulInterruptArbiter(Arbiter):
    """gunicorn's master, except that SIGINT stops it gracefully, exactly as SIGTERM does, and that with
    ``--watch`` it checks, between its rounds, whether a model's alias points elsewhere (then reloads as on HUP)."""

    def handle_int(self) -> None:
        self.handle_term()

    def manage_workers(self) -> None:
        super().manage_workers()
        app = self.app
        if isinstance(app, ScoringServer) and app.watch_due():
            self.log.info("A watched model URI now names another model: reloading")
            self.reload()


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
    announce = getattr(worker.wsgi, "announce", None)  # observe.py: this worker's model info and load times
    if announce is not None:
        announce()


def pre_fork(arbiter: Arbiter, worker: Worker) -> None:
    """In the master, before it forks ``worker``: a slot on the connection board (balance.py) no live worker has."""
    board = getattr(arbiter.app, "board", None)
    if board is not None:
        used = {getattr(w, "board_slot", None) for w in arbiter.WORKERS.values()}
        worker.board_slot = board.claim({slot for slot in used if slot is not None})


def child_exit(arbiter: Arbiter, worker: Worker) -> None:
    """In the master, as it reaps a worker: the metrics forget its live gauges and count the restart."""
    from .metrics import worker_exited

    worker_exited(arbiter, worker)


class ScoringServer(BaseApplication):
    """gunicorn master configured from a :class:`ServeConfig`, serving a WSGI app: ``app``, loaded in the
    master before fork, or, with ``app=None``, the one ``load_app()`` returns in each worker after fork."""

    def __init__(self, app: Any, config: ServeConfig, load_app: Callable[[ServeConfig], Any] | None = None) -> None:
        if (app is None) == (load_app is None):
            raise ValueError("give exactly one of app and load_app")
        self.application = app
        self.load_app = load_app
        self.serve_config = config
        self.next_watch = time.monotonic() + config.watch_interval if config.watch_interval else None
        from .balance import ConnectionBoard

        # new workers start while old ones drain (a reload): room for both
        self.board = ConnectionBoard(2 * config.workers)
        super().__init__()

    # -- reload: SIGHUP, or --watch ---------------------------------------------------------------------------

    def reload(self) -> None:
        """On SIGHUP (gunicorn's ``Arbiter.reload`` calls this before it starts new workers and retires the old
        ones gracefully): resolve each model's URI again and load what it names now. If that fails, the workers
        that start keep serving the models loaded before, and the failure is logged."""
        super().reload()
        try:
            self.reload_models()
        except Exception as exc:  # a model that does not load (or a registry that does not answer)
            from ..errors import ModelpackError

            message = exc.message if isinstance(exc, ModelpackError) else f"{type(exc).__name__}: {exc}"
            logger.error("Reload failed, still serving the models loaded before: %s", message,
                         exc_info=not isinstance(exc, ModelpackError))
            reload_failed(self.serve_config)

    def reload_models(self) -> None:
        """Load the models the URIs name now: in this (master) process when it loaded them before fork, else in
        a forked child that only checks they load (each new worker loads its own after fork)."""
        import dataclasses
        import gc

        config = dataclasses.replace(self.serve_config, models=resolve_again(self.serve_config))
        if self.application is None:
            check_loads_in_child(config)
            self.serve_config = config
            logger.info("Reloaded: new workers load %s", describe_models(config))
            return
        from .load import load_app

        gc.unfreeze()  # let the models loaded before be collected once no worker refers to them
        app = load_app(config)
        self.application = self.callable = app
        self.serve_config = config
        gc.collect()
        gc.freeze()
        logger.info("Reloaded: new workers serve %s", describe_models(config))

    def watch_due(self) -> bool:
        """With ``--watch``: whether it is time to look again and a model URI names another directory now."""
        if self.next_watch is None or time.monotonic() < self.next_watch:
            return False
        self.next_watch = time.monotonic() + self.serve_config.watch_interval
        try:
            models = resolve_again(self.serve_config)
        except Exception as exc:
            logger.warning("--watch: cannot resolve the model URIs now (%s); trying again in %d s",
                           exc, self.serve_config.watch_interval)
            return False
        return [m.path for m in models] != [m.path for m in self.serve_config.served_models()]

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
            "pre_fork": pre_fork,
            "logger_class": gunicorn_logger_class(),  # gunicorn's own lines in the server's format
        }
        if c.metrics:
            settings["child_exit"] = child_exit
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 27's control socket sits at one path per user (~/.gunicorn/gunicorn.ctl), shared by
            # every server on the machine; modelpack does not use it.
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        if self.application is None:  # in a worker, after fork (preload_app is off)
            assert self.load_app is not None
            self.application = self.load_app(self.serve_config)
        return self.application

    def run(self) -> None:
        """``BaseApplication.run`` with :class:`GracefulInterruptArbiter` as the master."""
        try:
            GracefulInterruptArbiter(self).run()
        except RuntimeError as exc:
            logging.getLogger(__name__).error("Error: %s", exc)
            sys.exit(1)


def resolve_again(config: ServeConfig) -> tuple[ServedModel, ...]:
    """Each model of ``config`` with the directory its URI names now (``models:/name@alias`` may have moved)."""
    from ..model_uri import resolve_model_uri

    return tuple(ServedModel(m.name, Path(resolve_model_uri(m.uri)).absolute() if m.uri else m.path, m.uri)
                 for m in config.served_models())


def check_loads_in_child(config: ServeConfig) -> None:
    """Load ``config``'s models in a forked child that then exits (the master must not keep a model's threads):
    ModelpackError here if they do not load."""
    from ..errors import ModelLoadError

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's result is its exit status
        code = 1
        try:
            from .load import load_models

            load_models(config)
            code = 0
        except BaseException as exc:
            logging.getLogger("modelpack.server").error("Reload: %s", getattr(exc, "message", exc))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ModelLoadError(f"the models do not load: {describe_models(config)} (see the lines above)")


def describe_models(config: ServeConfig) -> str:
    return ", ".join(f"{m.name}={m.path}" for m in config.served_models())


def reload_failed(config: ServeConfig) -> None:
    """Count a failed reload where the metrics are (the metrics module, when it is on)."""
    try:
        from . import metrics
    except ImportError:
        return
    hook = getattr(metrics, "count_reload_failure", None)
    if hook is not None:
        hook(config)
