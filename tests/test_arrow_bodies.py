"""Arrow IPC request bodies and Arrow/Parquet answers on /invocations (issue 16, part 2), over HTTP against a real
``modelpack serve``, with models trained here.

- an Arrow body (stream or file, compressed or not, columns in any order) scores as the same rows in JSON do, on the
  float-rows fast path (an all-double signature) and on the DataFrame path (strings, integers);
- ``Accept`` picks the answer: an Arrow stream or file, or Parquet, read back with pyarrow, equal to the JSON answer
  (arrays, 2-D arrays, DataFrames); JSON stays the default; a type the server cannot write is a 406;
- what is wrong with a body is a 400 naming it (not Arrow, cut short, no rows, a missing column, a wrong type, offsets
  that point past their buffer), a body declaring more than the limit a 413, and the worker keeps serving;
- without pyarrow: 415 for an Arrow body, 406 for an Accept only Arrow or Parquet satisfies, both naming the extra.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import Server, error, ok, start_server

import modelpack

JSON = "application/json"
STREAM = "application/vnd.apache.arrow.stream"
FILE = "application/vnd.apache.arrow.file"
PARQUET = "application/vnd.apache.parquet"
HAVE_ARROW = importlib.util.find_spec("pyarrow") is not None
needs_arrow = pytest.mark.skipif(not HAVE_ARROW, reason="Arrow bodies need pyarrow (the arrow extra)")


# -- helpers ------------------------------------------------------------------------------------------------------

def arrow_of(frame: pd.DataFrame, fmt: str = "stream", compression: str | None = None, index: bool = False,
             batch_rows: int | None = None) -> bytes:
    """``frame`` as an Arrow IPC stream (or file), as a client builds it with pyarrow."""
    import pyarrow as pa

    return ipc_of(pa.Table.from_pandas(frame, preserve_index=index), fmt, compression, batch_rows)


def ipc_of(table, fmt: str = "stream", compression: str | None = None, batch_rows: int | None = None) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with (pa.ipc.new_stream if fmt == "stream" else pa.ipc.new_file)(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    return sink.getvalue().to_pybytes()


def split_of(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()


def post(server: Server, body: bytes, content_type: str = STREAM, accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    return requests.post(f"{server.url}/invocations", data=body, headers=headers, timeout=60)


def table_of(resp: requests.Response, mimetype: str):
    """The Arrow table of an Arrow or Parquet answer, checking its Content-Type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == mimetype
    if mimetype == PARQUET:
        return pq.read_table(io.BytesIO(resp.content))
    if mimetype == FILE:
        return pa.ipc.open_file(pa.py_buffer(resp.content)).read_all()
    return pa.ipc.open_stream(pa.py_buffer(resp.content)).read_all()


def server_for(model_dir: Path, tmp_path_factory, env: dict | None = None):
    server = start_server(model_dir, tmp_path_factory.mktemp("server"), "-w", "1", env=env)
    try:
        yield server
    finally:
        server.stop()


# -- models, trained here, and their servers (one per module: each starts in ~2 s) ---------------------------------

