"""WRITE: predictions (and the ``--keep`` columns) -> an output file, appended chunk by chunk.

The row formats (CSV, JSON lines, Parquet, Arrow IPC) get one row per input row: the kept columns, then the
prediction columns (:func:`prediction_columns`). ``json`` is the server's answer, ``{"predictions": [...]}``,
written as one document whose list grows with every chunk. A file is written under a temporary name in its
directory and renamed to its own only when the job ends well (:class:`AtomicFile`): a job that fails or is
killed never leaves a half-written file under the name asked for.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import secrets
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd

from ..errors import InvalidInputError, PredictionError, quote, quote_names

logger = logging.getLogger(__name__)

#: The column of a model's single prediction per row (``prediction_0``, ``prediction_1``... for several).
PREDICTION = "prediction"


class AtomicFile:
    """A file written as ``.<name>.<random>.tmp`` next to ``path`` and renamed to ``path`` by :meth:`commit`
    (after an fsync, so the name never points at bytes still in flight); :meth:`discard` removes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffering=1 << 20)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:  # a full disk may fail the last flush: the file goes anyway
            pass
        self.tmp.unlink(missing_ok=True)


def _json_default(obj: Any) -> Any:
    """What orjson does not write itself: pandas' missing values, timestamps, bytes, numpy leftovers."""
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (dt.datetime, dt.date, dt.time)) or hasattr(obj, "isoformat"):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(obj).decode("ascii")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_line(value: Any) -> bytes:
    """``value`` as one line of JSON (NaN and infinities as null, as JSON has no other spelling)."""
    return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS) + b"\n"


def prediction_columns(predictions: Any, rows: int) -> pd.DataFrame:
    """A model's predictions for ``rows`` input rows as named columns, one row per input row.

    One value per row is the column ``prediction`` (a Series keeps its name); a 2-D array of k values per
    row is ``prediction_0`` ... ``prediction_{k-1}`` (k = 1 stays ``prediction``); a DataFrame, or a dict
    of one array per output, keeps its names; larger arrays give one list per row."""
    if isinstance(predictions, pd.DataFrame):
        frame = predictions.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
    elif isinstance(predictions, pd.Series):
        name = PREDICTION if predictions.name is None else str(predictions.name)
        frame = pd.DataFrame({name: predictions.reset_index(drop=True)})
    elif isinstance(predictions, dict):
        columns = {str(k): _one_column(v, rows, f"output {quote(k)}") for k, v in predictions.items()}
        wrong = next(((k, len(v)) for k, v in columns.items() if len(v) != rows), None)
        if wrong is not None:
            raise _count_mismatch(predictions, wrong[1], rows, f"{wrong[1]} value(s) for output {quote(wrong[0])}")
        frame = pd.DataFrame(columns)
    else:
        values = _array(predictions)
        if values.ndim == 0:
            raise _count_mismatch(predictions, 1, rows, "a single value")
        if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
            frame = pd.DataFrame({PREDICTION: values.reshape(len(values))})
        elif values.ndim == 2:
            frame = pd.DataFrame(values, columns=[f"{PREDICTION}_{i}" for i in range(values.shape[1])])
        else:
            frame = pd.DataFrame({PREDICTION: pd.Series(list(values), dtype=object)})
    if len(frame.index) != rows:
        raise _count_mismatch(predictions, len(frame.index), rows)
    if frame.columns.has_duplicates:
        raise PredictionError(f"The model's predictions name the column(s) "
                              f"{quote_names(frame.columns[frame.columns.duplicated()])} twice")
    return frame


