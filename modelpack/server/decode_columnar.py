"""DECODE, columnar bodies: Parquet (``application/vnd.apache.parquet``) and Arrow IPC
(``application/vnd.apache.arrow.stream`` or ``.file``), read with pyarrow (the ``arrow`` extra; without it a 415
naming the extra). What a body declares is checked before it is decoded: a few bytes of Parquet or Arrow can
declare millions of rows (a column of nulls, run-end encoding, compression).
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..config import DEFAULT_MAX_BODY_BYTES
from ..errors import (
    InvalidInputError,
    MalformedRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    quote,
    quote_names,
)
from ..float_rows import FloatRows

PARQUET = "application/vnd.apache.parquet"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"


def decode_parquet(body: bytes, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> tuple[pd.DataFrame, None]:
    """Decode a Parquet body (what ``DataFrame.to_parquet()`` writes) with pandas and pyarrow, as MLflow 3 does.

    pyarrow is the optional ``arrow`` extra: without it the body is a 415 saying how to install it. A small
    Parquet body can hold a table far larger than its bytes (a column of one repeated value compresses to
    almost nothing), so the table its footer declares is checked first: at most ``max_body_bytes // 2``
    cells (what the largest JSON body could hold) and ``4 * max_body_bytes`` bytes decoded, else 413."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise _needs_pyarrow(PARQUET) from None
    try:
        meta = pq.ParquetFile(io.BytesIO(body)).metadata
        rows, columns = meta.num_rows, meta.num_columns
        decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # pyarrow's errors on bytes that are no Parquet file (ArrowInvalid, OSError...)
        raise MalformedRequestError(f"Parquet body cannot be read: {quote(str(exc), 300)}") from None
    if rows * max(columns, 1) > max_body_bytes // 2 or decoded > 4 * max_body_bytes:
        raise PayloadTooLargeError(
            f"Parquet body declares {rows} rows x {columns} columns ({decoded} bytes decoded), more than the "
            f"server takes in a request (MODELPACK_MAX_BODY_BYTES={max_body_bytes}: at most "
            f"{max_body_bytes // 2} cells and {4 * max_body_bytes} bytes decoded)"
        )
    try:
        frame = pd.read_parquet(io.BytesIO(body), engine="pyarrow")
    except Exception as exc:
        raise MalformedRequestError(f"Parquet body cannot be read: {quote(str(exc), 300)}") from None
    if not len(frame.index):
        raise InvalidInputError(f"Parquet body holds no rows ({columns} column(s)); send at least one row to score")
    return frame, None


def _needs_pyarrow(mimetype: str) -> UnsupportedMediaTypeError:
    return UnsupportedMediaTypeError(
        f"Content-Type {quote(mimetype)} needs pyarrow, which is not installed where the model is served; "
        "install it with: pip install 'modelpack[arrow]' (or send application/json or text/csv)"
    )


#: The first bytes of an Arrow IPC file; the stream format follows them (up to the footer).
_ARROW_FILE_MAGIC = b"ARROW1"


