"""Bad input over real HTTP: no body is cut or misread into a 200, and every client mistake is a 4xx naming
what was wrong (the column, the row) before the model is called. The cases are a tester's findings (issue 12,
points 2 and 3), each sent to a real `modelpack serve`."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import requests
from helpers import Server, start_server

import modelpack

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW = [0.038076, 0.05068, 0.061696, 0.021872, -0.044223, -0.034821, -0.043401, -0.002592, 0.019908, -0.017646]
HEADER = ",".join(COLUMNS)
CSV_ROW = ",".join(map(str, ROW))
MISSING = "the model's signature needs a value in every row of it"


@pytest.fixture(scope="module")
def diabetes_server(diabetes_model_dir, tmp_path_factory):
    server = start_server(diabetes_model_dir, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(elasticnet) -> float:
    return float(elasticnet.predict(pd.DataFrame([ROW], columns=COLUMNS))[0])


#: The code of a 400 for input read but refused by the model's signature (MLflow's for a failed schema enforcement);
#: a body that cannot be read, or is in the wrong shape, is BAD_REQUEST.
MISMATCH = "INVALID_PARAMETER_VALUE"


def error(resp: requests.Response, status: int = 400, code: str = "BAD_REQUEST") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code, body
    assert "Traceback" not in body["message"]
    return body["message"]


def rows_with(value: object, row: int = 2, column: str = "bmi") -> list[list]:
    """Three rows of ROW, ``value`` in ``column`` of ``row``."""
    rows = [list(ROW) for _ in range(3)]
    rows[row][COLUMNS.index(column)] = value
    return rows


# -- point 2: bodies cut or misread --------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["default", "sync"])
def limited_server(request, diabetes_model_dir, tmp_path_factory):
    """The diabetes model with a 100,000-byte body limit, on the default worker class and on gunicorn's sync one."""
    env = {"MODELPACK_MAX_BODY_BYTES": "100000"}
    if request.param != "default":
        env["MODELPACK_WORKER_CLASS"] = request.param
    server = start_server(diabetes_model_dir, tmp_path_factory.mktemp("srv"), env=env)
    yield server
    server.stop()


def chunks(body: bytes, size: int = 7000):
    """``body`` as a generator: requests sends it with Transfer-Encoding: chunked, without Content-Length."""
    return (body[i:i + size] for i in range(0, len(body), size))


def csv_of(count: int) -> bytes:
    return (HEADER + "\n" + (CSV_ROW + "\n") * count).encode()


def json_of(count: int) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW] * count}})


@pytest.mark.parametrize("content_type, make", [("text/csv", csv_of), ("application/json", json_of)])
def test_chunked_body_over_the_limit_is_413(limited_server, content_type, make, expected):
    body = make(1100)
    assert len(body) > 100_000
    resp = limited_server.post(chunks(body), content_type)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in resp.request.headers
    assert "larger than the server's limit of 100000 bytes" in error(resp, 413, "PAYLOAD_TOO_LARGE")
    within = make(100)  # under the limit, chunked: scored, every row
    assert len(within) < 100_000
    predictions = limited_server.post(chunks(within), content_type).json()["predictions"]
    assert predictions == pytest.approx([expected] * 100, rel=1e-12)