def _array(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    try:
        return np.asarray(values)
    except ValueError:  # ragged lists: one list per row
        return np.asarray(list(values) if isinstance(values, (list, tuple)) else [values], dtype=object)


def _one_column(values: Any, rows: int, what: str) -> Any:
    array = _array(values)
    if array.ndim == 1:
        return array
    if array.ndim == 0:
        raise _count_mismatch(values, 1, rows, f"{what}: a single value")
    return list(array)


def _count_mismatch(predictions: Any, got: int, rows: int, what: str = "") -> PredictionError:
    shown = what or f"{got} prediction(s)"
    return PredictionError(
        f"The model returned {shown} ({type(predictions).__name__}) for {rows} input row(s); writing predictions "
        "next to their rows needs one per row (use a JSON input file for models that answer otherwise)"
    )


class Writer(ABC):
    """Appends predictions to ``sink``; :meth:`close` ends the file (a JSON document's closing bracket, a
    Parquet footer). ``rows``: how many input rows a :meth:`write` answers."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.rows = 0

    @abstractmethod
    def write(self, predictions: Any, kept: pd.DataFrame | None, rows: int) -> None: ...

    def close(self) -> None:  # noqa: B027 - most formats need no trailer
        pass

    def abort(self) -> None:  # noqa: B027 - most formats hold nothing to release
        """Drop what is held for a file being discarded (nothing is finished or written)."""


class TableWriter(Writer):
    """A row format: the kept columns, then the prediction columns."""

    columns: list[str] | None = None

    def write(self, predictions: Any, kept: pd.DataFrame | None, rows: int) -> None:
        frame = prediction_columns(predictions, rows)
        if kept is not None:
            clash = [name for name in frame.columns if name in kept.columns]
            if clash:
                raise InvalidInputError(
                    f"--keep column(s) {quote_names(clash)} have the name of the model's prediction column(s) "
                    f"{quote_names(frame.columns)}; keep other columns, or rename them in the input"
                )
            frame = pd.concat([kept.reset_index(drop=True), frame], axis=1)
        if self.columns is None:
            self.columns = [str(c) for c in frame.columns]
        elif list(frame.columns) != self.columns:
            raise PredictionError(
                f"The model's predictions changed columns between chunks: {quote_names(frame.columns)} "
                f"after {quote_names(self.columns)}"
            )
        self._write(frame)
        self.rows += rows

    @abstractmethod
    def _write(self, frame: pd.DataFrame) -> None: ...


class CsvWriter(TableWriter):
    """CSV with a header row; numbers as pandas writes them (shortest text that reads back the same)."""

    def _write(self, frame: pd.DataFrame) -> None:
        if not self.rows:
            self.sink.write(frame.iloc[:0].to_csv(index=False, lineterminator="\n").encode("utf-8"))
        text = _csv_numbers(frame)
        if text is None:
            text = frame.to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")
        self.sink.write(text)


def _csv_numbers(frame: pd.DataFrame) -> bytes | None:
    """The rows of a frame of integer and finite float64 columns as CSV, written by orjson (about 10x faster
    than pandas): the shortest text that reads back the same number, as pandas writes it, except that a small
    exponent has no leading zero (``1e-7``, where pandas writes ``1e-07``). None for other columns (pandas
    writes them: NaN as an empty field, float32 by its own shortest text)."""
    columns = []
    for i in range(frame.shape[1]):
        values = frame.iloc[:, i].to_numpy()
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "iuf" or not len(values):
            return None
        if values.dtype.kind == "f" and (values.dtype != np.float64 or not np.isfinite(values).all()):
            return None
        columns.append(orjson.dumps(np.ascontiguousarray(values), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1])
    if len(columns) == 1:
        return columns[0].replace(b",", b"\n") + b"\n"
    return b"\n".join(map(b",".join, zip(*(c.split(b",") for c in columns), strict=True))) + b"\n"


class JsonLinesWriter(TableWriter):
    """One JSON object per row; missing and non-finite numbers are null."""

    def _write(self, frame: pd.DataFrame) -> None:
        names = list(frame.columns)
        columns = [_plain_column(frame[name]) for name in names]
        dumps, default = orjson.dumps, _json_default
        self.sink.write(b"".join(
            dumps(dict(zip(names, row, strict=True)), default=default, option=_JSON_OPTIONS) + b"\n"
            for row in zip(*columns, strict=True)
        ))


def _plain_column(series: pd.Series) -> list:
    """A column's values as Python objects orjson writes (pandas' missing values as None)."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
        return series.tolist()
    return series.astype(object).where(series.notna(), None).tolist()