def decode_arrow(body: bytes, float_columns: Sequence[str] | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 mimetype: str = ARROW_STREAM) -> tuple[pd.DataFrame | FloatRows, None]:
    """Decode an Arrow IPC body: the stream format (``pyarrow.ipc.new_stream``), or the file format
    (``new_file``, told apart by its leading ``ARROW1``) read as the stream it holds. Parameters cannot travel
    in an Arrow body: a model gets its defaults.

    The table is read without copying the body, checked as Arrow untrusted data must be (``validate(full=True)``:
    offsets past their buffers would crash the worker, not raise), then handed to pandas (writable columns, as
    every other format gives: ``split_blocks`` would leave them read-only views of the body). What the body's
    batches declare is checked before any is decoded (:func:`_declared_size`), with the Parquet rule: a
    column of nulls, run-end encoded or compressed buffers hold millions of rows in a few bytes.

    ``float_columns``: the model's all-double signature columns (the float-rows fast path,
    modelpack/float_rows.py); when the table holds them all as float64 without a null, NaN or infinity, they
    are copied straight into one float64 block, other columns left out as schema enforcement leaves them.
    ``mimetype``: the Content-Type, for the 415 without pyarrow."""
    try:
        import pyarrow as pa
    except ImportError:
        raise _needs_pyarrow(mimetype) from None
    if not body:
        raise InvalidInputError("Arrow IPC body is empty; expected a schema and record batches")
    data = pa.py_buffer(body)
    if body.startswith(_ARROW_FILE_MAGIC):
        data = data.slice(8)  # the magic, padded to 8 bytes
    values, decoded = _declared_size(pa, data)
    if values > max_body_bytes // 2 or decoded > 4 * max_body_bytes:
        raise PayloadTooLargeError(
            f"Arrow IPC body declares {values} values ({decoded} bytes decoded), more than the server takes in a "
            f"request (MODELPACK_MAX_BODY_BYTES={max_body_bytes}: at most {max_body_bytes // 2} values, nested "
            f"ones included, and {4 * max_body_bytes} bytes decoded)"
        )
    try:
        table = pa.ipc.open_stream(data, options=pa.ipc.IpcReadOptions(use_threads=False)).read_all()
        table.validate(full=True)
    except Exception as exc:  # ArrowInvalid, ArrowNotImplementedError (unknown codec), OSError...
        raise _unreadable_arrow(exc) from None
    if not table.num_rows:
        raise InvalidInputError(
            f"Arrow IPC body holds no rows ({table.num_columns} column(s)); send at least one row to score"
        )
    if any(pa.types.is_dictionary(t) for t in table.schema.types):
        table = _plain_dictionaries(pa, table, 4 * max_body_bytes)
    if float_columns:
        rows = _arrow_float_rows(pa, table, float_columns)
        if rows is not None:
            return rows, None
    try:
        frame = table.to_pandas(use_threads=False)
    except Exception as exc:  # types pandas has no column for (ArrowNotImplementedError, ArrowInvalid...)
        raise InvalidInputError(
            f"Arrow IPC body's columns cannot be read as a table: {quote(str(exc), 300)} (schema: "
            f"{quote(', '.join(f'{f.name}: {f.type}' for f in table.schema), 300)})"
        ) from None
    return frame, None


def _unreadable_arrow(exc: BaseException) -> MalformedRequestError:
    return MalformedRequestError(
        f"Arrow IPC body cannot be read: {quote(str(exc), 300)}; expected an Arrow IPC stream (what "
        "pyarrow.ipc.new_stream writes) or file"
    )


def _arrow_float_rows(pa: Any, table: Any, columns: Sequence[str]) -> FloatRows | None:
    """``columns`` of ``table`` as one column-major float64 block, or None unless every one is there exactly
    once, float64, without a null, NaN or infinity (what schema enforcement would pass unchanged)."""
    names = table.column_names
    if len(set(names)) != len(names) or not set(columns) <= set(names):
        return None
    chosen = [table.column(name) for name in columns]
    if any(column.type != pa.float64() or column.null_count for column in chosen):
        return None
    block = np.empty((table.num_rows, len(chosen)), dtype=np.float64, order="F")
    for i, column in enumerate(chosen):
        start = 0
        for chunk in column.chunks:  # zero-copy views of the body, copied once, into the block
            block[start:start + len(chunk), i] = chunk.to_numpy()
            start += len(chunk)
    if not math.isfinite(block.sum()):  # a NaN or an infinity: the checked path names it
        return None
    return FloatRows(block, list(columns))


def _plain_dictionaries(pa: Any, table: Any, limit: int) -> Any:
    """``table`` with its dictionary-encoded columns (pandas categories, polars' Categorical) as plain ones: the
    values, as a JSON body would carry them (pandas would make categories, which a string column refuses).

    A dictionary of one long text indexed by every row holds far more text than its bytes, which a model working
    row by row would copy: the text the rows reference (``limit``, 4x the body limit) is counted first, 413 past it."""
    import pyarrow.compute as pc

    texts, names = 0, []
    for i, field in enumerate(table.schema):
        if not pa.types.is_dictionary(field.type):
            continue
        names.append(field.name)
        value_type = field.type.value_type
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_binary(value_type) \
                or pa.types.is_large_binary(value_type):
            for chunk in table.column(i).chunks:
                texts += pc.sum(pc.take(pc.binary_length(chunk.dictionary), chunk.indices)).as_py() or 0
        if texts > limit:
            raise PayloadTooLargeError(
                f"Arrow IPC body's dictionary-encoded column(s) {quote_names(names)} hold {texts} or more bytes of "
                f"text once each row has its value, more than the server takes in a request ({limit} bytes: 4x "
                "MODELPACK_MAX_BODY_BYTES)"
            )
        try:
            table = table.set_column(i, field.with_type(value_type), table.column(i).cast(value_type))
        except Exception as exc:  # a dictionary of a type pyarrow cannot decode: ArrowNotImplementedError
            raise InvalidInputError(
                f"Arrow IPC body's dictionary-encoded column {quote(field.name)} ({field.type}) cannot be read: "
                f"{quote(str(exc), 300)}"
            ) from None
    return table


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_PAIR = struct.Struct("<qq")  # FieldNode (length, null count) and Buffer (offset, length): two int64s

