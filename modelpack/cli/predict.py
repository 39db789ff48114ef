"""``modelpack predict``: score a JSON or CSV file with the same decoders as the server."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import checked_model_dir, env_manager_option, model_option, python_option
from .serve import trust_loader_module_option

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv"}


@click.command(help="Score a JSON or CSV file (same formats as POST /invocations) without a server.")
@model_option
@click.option("-i", "--input-path", "input_path", required=True, metavar="FILE",
              help="Input file, or '-' for standard input.")
@click.option("-o", "--output-path", "output_path", default=None, metavar="FILE",
              help="Where to write the JSON predictions (default: standard output).")
@click.option("-t", "--content-type", "content_type", type=click.Choice(sorted(CONTENT_TYPES)), default=None,
              help="Input format (default: from the file extension, json otherwise).")
@env_manager_option
@python_option
@trust_loader_module_option
def predict(model_uri: str, input_path: str, output_path: str | None, content_type: str | None,
            env_manager: str, python: str | None, trusted_loader_modules: tuple[str, ...]) -> None:
    from ..config import export_trusted_loader_modules
    from ..descriptor import ModelDescriptor
    from .prepare_env import environment_python

    export_trusted_loader_modules(trusted_loader_modules)  # load_model below, or the rerun child, reads it
    model_dir = checked_model_dir(model_uri)
    ModelDescriptor.read(model_dir).check_paths(model_dir)  # before an environment is built from its files
    python = environment_python(model_dir, env_manager, python)
    if python != sys.executable:
        _rerun_in(python, model_dir, input_path, output_path, content_type)
        return
    if content_type is None:
        content_type = "csv" if input_path.lower().endswith(".csv") else "json"
    body = read_body(input_path)

    from ..pyfunc import load_model
    from ..server.decode import RequestDecoder
    from ..server.encode import encode_predictions

    model = load_model(model_dir)
    data, params = RequestDecoder.for_model(model)(CONTENT_TYPES[content_type], body)
    result = encode_predictions(model.predict(data, params=params))
    if output_path is None:
        sys.stdout.buffer.write(result + b"\n")
        sys.stdout.flush()
    else:
        _write_atomic(Path(output_path), result + b"\n")


def read_body(input_path: str) -> bytes:
    """The bytes of ``input_path`` ('-' is standard input); InvalidInputError if unreadable."""
    from ..errors import InvalidInputError

    if input_path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(input_path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read input file '{input_path}': {exc.strerror}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _rerun_in(python: str, model_dir: Path, input_path: str, output_path: str | None,
              content_type: str | None) -> None:
    """Run the same command with the model environment's interpreter."""
    import subprocess

    argv = [python, "-m", "modelpack.cli", "predict", "-m", str(model_dir), "-i", input_path,
            "--env-manager", "local"]
    if output_path:
        argv += ["-o", output_path]
    if content_type:
        argv += ["-t", content_type]
    code = subprocess.call(argv)
    if code:  # the child printed its own "Error: ..." line; exit with its code (128+N if signal N ended it)
        raise click.exceptions.Exit(code if code > 0 else 128 - code)
