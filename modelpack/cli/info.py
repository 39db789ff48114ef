"""``modelpack info``: what a model directory holds, read from MLmodel and the env files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .options import MODEL_URI_META, model_option


@click.command(help="Show what a model holds (a directory or any model URI): flavors, signature, requirements, files.")
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(model_uri: str, as_json: bool) -> None:
    from ..summary import describe

    summary = describe(Path(model_uri).expanduser().absolute())
    given = click.get_current_context().meta.get(MODEL_URI_META, "")
    if given.startswith(("runs:", "models:", "file:")):  # a URI, not a path: say which directory it named
        summary["uri"] = given
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    lines = [
        *([f"URI:           {summary['uri']}"] if "uri" in summary else []),
        f"Model:         {summary['path']}",
        f"Flavor:        {summary['flavor']} (loader {summary['loader_module']})",
        f"Python:        {summary['python_version']}",
        f"Saved by:      modelpack {summary['modelpack_version'] or '-'}"
        + (f", mlflow {summary['mlflow_version']}" if summary["mlflow_version"] else ""),
        f"Created (UTC): {summary['utc_time_created']}",
        f"UUID:          {summary['model_uuid']}",
    ]
    sig = summary["signature"] or {}
    for part in ("inputs", "outputs", "params"):
        if sig.get(part):
            lines.append(f"Signature {part + ':':8} {_short_schema(sig[part])}")
    if not sig:
        lines.append("Signature:     none (inputs are not checked)")
    if summary["saved_input_example_info"]:
        lines.append(f"Input example: {summary['saved_input_example_info'].get('artifact_path')}")
    lines.append("Requirements:  " + (", ".join(summary["requirements"]) or "-"))
    lines.append("Files:")
    lines += [f"  {size:>10,}  {name}" for name, size in summary["files"].items()]
    click.echo("\n".join(lines))


def _short_schema(specs: Any) -> str:
    if not isinstance(specs, list):
        return str(specs)
    parts = []
    for s in specs:
        kind = s.get("type")
        if kind == "tensor":
            ts = s.get("tensor-spec", {})
            kind = f"tensor<{ts.get('dtype')}>{tuple(ts.get('shape', []))}"
        name = s.get("name")
        if "default" in s:  # a param spec
            kind = f"{kind} = {s['default']!r}"
        parts.append(f"{name}: {kind}" if name else str(kind))
    return ", ".join(parts)
