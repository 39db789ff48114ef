"""GET /openapi.json, the page's HTTP side and the health endpoints, on real servers.

The document is checked by a real OpenAPI 3.1 validator (openapi-spec-validator), and its request schemas by a
real JSON Schema validator (jsonschema) against the saved examples and against the server itself: for each body
below, the schema accepts it exactly when the server answers 200 (a schema that refused valid requests, or took
invalid ones, would mislead every client generated from it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import Server, checkout_copy, free_port, wait_until_ready

import modelpack
from modelpack.server.openapi import openapi_document

jsonschema = pytest.importorskip("jsonschema", reason="the test extra installs jsonschema")
spec_validator = pytest.importorskip("openapi_spec_validator", reason="the test extra installs openapi-spec-validator")

JSON = {"Content-Type": "application/json"}


# ---------------------------------------------------------------- models, trained here


@pytest.fixture(scope="module")
def mixed_model_dir(tmp_path_factory) -> Path:
    """A scikit-learn pipeline on a string, a long and a double column with missing values (so the signature
    inferred from the example marks ``weight`` optional), saved with that example."""
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    n = 80
    X = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], n), "size": rng.integers(1, 10, n),
                      "weight": rng.normal(5, 2, n)})
    X.loc[::7, "weight"] = np.nan
    y = (X["size"] > 5).astype(int)
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["color"]),
                                (SimpleImputer(), ["size", "weight"])),
        LogisticRegression(),
    ).fit(X, y)
    path = tmp_path_factory.mktemp("openapi") / "mixed"
    modelpack.save_model(pipe, path, input_example=X.iloc[:4])
    return path


@pytest.fixture(scope="module")
def tensor_model_dir(tmp_path_factory) -> Path:
    """A random forest fitted on a numpy array: a tensor signature (float64, shape (-1, 3)) and example."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 3))
    path = tmp_path_factory.mktemp("openapi") / "tensor"
    modelpack.save_model(RandomForestRegressor(n_estimators=5, random_state=0).fit(A, A.sum(1)), path,
                         input_example=A[:2])
    return path


