"""``modelpack run``: run a project's entry point in its environment, as a tracked run (docs/projects.md)."""

from __future__ import annotations

import click

from .options import ENV_MANAGERS


@click.command(help="Run an entry point of a project (a directory, or a git repository's path or URL) in the "
                    "environment it declares, as a new tracked run: the script's modelpack.log_* calls land in "
                    "that run. Exits with the command's exit code.")
@click.argument("uri")
@click.option("-e", "--entry-point", default="main", show_default=True, metavar="NAME",
              help="The MLproject entry point, or a .py or .sh file of the project (e.g. -e train.py).")
@click.option("-v", "--version", default=None, metavar="REF",
              help="The git commit, branch or tag to run (checked out into a temporary clone).")
@click.option("-P", "--param-list", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the entry point (repeatable); undeclared ones are passed as --NAME VALUE.")
@click.option("--experiment-name", default=None, metavar="NAME",
              help="The experiment of the run (default: MODELPACK_EXPERIMENT_NAME, else 'Default').")
@click.option("--run-name", default=None, metavar="NAME", help="The run's name (default: a random one).")
@click.option("--env-manager", type=click.Choice(ENV_MANAGERS), default=None,
              help="Where the command runs: 'virtualenv' (the default when the project declares an environment) "
                   "or 'uv' build the project's environment once and cache it; 'local' (the default otherwise) "
                   "uses this interpreter.")
@click.option("--python", "python", default=None, metavar="PATH",
              help="Build the environment with this interpreter instead of looking for the Python version the "
                   "project's environment file names.")
def run(uri: str, entry_point: str, version: str | None, params: tuple[str, ...], experiment_name: str | None,
        run_name: str | None, env_manager: str | None, python: str | None) -> None:
    from ..projects.launch import run as run_project
    from ..projects.params import parse_assignments
    from .prepare_env import build_display

    run_project(uri, entry_point, version, parse_assignments(params), experiment_name=experiment_name,
                run_name=run_name, env_manager=env_manager, python=python, display=build_display)