def test_the_testers_64_mib_chunked_csv_is_413(diabetes_server):
    """The finding as reported: 64 MiB + 200 B of CSV, chunked, at the default limit, was cut and scored (200)."""
    head, row = (HEADER + "\n").encode(), (CSV_ROW + "\n").encode()
    body = head + row * ((64 * 1024 * 1024 + 200 - len(head)) // len(row) + 1)
    assert 64 * 1024 * 1024 + 200 <= len(body) < 64 * 1024 * 1024 + 200 + len(row)
    resp = diabetes_server.post(chunks(body, 1 << 20), "text/csv")
    assert "larger than the server's limit of 67108864 bytes" in error(resp, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("body, message", [
    # one field more than the header: pandas took the first as the index and shifted every value (200, 9677.6)
    (f"{HEADER}\n{CSV_ROW},99\n", "CSV row 0 has 11 fields but the header has 10"),
    (f"{HEADER}\n{CSV_ROW},99\n{CSV_ROW},99\n", "CSV row 0 has 11 fields but the header has 10 (and 1 more row(s))"),
    (f"{HEADER}\n{CSV_ROW}\n{CSV_ROW},99\n", "CSV row 1 has 11 fields but the header has 10"),
    (f"{HEADER}\n{CSV_ROW}\n{CSV_ROW}\n0.1,0.2,0.3\n", "CSV row 2 has 3 fields but the header has 10"),  # ragged
    (f'{HEADER}\n{CSV_ROW}\n"0.1",{CSV_ROW}\n', "CSV row 1 has 11 fields but the header has 10"),  # quoted
    (f"{HEADER}\r\n{CSV_ROW}\r\n\r\n{CSV_ROW},1\r\n", "CSV row 1 has 11 fields"),  # CRLF, a blank line skipped
    (f"{HEADER},age\n{CSV_ROW},1\n", "CSV header names the column 'age' twice"),  # pandas renames it age.1
    (f"{HEADER}\n", "CSV body has a header of 10 column(s) ['age', 'sex', 'bmi', 'bp', 's1', 's2', 's3', 's4', "
                    "'s5', 's6'] but no data rows"),
    (f"{HEADER}\n\n  \n", "but no data rows"),
])
def test_csv_rows_must_match_the_header(diabetes_server, body, message):
    assert message in error(diabetes_server.post(body, "text/csv"))


def test_csv_with_a_quoted_field_holding_a_comma_still_scores(diabetes_server, expected):
    body = f'"age",sex,bmi,bp,s1,s2,s3,s4,s5,s6\n{CSV_ROW}\n"{ROW[0]}",{",".join(map(str, ROW[1:]))}\n'
    assert diabetes_server.post(body, "text/csv").json()["predictions"] == pytest.approx([expected] * 2)
    wrong = f'{HEADER}\n"0.1,0.2",{",".join(map(str, ROW[1:]))},1\n'  # 11 fields: the quoted one holds a comma
    assert "CSV row 0 has 11 fields" in error(diabetes_server.post(wrong, "text/csv"))


@pytest.mark.parametrize("body, code", [
    ({"instances": [[True, *ROW[1:]]]}, "BAD_REQUEST"),
    ({"instances": [list(ROW), [*ROW[:5], False, *ROW[6:]]]}, "BAD_REQUEST"),
    ({"inputs": {**{c: [v] for c, v in zip(COLUMNS, ROW, strict=True)}, "bmi": [True]}}, MISMATCH),  # the column
    ({"inputs": {**{c: [v, v] for c, v in zip(COLUMNS, ROW, strict=True)}, "bmi": [0.5, True]}}, "BAD_REQUEST"),
])
def test_a_boolean_among_numbers_is_not_a_number(diabetes_server, body, code):
    message = error(diabetes_server.post(orjson.dumps(body)), code=code)
    assert "true" in message or "false" in message or "received bool" in message
    assert "a boolean is not a number" in message or "booleans and numbers do not convert" in message


# -- point 3: client mistakes are 4xx naming the column and row ---------------------------------------------

@pytest.mark.parametrize("make", [
    lambda rows: {"dataframe_split": {"columns": COLUMNS, "data": rows}},
    lambda rows: {"columns": COLUMNS, "data": rows},
    lambda rows: {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in rows]},
    lambda rows: {"instances": rows},
    lambda rows: {"instances": [dict(zip(COLUMNS, r, strict=True)) for r in rows]},
    lambda rows: {"inputs": rows},
    lambda rows: {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}},
], ids=["split", "bare split", "records", "instances", "instances records", "inputs", "inputs columns"])
def test_null_in_a_required_double_column(diabetes_server, make):
    message = error(diabetes_server.post(orjson.dumps(make(rows_with(None)))), code=MISMATCH)
    assert message.startswith(f"Required column 'bmi' (double) has no value at row 2; {MISSING}")


