"""``modelpack serve``: CLI -> environment -> ``python -m modelpack.server`` (gunicorn)."""

from __future__ import annotations

import os
import sys

import click

from .options import checked_model_dir, env_manager_option, model_option, python_option


@click.command(help="Serve a model over HTTP: GET /ping, /health, /version; POST /invocations.")
@model_option
@click.option("-p", "--port", type=int, default=None, help="Port to listen on (MODELPACK_PORT, default 5000).")
@click.option("-h", "--host", default=None, help="Address to bind (MODELPACK_HOST, default 127.0.0.1).")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
              help="Number of gunicorn worker processes (MODELPACK_WORKERS, default 1).")
@click.option("-t", "--timeout", type=click.IntRange(min=1), default=None,
              help="Seconds a request may take before its worker is restarted (MODELPACK_TIMEOUT, default 60).")
@env_manager_option
@python_option
def serve(model_uri: str, port: int | None, host: str | None, workers: int | None,
          timeout: int | None, env_manager: str, python: str | None) -> None:
    from ..config import ServeConfig
    from .prepare_env import environment_python

    model_dir = checked_model_dir(model_uri)
    config = ServeConfig.from_env(model_dir, port=port, host=host, workers=workers, timeout=timeout)
    python = environment_python(model_dir, env_manager, python)
    argv = [python, "-m", "modelpack.server", *config.to_args()]
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process so Ctrl-C and SIGTERM reach the gunicorn master directly.
    os.execv(python, argv)
