"""``modelpack info``: what a model directory holds, read from MLmodel and the env files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .options import model_option


def describe(model_dir: Path) -> dict[str, Any]:
    """A JSON-ready summary of a model directory (also used by the server's /metadata)."""
    from ..descriptor import ModelDescriptor
    from ..env.spec import REQUIREMENTS_FILE

    d = ModelDescriptor.read(model_dir)
    pyfunc = d.flavors.get("python_function", {})
    req_path = model_dir / REQUIREMENTS_FILE
    requirements = req_path.read_text().split() if req_path.is_file() else []
    files = {
        str(p.relative_to(model_dir)): p.stat().st_size
        for p in sorted(model_dir.rglob("*")) if p.is_file()
    }
    return {
        "path": str(model_dir),
        "flavors": {name: conf for name, conf in d.flavors.items()},
        "loader_module": pyfunc.get("loader_module"),
        "python_version": pyfunc.get("python_version"),
        "model_uuid": d.model_uuid,
        "utc_time_created": d.utc_time_created,
        "modelpack_version": d.modelpack_version,
        "mlflow_version": d.extra.get("mlflow_version"),
        "signature": d.signature,
        "saved_input_example_info": d.saved_input_example_info,
        "metadata": d.metadata,
        "requirements": requirements,
        "files": files,
    }


@click.command(help="Show what a model directory holds: flavors, signature, requirements, files.")
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(model_uri: str, as_json: bool) -> None:
    summary = describe(Path(model_uri).expanduser().absolute())
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    native = [n for n in summary["flavors"] if n != "python_function"] or ["python_function"]
    lines = [
        f"Model:         {summary['path']}",
        f"Flavor:        {', '.join(native)} (loader {summary['loader_module']})",
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


def _short_schema(text: str) -> str:
    try:
        specs = json.loads(text)
    except ValueError:
        return text
    parts = []
    for s in specs:
        kind = s.get("type")
        if kind == "tensor":
            ts = s.get("tensor-spec", {})
            kind = f"tensor<{ts.get('dtype')}>{tuple(ts.get('shape', []))}"
        name = s.get("name")
        parts.append(f"{name}: {kind}" if name else str(kind))
    return ", ".join(parts)
