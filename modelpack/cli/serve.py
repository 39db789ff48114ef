"""``modelpack serve``: CLI -> environment -> ``python -m modelpack.server`` (gunicorn)."""

from __future__ import annotations

import os
import sys

import click

from .options import checked_model_dir, env_manager_option, python_option, served_models_option


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


@click.command(help="Serve a model over HTTP: GET /ping, /health, /version; POST /invocations. Several models "
                    "(-m NAME=URI, repeated) share one server: POST /models/NAME/invocations, GET /models.")
@served_models_option
@click.option("-p", "--port", type=int, default=None, help="Port to listen on (MODELPACK_PORT, default 5000).")
@click.option("-h", "--host", default=None, help="Address to bind (MODELPACK_HOST, default 127.0.0.1).")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
              help="Number of gunicorn worker processes (MODELPACK_WORKERS, default 1).")
@click.option("-t", "--timeout", type=click.IntRange(min=1), default=None,
              help="Seconds a request may take before its worker is restarted (MODELPACK_TIMEOUT, default 60).")
@click.option("--watch", is_flag=True,
              help="Look up a model named by alias (models:/NAME@ALIAS or models:/NAME/latest) every "
                   "--watch-interval seconds and serve the version it names, as on SIGHUP.")
@click.option("--watch-interval", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Seconds between looks with --watch (MODELPACK_WATCH_INTERVAL, default 10).")
@click.option("--metrics/--no-metrics", default=None,
              help="Serve Prometheus metrics at GET /metrics (MODELPACK_METRICS=0 turns them off; default on).")
@click.option("--log-format", type=click.Choice(["plain", "json"]), default=None,
              help="Server log lines as plain text or one JSON object each (MODELPACK_LOG_FORMAT, default plain).")
@click.option("--access-log/--no-access-log", default=None,
              help="One log line per request, with its request id (MODELPACK_ACCESS_LOG=0 turns it off; default on).")
@env_manager_option
@python_option
@trust_loader_module_option
def serve(model_uris: list[tuple[str, str]], port: int | None, host: str | None, workers: int | None,
          timeout: int | None, watch: bool, watch_interval: int | None, metrics: bool | None,
          log_format: str | None, access_log: bool | None, env_manager: str, python: str | None,
          trusted_loader_modules: tuple[str, ...]) -> None:
    from ..config import ServeConfig, ServedModel, env_int, export_trusted_loader_modules
    from ..descriptor import ModelDescriptor
    from ..model_uri import resolve_model_uri
    from .prepare_env import environment_python

    export_trusted_loader_modules(trusted_loader_modules)  # the server reads it from its environment
    models = []
    for name, uri in model_uris:
        model_dir = checked_model_dir(str(resolve_model_uri(uri)))
        ModelDescriptor.read(model_dir).check_paths(model_dir)  # before an environment is built from its files
        models.append(ServedModel(name, model_dir, uri))
    if env_manager != "local" and len(models) > 1:
        check_one_environment(models)
    model_dir = models[0].path
    if watch:
        if not any(is_moving_uri(uri) for _, uri in model_uris):
            raise click.UsageError("--watch follows a model named by alias: give -m models:/NAME@ALIAS or "
                                   "models:/NAME/latest (a path or a fixed version never changes)")
        watch_interval = watch_interval or env_int("MODELPACK_WATCH_INTERVAL", 0) or 10
    else:
        watch_interval = None
    config = ServeConfig.from_env(model_dir, models=tuple(models), port=port, host=host, workers=workers,
                                  timeout=timeout, watch_interval=watch_interval, metrics=metrics,
                                  log_format=log_format, access_log=access_log)
    python = environment_python(model_dir, env_manager, python)
    argv = [python, "-m", "modelpack.server", *config.to_args()]
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process so Ctrl-C and SIGTERM reach the gunicorn master directly.
    os.execv(python, argv)


def check_one_environment(models: list) -> None:
    """Models whose recorded environments differ cannot share one server process: stop, saying which differ."""
    from ..env.recorded import RecordedEnv

    first = models[0]
    want = RecordedEnv.from_model(first.path)
    for other in models[1:]:
        env = RecordedEnv.from_model(other.path)
        if (env.python, sorted(env.install_lines())) == (want.python, sorted(want.install_lines())):
            continue
        ours, theirs = set(want.install_lines()), set(env.install_lines())
        diff = [f"{first.name}: {', '.join(sorted(ours - theirs)) or '-'}",
                f"{other.name}: {', '.join(sorted(theirs - ours)) or '-'}"]
        if env.python != want.python:
            diff.append(f"Python {want.python} vs {env.python}")
        raise click.UsageError(
            f"Models {first.name!r} and {other.name!r} were saved with different environments ({'; '.join(diff)}), "
            f"and one server runs all its models in one process: run one server per environment "
            f"(modelpack serve -m {first.name}=... -p PORT1; modelpack serve -m {other.name}=... -p PORT2), "
            f"or --env-manager local to run them all in this interpreter as it is")


def is_moving_uri(uri: str) -> bool:
    """Whether ``uri`` may name another model later: a registered model by alias or as its latest version."""
    return uri.startswith("models:/") and ("@" in uri or uri.rstrip("/").endswith("/latest"))