#: Message header types (Arrow's Message.fbs) whose body holds columns.
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3


def _declared_size(pa: Any, data: Any) -> tuple[int, int]:
    """How many values (every array's length, nested and dictionary arrays included) and how many bytes
    (decompressed) the record and dictionary batches of the IPC stream ``data`` declare, read from their
    metadata without decoding a batch.

    Each batch's metadata is a flatbuffer (Arrow's Message.fbs, which pyarrow verifies as it reads the
    message): a RecordBatch table with its ``length``, ``nodes`` (a length per array), ``buffers`` (offset and
    length in the message body) and, when compressed, ``compression``; a compressed buffer starts with its
    decompressed length (-1: stored as is)."""
    values = decoded = 0
    try:
        for message in pa.ipc.MessageReader.open_stream(data):
            meta = message.metadata
            root = _Flat(meta, _U32.unpack_from(meta, 0)[0])
            kind = root.scalar(1, "<B")
            batch = root.table(2)
            if kind == _DICTIONARY_BATCH and batch is not None:
                batch = batch.table(1)
            if kind not in (_DICTIONARY_BATCH, _RECORD_BATCH) or batch is None:
                continue
            nodes = [length for length, _ in batch.structs(1, _PAIR)]
            buffers = batch.structs(2, _PAIR)
            if any(n < 0 for n in nodes) or any(o < 0 or n < 0 for o, n in buffers):
                raise ValueError("a negative length or offset in a record batch")
            values += sum(nodes)
            if batch.table(3) is None:  # no compression: the buffers are the body's bytes
                decoded += sum(length for _, length in buffers)
                continue
            body = message.body
            for offset, length in buffers:
                if length >= 8:
                    size = _I64.unpack_from(body, offset)[0]
                    decoded += length - 8 if size == -1 else max(size, 0)
    except Exception as exc:  # not Arrow (ArrowInvalid, OSError), or metadata that lies (struct.error)
        raise _unreadable_arrow(exc) from None
    return values, decoded


class _Flat:
    """A table of a flatbuffer, read as far as :func:`_declared_size` needs (scalars, tables, struct vectors).

    A table starts with the signed offset back to its vtable: the vtable's size, the table's, then one 16-bit
    offset per field (0, or past the vtable's end: the field is absent)."""

    __slots__ = ("buf", "pos", "vtable", "vtable_size")

    def __init__(self, buf: Any, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - _I32.unpack_from(buf, pos)[0]
        self.vtable_size = _U16.unpack_from(buf, self.vtable)[0]

    def _field(self, slot: int) -> int | None:
        at = 4 + 2 * slot
        if at + 2 > self.vtable_size:
            return None
        offset = _U16.unpack_from(self.buf, self.vtable + at)[0]
        return self.pos + offset if offset else None

    def scalar(self, slot: int, fmt: str) -> int:
        at = self._field(slot)
        return 0 if at is None else int(struct.unpack_from(fmt, self.buf, at)[0])

    def table(self, slot: int) -> _Flat | None:
        at = self._field(slot)
        return None if at is None else _Flat(self.buf, at + _U32.unpack_from(self.buf, at)[0])

    def structs(self, slot: int, layout: struct.Struct) -> list[tuple[int, ...]]:
        at = self._field(slot)
        if at is None:
            return []
        vector = at + _U32.unpack_from(self.buf, at)[0]
        count = _U32.unpack_from(self.buf, vector)[0]
        start = vector + 4
        return [layout.unpack_from(self.buf, start + i * layout.size) for i in range(count)]