class _ArrowTableWriter(TableWriter):
    """Parquet and Arrow: the first chunk's Arrow schema is the file's; later chunks are cast to it."""

    schema: Any = None
    writer: Any = None

    def _table(self, frame: pd.DataFrame) -> Any:
        import pyarrow as pa

        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise PredictionError(f"The predictions cannot be written as Arrow columns: {quote(str(exc), 300)}") \
                from None
        # without pandas' metadata: a reader gets each column's plain type (int64, not pandas' int64[pyarrow])
        table = table.replace_schema_metadata(None)
        if self.schema is None:
            self.schema = table.schema
            return table
        if table.schema.equals(self.schema, check_metadata=False):
            return table
        try:
            return table.cast(self.schema)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            changed = [f.name for f in table.schema if f.type != self.schema.field(f.name).type]
            raise InvalidInputError(
                f"Column(s) {quote_names(changed)} changed type between chunks ({table.schema.types} after "
                f"{self.schema.types}), which one {type(self).__name__[:-6]} file cannot hold: "
                f"{quote(str(exc), 200)}; a larger --batch-size or typed input (Parquet) avoids it"
            ) from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        """Close pyarrow's writer now, on the file still open (later, when garbage collected, it would write
        its footer to a closed file and print a traceback)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # the file is discarded whatever this says  # noqa: BLE001
                logger.debug("Closing the %s writer of a discarded file failed", type(self).__name__, exc_info=True)


#: Rows per Parquet row group: chunks are gathered up to this many (readers skip and parallelize by row group;
#: thousands of small ones cost them), about 10 MB per ten double columns held before they are written.
ROW_GROUP_ROWS = 131_072


class ParquetWriter(_ArrowTableWriter):
    """Parquet, in row groups of about :data:`ROW_GROUP_ROWS` rows (whole chunks)."""

    def __init__(self, sink: IO[bytes]) -> None:
        super().__init__(sink)
        self.pending: list[Any] = []
        self.pending_rows = 0

    def _write(self, frame: pd.DataFrame) -> None:
        table = self._table(frame)
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.sink, self.schema)
        if self.pending:
            table = pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=table.num_rows)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        if self.schema is not None:
            self._flush()
        super().close()

    def abort(self) -> None:
        self.pending = []
        super().abort()


class ArrowWriter(_ArrowTableWriter):
    """An Arrow IPC file (the random-access format pyarrow's ``ipc.open_file`` and ``read_feather`` read)."""

    def _write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        table = self._table(frame)
        if self.writer is None:
            self.writer = pa.ipc.new_file(self.sink, self.schema)
        self.writer.write_table(table)


_OPEN = b'{"predictions":['


class JsonDocumentWriter(Writer):
    """The server's answer, ``{"predictions": [...]}``, for all the rows: each chunk's list, written by the
    server's encoder (NaN as ``NaN``, a DataFrame as records), is appended to the one list."""

    def write(self, predictions: Any, kept: pd.DataFrame | None, rows: int) -> None:
        from ..server.encode import encode_predictions

        count = len(predictions.index) if isinstance(predictions, (pd.DataFrame, pd.Series)) \
            else len(_array(predictions)) if not isinstance(predictions, dict) else None
        if count != rows:
            raise _count_mismatch(predictions, count or 0, rows,
                                  "a dict of outputs" if isinstance(predictions, dict) else "")
        body = encode_predictions(predictions)
        if not (body.startswith(_OPEN) and body.endswith(b"]}")):
            raise PredictionError(
                f"The model's predictions ({type(predictions).__name__}) are no list, so they cannot be appended "
                "chunk after chunk to one JSON document; write a row format (--output-format csv, jsonl, parquet)"
            )
        items = body[len(_OPEN):-2]
        self.sink.write((b"," if self.rows else _OPEN) + items)
        self.rows += rows

    def close(self) -> None:
        self.sink.write(b"]}\n" if self.rows else _OPEN + b"]}\n")


WRITERS: dict[str, type[Writer]] = {
    "json": JsonDocumentWriter, "csv": CsvWriter, "jsonl": JsonLinesWriter,
    "parquet": ParquetWriter, "arrow": ArrowWriter,
}


def open_writer(fmt: str, sink: IO[bytes]) -> Writer:
    """A writer of ``fmt`` (one of :data:`OUTPUT_FORMATS`) appending to ``sink``."""
    if fmt in ("parquet", "arrow"):
        from .readers import require_pyarrow

        require_pyarrow(f"Writing {'Parquet' if fmt == 'parquet' else 'Arrow'} files")
    return WRITERS[fmt](sink)


class RejectsWriter:
    """The rows ``--on-error skip`` set aside, as JSON lines: ``{"row", "line", "error", "input"}`` (``input``:
    the row's text for CSV and JSON lines, its record for Parquet and Arrow)."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.count = 0
        self.first_error = ""

    def write(self, row: int, line: int | None, error: str, raw: Any) -> None:
        record: dict[str, Any] = {"row": row}
        if line is not None:
            record["line"] = line
        record["error"] = error
        record["input"] = raw
        self.sink.write(json_line(record))
        self.count += 1
        self.first_error = self.first_error or error
