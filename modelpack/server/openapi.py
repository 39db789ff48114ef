"""OPENAPI: the server's OpenAPI 3.1 document (``GET /openapi.json``), built once per app from the models.

Each model's request body is described for every form the server reads for it, with JSON Schemas (2020-12, the
dialect of OpenAPI 3.1) made from the signature's specs: a column signature gets ``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs`` and CSV; a tensor signature ``inputs`` and ``instances``; a model
without a signature every form, loosely. The schemas say what a valid request looks like and never refuse a
request the server takes (``tests/test_openapi.py`` checks both ways). Where a precise schema would need the order
of the ``columns`` a client sends (a split row's values), it takes any of the columns' types.

Each ``POST`` invocations operation also carries ``x-modelpack``: the model's name, flavor and signature as
``GET /metadata`` shows them, for tools (the page at ``GET /``) that want the columns without reading schemas.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote as url_quote

from .. import __version__

OPENAPI_VERSION = "3.1.0"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = 3.4028234663852886e38

#: A signature column type -> the JSON Schema of one value a client sends for it (docs/schema.md, casting table:
#: numbers are never read from strings; a binary column takes base64 text; a datetime ISO 8601 text).
COLUMN_SCHEMAS: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "minimum": _INT32[0], "maximum": _INT32[1]},
    "long": {"type": "integer", "minimum": _INT64[0], "maximum": _INT64[1]},
    "float": {"type": "number", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX},
    "double": {"type": "number"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "description": "an ISO 8601 date or date and time"},
}

ERROR_CODES = ["BAD_REQUEST", "INVALID_PARAMETER_VALUE", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE",
               "MODEL_ERROR", "INTERNAL_ERROR", "SERVER_BUSY", "PREDICTION_TIMEOUT", "MODEL_NOT_READY",
               "ENDPOINT_NOT_FOUND", "METHOD_NOT_ALLOWED"]

_ERROR_RESPONSES = {
    "400": "The body cannot be read (`BAD_REQUEST`) or does not fit the model's signature "
           "(`INVALID_PARAMETER_VALUE`)",
    "413": "The body is larger than the server's limit (`MODELPACK_MAX_BODY_BYTES`)",
    "415": "The Content-Type is not one the server reads",
    "500": "The model raised (`MODEL_ERROR`) or the server failed; the message names an error id in the server log",
    "503": "The server is too busy to take the request (`SERVER_BUSY`)",
    "504": "The prediction took longer than the server's timeout (`PREDICTION_TIMEOUT`)",
}


def openapi_document(models: Sequence[tuple[str, Any]], *, root_routes: bool | None = None,
                     model_routes: bool = True, title: str = "modelpack scoring server") -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server scoring ``models``: (name, summary) pairs, where a summary is what
    :func:`modelpack.summary.describe` returns (``GET /metadata``; as a dict or its JSON bytes) or a loaded
    :class:`~modelpack.pyfunc.PyFuncModel`, described here.

    ``root_routes`` (default: one model): ``POST /invocations`` and ``GET /metadata`` serve the only model;
    ``model_routes``: each model is also at ``/models/<name>/invocations|metadata|ready``."""
    summaries = [(name, _summary(model)) for name, model in models]
    if root_routes is None:
        root_routes = len(summaries) == 1
    if root_routes and len(summaries) != 1:
        raise ValueError(f"/invocations serves a server's only model; got {len(summaries)} models")
    components: dict[str, Any] = {
        "schemas": {"Error": _ERROR_SCHEMA, "Predictions": _PREDICTIONS_SCHEMA, "Status": _STATUS_SCHEMA},
        "responses": {
            status: {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
            for status, text in _ERROR_RESPONSES.items()
        },
    }
    paths: dict[str, Any] = {}
    keys: set[str] = set()
    for name, summary in summaries:
        key = _component_key(name, keys)
        components["schemas"][f"{key}.Request"] = request_schema(summary)
        operation = _invocations_operation(name, key, summary)
        meta = _metadata_operation(name)
        if root_routes:
            paths["/invocations"] = {"post": {**operation, "operationId": "invocations"}}
            paths["/metadata"] = {"get": {**meta, "operationId": "metadata"}}
        if model_routes:
            base = f"/models/{url_quote(name, safe='')}"
            paths[f"{base}/invocations"] = {"post": {**operation, "operationId": f"invocations.{key}"}}
            paths[f"{base}/metadata"] = {"get": {**meta, "operationId": f"metadata.{key}"}}
            paths[f"{base}/ready"] = {"get": _ready_operation(f"ready.{key}", f"Whether the model {name!r} answers")}
    paths.update(_server_paths(model_routes))
    names = ", ".join(f"`{name}` ({summary.get('flavor')})" for name, summary in summaries)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": __version__,
            "description": f"Scores {names} with MLflow's JSON protocol (`POST .../invocations`). Predictions come "
                           "back as `{\"predictions\": ...}`; errors as `{\"error_code\", \"message\"}`.",
        },
        "paths": paths,
        "components": components,
    }


