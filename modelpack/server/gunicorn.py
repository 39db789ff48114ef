"""GUNICORN: a gunicorn application hosting the scoring app.

The model is loaded once in the master before the workers fork (``preload_app``), so
every worker starts with it in memory (shared copy-on-write) and /ping is 200 from the
first accepted request.

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
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from ..config import ServeConfig


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


class ScoringServer(BaseApplication):
    """gunicorn master configured from a :class:`ServeConfig`, serving a ready WSGI app."""

    def __init__(self, app: Any, config: ServeConfig) -> None:
        self.application = app
        self.serve_config = config
        super().__init__()

    def load_config(self) -> None:
        c = self.serve_config
        settings = {
            "bind": bind_address(c.host, c.port),
            "workers": c.workers,
            "worker_class": c.worker_class,
            "timeout": c.timeout,
            "graceful_timeout": 10,
            "keepalive": 5,
            "preload_app": True,
            "loglevel": c.log_level,
            "accesslog": None,
            "errorlog": "-",
            "proc_name": f"modelpack[{c.model_path.name}]",
            "post_worker_init": sigint_stops_worker_gracefully,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 27's control socket sits at one path per user (~/.gunicorn/gunicorn.ctl), shared by
            # every server on the machine; modelpack does not use it.
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application

    def run(self) -> None:
        """``BaseApplication.run`` with :class:`GracefulInterruptArbiter` as the master."""
        try:
            GracefulInterruptArbiter(self).run()
        except RuntimeError as exc:
            logging.getLogger(__name__).error("Error: %s", exc)
            sys.exit(1)
