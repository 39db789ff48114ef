"""``modelpack serve``: CLI -> environment -> ``python -m modelpack.server`` (gunicorn)."""

from __future__ import annotations

import os
import sys

import click

from .options import checked_model_dir, env_manager_option, model_option, python_option


def _module_names(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from ..config import is_module_name

    bad = [name for name in value if not is_module_name(name)]
    if bad:
        raise click.BadParameter(f"expected a module or package name such as 'mlflow.tensorflow', got {bad}")
    return value


trust_loader_module_option = click.option(
    "--trust-loader-module", "trusted_loader_modules", multiple=True, metavar="NAME", callback=_module_names,
    help="Let the model name this loader_module (or a module of this package) although no installed flavor "
         "provides it; importing it runs its code (repeatable; MODELPACK_TRUSTED_LOADER_MODULES, comma-separated).",
)


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
@trust_loader_module_option
def serve(model_uri: str, port: int | None, host: str | None, workers: int | None,
          timeout: int | None, env_manager: str, python: str | None, trusted_loader_modules: tuple[str, ...]) -> None:
    from ..config import ServeConfig, export_trusted_loader_modules
    from ..descriptor import ModelDescriptor
    from .prepare_env import environment_python

    export_trusted_loader_modules(trusted_loader_modules)  # the server reads it from its environment
    model_dir = checked_model_dir(model_uri)
    ModelDescriptor.read(model_dir).check_paths(model_dir)  # before an environment is built from its files
    config = ServeConfig.from_env(model_dir, port=port, host=host, workers=workers, timeout=timeout)
    python = environment_python(model_dir, env_manager, python)
    argv = [python, "-m", "modelpack.server", *config.to_args()]
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process so Ctrl-C and SIGTERM reach the gunicorn master directly.
    os.execv(python, argv)