@pytest.fixture(scope="module")
def params_model_dir(tmp_path_factory) -> Path:
    """A custom model with inference parameters in its signature: scales column x."""

    class Scaler(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            params = params or {}
            return (model_input["x"] * params.get("scale", 1.0)).to_numpy()

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    signature = modelpack.infer_signature(frame, np.array([1.0, 2.0]), params={"scale": 1.0, "tags": ["a"]})
    path = tmp_path_factory.mktemp("openapi") / "params"
    modelpack.save_model(Scaler(), path, signature=signature, input_example=frame)
    return path


# ---------------------------------------------------------------- helpers


def request_validator(doc: dict, operation: dict) -> jsonschema.protocols.Validator:
    """A JSON Schema validator for the JSON request body of ``operation`` ($refs resolved within ``doc``)."""
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return schema_validator(doc, ref)


def schema_validator(doc: dict, ref: str) -> jsonschema.protocols.Validator:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": ref, "components": doc["components"]}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def example_of(operation: dict) -> object:
    return operation["requestBody"]["content"]["application/json"]["examples"]["serving_input_example"]["value"]


def check_agreement(server: Server, path: str, validator, valid: list, invalid: list) -> None:
    """Each body of ``valid`` passes the schema and gets 200 (its predictions as the 200 schema says); each of
    ``invalid`` fails the schema and gets a 400 in the error shape."""
    doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    predictions = schema_validator(doc, "#/components/schemas/Predictions")
    error = schema_validator(doc, "#/components/schemas/Error")
    for body in valid:
        assert not list(validator.iter_errors(body)), f"schema refuses a valid request {body}"
        answer = requests.post(f"{server.url}{path}", data=json.dumps(body), headers=JSON, timeout=30)
        assert answer.status_code == 200, f"{body} -> {answer.status_code} {answer.text}"
        predictions.validate(answer.json())
    for body in invalid:
        assert list(validator.iter_errors(body)), f"schema takes an invalid request {body}"
        answer = requests.post(f"{server.url}{path}", data=json.dumps(body), headers=JSON, timeout=30)
        assert answer.status_code == 400, f"{body} -> {answer.status_code} {answer.text}"
        error.validate(answer.json())


# ---------------------------------------------------------------- the document


def test_served_document_is_valid_and_its_example_is_a_valid_request(serve, mixed_model_dir):
    server = serve(mixed_model_dir)
    answer = requests.get(f"{server.url}/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    doc = answer.json()
    spec_validator.validate(doc)  # OpenAPI 3.1, its schemas included
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == modelpack.__version__

    name = mixed_model_dir.name  # a single -m PATH serves the model under its directory's name
    single, named = doc["paths"]["/invocations"]["post"], doc["paths"][f"/models/{name}/invocations"]["post"]
    assert single["requestBody"] == named["requestBody"]
    for path in ("/metadata", f"/models/{name}/metadata", f"/models/{name}/ready", "/models", "/health/live",
                 "/health/ready", "/ping", "/version", "/openapi.json", "/"):
        assert "get" in doc["paths"][path], path
    info = single["x-modelpack"]
    assert info["model"] == name and info["flavor"] == "sklearn"
    assert [(c["name"], c["type"], c["required"]) for c in info["signature"]["inputs"]] == [
        ("color", "string", True), ("size", "long", True), ("weight", "double", False)]

    # the saved example is in the document, valid against the request schema, and the server scores it
    saved = json.loads((mixed_model_dir / "serving_input_example.json").read_text())
    example = example_of(single)
    assert example == saved
    request_validator(doc, single).validate(example)
    scored = requests.post(f"{server.url}/invocations", data=json.dumps(example), headers=JSON, timeout=10)
    assert scored.status_code == 200, scored.text
    expected = modelpack.load_model(mixed_model_dir).predict(
        pd.DataFrame(saved["dataframe_split"]["data"], columns=saved["dataframe_split"]["columns"]))
    assert scored.json()["predictions"] == np.asarray(expected).tolist()

    # the CSV example is the same rows, and the server reads it to the same predictions
    csv_body = single["requestBody"]["content"]["text/csv"]["examples"]["serving_input_example"]["value"]
    assert csv_body.splitlines()[0] == "color,size,weight"
    by_csv = requests.post(f"{server.url}/invocations", data=csv_body, headers={"Content-Type": "text/csv"},
                           timeout=10)
    assert by_csv.status_code == 200 and by_csv.json() == scored.json()

    # the document is computed once: byte for byte the same on every request
    again = requests.get(f"{server.url}/openapi.json", timeout=10)
    assert again.content == answer.content


def test_column_schema_agrees_with_the_server(serve, mixed_model_dir):
    server = serve(mixed_model_dir)
    doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    validator = request_validator(doc, doc["paths"]["/invocations"]["post"])
    valid = [
        {"dataframe_split": {"columns": ["color", "size", "weight"], "data": [["red", 3, 1.5], ["blue", 9, None]]}},
        {"dataframe_split": {"columns": ["size", "color"], "data": [[3, "red"]]}},  # any order; optional left out
        {"columns": ["color", "size"], "data": [["green", 2]]},  # MLflow 1.x's bare split object
        {"dataframe_records": [{"color": "red", "size": 3}, {"color": "blue", "size": 2, "weight": None}]},
        {"dataframe_records": [{"color": "red", "size": 3.0, "weight": 2, "extra": "dropped"}]},  # 3.0 is whole
        {"instances": [{"color": "red", "size": 3, "weight": 1.0}]},
        {"inputs": {"color": ["red", "blue"], "size": [1, 2], "weight": [0.5, None]}},
        {"inputs": [{"color": "red", "size": 1}]},
        {"dataframe_records": [{"color": "red", "size": 3}], "params": {"unknown": 1}},  # ignored, as MLflow does
    ]
    invalid = [
        {"dataframe_records": [{"size": 3, "weight": 1.0}]},  # required column left out
        {"dataframe_records": [{"color": "red", "size": "3"}]},  # a number as text
        {"dataframe_records": [{"color": "red", "size": 3.5}]},  # not a whole number for a long
        {"dataframe_records": [{"color": "red", "size": True}]},  # a boolean is no number
        {"dataframe_records": [{"color": 5, "size": 3}]},  # a number for a string
        {"dataframe_records": [{"color": None, "size": 3}]},  # missing value in a required column
        {"dataframe_records": []},  # no rows
        {"dataframe_split": {"data": [["red", 3, 1.0]]}},  # no column names for a named signature
        {"data": [["red", 3, 1.0]]},  # the same, as a bare split object
        {"dataframe_split": {"columns": ["color", "size"], "data": [["red", 1]]},
         "dataframe_records": [{"color": "red", "size": 1}]},  # two formats
        {"params": {"a": 1}},  # no input at all
    ]
    check_agreement(server, "/invocations", validator, valid, invalid)


def test_tensor_schema_agrees_with_the_server(serve, tensor_model_dir):
    server = serve(tensor_model_dir)
    doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    spec_validator.validate(doc)
    operation = doc["paths"]["/invocations"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json"}  # no CSV for a tensor model
    validator = request_validator(doc, operation)
    valid = [example_of(operation), {"inputs": [[1, 2, 3]]}, {"instances": [[1.5, 2, 3], [4, 5, 6]]}]
    invalid = [{"inputs": [[1, 2]]}, {"inputs": [1, 2, 3]}, {"inputs": [["a", "b", "c"]]}, {"instances": []},
               {"inputs": [[1, 2, 3]], "instances": [[1, 2, 3]]}]
    check_agreement(server, "/invocations", validator, valid, invalid)


def test_params_schema_agrees_with_the_server(serve, params_model_dir):
    server = serve(params_model_dir)
    doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    spec_validator.validate(doc)
    operation = doc["paths"]["/invocations"]["post"]
    validator = request_validator(doc, operation)
    params = operation["x-modelpack"]["signature"]["params"]
    assert {p["name"]: p["default"] for p in params} == {"scale": 1.0, "tags": ["a"]}
    body = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
    valid = [example_of(operation), {**body, "params": {"scale": 3}}, {**body, "params": {"tags": ["b", "c"]}}]
    invalid = [{**body, "params": {"scale": "big"}}, {**body, "params": {"tags": "b"}},
               {**body, "params": {"scale": [1.0]}}]
    check_agreement(server, "/invocations", validator, valid, invalid)
    scaled = requests.post(f"{server.url}/invocations", data=json.dumps({**body, "params": {"scale": 3}}),
                           headers=JSON, timeout=10)
    assert scaled.json() == {"predictions": [3.0, 6.0]}


def test_a_model_without_signature_gets_a_valid_document(serve, custom_model_dir):
    server = serve(custom_model_dir)
    doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    spec_validator.validate(doc)
    operation = doc["paths"]["/invocations"]["post"]
    assert "examples" not in operation["requestBody"]["content"]["application/json"]  # none was saved
    assert operation["x-modelpack"]["signature"] == {"inputs": None, "outputs": None, "params": None}
    validator = request_validator(doc, operation)
    valid = [{"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}, "params": {"scale": 2}},
             {"dataframe_records": [{"x": 1.5}]}, {"inputs": [1, 2]}]
    invalid = [{"dataframe_split": {"columns": ["x"], "data": []}}, {"x": [1]}, {"dataframe_records": 5}]
    check_agreement(server, "/invocations", validator, valid, invalid)


def test_several_models_each_described_at_their_own_url(tmp_path, mixed_model_dir, tensor_model_dir):
    port = free_port()
    cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-p", str(port), "--env-manager", "local",
           "-m", f"mixed={mixed_model_dir}", "-m", f"tensor={tensor_model_dir}"]
    server = wait_until_ready(cmd, port, tmp_path / "server.log", dict(os.environ), 90)
    try:
        doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
        spec_validator.validate(doc)
        assert "/invocations" not in doc["paths"] and "/metadata" not in doc["paths"]  # no only model
        for name in ("mixed", "tensor"):
            operation = doc["paths"][f"/models/{name}/invocations"]["post"]
            assert operation["x-modelpack"]["model"] == name
            example = example_of(operation)
            request_validator(doc, operation).validate(example)
            answer = requests.post(f"{server.url}/models/{name}/invocations", data=json.dumps(example),
                                   headers=JSON, timeout=10)
            assert answer.status_code == 200, answer.text
        # each model's schema is its own: the tensor body is no request for the column model
        mixed = request_validator(doc, doc["paths"]["/models/mixed/invocations"]["post"])
        assert list(mixed.iter_errors({"inputs": [[1.0, 2.0, 3.0]]}))
    finally:
        assert server.stop() == 0


def test_documents_for_every_signature_kind_validate(tmp_path):
    """Signatures no model here was saved with: unnamed columns, every column type, named tensors, params of
    every type; the document validates and each skeleton request matches."""
    summaries = {
        "unnamed": {"flavor": "x", "signature": {"inputs": [{"type": "double"}, {"type": "string"}]},
                    "serving_input_example": {"dataframe_split": {"data": [[1.0, "a"]]}}},
        "types": {"flavor": "x", "signature": {
            "inputs": [{"name": t, "type": t, "required": t != "datetime"} for t in
                       ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime")],
            "params": [{"name": "when", "type": "datetime", "default": "2024-01-01T00:00:00", "shape": None},
                       {"name": "flags", "type": "boolean", "default": [True], "shape": [-1]},
                       {"name": "n", "type": "integer", "default": 3, "shape": None}]},
            "serving_input_example": {"dataframe_records": [
                {"boolean": True, "integer": 1, "long": 2**40, "float": 1.5, "double": 1e300, "string": "s",
                 "binary": "aGk=", "datetime": None}], "params": {"when": "2024-02-01", "n": 4}}},
        "named_tensors": {"flavor": "x", "signature": {"inputs": [
            {"name": "ids", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1, 2]}},
            {"name": "mask", "type": "tensor", "tensor-spec": {"dtype": "bool", "shape": [-1]}}]},
            "serving_input_example": {"inputs": {"ids": [[1, 2]], "mask": [True]}}},
        "named_tensors_rows": {"flavor": "x", "signature": {"inputs": [
            {"name": "ids", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1, 2]}}]},
            "serving_input_example": {"instances": [{"ids": [1, 2]}, {"ids": [3, 4]}]}},
        "odd name / with spaces": {"flavor": "x", "signature": None, "serving_input_example": None},
    }
    doc = openapi_document(list(summaries.items()))
    spec_validator.validate(doc)
    for name, summary in summaries.items():
        operation = doc["paths"][f"/models/{requests.utils.quote(name, safe='')}/invocations"]["post"]
        if summary["serving_input_example"] is not None:
            request_validator(doc, operation).validate(example_of(operation))
    types = request_validator(doc, doc["paths"]["/models/types/invocations"]["post"])
    row = example_of(doc["paths"]["/models/types/invocations"]["post"])["dataframe_records"][0]
    for column, bad in (("integer", 2**31), ("float", 1e300), ("boolean", 1), ("binary", 5)):
        assert list(types.iter_errors({"dataframe_records": [{**row, column: bad}]})), column
    unnamed = request_validator(doc, doc["paths"]["/models/unnamed/invocations"]["post"])
    assert list(unnamed.iter_errors({"dataframe_split": {"data": [["a", 1.0]]}}))  # positions are typed
    with pytest.raises(ValueError, match="only model"):
        openapi_document(list(summaries.items()), root_routes=True)