@pytest.mark.parametrize("field, message", [
    ("nan", f"Required column 'bmi' (double) has no value at row 2; {MISSING}"),
    ("NaN", f"Required column 'bmi' (double) has no value at row 2; {MISSING}"),
    ("", f"Required column 'bmi' (double) has no value at row 2; {MISSING}"),  # an empty field
    ("inf", "Column 'bmi' holds inf at row 2; expected a finite double"),
    ("-inf", "Column 'bmi' holds -inf at row 2; expected a finite double"),
    ("1e400", "Column 'bmi' holds inf at row 2; expected a finite double (a number too large for a double, such as"
              " 1e400, reads as infinity)"),
])
def test_missing_and_non_finite_csv_fields(diabetes_server, field, message):
    rows = rows_with("FIELD")
    body = HEADER + "\n" + "\n".join(",".join(map(str, r)) for r in rows).replace("FIELD", field) + "\n"
    assert error(diabetes_server.post(body, "text/csv"), code=MISMATCH).startswith(message)


@pytest.mark.parametrize("literal, message", [
    ("NaN", f"Required column 'bmi' (double) has no value at row 2; {MISSING}"),
    ("Infinity", "Column 'bmi' holds inf at row 2; expected a finite double"),
    ("-Infinity", "Column 'bmi' holds -inf at row 2; expected a finite double"),
    ("1e400", "Column 'bmi' holds inf at row 2; expected a finite double"),
])
def test_non_finite_json_numbers_meet_the_signature(diabetes_server, literal, message):
    """JSON's NaN, Infinity (what Python's json.dumps writes) and 1e400 are read, as MLflow reads them; then a
    required double column refuses them by name, never scored or a 500."""
    body = orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows_with("FIELD")}})
    body = body.replace(b'"FIELD"', literal.encode())
    assert error(diabetes_server.post(body), code=MISMATCH).startswith(message)


def test_a_record_without_a_key_names_the_column_and_row(diabetes_server):
    records = [dict(zip(COLUMNS, ROW, strict=True)) for _ in range(3)]
    del records[1]["s6"]
    message = error(diabetes_server.post(orjson.dumps({"dataframe_records": records})), code=MISMATCH)
    assert message.startswith("Required column 's6' (double) has no value at row 1;")


@pytest.mark.parametrize("body, message", [
    ({"dataframe_split": {"columns": COLUMNS, "data": []}}, "'dataframe_split.data' holds no rows"),
    ({"columns": COLUMNS, "data": []}, "'body.data' holds no rows"),
    ({"dataframe_records": []}, "'dataframe_records' holds no rows"),
    ({"instances": []}, "'instances' holds no rows"),
    ({"inputs": []}, "'inputs' holds no rows"),
    ({"inputs": {}}, "'inputs' is an empty object"),
    ({"dataframe_split": {"columns": COLUMNS, "index": [0, 1, 2], "data": [ROW]}},
     "'dataframe_split.index' has 3 labels for 1 rows of 'dataframe_split.data'"),
    ({"dataframe_split": {"columns": COLUMNS, "index": 7, "data": [ROW]}}, "'dataframe_split.index' has a int"),
    ({"dataframe_split": {"data": [ROW, ROW[:9]]}}, "'dataframe_split.data' row 1 has 9 values; row 0 has 10"),
    ({"dataframe_split": {"columns": COLUMNS, "data": [ROW, ROW[:9]]}},
     "'dataframe_split.data' row 1 has 9 values; expected 10 (one per column)"),
    ({"dataframe_split": {"columns": [*COLUMNS, "age"], "data": [[*ROW, 1.0]]}},
     "'dataframe_split.columns' names the column 'age' twice"),
    ({"dataframe_split": {"columns": [*COLUMNS[:9], ["s6"]], "data": [ROW]}},
     "'dataframe_split.columns' holds ['s6']; a column name is a string"),
])
def test_empty_or_inconsistent_tables(diabetes_server, body, message):
    assert message in error(diabetes_server.post(orjson.dumps(body)))