def openapi_body(models: Sequence[tuple[str, Any]], **kw: Any) -> bytes:
    """:func:`openapi_document` as JSON bytes (what ``GET /openapi.json`` answers)."""
    import orjson

    return orjson.dumps(openapi_document(models, **kw))


# ---------------------------------------------------------------- request schemas


def request_schema(summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a JSON request body for the model ``summary`` describes: one of the MLflow forms, each
    with optional ``params``."""
    signature = summary.get("signature") or {}
    inputs, params = signature.get("inputs"), _params_schema(signature)
    if not isinstance(inputs, list) or not inputs:
        branches = _untyped_forms()
        described = "the model has no input signature: any of MLflow's forms"
    elif all(spec.get("type") == "tensor" for spec in inputs):
        branches = _tensor_forms(inputs)
        described = "tensors: `inputs` (the whole batch) or `instances` (one item per row)"
    else:
        branches = _column_forms(inputs)
        described = "a table: `dataframe_split`, `dataframe_records`, `instances` or `inputs`"
    forms = []
    for key, schema in branches.items():
        forms.append({
            "type": "object",
            "title": key,
            "required": [key],
            "properties": {key: schema, "params": params},
        })
    if "dataframe_split" in branches:  # the bare split object of MLflow 1.x clients
        split = branches["dataframe_split"]
        forms.append({
            "type": "object",
            "title": "split (no format key)",
            "required": split.get("required", ["data"]),
            "properties": {**split.get("properties", {}), "params": params},
            "not": {"anyOf": [{"required": [key]} for key in FORMATS]},
        })
    return {"description": f"One input format with optional `params`; {described}.", "oneOf": forms}


def _params_schema(signature: dict[str, Any]) -> dict[str, Any]:
    specs = signature.get("params")
    if not signature:
        return {"type": "object", "description": "Inference parameters, passed to the model as sent",
                "additionalProperties": _param_value_schema()}
    if not isinstance(specs, list) or not specs:
        return {"type": "object", "description": "The model's signature declares no parameters: any sent are "
                                                 "ignored"}
    properties = {}
    for spec in specs:
        value = dict(COLUMN_SCHEMAS.get(str(spec.get("type")), {}))
        value.pop("description", None)
        if spec.get("shape"):
            value = {"type": "array", "items": value}
        properties[str(spec.get("name"))] = {**value, "default": spec.get("default"),
                                             "description": f"{spec.get('type')}" + (" list" if spec.get("shape")
                                                                                    else "")}
    return {"type": "object", "properties": properties,
            "description": "Inference parameters; one left out takes its default, others are ignored"}


def _param_value_schema() -> dict[str, Any]:
    scalar = {"type": ["string", "number", "integer", "boolean", "null"]}
    return {"anyOf": [scalar, {"type": "array", "items": scalar}]}


def _column_value(spec: dict[str, Any]) -> dict[str, Any]:
    """One value of the column ``spec``; an optional column also takes null (a missing value)."""
    schema = dict(COLUMN_SCHEMAS.get(str(spec.get("type")), {}))
    if not schema:
        return {}
    if spec.get("required", True) is False:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def _any_of(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    unique: list[dict[str, Any]] = []
    for schema in schemas:
        if schema not in unique:
            unique.append(schema)
    if len(unique) == 1:
        return unique[0]
    return {} if {} in unique else {"anyOf": unique}


def _column_forms(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    named = specs[0].get("name") is not None
    values = [_column_value(spec) for spec in specs]
    if not named:  # positional columns: every row has one value per column, in order
        row = {"type": "array", "prefixItems": values, "minItems": len(specs), "maxItems": len(specs)}
        rows = {"type": "array", "minItems": 1, "items": row}
        split = {"type": "object", "required": ["data"],
                 "properties": {"columns": {"type": "array", "minItems": len(specs), "maxItems": len(specs)},
                                "data": rows, "index": {"type": "array"}}}
        return {"dataframe_split": split, "instances": rows, "inputs": rows}
    names = [str(spec["name"]) for spec in specs]
    required = [str(spec["name"]) for spec in specs if spec.get("required", True) is not False]
    record = {"type": "object", "properties": dict(zip(names, values, strict=True)), "required": required,
              "description": "One row: column name -> value (other keys are ignored)"}
    records = {"type": "array", "minItems": 1, "items": record}
    columns: dict[str, Any] = {
        "type": "array", "items": {"type": "string"}, "uniqueItems": True,
        "description": f"Column names, in any order: {', '.join(names)} (others are ignored)",
    }
    if required:
        columns["allOf"] = [{"contains": {"const": name}} for name in required]
    split = {
        "type": "object", "required": ["columns", "data"],
        "properties": {
            "columns": columns,
            "data": {"type": "array", "minItems": 1, "description": "Rows, each a value per name of `columns`",
                     "items": {"type": "array", "items": _any_of(values)}},
            "index": {"type": "array", "description": "One label per row"},
        },
    }
    by_column = {
        "type": "object", "required": required, "description": "Column name -> its values (or one value)",
        "properties": {name: {"anyOf": [{"type": "array", "minItems": 1, "items": value}, value]} if value else {}
                       for name, value in zip(names, values, strict=True)},
    }
    return {"dataframe_split": split, "dataframe_records": records, "instances": records,
            "inputs": {"anyOf": [records, by_column]}}


def _dtype_value(dtype: str) -> dict[str, Any]:
    """One element of a tensor of numpy ``dtype``."""
    import numpy as np

    try:
        kind = np.dtype(dtype)
    except TypeError:
        return {}
    if kind.kind == "b":
        return {"type": "boolean"}
    if kind.kind in "iu":
        info = np.iinfo(kind)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if kind.kind == "f":
        return {"type": "number"}
    if kind.kind in "USO":
        return {"type": "string"}
    return {}


def _shaped(value: dict[str, Any], shape: Sequence[int], batch: bool = True) -> dict[str, Any]:
    """Nested arrays of ``shape`` (``-1``: any length) holding ``value``; ``batch``: the first dimension is the
    rows, of which the server wants at least one."""
    schema = value
    for i, size in reversed(list(enumerate(shape))):
        schema = {"type": "array", "items": schema}
        if size >= 0:
            schema["minItems"] = schema["maxItems"] = size
        elif i == 0 and batch:
            schema["minItems"] = 1
    return schema


def _tensor_forms(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def parts(spec: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        tensor = spec.get("tensor-spec") or {}
        return _dtype_value(str(tensor.get("dtype"))), list(tensor.get("shape") or [])

    if len(specs) == 1 and specs[0].get("name") is None:
        value, shape = parts(specs[0])
        whole = _shaped(value, shape)
        rows = whole if shape else {"type": "array", "minItems": 1, "items": value}
        return {"inputs": whole, "instances": rows}
    names = [str(spec.get("name")) for spec in specs]
    whole_by_name = {name: _shaped(*parts(spec)) for name, spec in zip(names, specs, strict=True)}
    row_by_name = {name: _shaped(parts(spec)[0], parts(spec)[1][1:], batch=False)
                   for name, spec in zip(names, specs, strict=True)}
    batch = {"type": "object", "required": names, "properties": whole_by_name,
             "description": "Input name -> the whole batch of that input (other names are ignored)"}
    per_row = {"type": "array", "minItems": 1, "items": {"type": "object", "required": names,
                                                          "properties": row_by_name}}
    return {"inputs": batch, "instances": {"anyOf": [per_row, batch]}}


def _untyped_forms() -> dict[str, dict[str, Any]]:
    split = {"type": "object", "required": ["data"],
             "properties": {"columns": {"type": "array"}, "data": {"type": "array", "minItems": 1},
                            "index": {"type": "array"}}}
    records = {"type": "array", "minItems": 1, "items": {"type": "object"}}
    tensors = {"type": ["array", "object", "string", "number"], "minItems": 1, "minProperties": 1,
               "description": "An array, an object of named arrays, or one value"}
    return {"dataframe_split": split, "dataframe_records": records, "instances": tensors, "inputs": tensors}


# ---------------------------------------------------------------- operations


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _component_key(name: str, taken: set[str]) -> str:
    """``name`` as a component name (``^[A-Za-z0-9._-]+$``), unique among ``taken``."""
    key = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "model"
    candidate, n = key, 1
    while candidate in taken:
        n += 1
        candidate = f"{key}_{n}"
    taken.add(candidate)
    return candidate


def _csv_example(example: Any) -> str | None:
    """The ``dataframe_split`` example as a CSV body (header row), or None for other forms."""
    split = example.get("dataframe_split") if isinstance(example, dict) else None
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(split["columns"])
    for row in split.get("data") or []:
        writer.writerow(["" if value is None else value for value in row] if isinstance(row, list) else [row])
    return out.getvalue()


def _invocations_operation(name: str, key: str, summary: dict[str, Any]) -> dict[str, Any]:
    signature = summary.get("signature") or {}
    example = summary.get("serving_input_example")
    json_media: dict[str, Any] = {"schema": _ref(f"{key}.Request")}
    if example is not None:
        json_media["examples"] = {"serving_input_example": {
            "summary": "The example saved with the model (serving_input_example.json)", "value": example}}
    content: dict[str, Any] = {"application/json": json_media}
    inputs = signature.get("inputs")
    tensors = isinstance(inputs, list) and bool(inputs) and all(s.get("type") == "tensor" for s in inputs)
    if not tensors:
        csv_media: dict[str, Any] = {"schema": {"type": "string", "description": "CSV with a header row"}}
        csv_text = _csv_example(example)
        if csv_text is not None:
            csv_media["examples"] = {"serving_input_example": {"summary": "The saved example as CSV",
                                                               "value": csv_text}}
        content["text/csv"] = csv_media
        content["application/vnd.apache.parquet"] = {}  # what DataFrame.to_parquet() writes (the arrow extra)
    responses: dict[str, Any] = {
        "200": {"description": "The model's predictions",
                "content": {"application/json": {"schema": _ref("Predictions")}}},
    }
    responses.update({status: {"$ref": f"#/components/responses/{status}"} for status in _ERROR_RESPONSES})
    return {
        "summary": f"Score the model {name!r}",
        "description": f"{summary.get('flavor')} model. Send one of MLflow's input forms; see the request schema.",
        "tags": [name],
        "requestBody": {"required": True, "content": content},
        "responses": responses,
        "x-modelpack": {
            "model": name,
            "flavor": summary.get("flavor"),
            "signature": {part: signature.get(part) for part in ("inputs", "outputs", "params")},
        },
    }


def _metadata_operation(name: str) -> dict[str, Any]:
    return {
        "summary": f"The model {name!r}: flavor, signature, input example, versions",
        "tags": [name],
        "responses": {"200": {"description": "The model's summary",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }


def _ready_operation(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": _ref("Status")}}},
            "503": {"description": "Not ready; the message says why",
                    "content": {"application/json": {"schema": _ref("Error")}}},
        },
    }


def _server_paths(model_routes: bool) -> dict[str, Any]:
    status = {"200": {"description": "The process is up",
                      "content": {"application/json": {"schema": _ref("Status")}}}}
    paths: dict[str, Any] = {
        "/health/live": {"get": {"summary": "Liveness: the worker answers (no model call)",
                                 "operationId": "live", "responses": status}},
        "/health/ready": {"get": _ready_operation(
            "ready", "Readiness: this worker's models answered their serving examples")},
        "/ping": {"get": _ready_operation("ping", "Readiness, as MLflow's scoring server answers it")},
        "/health": {"get": _ready_operation("health", "The same as /ping")},
        "/version": {"get": {"summary": "The modelpack version", "operationId": "version", "responses": {
            "200": {"description": "The bare version", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/": {"get": {"summary": "A page to try the models in a browser", "operationId": "page", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    if model_routes:
        paths["/models"] = {"get": {"summary": "The models this server scores", "operationId": "models",
                                    "responses": {"200": {"description": "Their names and URLs", "content": {
                                        "application/json": {"schema": _MODELS_SCHEMA}}}}}}
    return paths


def _summary(model: Any) -> dict[str, Any]:
    """``model`` as the summary ``GET /metadata`` answers (a dict is one already; bytes are its JSON)."""
    if isinstance(model, dict):
        return model
    if isinstance(model, (bytes, str)):
        import orjson

        return orjson.loads(model)
    from ..summary import describe

    return describe(model.model_dir, model.metadata, files=False)


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "string", "examples": ERROR_CODES},
        "message": {"type": "string", "description": "What was expected and what was received"},
    },
}
_PREDICTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["predictions"],
    "properties": {"predictions": {
        "description": "What the model returned: a list (one value, list or record per row) or an object of "
                       "named outputs. NaN and infinities are written as the literals NaN, Infinity, -Infinity"}},
}
_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["status"], "properties": {"status": {"type": "string", "const": "ok"}},
}
_MODELS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["models"],
    "properties": {"models": {"type": "array", "items": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "invocations": {"type": "string"}}}}},
}
