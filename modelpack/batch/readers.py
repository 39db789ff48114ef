"""READ: a row file -> chunks of consecutive rows, read as the server reads a request body.

A :class:`Chunk` is what the loop (:mod:`.run`) needs of some rows: decode them into the model's input
(CSV with the server's ``text/csv`` decoder, JSON lines with its ``dataframe_records`` one, Parquet and Arrow
as pandas reads them), split them (to isolate a bad row), say where a row is in the file, and give a row
back as it was for the rejects file.

Rows are counted from 1: the first data row of a CSV file (after its header) is row 1, the first object of
a JSON lines file is row 1; blank lines are skipped and not counted, as pandas skips them. Text files also
give the row's line in the file (a quoted CSV field may hold line breaks, so the two can differ by more than
the header). Text is cut into rows on whole bytes, at a line feed outside double quotes (CSV) or at any line
feed (JSON lines: JSON text holds no raw line break), so lines end with LF or CRLF; a lone CR is no row end.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, MalformedRequestError, UnsupportedMediaTypeError, quote, quote_names
from .formats import DEFAULT_BATCH_ROWS, ROW_FORMATS

#: A chunk of a text file is cut short at this many bytes, so wide rows do not multiply memory.
MAX_CHUNK_BYTES = 16 << 20
#: A row longer than this is refused (a lone-CR file, or an unclosed quote, would otherwise be one huge row).
MAX_ROW_BYTES = 64 << 20
_READ_BLOCK = 4 << 20
_BLANK_START = np.array([9, 10, 11, 12, 13, 32], np.uint8)  # a row starting with white space may be blank


def require_pyarrow(what: str) -> Any:
    """The pyarrow module; UnsupportedMediaTypeError naming the ``arrow`` extra when it is not installed."""
    try:
        import pyarrow
    except ImportError:
        raise UnsupportedMediaTypeError(
            f"{what} needs pyarrow, which is not installed for {sys.executable} (the Python running the model): "
            "pip install 'modelpack[arrow]' there, or add pyarrow to the model's requirements"
        ) from None
    return pyarrow


@dataclass(frozen=True)
class Location:
    """Where a row is: its number among the file's rows (from 1) and, in a text file, its line."""

    row: int
    line: int | None
    source: str
    header: bool  # whether the file has a header row (CSV), which the row numbers do not count

    def describe(self) -> str:
        what = "Data row" if self.header else "Row"
        counted = "counted from 1 after the header" if self.header else "counted from 1"
        line = f"; line {self.line}" if self.line is not None else ""
        return f"{what} {self.row} of {self.source} ({counted}{line})"

    def span(self, last: Location) -> str:
        """'Data rows 3-9 of ...' for the rows from this one to ``last``."""
        what = "Data rows" if self.header else "Rows"
        counted = "counted from 1 after the header" if self.header else "counted from 1"
        lines = f"; lines {self.line}-{last.line}" if self.line is not None and last.line is not None else ""
        return f"{what} {self.row}-{last.row} of {self.source} ({counted}{lines})"


