"""Options shared by several commands."""

from __future__ import annotations

import click

ENV_MANAGERS = ("virtualenv", "uv", "local")

model_option = click.option(
    "-m", "--model-uri", "model_uri", required=True, metavar="PATH",
    help="Path of the model directory (the folder holding MLmodel).",
)

env_manager_option = click.option(
    "--env-manager", type=click.Choice(ENV_MANAGERS), default="local", show_default=True,
    help="Where the model runs: 'local' uses this interpreter.",
)
