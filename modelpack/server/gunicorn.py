"""GUNICORN: a gunicorn application hosting the scoring app.

The model is loaded once in the master before the workers fork (``preload_app``), so
every worker starts with it in memory (shared copy-on-write) and /ping is 200 from the
first accepted request.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from ..config import ServeConfig


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application
