"""``modelpack validate``: decode a request body and check it against the model's signature."""

from __future__ import annotations

from pathlib import Path

import click

from .options import model_option
from .predict import CONTENT_TYPES, read_body


@click.command(help="Check a request body (JSON or CSV, as sent to /invocations) against a model's signature.")
@model_option
@click.option("-i", "--input-path", "input_path", required=True, metavar="FILE",
              help="Request body file, or '-' for standard input.")
@click.option("-t", "--content-type", "content_type", type=click.Choice(sorted(CONTENT_TYPES)), default=None,
              help="Body format (default: from the file extension, json otherwise).")
def validate(model_uri: str, input_path: str, content_type: str | None) -> None:
    from ..pyfunc import load_model
    from ..server.decode import RequestDecoder

    model = load_model(Path(model_uri).expanduser().absolute())
    content_type = content_type or ("csv" if input_path.lower().endswith(".csv") else "json")
    data, params = model.validate(*RequestDecoder(float_rows=False)(CONTENT_TYPES[content_type], read_body(input_path)))
    rows = len(data) if hasattr(data, "__len__") else 1
    if model.signature is None:
        click.echo(f"OK: body decodes ({rows} rows); the model has no signature, so nothing else is checked")
    else:
        shown = f", params {sorted(params)}" if params else ""
        click.echo(f"OK: {rows} rows match the model's signature{shown}")