# ---------------------------------------------------------------- health


def test_health_live_and_ready(serve, diabetes_model_dir):
    server = serve(diabetes_model_dir)
    for path in ("/health/live", "/health/ready", "/ping", "/health"):
        answer = requests.get(f"{server.url}{path}", timeout=10)
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"}), path


@pytest.fixture(scope="module")
def failing_model_dir(tmp_path_factory) -> Path:
    """A custom model saved with an example that raises once the server's environment says so."""

    class FailsWhenTold(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import os

            if os.environ.get("OPENAPI_TEST_MODEL_FAILS"):
                raise RuntimeError("the model's backend is down")
            return model_input["x"].to_numpy()

    path = tmp_path_factory.mktemp("openapi") / "failing"
    modelpack.save_model(FailsWhenTold(), path, input_example=pd.DataFrame({"x": [1.0]}))
    return path


def test_ready_is_503_with_the_reason_while_live_stays_200(tmp_path, failing_model_dir):
    port = free_port()
    cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-m", str(failing_model_dir), "-p", str(port),
           "--env-manager", "local"]
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OPENAPI_TEST_MODEL_FAILS": "1"})
    server = Server(f"http://127.0.0.1:{port}", proc, tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, server.log()
            try:
                live = requests.get(f"{server.url}/health/live", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
        ready = requests.get(f"{server.url}/health/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["error_code"] == "MODEL_NOT_READY"
        assert "failed on its serving example" in ready.json()["message"]
        assert "backend is down" not in ready.json()["message"]  # the model's own text stays in the log
        assert requests.get(f"{server.url}/ping", timeout=10).status_code == 503
        assert requests.get(f"{server.url}/health/live", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------- the page's files over HTTP


def test_page_and_static_files_are_served_with_a_strict_policy(serve, diabetes_model_dir):
    server = serve(diabetes_model_dir)
    page = requests.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.text and " style=" not in page.text  # no inline script or style: the policy
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert referenced and all(not re.match(r"[a-z]+:|//", url) for url in referenced), referenced
    kinds = {"static/page.js": "text/javascript", "static/page.css": "text/css", "static/favicon.svg": "image/svg"}
    for url in referenced:
        if url == "openapi.json":
            continue
        answer = requests.get(f"{server.url}/{url}", timeout=10)
        assert answer.status_code == 200, url
        assert answer.headers["Content-Type"].startswith(kinds[url])
        text = answer.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, never fetched
        assert not re.search(r"https?://", text), f"{url} names a URL off this server"
        cached = requests.get(f"{server.url}/{url}", headers={"If-None-Match": answer.headers["ETag"]}, timeout=10)
        assert cached.status_code == 304 and cached.content == b""
    for path in ("/static/index.html", "/static/..%2Fpage.py", "/static/nope.js", "/static/"):
        answer = requests.get(f"{server.url}{path}", timeout=10)
        assert answer.status_code == 404 and answer.json()["error_code"] == "ENDPOINT_NOT_FOUND", path


def test_wheel_holds_the_page_files(tmp_path):
    """The page's files are package data: a wheel built from the checkout has them next to page.py."""
    source = checkout_copy(tmp_path / "src")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("modelpack-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    for name in ("index.html", "page.js", "page.css", "favicon.svg"):
        assert f"modelpack/server/static/{name}" in names, name