class Chunk(ABC):
    """Consecutive rows of an input file; ``start`` is the first one's position among the file's rows (from 0)."""

    start: int
    source: str

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def slice(self, i: int, j: int) -> Chunk:
        """Rows ``i`` to ``j - 1`` of this chunk."""

    @abstractmethod
    def decode(self) -> pd.DataFrame:
        """The rows as the model's input (one row per row); InvalidInputError when they cannot be read."""

    @abstractmethod
    def where(self, i: int) -> Location:
        """Where row ``i`` of this chunk is in the file."""

    @abstractmethod
    def raw(self, i: int) -> Any:
        """Row ``i`` as it is in the file, for the rejects file (a line of text, or a record)."""

    def kept(self, frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
        """The ``--keep`` columns of these rows (``frame``: what :meth:`decode` returned)."""
        missing = [name for name in names if name not in frame.columns]
        if missing:  # a JSON lines chunk whose objects all leave the key out: missing values
            frame = frame.assign(**{name: None for name in missing})
        return frame[names].reset_index(drop=True)

    #: Why a row can read as several, for the message.
    one_record = "each row must be one record"

    def _checked(self, frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame.index) != len(self):
            raise InvalidInputError(f"{len(self)} row(s) read as {len(frame.index)}; {self.one_record}")
        return frame


class Reader(ABC):
    """An open input file: its chunks, in order, and how far reading has got."""

    source: str
    #: The file's column names when known before reading rows (a CSV header, a Parquet or Arrow schema).
    columns: list[str] | None = None
    header = False

    @abstractmethod
    def chunks(self) -> Iterator[Chunk]: ...

    def fraction(self) -> float | None:
        """How much of the file has been read (0..1), or None when its size is unknown (standard input)."""
        return None

    def close(self) -> None:  # noqa: B027 - a reader with nothing to release keeps this
        pass

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_reader(path: str, fmt: str, batch_size: int = DEFAULT_BATCH_ROWS) -> Reader:
    """A reader of ``path`` ('-' is standard input, for the text formats) in ``fmt``, chunks of ``batch_size`` rows.

    The file is opened here, so a missing file fails before anything else is done."""
    source = "standard input" if path == "-" else quote(path, 200)
    if fmt in ("csv", "jsonl"):
        stream: IO[bytes] = sys.stdin.buffer if path == "-" else _open(path)
        size = None if path == "-" else _size(stream)
        return CsvReader(stream, source, batch_size, size) if fmt == "csv" else JsonLinesReader(
            stream, source, batch_size, size)
    if path == "-":
        raise InvalidInputError(f"{fmt.capitalize()} input must be a file (it is read by parts), not standard input")
    _open(path).close()  # the same message as for a text file when it is missing or unreadable
    if fmt == "parquet":
        return ParquetReader(path, source, batch_size)
    if fmt == "arrow":
        return ArrowReader(path, source, batch_size)
    raise InvalidInputError(f"Input format {quote(fmt)} is not one of {list(ROW_FORMATS)}")


def _open(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - the reader closes it
    except OSError as exc:
        raise InvalidInputError(f"Cannot read input file {quote(path, 200)}: {exc.strerror}") from None


def _size(stream: IO[bytes]) -> int | None:
    try:
        size = os.fstat(stream.fileno()).st_size
    except (OSError, ValueError):
        return None
    return size or None  # a pipe or a FIFO says 0


# ---------------------------------------------------------------- text files


class _RowCutter:
    """Cuts a byte stream into whole rows: a row ends after a LF outside double quotes (``quotes``) or after
    any LF. It holds the bytes read but not yet taken, at most a read block more than one chunk."""

    def __init__(self, stream: IO[bytes], quotes: bool, source: str) -> None:
        self.stream, self.quotes, self.source = stream, quotes, source
        self.buf = b""  # bytes not yet taken, from a row's start
        self.ends = np.empty(0, np.int64)  # ends (exclusive) of the whole rows found in buf
        self.scanned = 0  # bytes of buf searched for row ends
        self.in_quotes = False  # whether buf[:scanned] leaves a quoted field open
        self.eof = False
        self.taken = 0  # bytes taken so far
        self.line = 1  # the file line buf starts on

    def _fill(self) -> None:
        block = self.stream.read(_READ_BLOCK)
        if not block:
            self.eof = True
            if len(self.buf) > (int(self.ends[-1]) if self.ends.size else 0):
                self.ends = np.append(self.ends, len(self.buf))  # a last row without a line end
            return
        self.buf += block
        region = np.frombuffer(self.buf, np.uint8, offset=self.scanned)
        ends = np.flatnonzero(region == 10)
        if self.quotes:
            quotes = np.flatnonzero(region == 34)
            if quotes.size:  # a LF ends a row only after an even number of quotes ("" escapes a quote)
                ends = ends[(np.searchsorted(quotes, ends) + self.in_quotes) % 2 == 0]
                self.in_quotes = bool((quotes.size + self.in_quotes) % 2)
            elif self.in_quotes:
                ends = ends[:0]
        self.ends = np.concatenate((self.ends, ends + (self.scanned + 1)))
        self.scanned = len(self.buf)
        if not self.ends.size and len(self.buf) > MAX_ROW_BYTES:
            raise InvalidInputError(
                f"{self.source} has a row longer than {MAX_ROW_BYTES >> 20} MB after line {self.line} "
                "(lines must end with LF or CRLF; a quoted field left open runs to the end of the file)"
            )

    def take(self, rows: int, max_bytes: int = MAX_CHUNK_BYTES) -> tuple[bytes, np.ndarray, int] | None:
        """Up to ``rows`` whole rows, fewer when they would pass ``max_bytes`` (at least one): their bytes,
        their ends and the line the first starts on; None after the last row."""
        while len(self.ends) < rows and not self.eof and not (self.ends.size and self.ends[-1] >= max_bytes):
            self._fill()
        if not self.ends.size:
            return None
        count = min(rows, len(self.ends), max(1, int(np.searchsorted(self.ends, max_bytes, "right"))))
        cut = int(self.ends[count - 1])
        data, ends, line = self.buf[:cut], self.ends[:count], self.line
        self.buf = self.buf[cut:]
        self.ends = self.ends[count:] - cut
        self.scanned -= cut
        self.taken += cut
        self.line += data.count(b"\n")
        return data, ends, line


def _row_lines(data: bytes, ends: np.ndarray, line: int) -> np.ndarray:
    """The line each row starts on."""
    starts = np.concatenate(([0], ends[:-1]))
    if b'"' not in data:  # a row is one line (a JSON lines row always is)
        return line + np.arange(len(ends), dtype=np.int64)
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    return line + np.searchsorted(newlines, starts)


def _without_blank_rows(data: bytes, ends: np.ndarray, lines: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The rows that hold more than white space (pandas skips the others)."""
    starts = np.concatenate(([0], ends[:-1]))
    view = np.frombuffer(data, np.uint8)
    suspects = np.flatnonzero(np.isin(view[starts], _BLANK_START))
    blank = [int(i) for i in suspects if not data[starts[i]:ends[i]].strip()]
    if not blank:
        return data, ends, lines
    keep = np.ones(len(ends), bool)
    keep[blank] = False
    pieces = [data[s:e] for s, e in zip(starts[keep].tolist(), ends[keep].tolist(), strict=True)]
    lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
    return b"".join(pieces), np.cumsum(lengths), lines[keep]


class _TextChunk(Chunk):
    """Rows of a text file: their bytes, where each ends, and the line each starts on."""

    header_row = False

    def __init__(self, data: bytes, ends: np.ndarray, lines: np.ndarray, start: int, source: str) -> None:
        self.data, self.ends, self.lines, self.start, self.source = data, ends, lines, start, source

    def __len__(self) -> int:
        return len(self.ends)

    def _bounds(self, i: int) -> tuple[int, int]:
        return (int(self.ends[i - 1]) if i else 0), int(self.ends[i])

    def slice(self, i: int, j: int) -> _TextChunk:
        base = int(self.ends[i - 1]) if i else 0
        return type(self)(self.data[base:int(self.ends[j - 1])], self.ends[i:j] - base, self.lines[i:j],
                          self.start + i, self.source, *self._extra())

    def _extra(self) -> tuple:
        return ()

    def where(self, i: int) -> Location:
        return Location(self.start + i + 1, int(self.lines[i]), self.source, self.header_row)

    def raw(self, i: int) -> str:
        start, end = self._bounds(i)
        return self.data[start:end].decode("utf-8", "replace").rstrip("\r\n")


class _TextReader(Reader):
    quotes = False

    def __init__(self, stream: IO[bytes], source: str, batch_size: int, size: int | None) -> None:
        self.stream, self.source, self.batch_size, self.size = stream, source, batch_size, size
        self.cutter = _RowCutter(stream, self.quotes, source)
        self.rows = 0

    def _take(self, rows: int) -> tuple[bytes, np.ndarray, np.ndarray] | None:
        """The next rows that are not blank (None at the end of the file)."""
        while True:
            taken = self.cutter.take(rows)
            if taken is None:
                return None
            data, ends, line = taken
            data, ends, lines = _without_blank_rows(data, ends, _row_lines(data, ends, line))
            if len(ends):
                return data, ends, lines

    def chunks(self) -> Iterator[Chunk]:
        while (taken := self._take(self.batch_size)) is not None:
            chunk = self._chunk(*taken)
            self.rows += len(chunk)
            yield chunk
        if not self.rows:
            raise self._no_rows()

    def _no_rows(self) -> InvalidInputError:
        return InvalidInputError(f"{self.source} holds no rows; send at least one row to score")

    @abstractmethod
    def _chunk(self, data: bytes, ends: np.ndarray, lines: np.ndarray) -> Chunk: ...

    def fraction(self) -> float | None:
        return min(1.0, self.cutter.taken / self.size) if self.size else None

    def close(self) -> None:
        if self.stream is not sys.stdin.buffer:
            self.stream.close()


class CsvChunk(_TextChunk):
    """Rows of a CSV file, decoded under the file's header as the server decodes a ``text/csv`` body."""

    header_row = True
    one_record = "a row ends with LF or CRLF, not with a lone CR (carriage return)"

    def __init__(self, data: bytes, ends: np.ndarray, lines: np.ndarray, start: int, source: str,
                 header: bytes) -> None:
        super().__init__(data, ends, lines, start, source)
        self.header = header

    def _extra(self) -> tuple:
        return (self.header,)

    def decode(self) -> pd.DataFrame:
        from ..server.decode import decode_csv

        frame, _ = decode_csv(self.header + self.data)
        if not isinstance(frame, pd.DataFrame):  # the float-rows block of a small body (not asked for here)
            frame = frame.to_frame()
        return self._checked(frame)


class CsvReader(_TextReader):
    """A CSV file with a header row; every chunk is decoded under that header."""

    quotes = True
    header = True

    def __init__(self, stream: IO[bytes], source: str, batch_size: int, size: int | None) -> None:
        super().__init__(stream, source, batch_size, size)
        first = self._take(1)
        if first is None:
            raise InvalidInputError(f"{source} is empty; expected a header row and data rows")
        header = first[0]
        if b"\r" in header.rstrip(b"\r\n") and b'"' not in header:
            raise InvalidInputError(
                f"{source} has lines that end with a lone CR (carriage return); lines must end with LF or CRLF"
            )
        self.header_bytes = header if header.endswith(b"\n") else header + b"\n"
        self.columns = _csv_names(header, source)

    def _chunk(self, data: bytes, ends: np.ndarray, lines: np.ndarray) -> Chunk:
        return CsvChunk(data, ends, lines, self.rows, self.source, self.header_bytes)

    def _no_rows(self) -> InvalidInputError:
        return InvalidInputError(
            f"{self.source} has a header of {len(self.columns or [])} column(s) "
            f"{quote_names(self.columns or [])} but no data rows; send at least one"
        )


def _csv_names(header: bytes, source: str) -> list[str]:
    try:
        text = header.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(f"The header row of {source} is not UTF-8: {exc}") from None
    try:
        names = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise MalformedRequestError(f"The header row of {source} cannot be parsed: {quote(str(exc), 300)}") from None
    if len(set(names)) != len(names):
        twice = next(name for i, name in enumerate(names) if name in names[:i])
        raise InvalidInputError(f"The header row of {source} names the column {quote(twice)} twice")
    return names


class JsonLinesChunk(_TextChunk):
    """Rows of a JSON lines file (one object per line), decoded as the server decodes ``dataframe_records``."""

    one_record = "each line holds one JSON object"

    def decode(self) -> pd.DataFrame:
        from ..server.decode import decode_json

        if len(self) == 1:
            self._check_line()
        body = b'{"dataframe_records":[' + self.data.rstrip(b"\r\n").replace(b"\n", b",") + b"]}"
        frame, _ = decode_json(body)
        if not isinstance(frame, pd.DataFrame):
            frame = frame.to_frame()
        return self._checked(frame)

    def _check_line(self) -> None:
        """A single line's own error (the decoder would place it in the body it was wrapped in)."""
        import json

        import orjson

        line = self.data.strip()
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            try:
                value = json.loads(line)  # NaN, Infinity: read as the server reads them
            except (ValueError, RecursionError):
                raise MalformedRequestError(f"The line is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidInputError(
                f"The line holds a JSON {type(value).__name__}; each line of a JSON lines file must be an object "
                "(one row: column name -> value)"
            )


class JsonLinesReader(_TextReader):
    """A JSON lines file: one JSON object per line, a row each."""

    def _chunk(self, data: bytes, ends: np.ndarray, lines: np.ndarray) -> Chunk:
        return JsonLinesChunk(data, ends, lines, self.rows, self.source)


# ---------------------------------------------------------------- Parquet and Arrow


class ArrowChunk(Chunk):
    """Rows of a Parquet or Arrow file: an Arrow record batch (slices of it share its memory)."""

    def __init__(self, batch: Any, start: int, source: str) -> None:
        self.batch, self.start, self.source = batch, start, source

    def __len__(self) -> int:
        return int(self.batch.num_rows)

    def slice(self, i: int, j: int) -> ArrowChunk:
        return ArrowChunk(self.batch.slice(i, j - i), self.start + i, self.source)

    def decode(self) -> pd.DataFrame:
        try:
            frame = self.batch.to_pandas()
        except Exception as exc:  # pyarrow's ArrowInvalid, NotImplementedError for exotic types
            raise InvalidInputError(
                f"Rows of {self.source} cannot be read as a table: {quote(str(exc), 300)}") from None
        return self._checked(frame)

    def kept(self, frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
        """The kept columns with their Arrow types (an integer column with nulls stays integers)."""
        return self.batch.select(names).to_pandas(types_mapper=pd.ArrowDtype)

    def where(self, i: int) -> Location:
        return Location(self.start + i + 1, None, self.source, False)

    def raw(self, i: int) -> Any:
        return self.batch.slice(i, 1).to_pylist()[0]


def _unreadable(source: str, what: str, exc: Exception) -> MalformedRequestError:
    return MalformedRequestError(f"{source} cannot be read as {what}: {quote(str(exc), 300)}")


class ParquetReader(Reader):
    """A Parquet file in batches. pyarrow holds a row group's decoded columns at a time: memory follows the
    file's row group size (pyarrow writes up to 1Mi rows per group: ~100 MB for ten double columns)."""

    def __init__(self, path: str, source: str, batch_size: int) -> None:
        require_pyarrow("Reading Parquet files")
        import pyarrow.parquet as pq

        self.source, self.batch_size = source, batch_size
        try:
            # buffered reads of each column chunk, not the whole row group's bytes at once: ~50 MB less at 1M rows
            self.file = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        except OSError as exc:
            if not Path(path).exists() or not os.access(path, os.R_OK):
                raise InvalidInputError(f"Cannot read input file {quote(path, 200)}: {exc}") from None
            raise _unreadable(source, "Parquet", exc) from None
        except Exception as exc:  # ArrowInvalid: not a Parquet file
            raise _unreadable(source, "Parquet", exc) from None
        self.columns = list(self.file.schema_arrow.names)
        self.total = self.file.metadata.num_rows
        self.rows = 0

    def chunks(self) -> Iterator[Chunk]:
        if not self.total:
            raise InvalidInputError(f"{self.source} holds no rows; send at least one row to score")
        try:
            for batch in self.file.iter_batches(batch_size=self.batch_size):
                if batch.num_rows:
                    chunk = ArrowChunk(batch, self.rows, self.source)
                    self.rows += batch.num_rows
                    yield chunk
        except (OSError, ValueError) as exc:  # ArrowInvalid and ArrowIOError are among these
            raise _unreadable(self.source, "Parquet", exc) from None

    def fraction(self) -> float | None:
        return self.rows / self.total if self.total else None

    def close(self) -> None:
        self.file.close()


class ArrowReader(Reader):
    """An Arrow IPC file (the random-access "file" format, ``.arrow``/``.feather``) or stream, a record
    batch at a time; batches larger than the batch size are sliced. Read, not memory-mapped, so pages of the
    file do not count in this process's memory."""

    def __init__(self, path: str, source: str, batch_size: int) -> None:
        pa = require_pyarrow("Reading Arrow files")
        self.source, self.batch_size = source, batch_size
        try:
            self.stream = pa.OSFile(path, "rb")
        except OSError as exc:
            raise InvalidInputError(f"Cannot read input file {quote(path, 200)}: {exc}") from None
        self.size = self.stream.size()
        try:
            self.file: Any = pa.ipc.open_file(self.stream)
            self.batches = self._file_batches()
        except pa.ArrowInvalid:
            self.stream.seek(0)
            try:
                self.file = pa.ipc.open_stream(self.stream)
            except pa.ArrowInvalid as exc:
                self.stream.close()
                raise _unreadable(source, "an Arrow IPC file or stream", exc) from None
            self.batches = iter(self.file)
        self.columns = list(self.file.schema.names)
        self.rows = 0

    def _file_batches(self) -> Iterator[Any]:
        for i in range(self.file.num_record_batches):
            yield self.file.get_batch(i)

    def chunks(self) -> Iterator[Chunk]:
        empty = True
        try:
            for batch in self.batches:
                for offset in range(0, batch.num_rows, self.batch_size):
                    empty = False
                    part = batch.slice(offset, self.batch_size)
                    chunk = ArrowChunk(part, self.rows, self.source)
                    self.rows += part.num_rows
                    yield chunk
        except (OSError, ValueError) as exc:
            raise _unreadable(self.source, "Arrow", exc) from None
        if empty:
            raise InvalidInputError(f"{self.source} holds no rows; send at least one row to score")

    def fraction(self) -> float | None:
        return min(1.0, self.stream.tell() / self.size) if self.size else None

    def close(self) -> None:
        self.stream.close()
