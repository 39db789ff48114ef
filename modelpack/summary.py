"""What a model directory holds, as one JSON-ready summary (``modelpack info`` and ``GET /metadata``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .descriptor import PYFUNC, ModelDescriptor


def _parsed(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def describe(model_dir: Path, descriptor: ModelDescriptor | None = None, files: bool = True) -> dict[str, Any]:
    """Flavors, signature (parsed), input example, requirements, versions and (optionally) files."""
    from .env.spec import REQUIREMENTS_FILE

    d = descriptor or ModelDescriptor.read(model_dir)
    pyfunc = d.flavors.get(PYFUNC, {})
    req_path = model_dir / REQUIREMENTS_FILE
    requirements = req_path.read_text().split("\n") if req_path.is_file() else []
    signature = d.signature or {}
    example_info = d.saved_input_example_info or {}
    serving_example = None
    if example_info.get("serving_input_path"):
        path = model_dir / example_info["serving_input_path"]
        serving_example = json.loads(path.read_text()) if path.is_file() else None
    summary: dict[str, Any] = {
        "path": str(model_dir),
        "flavor": (d.native_flavors or [PYFUNC])[0],
        "flavors": d.flavors,
        "loader_module": pyfunc.get("loader_module"),
        "python_version": pyfunc.get("python_version"),
        "model_uuid": d.model_uuid,
        "utc_time_created": d.utc_time_created,
        "modelpack_version": d.modelpack_version,
        "mlflow_version": d.extra.get("mlflow_version"),
        "signature": {part: _parsed(signature.get(part)) for part in ("inputs", "outputs", "params")}
        if signature else None,
        "saved_input_example_info": d.saved_input_example_info,
        "serving_input_example": serving_example,
        "metadata": d.metadata,
        "requirements": [r for r in requirements if r.strip()],
    }
    if files:
        summary["files"] = {
            str(p.relative_to(model_dir)): p.stat().st_size for p in sorted(model_dir.rglob("*")) if p.is_file()
        }
    return summary