@pytest.fixture(scope="module")
def diabetes_server(diabetes_model_dir, tmp_path_factory):
    """The README's ElasticNet: an all-double signature (the float-rows fast path)."""
    yield from server_for(diabetes_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def houses() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 300
    return pd.DataFrame({
        "city": rng.choice(["north", "south", "east"], n),
        "area": rng.uniform(30, 200, n).round(1),
        "rooms": rng.integers(1, 7, n),
    })


@pytest.fixture(scope="module")
def mixed_model_dir(tmp_path_factory, houses) -> Path:
    """A pipeline over a string, a double and a long column: the DataFrame path (no fast path)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    price = houses["area"] * 3 + houses["rooms"] * 10 + houses["city"].map({"north": 50, "south": 0, "east": 20})
    model = make_pipeline(ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough"),
                          Ridge(alpha=0.5)).fit(houses, price)
    path = tmp_path_factory.mktemp("models") / "mixed"
    modelpack.save_model(model, path, input_example=houses.head(3))
    return path


@pytest.fixture(scope="module")
def mixed_server(mixed_model_dir, tmp_path_factory):
    yield from server_for(mixed_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True)


@pytest.fixture(scope="module")
def tables_model_dir(tmp_path_factory, iris) -> Path:
    """Answers a DataFrame (a class name and its probability per row) for column input, and the classifier's
    probabilities (a 2-D array) for a ``probabilities`` param."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    names = list(iris.target_names)

    class Classes(modelpack.PythonModel):  # defined here, so cloudpickle stores it by value
        def __init__(self, classifier, names):
            self.classifier, self.names = classifier, names

        def predict(self, context, model_input, params=None):
            proba = self.classifier.predict_proba(model_input)
            if (params or {}).get("probabilities"):
                return proba
            best = proba.argmax(axis=1)
            return pd.DataFrame({"label": np.asarray(self.names)[best], "p": proba.max(axis=1), "k": best})

    path = tmp_path_factory.mktemp("models") / "classes"
    modelpack.save_model(Classes(classifier, names), path)
    return path


@pytest.fixture(scope="module")
def tables_server(tables_model_dir, tmp_path_factory):
    yield from server_for(tables_model_dir, tmp_path_factory)


# == 1. Arrow bodies score as JSON bodies do =======================================================================

@needs_arrow
def test_arrow_bodies_score_as_json_does(diabetes_server, diabetes):
    frame = diabetes[0].iloc[:50]
    expected = ok(post(diabetes_server, split_of(frame), JSON))
    assert len(expected) == 50
    bodies = {
        "stream": arrow_of(frame),
        "file": arrow_of(frame, "file"),
        "file as stream type": arrow_of(frame, "file"),
        "zstd": arrow_of(frame, compression="zstd"),
        "lz4, 7 batches": arrow_of(frame, compression="lz4", batch_rows=8),
        "columns reversed, index, an extra column": arrow_of(
            frame[frame.columns[::-1]].assign(note="x").set_index(frame.index + 1000), index=True),
    }
    for name, body in bodies.items():
        content_type = FILE if name == "file" else STREAM
        assert ok(post(diabetes_server, body, content_type)) == expected, name  # the same doubles, to the bit


@needs_arrow
def test_arrow_bodies_take_the_float_rows_path_when_they_can(diabetes_model_dir, diabetes):
    """In process: an Arrow body of the signature's doubles reaches the model as one float64 block; integers,
    a missing value or a NaN take the checked path, which casts or names the column as for JSON."""
    from modelpack.float_rows import FloatRows
    from modelpack.server.decode import RequestDecoder

    model = modelpack.load_model(diabetes_model_dir)
    decode = RequestDecoder.for_model(model)
    frame = diabetes[0].iloc[:20]
    rows, params = decode(STREAM, arrow_of(frame[frame.columns[::-1]].assign(extra=1)))
    assert type(rows) is FloatRows and rows.columns == list(frame.columns) and params is None
    assert rows.array.flags.f_contiguous and rows.array.flags.writeable
    np.testing.assert_array_equal(rows.array, frame.to_numpy())
    np.testing.assert_allclose(model.predict(rows), model.predict(frame), rtol=1e-12)  # BLAS: not to the bit

    integers = frame.assign(sex=(frame["sex"] > 0).astype("int64"))
    data, _ = decode(STREAM, arrow_of(integers))
    assert isinstance(data, pd.DataFrame)
    np.testing.assert_allclose(model.predict(data), model.predict(integers.astype("float64")), rtol=1e-12)
    with_nan = frame.copy()
    with_nan.iloc[3, 2] = np.nan
    data, _ = decode(STREAM, arrow_of(with_nan))
    assert isinstance(data, pd.DataFrame)
    with pytest.raises(modelpack.errors.InvalidInputError, match="bmi"):
        model.predict(data)


@needs_arrow
def test_arrow_bodies_on_the_dataframe_path(mixed_server, houses):
    frame = houses.iloc[:40]
    expected = ok(post(mixed_server, split_of(frame), JSON))
    assert ok(post(mixed_server, arrow_of(frame))) == expected
    narrower = frame.astype({"rooms": "int32", "area": "float32"})  # cast as the signature says, as for JSON
    assert ok(post(mixed_server, arrow_of(narrower))) == pytest.approx(expected, rel=1e-6)
    assert ok(post(mixed_server, arrow_of(frame.astype({"city": "category"})))) == expected  # dictionary-encoded
    message = error(post(mixed_server, arrow_of(frame.assign(rooms=frame["area"]))), 400, "INVALID_PARAMETER_VALUE")
    assert "rooms" in message


# == 2. Arrow and Parquet answers =================================================================================

@needs_arrow
def test_arrow_and_parquet_answers_hold_the_json_predictions(diabetes_server, diabetes):
    frame = diabetes[0].iloc[:30]
    expected = ok(post(diabetes_server, split_of(frame), JSON))
    for body, content_type in ((arrow_of(frame), STREAM), (split_of(frame), JSON)):
        for mimetype in (STREAM, FILE, PARQUET):
            table = table_of(post(diabetes_server, body, content_type, accept=mimetype), mimetype)
            assert table.column_names == ["predictions"] and str(table.schema.field(0).type) == "double"
            assert table.column("predictions").to_pylist() == expected
    for default in (None, "*/*", JSON, "application/*",
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"):  # a browser's
        assert ok(post(diabetes_server, arrow_of(frame), accept=default)) == expected, default


@needs_arrow
def test_dataframe_and_2d_predictions_as_tables(tables_server, iris):
    rows = iris.data.iloc[::15]
    body = arrow_of(rows)
    records = ok(post(tables_server, body))
    assert [set(r) for r in records] == [{"label", "p", "k"}] * len(rows)
    for mimetype in (STREAM, PARQUET):
        table = table_of(post(tables_server, body, accept=mimetype), mimetype)
        assert table.column_names == ["label", "p", "k"]
        assert table.to_pylist() == records  # the rows are the JSON records
    assert {r["label"] for r in records} == set(iris.target_names)

    with_param = json.dumps({"dataframe_split": rows.to_dict(orient="split"), "params": {"probabilities": True}})
    proba = ok(post(tables_server, with_param.encode(), JSON))
    assert np.asarray(proba).shape == (len(rows), 3)
    table = table_of(post(tables_server, with_param.encode(), JSON, accept=STREAM), STREAM)
    assert table.column_names == ["predictions"]
    assert str(table.schema.field(0).type) == "fixed_size_list<item: double>[3]"
    assert table.column("predictions").to_pylist() == proba


@needs_arrow
def test_accept_negotiation(diabetes_server, diabetes):
    frame = diabetes[0].iloc[:5]
    body = arrow_of(frame)
    expected = ok(post(diabetes_server, body))
    chosen = {
        "application/json;q=0.5, application/vnd.apache.parquet": PARQUET,  # higher q
        f"{STREAM}, {JSON}": STREAM,  # same q: the client's first
        f"{JSON}, {STREAM}": JSON,
        f"*/*, {FILE}": FILE,  # same q: the more specific range
        f"{STREAM};q=0.9, */*": JSON,  # */* at q=1 covers JSON
        f"{JSON};q=0, */*": STREAM,  # JSON refused: the server's next
        "APPLICATION/VND.APACHE.PARQUET": PARQUET,
        f"{STREAM};q=oops, {PARQUET}": PARQUET,  # a malformed q leaves its range out
        "not a media range": JSON,  # a header without one well-formed range is as none
    }
    for accept, mimetype in chosen.items():
        resp = post(diabetes_server, body, accept=accept)
        if mimetype == JSON:
            assert ok(resp) == expected, accept
        else:
            assert table_of(resp, mimetype).column("predictions").to_pylist() == expected, accept
    for accept in ("text/csv", "text/*", f"{STREAM};q=0", "*/*;q=0", "image/png, text/plain;q=0.5"):
        message = error(post(diabetes_server, body, accept=accept), 406, "NOT_ACCEPTABLE")
        assert message.startswith(f"Accept {accept!r} accepts none of the types this server answers in")
        assert all(t in message for t in (JSON, STREAM, FILE, PARQUET)), message


# == 3. bad bodies: a 4xx naming the fault, and the worker keeps serving ===========================================

@needs_arrow
def test_bad_arrow_bodies_are_400_naming_the_fault(diabetes_server, diabetes):
    import pyarrow as pa

    frame = diabetes[0].iloc[:10]
    body = arrow_of(frame)
    unreadable = {
        "not arrow": b"age,sex\n1,2\n",
        "json": split_of(frame),
        "cut short": body[: len(body) // 2],
        "schema only, cut": body[:120],
    }
    for name, bad in unreadable.items():
        message = error(post(diabetes_server, bad), 400, "BAD_REQUEST")
        assert message.startswith("Arrow IPC body cannot be read: "), (name, message)
        assert "expected an Arrow IPC stream" in message
    assert error(post(diabetes_server, b""), 400, "BAD_REQUEST").startswith("Arrow IPC body is empty")
    assert error(post(diabetes_server, arrow_of(frame.head(0))), 400, "BAD_REQUEST") == (
        "Arrow IPC body holds no rows (10 column(s)); send at least one row to score")

    missing = error(post(diabetes_server, arrow_of(frame.drop(columns=["bmi"]))), 400, "INVALID_PARAMETER_VALUE")
    assert missing.startswith("Model is missing required input columns ['bmi']")
    wrong = error(post(diabetes_server, arrow_of(frame.assign(bp="high"))), 400, "INVALID_PARAMETER_VALUE")
    assert "'bp'" in wrong and "'high'" in wrong
    nested = pa.Table.from_pandas(frame, preserve_index=False).set_column(0, "age", pa.array([[1.0]] * len(frame)))
    assert "'age'" in error(post(diabetes_server, ipc_of(nested)), 400, "INVALID_PARAMETER_VALUE")

    # offsets past their buffer: pyarrow would read out of bounds (a crash, not an error) without the full check
    strings = ipc_of(pa.table({"age": pa.array(["ab", "cd"])}))
    offsets = np.array([0, 2, 4], dtype="<i4").tobytes()
    assert strings.count(offsets) == 1
    lying = strings.replace(offsets, np.array([0, 2, 1 << 30], dtype="<i4").tobytes())
    assert error(post(diabetes_server, lying), 400, "BAD_REQUEST").startswith("Arrow IPC body cannot be read")

    unknown = error(post(diabetes_server, body, "application/vnd.apache.arrow.stream; format=x"), 415,
                    "UNSUPPORTED_MEDIA_TYPE")
    assert "'format'" in unknown
    assert len(ok(post(diabetes_server, body))) == 10  # still serving


@needs_arrow
def test_mangled_arrow_bodies_are_never_a_5xx(diabetes_server, diabetes):
    """Bytes of valid bodies (strings, lists, categories; compressed or not; stream and file; several batches)
    changed, overwritten with extreme lengths or cut: every answer is a 200 or a JSON 4xx, and no worker dies (a
    dead worker's request would fail to connect or be cut)."""
    import random

    frame = diabetes[0].head(20).assign(
        s=[f"t{i}" for i in range(20)], l=[[1.0, 2.0]] * 20, c=pd.Categorical(["a", "b"] * 10))
    bodies = [arrow_of(frame, fmt, compression, batch_rows=7)
              for fmt in ("stream", "file") for compression in (None, "zstd", "lz4")]
    rng = random.Random(16)
    statuses = set()
    for _ in range(150):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 4)):
            at, roll = rng.randrange(len(body)), rng.random()
            if roll < 0.6:
                body[at] = rng.randrange(256)
            elif roll < 0.8:
                body[at:at + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff"])
            else:
                del body[max(at, 1):]
        resp = post(diabetes_server, bytes(body))
        statuses.add(resp.status_code)
        assert resp.status_code in (200, 400, 413), resp.text
        assert resp.headers["Content-Type"].startswith(JSON)
    assert {200, 400} <= statuses
    assert len(ok(post(diabetes_server, arrow_of(diabetes[0].head(3))))) == 3


@needs_arrow
def test_arrow_body_declaring_more_than_the_limit_is_413(diabetes_model_dir, serve, diabetes):
    """A column of nulls, run-end encoded values or compressed zeros hold millions of rows in a few bytes: what the
    batches declare is checked before any is decoded."""
    import pyarrow as pa

    server = serve(diabetes_model_dir, env={"MODELPACK_MAX_BODY_BYTES": "100000"})
    rows = 200_000
    bombs = {
        "nulls": pa.table({"age": pa.nulls(rows)}),
        "run-end encoded": pa.table({"age": pa.RunEndEncodedArray.from_arrays([rows], [1.5])}),
    }
    bodies = {name: ipc_of(table) for name, table in bombs.items()}
    bodies["zstd zeros"] = ipc_of(pa.table({"age": np.zeros(rows)}), compression="zstd")
    for name, body in bodies.items():
        assert len(body) < 10_000, name
        message = error(post(server, body), 413, "PAYLOAD_TOO_LARGE")
        assert re.match(rf"Arrow IPC body declares {rows // 10}\d values", message), (name, message)  # REE: + 2
        assert "MODELPACK_MAX_BODY_BYTES=100000" in message
    # one 20 kB text, referenced by each of 1,000 rows: 20 MB of text for a model working row by row
    text = pa.DictionaryArray.from_arrays(pa.array(np.zeros(1000, dtype="int8")), pa.array(["x" * 20_000]))
    message = error(post(server, ipc_of(pa.table({"age": text}))), 413, "PAYLOAD_TOO_LARGE")
    assert message.startswith("Arrow IPC body's dictionary-encoded column(s) ['age'] hold 20000000 or more bytes")
    frame = diabetes[0].iloc[:100]
    assert len(ok(post(server, arrow_of(frame, compression="zstd")))) == 100  # within the limit: scored


# == 4. without pyarrow ===========================================================================================

@pytest.fixture
def no_pyarrow_server(diabetes_model_dir, serve, tmp_path) -> Server:
    """A server where pyarrow is not installed (here: a package of that name that fails to import, first on the
    path), as in tests/test_mlflow_protocol.py."""
    blocker = tmp_path / "no-pyarrow" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow is blocked for this test')\n")
    return serve(diabetes_model_dir, env={"PYTHONPATH": str(blocker.parent)})


def test_without_pyarrow_arrow_is_415_and_406_naming_the_extra(no_pyarrow_server, diabetes):
    frame = diabetes[0].iloc[:5]
    for content_type in (STREAM, FILE):
        message = error(post(no_pyarrow_server, b"\xff\xff\xff\xff any bytes", content_type), 415,
                        "UNSUPPORTED_MEDIA_TYPE")
        assert "needs pyarrow" in message and "pip install 'modelpack[arrow]'" in message
    body = split_of(frame)
    expected = ok(post(no_pyarrow_server, body, JSON))
    for accept in (STREAM, PARQUET, f"{FILE}, text/csv"):
        message = error(post(no_pyarrow_server, body, JSON, accept=accept), 406, "NOT_ACCEPTABLE")
        assert "need pyarrow" in message and "pip install 'modelpack[arrow]'" in message, message
    message = error(post(no_pyarrow_server, body, JSON, accept="text/csv"), 406, "NOT_ACCEPTABLE")
    assert message.endswith("accepts none of the types this server answers in: ['application/json']")
    # JSON acceptable too: it is the answer
    assert ok(post(no_pyarrow_server, body, JSON, accept=f"{STREAM}, {JSON};q=0.5")) == expected
    assert ok(post(no_pyarrow_server, body, JSON, accept="*/*")) == expected