def test_index_before_data_is_checked_on_the_fast_path_too(diabetes_server, expected):
    body = b'{"dataframe_split": {"index": [0, 1], "columns": ' + orjson.dumps(COLUMNS) + b', "data": ['
    assert "has 2 labels for 1 rows" in error(diabetes_server.post(body + orjson.dumps(ROW) + b"]}}"))
    ok = diabetes_server.post(body + orjson.dumps(ROW) + b"," + orjson.dumps(ROW) + b"]}}")
    assert ok.json()["predictions"] == pytest.approx([expected] * 2, rel=1e-12)


DEEP = b"[" * 1000 + b"1" + b"]" * 1000


@pytest.mark.parametrize("params, message", [
    (b'{"p": ' + DEEP + b"}", "Parameter 'p' is a nested list; a parameter is a scalar or a list of scalars"),
    (b'{"p": [1, [2]]}', "Parameter 'p' is a nested list"),
    (b'{"p": {"a": 1}}', "Parameter 'p' is an object; a parameter is a scalar or a list of scalars"),
])
def test_params_are_scalars_or_lists_of_scalars(custom_server, diabetes_server, params, message):
    """Even for a model without a signature (the custom model), whose params reached the model (TypeError, 500)."""
    assert message in error(custom_server.post(b'{"inputs": [1], "params": ' + params + b"}"))
    split = orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}})
    assert message in error(diabetes_server.post(split[:-1] + b', "params": ' + params + b"}"))


def test_text_among_numbers_is_not_made_text(custom_server):
    assert "'instances[1]' is 1 among strings; a number is not turned into text" in error(
        custom_server.post(b'{"instances": ["a", 1]}'))
    assert "'inputs.x[0][1]' is true among numbers" in error(custom_server.post(b'{"inputs": {"x": [[1, true]]}}'))
    assert custom_server.post(b'{"instances": [1, 2]}').json()["predictions"] == [2, 4]  # numbers alone: fine


