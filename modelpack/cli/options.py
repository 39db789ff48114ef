"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

ENV_MANAGERS = ("virtualenv", "uv", "local")
#: Where ``-m``'s value as given is kept (the command receives the directory it resolves to).
MODEL_URI_META = "modelpack.model_uri"


def _resolve_model_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The model directory a ``-m`` value names: every command that takes a model accepts every model URI
    (the URI as given stays in ``ctx.meta[MODEL_URI_META]``)."""
    if value is None:
        return None
    from ..model_uri import resolve_model_uri

    ctx.meta[MODEL_URI_META] = value
    return str(resolve_model_uri(value))


model_option = click.option(
    "-m", "--model-uri", "model_uri", required=True, metavar="URI", callback=_resolve_model_uri,
    help="The model: its directory (the folder holding MLmodel) or file:// URI, runs:/<run_id>/<path>, "
         "models:/<name>/<version>, models:/<name>/latest or models:/<name>@<alias>.",
)

def _named_model_uris(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, str]]:
    """``[name=]URI`` values as (name, uri) pairs; a name is needed for each model when there are several."""
    from ..config import MODEL_NAME, default_model_name

    pairs: list[tuple[str, str]] = []
    for value in values:
        name, sep, uri = value.partition("=")
        if not sep or not MODEL_NAME.fullmatch(name):  # a path or URI that holds '=' itself
            name, uri = "", value
        pairs.append((name, uri))
    if len(pairs) > 1:
        unnamed = [uri for name, uri in pairs if not name]
        if unnamed:
            raise click.BadParameter(f"with several models, name each one as NAME=URI (letters, digits, '_.-'); "
                                     f"unnamed: {unnamed}", ctx=ctx, param=param)
    names = [name for name, _ in pairs if name]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise click.BadParameter(f"each model needs its own name; given more than once: {repeated}",
                                 ctx=ctx, param=param)
    return [(name or default_model_name(uri, Path(uri)), uri) for name, uri in pairs]


served_models_option = click.option(
    "-m", "--model-uri", "model_uris", required=True, multiple=True, metavar="[NAME=]URI",
    callback=_named_model_uris,
    help="The model: its directory, file://, runs:/<run_id>/<path>, models:/<name>/<version> or "
         "models:/<name>@<alias>. Repeat as NAME=URI to serve several models, each at /models/NAME/invocations.",
)

env_manager_option = click.option(
    "--env-manager", type=click.Choice(ENV_MANAGERS), default="virtualenv", show_default=True,
    help="Where the model runs: 'virtualenv' rebuilds the environment it was saved with (cached), "
         "'uv' does the same with uv (faster), 'local' uses this interpreter as it is.",
)

python_option = click.option(
    "--python", "python", default=None, metavar="PATH",
    help="Build the environment with this interpreter instead of looking for the model's Python version.",
)


def checked_model_dir(model_uri: str) -> Path:
    """The absolute model directory, after reading its MLmodel: a missing or unreadable model
    fails first, clearly, before an environment is built or a server started."""
    from ..descriptor import ModelDescriptor

    model_dir = Path(model_uri).expanduser().absolute()
    ModelDescriptor.read(model_dir)
    return model_dir
