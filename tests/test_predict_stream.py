"""``modelpack predict`` on row files (CSV, JSON lines, Parquet, Arrow): streamed in chunks, through the real CLI.

Files are written at test time; every command runs ``python -m modelpack.cli predict ... --env-manager local``
in a subprocess (the memory bound on a large file is in test_predict_stream_memory.py)."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def predict(*args: str, stdin: bytes | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "modelpack.cli", "predict", *args, "--env-manager", "local"]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, **kw)


def error_line(out: subprocess.CompletedProcess) -> str:
    """The one ``Error: ...`` line a failed command prints, after checking it is alone and no traceback."""
    err = out.stderr.decode()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, err
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    """Temporary files a job left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def rows(diabetes) -> pd.DataFrame:
    """300 diabetes rows (sampled with replacement), with an id column and a text column."""
    X, _ = diabetes
    frame = X.sample(300, replace=True, random_state=1).reset_index(drop=True)
    frame.insert(0, "id", np.arange(5000, 5300))
    frame["region"] = np.where(frame.index % 3 == 0, "north", "south, east")  # a comma: quoted in CSV
    return frame


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in ("id", "region") if c in frame.columns])


def write(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` in the format ``path``'s ending names (CSV numbers with all 17 digits: exact)."""
    kind = path.suffix
    if kind == ".csv":
        frame.to_csv(path, index=False, float_format="%.17g")
    elif kind == ".jsonl":
        path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in frame.to_dict(orient="records")))
    elif kind == ".parquet":
        frame.to_parquet(path, index=False, row_group_size=128)
    elif kind == ".arrow":
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        with pa.ipc.new_file(path, table.schema) as writer:  # three record batches of 100 rows
            for batch in table.to_batches(max_chunksize=100):
                writer.write_batch(batch)
    return path


def read(path: Path, fmt: str | None = None) -> pd.DataFrame:
    fmt = fmt or path.suffix[1:]
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "arrow":
        return pd.read_feather(path)
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "arrow"])
def test_each_format_streams_in_chunks_and_keeps_columns(tmp_path, rows, elasticnet, diabetes_model_dir, fmt):
    source = write(rows, tmp_path / f"in.{fmt}")
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(tmp_path / f"out.{fmt}"),
                  "--keep", "id,region", "--batch-size", "64")
    assert out.returncode == 0, out.stderr
    assert out.stderr == b"" and out.stdout == b""  # no terminal: no progress line
    result = read(tmp_path / f"out.{fmt}")
    assert list(result.columns) == ["id", "region", "prediction"]
    assert result["id"].tolist() == rows["id"].tolist()
    assert result["region"].tolist() == rows["region"].tolist()
    np.testing.assert_allclose(result["prediction"], elasticnet.predict(features(rows)), rtol=1e-12)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "arrow", "json"])
def test_output_format_by_option_or_file_name(tmp_path, rows, elasticnet, diabetes_model_dir, fmt):
    source = write(rows, tmp_path / "in.csv")
    expected = elasticnet.predict(features(rows))
    by_name = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(tmp_path / f"out.{fmt}"),
                      "--batch-size", "50")
    by_option = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(tmp_path / "out.data"),
                        "--output-format", fmt, "--batch-size", "50")
    assert by_name.returncode == 0 and by_option.returncode == 0, by_name.stderr + by_option.stderr
    assert (tmp_path / f"out.{fmt}").read_bytes() == (tmp_path / "out.data").read_bytes()
    if fmt == "json":
        got = json.loads((tmp_path / "out.json").read_bytes())["predictions"]
    else:
        got = read(tmp_path / "out.data", fmt)["prediction"]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_streamed_json_document_equals_the_whole_body_answer(tmp_path, rows, diabetes_model_dir):
    """CSV to standard output stays the server's {"predictions": [...]} answer, now appended chunk by chunk."""
    source = write(features(rows), tmp_path / "in.csv")
    streamed = predict("-m", str(diabetes_model_dir), "-i", str(source), "--batch-size", "7")
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"dataframe_split": features(rows).to_dict(orient="split")}))
    whole = predict("-m", str(diabetes_model_dir), "-i", str(body))
    assert streamed.returncode == 0 and whole.returncode == 0, streamed.stderr + whole.stderr
    streamed_predictions = json.loads(streamed.stdout)["predictions"]
    assert len(streamed_predictions) == 300  # BLAS may sum a row in another order in a 7-row block: 1e-12
    np.testing.assert_allclose(streamed_predictions, json.loads(whole.stdout)["predictions"], rtol=1e-12)


def test_standard_input_streams_too(tmp_path, rows, elasticnet, diabetes_model_dir):
    text = features(rows).to_csv(index=False, float_format="%.17g").encode()
    out = predict("-m", str(diabetes_model_dir), "-i", "-", "-t", "csv", "--output-format", "csv",
                  "--batch-size", "100", stdin=text)
    assert out.returncode == 0, out.stderr
    result = pd.read_csv(io.BytesIO(out.stdout))
    np.testing.assert_allclose(result["prediction"], elasticnet.predict(features(rows)), rtol=1e-12)
    lines = [json.loads(line) for line in predict("-m", str(diabetes_model_dir), "-i", "-", "-t", "jsonl",
                                                  stdin=_jsonl(features(rows).head(5))).stdout.splitlines()]
    np.testing.assert_allclose([r["prediction"] for r in lines], elasticnet.predict(features(rows).head(5)))


def _jsonl(frame: pd.DataFrame) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in frame.to_dict(orient="records"))


def test_json_body_to_a_row_format_with_kept_columns(tmp_path, rows, elasticnet, diabetes_model_dir):
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"dataframe_records": rows.head(4).to_dict(orient="records")}))
    out = predict("-m", str(diabetes_model_dir), "-i", str(body), "-o", str(tmp_path / "out.csv"), "--keep", "id")
    assert out.returncode == 0, out.stderr
    result = pd.read_csv(tmp_path / "out.csv")
    assert result["id"].tolist() == [5000, 5001, 5002, 5003]
    np.testing.assert_allclose(result["prediction"], elasticnet.predict(features(rows.head(4))), rtol=1e-12)


# ---------------------------------------------------------------- text files as people write them


def test_csv_with_bom_crlf_blank_lines_and_quoted_line_breaks(tmp_path, rows, elasticnet, diabetes_model_dir):
    """Rows are cut at line ends outside quotes; blank lines are skipped and not counted; the row number
    and the line of an error stay right after a field holding a line break."""
    part = rows.head(6).copy()
    part["region"] = ["a", "two\nlines", "c, d", 'say "hi"', "e", "f"]
    text = part.to_csv(index=False, float_format="%.17g", lineterminator="\r\n")
    head, *body = text.split("\r\n", 3)
    text = "\ufeff" + head + "\r\n\r\n" + "\r\n".join(body)  # a BOM, and a blank line after the header
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode())
    out = predict("-m", str(diabetes_model_dir), "-i", str(path), "-o", str(tmp_path / "out.csv"),
                  "--keep", "id,region", "--batch-size", "2")
    assert out.returncode == 0, out.stderr
    result = pd.read_csv(tmp_path / "out.csv")
    assert result["region"].tolist() == part["region"].tolist()
    np.testing.assert_allclose(result["prediction"], elasticnet.predict(features(part)), rtol=1e-12)

    # the 5th data row ("e") made bad: it sits on line 8 (header, blank line, a row of two lines, 3 more rows)
    bad = text.replace(f"\r\n{part['id'][4]},", f"\r\n{part['id'][4]},not-a-number,", 1)
    assert bad != text
    path.write_bytes(bad.encode())
    out = predict("-m", str(diabetes_model_dir), "-i", str(path), "-o", str(tmp_path / "bad.csv"),
                  "--batch-size", "2")
    assert out.returncode == 2
    line = error_line(out)
    assert line.startswith(f"Error: Data row 5 of '{path}' (counted from 1 after the header; line 8): "), line
    assert "13 fields but the header has 12" in line, line


def test_jsonl_bad_lines_are_named(tmp_path, rows, diabetes_model_dir):
    good = _jsonl(features(rows).head(3)).splitlines(keepends=True)
    path = tmp_path / "in.jsonl"
    path.write_bytes(good[0] + b"\n" + good[1] + b'{"age": 1,\n' + good[2])
    out = predict("-m", str(diabetes_model_dir), "-i", str(path), "-o", str(tmp_path / "out.jsonl"))
    assert out.returncode == 2
    line = error_line(out)
    assert line.startswith(f"Error: Row 3 of '{path}' (counted from 1; line 4): The line is not valid JSON"), line
    path.write_bytes(good[0] + b"[1, 2]\n" + good[1])
    line = error_line(predict("-m", str(diabetes_model_dir), "-i", str(path), "-o", str(tmp_path / "out.jsonl")))
    assert "Row 2 of" in line and "holds a JSON list; each line of a JSON lines file must be an object" in line
    path.write_bytes(good[0] + good[1].rstrip(b"\n") + b" " + good[2])  # two objects on one line
    line = error_line(predict("-m", str(diabetes_model_dir), "-i", str(path), "-o", str(tmp_path / "out.jsonl")))
    assert "Row 2 of" in line and "not valid JSON" in line, line


# ---------------------------------------------------------------- bad rows


def _with_bad_rows(rows: pd.DataFrame, typed: bool = False) -> pd.DataFrame:
    """Rows 41 (text in a number column; in a typed file, where a column has one type, a missing value),
    150 (a missing required value) and 299 (infinity) made bad."""
    bad = rows.astype({"bmi": object}) if not typed else rows.copy()
    bad.loc[40, "bmi"] = np.nan if typed else "high"
    bad.loc[149, "age"] = np.nan
    bad.loc[298, "s1"] = np.inf
    return bad


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_bad_row_fails_with_its_row_number_and_no_output(tmp_path, rows, diabetes_model_dir, fmt):
    bad = _with_bad_rows(rows, typed=fmt == "parquet")
    source = write(bad.iloc[100:], tmp_path / f"in.{fmt}")  # row 150 of the frame is data row 50 of the file
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"an older result")
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(target), "--batch-size", "32")
    assert out.returncode == 2
    line = error_line(out)
    where = "Data row 50 of" if fmt == "csv" else "Row 50 of"
    assert line.startswith(f"Error: {where} '{source}' (counted from 1"), line
    assert "Required column 'age' (double) has no value at this row" in line, line
    assert target.read_bytes() == b"an older result"  # earlier chunks were written, to the temporary file only
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "arrow"])
def test_skip_writes_bad_rows_to_the_rejects_file_and_goes_on(tmp_path, rows, elasticnet, diabetes_model_dir, fmt):
    typed = fmt in ("parquet", "arrow")
    bad = _with_bad_rows(rows, typed)
    source = write(bad, tmp_path / f"in.{fmt}")
    target = tmp_path / f"out.{fmt}"
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(target), "--keep", "id",
                  "--on-error", "skip", "--batch-size", "64")
    assert out.returncode == 0, out.stderr
    assert f"3 of 300 row(s) could not be scored; they are in '{target}.rejects.jsonl'" in out.stderr.decode()
    result = read(target)
    good = [i for i in range(300) if i not in (40, 149, 298)]
    assert result["id"].tolist() == rows["id"][good].tolist()  # every other row, in order
    np.testing.assert_allclose(result["prediction"], elasticnet.predict(features(rows).iloc[good]), rtol=1e-12)
    rejects = [json.loads(line) for line in (tmp_path / f"out.{fmt}.rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects] == [41, 150, 299]
    if fmt in ("csv", "jsonl"):
        assert [r["line"] for r in rejects] == ([42, 151, 300] if fmt == "csv" else [41, 150, 299])
        first = rejects[0]["input"]  # the line as it is in the file
        assert first.startswith(f"{rows['id'][40]},") if fmt == "csv" else json.loads(first)["id"] == rows["id"][40]
    else:
        assert "line" not in rejects[0] and rejects[0]["input"]["id"] == rows["id"][40]  # the record
    assert ("Required column 'bmi' (double) has no value at this row" if typed
            else "Incompatible input for column 'bmi': expected double") in rejects[0]["error"]
    assert "Required column 'age' (double) has no value at this row" in rejects[1]["error"]
    assert "Column 's1' holds inf at this row" in rejects[2]["error"]


def test_skip_with_a_rejects_path_and_standard_output(tmp_path, rows, diabetes_model_dir):
    source = write(_with_bad_rows(rows), tmp_path / "in.csv")
    rejects = tmp_path / "bad-rows.jsonl"
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "--on-error", "skip", "--rejects", str(rejects),
                  "--output-format", "jsonl")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 297 and len(rejects.read_text().splitlines()) == 3


def test_skip_stops_when_the_file_does_not_fit_at_all(tmp_path, rows, diabetes_model_dir):
    """A column of text where the model needs numbers: rejecting every row one by one would be slow and
    useless, so the job stops once the first 100 rows are all refused."""
    bad = rows.assign(bmi="high")
    source = write(pd.concat([bad] * 4), tmp_path / "in.csv")
    started = time.monotonic()
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(tmp_path / "out.csv"),
                  "--on-error", "skip")
    assert out.returncode == 2
    line = error_line(out)
    assert line.startswith(f"Error: The first 100 rows of '{source}' were refused, so the file as a whole"), line
    assert "Incompatible input for column 'bmi'" in line
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.rejects.jsonl").exists()
    assert leftovers(tmp_path) == []


def test_a_missing_column_is_the_files_fault_whatever_on_error(tmp_path, rows, diabetes_model_dir):
    source = write(rows.drop(columns=["bmi"]), tmp_path / "in.parquet")
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "-o", str(tmp_path / "o.parquet"),
                  "--on-error", "skip")
    assert out.returncode == 2
    assert error_line(out).startswith(f"Error: '{source}' has no column(s) ['bmi'], which the model's signature "
                                      "requires; its columns: ['id', 'age'")
    out = predict("-m", str(diabetes_model_dir), "-i", str(source), "--keep", "idx", "--output-format", "jsonl")
    assert out.returncode == 2 and "--keep names column(s) ['idx'] that" in error_line(out)


@pytest.fixture(scope="module")
def probe_model_dir(tmp_path_factory) -> Path:
    """A custom model without a signature: 2 * x; raises on x == 13; one prediction short when x == -1;
    sleeps ``pause`` seconds per call when that column is there."""
    import modelpack

    class Probe(modelpack.PythonModel):  # defined here so cloudpickle stores it by value
        def predict(self, context, model_input, params=None):
            import time

            x = model_input["x"].to_numpy()
            if "pause" in model_input:
                time.sleep(float(model_input["pause"].iloc[0]))
            if (x == 13).any():
                raise ValueError("thirteen is unlucky")
            if (x == -1).any():
                return x[:-1] * 2
            return x * 2

    path = tmp_path_factory.mktemp("models") / "probe"
    modelpack.save_model(Probe(), path)
    return path


def test_a_model_error_names_the_row_and_is_never_skipped(tmp_path, probe_model_dir):
    source = tmp_path / "in.csv"
    pd.DataFrame({"x": [13 if i == 57 else 100 + i for i in range(100)]}).to_csv(source, index=False)
    for extra in ((), ("--on-error", "skip")):
        out = predict("-m", str(probe_model_dir), "-i", str(source), "-o", str(tmp_path / "out.csv"),
                      "--batch-size", "40", *extra)
        assert out.returncode == 4
        line = error_line(out)
        assert line == (f"Error: Data row 58 of '{source}' (counted from 1 after the header; line 59): The model "
                        "raised ValueError while predicting: thirteen is unlucky"), line
        assert not (tmp_path / "out.csv").exists()


def test_one_prediction_per_row_is_needed_for_a_row_file(tmp_path, probe_model_dir):
    source = tmp_path / "in.csv"
    pd.DataFrame({"x": [1, 2, -1]}).to_csv(source, index=False)
    out = predict("-m", str(probe_model_dir), "-i", str(source), "-o", str(tmp_path / "out.csv"))
    assert out.returncode == 4
    assert "The model returned 2 prediction(s) (ndarray) for 3 input row(s)" in error_line(out)


@pytest.fixture(scope="module")
def shapes_model_dir(tmp_path_factory) -> Path:
    """A custom model answering in the shape the ``kind`` column names: a DataFrame, a 2-D array, a named Series."""
    import modelpack

    class Shapes(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import numpy as np
            import pandas as pd

            x = model_input["x"].to_numpy()
            kind = model_input["kind"].iloc[0]
            if kind == "frame":
                return pd.DataFrame({"label": np.where(x > 2, "big", "small"), "score": x / 10})
            if kind == "matrix":
                return np.column_stack([x, -x])
            return pd.Series(x * 2, name="doubled")

    path = tmp_path_factory.mktemp("models") / "shapes"
    modelpack.save_model(Shapes(), path)
    return path


@pytest.mark.parametrize("kind, columns", [
    ("frame", ["label", "score"]), ("matrix", ["prediction_0", "prediction_1"]), ("series", ["doubled"]),
])
def test_predictions_of_every_shape_become_columns(tmp_path, shapes_model_dir, kind, columns):
    x = np.arange(1, 6)
    source = write(pd.DataFrame({"id": x + 100, "x": x, "kind": kind}), tmp_path / "in.arrow")
    for fmt in ("csv", "parquet"):
        out = predict("-m", str(shapes_model_dir), "-i", str(source), "-o", str(tmp_path / f"out.{fmt}"),
                      "--keep", "id", "--batch-size", "2")
        assert out.returncode == 0, out.stderr
        result = read(tmp_path / f"out.{fmt}")
        assert list(result.columns) == ["id", *columns] and result["id"].tolist() == [101, 102, 103, 104, 105]
        first = result[columns[0]].tolist()
        assert first == {"frame": ["small", "small", "big", "big", "big"], "matrix": [1, 2, 3, 4, 5],
                         "series": [2, 4, 6, 8, 10]}[kind]
    out = predict("-m", str(shapes_model_dir), "-i", str(source), "--output-format", "json", "--batch-size", "2")
    assert out.returncode == 0, out.stderr
    predictions = json.loads(out.stdout)["predictions"]  # the server's encoding, chunk after chunk
    assert predictions[:2] == {"frame": [{"label": "small", "score": 0.1}, {"label": "small", "score": 0.2}],
                               "matrix": [[1, -1], [2, -2]], "series": [{"doubled": 2}, {"doubled": 4}]}[kind]
    assert len(predictions) == 5


def test_arrow_stream_files_are_read_too(tmp_path, rows, elasticnet, diabetes_model_dir):
    import pyarrow as pa

    table = pa.Table.from_pandas(rows, preserve_index=False)
    with pa.OSFile(str(tmp_path / "in.arrows"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=70)
    out = predict("-m", str(diabetes_model_dir), "-i", str(tmp_path / "in.arrows"), "-o", str(tmp_path / "o.parquet"),
                  "--keep", "id", "--batch-size", "50")
    assert out.returncode == 0, out.stderr
    result = pd.read_parquet(tmp_path / "o.parquet")
    assert result["id"].tolist() == rows["id"].tolist()
    np.testing.assert_allclose(result["prediction"], elasticnet.predict(features(rows)), rtol=1e-12)


def test_usage_errors(tmp_path, rows, diabetes_model_dir):
    source = write(rows, tmp_path / "in.csv")
    body = tmp_path / "in.json"
    body.write_text("{}")
    cases = [
        (("-i", str(source), "--keep", "id"), "--keep writes columns next to the predictions"),
        (("-i", str(body), "--on-error", "skip", "-o", "x.csv"), "--on-error skip needs a row file"),
        (("-i", str(source), "--on-error", "skip"), "--on-error skip with output on standard output needs --rejects"),
        (("-i", str(source), "--rejects", "r.jsonl"), "--rejects is where --on-error skip writes bad rows"),
        (("-i", "-", "-t", "parquet"), "parquet input must be a file"),
        (("-i", str(source), "--batch-size", "0"), "Invalid value for '--batch-size'"),
    ]
    for args, message in cases:
        out = predict("-m", str(diabetes_model_dir), *args)
        assert out.returncode == 2 and message in out.stderr.decode(), (args, out.stderr)


def test_without_pyarrow_parquet_and_arrow_are_a_one_line_error(tmp_path, rows, diabetes_model_dir):
    source = write(rows, tmp_path / "in.csv")
    write(rows, tmp_path / "in.parquet")
    no_pyarrow = "import sys; sys.modules['pyarrow'] = None; from modelpack.cli.main import main; sys.exit(main())"
    for args in (("-i", str(tmp_path / "in.parquet")), ("-i", str(source), "-o", str(tmp_path / "out.arrow"))):
        out = subprocess.run([sys.executable, "-c", no_pyarrow, "predict", "-m", str(diabetes_model_dir), *args,
                              "--env-manager", "local"], capture_output=True, timeout=120)
        assert out.returncode == 2, out.stderr
        assert out.stderr.decode().count("\n") == 1
        assert "needs pyarrow, which is not installed" in out.stderr.decode()
        assert "pip install 'modelpack[arrow]'" in out.stderr.decode()
    assert not (tmp_path / "out.arrow").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- a job cut short, a terminal


def test_sigterm_leaves_no_output_under_its_name(tmp_path, probe_model_dir):
    source = tmp_path / "in.csv"
    pd.DataFrame({"x": np.arange(100, 2100), "pause": 0.2}).to_csv(source, index=False)  # 20 chunks: 4 s or more
    target = tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, "-m", "modelpack.cli", "predict", "-m", str(probe_model_dir),
                             "-i", str(source), "-o", str(target), "--batch-size", "100", "--env-manager", "local"],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.csv.*.tmp")):  # created before the model is loaded
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    time.sleep(1.5)  # into the scoring, most likely (a signal while loading must leave nothing either)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    assert not target.exists() and leftovers(tmp_path) == []


def _run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with standard error on a pseudo-terminal; its exit code and what it drew there."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        drawn += data
    os.close(controller)
    return proc.wait(60), drawn.decode(errors="replace")


def test_progress_on_a_terminal_only(tmp_path, probe_model_dir):
    source = tmp_path / "in.csv"
    pd.DataFrame({"x": np.arange(100, 700), "pause": 0.1}).to_csv(source, index=False)  # 6 chunks of 0.1 s
    argv = [sys.executable, "-m", "modelpack.cli", "predict", "-m", str(probe_model_dir), "-i", str(source),
            "-o", str(tmp_path / "out.csv"), "--batch-size", "100", "--env-manager", "local"]
    code, drawn = _run_on_a_terminal(argv)
    assert code == 0, drawn
    assert "\r[" in drawn and "rows/s" in drawn and "%" in drawn  # redrawn in place, with a bar
    assert "Scored 600 rows in " in drawn and drawn.rstrip().endswith("rows/s)")
    code, drawn = _run_on_a_terminal([*argv, "--quiet"])
    assert code == 0 and drawn == ""
    out = subprocess.run(argv, capture_output=True, timeout=60)  # a pipe: nothing
    assert out.returncode == 0 and out.stderr == b""


def test_rerun_in_the_model_environment_passes_every_option(tmp_path, rows, monkeypatch, capfd, diabetes_model_dir,
                                                            elasticnet):
    """With another interpreter for the model, predict re-runs itself there with the same options."""
    import modelpack.cli.prepare_env
    from modelpack.cli.main import main

    env_python = tmp_path / "env-python"  # another path to this interpreter, so predict re-runs
    env_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    env_python.chmod(0o755)
    monkeypatch.setattr(modelpack.cli.prepare_env, "environment_python", lambda *args: str(env_python))
    source = write(_with_bad_rows(rows), tmp_path / "in.csv").rename(tmp_path / "in.txt")  # a name saying nothing
    target = tmp_path / "out.data"
    assert main(["predict", "-m", str(diabetes_model_dir), "-i", str(source), "-t", "csv", "-o", str(target),
                 "--output-format", "parquet", "--keep", "id", "--on-error", "skip", "--rejects",
                 str(tmp_path / "r.jsonl"), "--batch-size", "16", "--quiet"]) == 0
    result = pd.read_parquet(target)
    assert len(result) == 297 and list(result.columns) == ["id", "prediction"]
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3
    assert "3 of 300 row(s) could not be scored" in capfd.readouterr().err