@pytest.fixture(scope="module")
def custom_server(custom_model_dir, tmp_path_factory):
    server = start_server(custom_model_dir, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


def raw_request(server: Server, request: bytes) -> tuple[int, dict]:
    """Send ``request`` bytes as they are; the status and JSON body of the answer (read until the server closes)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize("chunked", [b"ZZ\r\n{}\r\n0\r\n\r\n", b"2\r\n{}xx\r\n0\r\n\r\n"],
                         ids=["bad chunk size", "no CRLF after the chunk"])
def test_malformed_chunked_body_is_400(limited_server, chunked):
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, body = raw_request(limited_server, head + chunked)
    assert status == 400 and body["error_code"] in ("BAD_REQUEST", "MALFORMED_REQUEST"), body
    assert "chunk" in body["message"].lower() and "model" not in body["message"].lower()
    assert limited_server.post(json_of(1)).status_code == 200  # and it keeps serving


# -- the model raising on input that passed the signature stays a 500, and says so ----------------------------

@pytest.fixture(scope="module")
def picky_model_dir(tmp_path_factory) -> Path:
    """Columns x: double (required), y: double (optional); raises ValueError on a negative x; echoes y."""

    class Picky(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            if (model_input["x"] < 0).any():
                raise ValueError("negative x: secret-row-value")
            return model_input["y"].to_numpy()

    path = tmp_path_factory.mktemp("models") / "picky"
    modelpack.save_model(Picky(), path, input_example=pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, None]}))
    return path


@pytest.fixture(scope="module")
def picky_server(picky_model_dir, tmp_path_factory):
    server = start_server(picky_model_dir, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


def test_optional_column_inferred_from_the_example_takes_missing_values(picky_server, picky_model_dir):
    signature = requests.get(picky_server.url + "/metadata", timeout=5).json()["signature"]["inputs"]
    assert signature == [{"type": "double", "name": "x", "required": True},
                         {"type": "double", "name": "y", "required": False}]
    ok = picky_server.post(b'{"dataframe_split": {"columns": ["x", "y"], "data": [[1.0, null], [2.0, 3.5]]}}')
    assert ok.text == '{"predictions":[NaN,3.5]}'  # the NaN the model returned, as MLflow writes it
    left_out = picky_server.post(b'{"dataframe_records": [{"x": 1.0}]}')
    assert left_out.text == '{"predictions":[NaN]}'
    assert error(picky_server.post(b"x,y\n,1\n", "text/csv"), code=MISMATCH).startswith(
        "Required column 'x' (double) has no value at row 0;")


def test_model_error_on_valid_input_is_500_saying_retrying_fails(picky_server):
    message = error(picky_server.post(b'{"dataframe_split": {"columns": ["x", "y"], "data": [[-1.0, 1.0]]}}'),
                    500, "MODEL_ERROR")
    assert message.startswith("The model raised ValueError while predicting; the request passed the server's input"
                              " checks (the model's signature, when it has one), so sending it again fails the same"
                              " way: the model or its signature needs fixing; details are in the server log under"
                              " error id ")
    assert "secret-row-value" not in message and message.rsplit(" ", 1)[-1] in picky_server.log()


# -- non-finite predictions ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def non_finite_server(tmp_path_factory):
    """Predicts a float array, a DataFrame or a dict holding NaN and infinities, by the param 'kind'."""

    class NonFinite(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import numpy as np
            import pandas as pd

            kind = (params or {}).get("kind", "array")
            values = np.array([np.inf, -np.inf, np.nan, 1.5])
            if kind == "frame":
                return pd.DataFrame({"p": values, "label": ["a", None, "c", "d"]})
            if kind == "dict":
                return {"p": values.astype(np.float32), "n": [1, None]}
            if kind == "finite":
                return np.array([0.1, 2.0], dtype=np.float32)
            return values

    path = tmp_path_factory.mktemp("models") / "non_finite"
    modelpack.save_model(NonFinite(), path)
    server = start_server(path, tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


@pytest.mark.parametrize("kind, text", [
    ("array", '{"predictions":[Infinity,-Infinity,NaN,1.5]}'),
    ("frame", '{"predictions":[{"p":Infinity,"label":"a"},{"p":-Infinity,"label":null},{"p":NaN,"label":"c"},'
              '{"p":1.5,"label":"d"}]}'),
    ("dict", '{"predictions":{"p":[Infinity,-Infinity,NaN,1.5],"n":[1,null]}}'),
    ("finite", '{"predictions":[0.1,2.0]}'),  # orjson's own output: float32 printed short
])
def test_non_finite_predictions_round_trip(non_finite_server, kind, text):
    body = b'{"inputs": [1], "params": {"kind": "' + kind.encode() + b'"}}'
    resp = non_finite_server.post(body)
    assert resp.status_code == 200 and resp.text == text
    predictions = resp.json()["predictions"]  # Python's json (and requests, pandas, MLflow's client) reads them
    if kind == "array":
        assert math.isinf(predictions[0]) and predictions[0] > 0 and predictions[1] < 0
        assert math.isnan(predictions[2]) and predictions[3] == 1.5


# -- error bodies quote a capped amount of the input ----------------------------------------------------------

HUGE = "x" * 1_000_000


@pytest.mark.parametrize("body, content_type, code", [
    (orjson.dumps({"dataframe_split": {"columns": [HUGE], "data": [[1.0]]}}), "application/json", MISMATCH),
    (orjson.dumps({HUGE: 1}), "application/json", "BAD_REQUEST"),
    (orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}, "params": {HUGE: [[1]]}}),
     "application/json", "BAD_REQUEST"),
    (orjson.dumps({"dataframe_records": [{HUGE: 1.0}]}), "application/json", MISMATCH),
    (orjson.dumps({"dataframe_split": {"columns": [HUGE, HUGE], "data": [[1.0, 2.0]]}}), "application/json",
     "BAD_REQUEST"),
    ((HUGE + "\n1\n").encode(), "text/csv", MISMATCH),
    ((HEADER + "\n" + CSV_ROW.replace("0.061696", HUGE) + "\n").encode(), "text/csv", MISMATCH),
    (orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[HUGE, *ROW[1:]]]}}), "application/json",
     MISMATCH),
])
def test_error_bodies_do_not_echo_a_megabyte(diabetes_server, body, content_type, code):
    resp = diabetes_server.post(body, content_type)
    message = error(resp, code=code)
    assert len(resp.content) < 2500, message[:300]
    assert "xxxxxxxx" not in message or "characters)" in message


def test_model_error_messages_are_capped_too():
    from modelpack.errors import PredictionError
    from modelpack.server.errors import to_response

    status, body = to_response(PredictionError("The model raised " + "E" * 100_000 + " while predicting"))
    message = orjson.loads(body)["message"]
    assert status == 500 and len(message) < 2000
    assert message.split()[-2:-1] == ["id"]  # the error id survives the cut, at the end


def test_the_server_still_answers_after_all_that(diabetes_server, expected):
    resp = diabetes_server.post(orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}))
    assert resp.json()["predictions"] == pytest.approx([expected], rel=1e-12)
    assert "Traceback" not in diabetes_server.log()


# -- encoding, unit level ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("predictions, text", [
    (np.array([1.0, np.nan]), '{"predictions":[1.0,NaN]}'),
    (pd.Series([np.inf, 2.0]), '{"predictions":[{"0":Infinity},{"0":2.0}]}'),  # a Series: MLflow's records
    (pd.Series([np.nan, 2.0], name="p"), '{"predictions":[{"p":NaN},{"p":2.0}]}'),
    (np.array([None, 1.0], dtype=object), '{"predictions":[null,1.0]}'),  # None stays null: a missing value
    (np.array([[1.0, -np.inf]], dtype=np.float32), '{"predictions":[[1.0,-Infinity]]}'),
    ([1.0, float("nan"), None], '{"predictions":[1.0,NaN,null]}'),
    (pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [np.nan, 0.5]}),
     '{"predictions":[{"a":1,"b":NaN},{"a":null,"b":0.5}]}'),
])
def test_encode_predictions_writes_non_finite_literals(predictions, text):
    from modelpack.server.encode import encode_predictions

    assert encode_predictions(predictions).decode() == text
    assert json.loads(text) is not None  # Python's json reads it back


@pytest.mark.parametrize("body, message", [
    (b"a,b\r\n1,2\r\n\r\n3,4,5\r\n", "CSV row 1 has 3 fields but the header has 2"),  # CRLF, a blank line
    (b"a,b\r1,2\r3\r", "CSV row 1 has 1 fields but the header has 2"),  # lone CRs end lines, as for pandas
    (b"\n\n  \na,b\n1,2\n\n  \n1\n", "CSV row 1 has 1 fields but the header has 2"),  # blank lines skipped
    (b"a,b\n1,2,3", "CSV row 0 has 3 fields but the header has 2"),  # no final newline
    (b'a,b\n1,"2,3",4\n', "CSV row 0 has 3 fields but the header has 2"),
    (b'a,b\n1,"2\n3"\n4\n', "CSV row 1 has 1 fields but the header has 2"),  # a quoted line break
    (b"a,b\n  \n", "but no data rows"),
    (b"a,b", "but no data rows"),
    (b" \n\t\n", "CSV body is empty"),
])
@pytest.mark.parametrize("float_rows", [False, True], ids=["checked", "fast"])
def test_csv_shape_errors_on_either_decoder(body, message, float_rows):
    from modelpack.errors import InvalidInputError
    from modelpack.server.decode import RequestDecoder

    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RequestDecoder(float_rows)("text/csv", body)


@pytest.mark.parametrize("body", [
    b"a,b\n1,2\n", b"a,b\r\n1,2\r\n\r\n3,4\r\n", b"a,b\r1,2\r3,4\r", b"\n  \na,b\n1,2\n\n", b"a\n1\n\n2\n",
    b'"a","b"\n1,"2"\n', b'a,b\n1,"x\ny"\n', b"\xef\xbb\xbfa,b\n1,2\n",
])
def test_well_formed_csv_reads_as_pandas_reads_it(body):
    import io

    from modelpack.server.decode import RequestDecoder

    frame, _ = RequestDecoder(False)("text/csv", body)
    pd.testing.assert_frame_equal(frame, pd.read_csv(io.BytesIO(body)))
