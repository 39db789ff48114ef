"""The ``modelpack`` command group, and the one place errors become exit codes.

Subcommands are imported only when invoked, so ``modelpack --help`` stays fast and
does not import pandas, Flask, gunicorn or any model library.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from .. import __version__

logger = logging.getLogger("modelpack.cli")

#: command name -> "module:attribute"; a new command is one line here and one module.
COMMANDS = {
    "serve": "modelpack.cli.serve:serve",
    "predict": "modelpack.cli.predict:predict",
    "info": "modelpack.cli.info:info",
    "validate": "modelpack.cli.validate:validate",
    "generate-dockerfile": "modelpack.cli.docker:generate_dockerfile",
    "build-docker": "modelpack.cli.docker:build_docker",
    "prepare-env": "modelpack.cli.prepare_env:prepare_env",
    "env": "modelpack.cli.env:env",
    "runs": "modelpack.cli.runs:runs",
    "experiments": "modelpack.cli.runs:experiments",
    "models": "modelpack.cli.models:models",
    "run": "modelpack.cli.run:run",
}

#: One-line help shown by ``modelpack --help`` without importing the command modules.
SHORT_HELP = {
    "serve": "Serve a model over HTTP (POST /invocations).",
    "predict": "Score a file (request body, CSV, JSON lines, Parquet, Arrow) with a model, without a server.",
    "info": "Show what a model holds (a directory or a runs:/ or models:/ URI).",
    "validate": "Check a request body against a model's signature, without a server.",
    "generate-dockerfile": "Write a container build context (Dockerfile + model) for a model.",
    "build-docker": "Build a container image for a model (docker, podman or buildah).",
    "prepare-env": "Build a model's environment ahead of time (cached).",
    "env": "List, remove or prune the cached model environments.",
    "runs": "List and show tracked runs: params, metrics, tags, logged models.",
    "experiments": "List the experiments of the tracking store.",
    "models": "The Model Registry: list, show, register, alias, delete-alias.",
    "run": "Run a project's entry point in its environment as a tracked run (MLproject, git --version).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["--help"]})
@click.version_option(__version__, prog_name="modelpack")
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
def cli(verbose: bool) -> None:
    """modelpack: package trained models and serve them."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; errors print one ``Error: ...`` line and exit with their code.

    A ModelpackError exits with its class's ``exit_code`` (the table in modelpack/errors.py); a
    path that cannot be read or written is bad input (InvalidInputError's code, 2). The CLI's own
    codes: click's usage errors exit 2, Ctrl-C 130. A command that runs another process (predict in a
    model's environment) exits with that process's code. With ``-v`` the traceback is logged too.
    """
    from ..errors import InvalidInputError, ModelpackError

    try:
        code = cli.main(args=argv, prog_name="modelpack", standalone_mode=False)
    except ModelpackError as exc:
        detail = next(iter(exc.detail.strip().splitlines()), "")  # one line: the first of a model's message
        click.echo(f"Error: {exc.message}: {detail}" if detail else f"Error: {exc.message}", err=True)
        logger.debug("Traceback:", exc_info=exc)
        return exc.exit_code
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = f" '{exc.filename}'" if exc.filename else ""
        click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
        return InvalidInputError.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return code if isinstance(code, int) else 0  # a command's ctx.exit(code), e.g. predict's re-run
