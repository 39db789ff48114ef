"""The pipe between a Spark Python worker and the scoring child that runs a model in its own environment.

One message: a 4-byte big-endian length, a JSON header, then the raw bytes of each column. Numeric, boolean,
datetime and timedelta columns travel as their numpy buffers (dtype and shape in the header), so neither
side depends on the other's pandas or numpy version to read them; any other column (strings, bytes, dicts
of a struct argument) travels as a pickled list of its values. Both ends are modelpack processes started
for each other (the parent spawns the child and owns both pipes), so no third party writes to the pipe.

Header ``kind``: ``ready`` (the child loaded the model), ``batch`` (parent -> child: the columns of one
input batch and the params), ``result`` (child -> parent: the output's columns) and ``error`` (the
:class:`~modelpack.errors.ModelpackError` subclass name, message and detail, re-raised by the parent).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Hashable, Sequence
from typing import IO, Any

import numpy as np
import orjson

_LENGTH = struct.Struct(">I")
_RAW_KINDS = "biufcmM"  # numpy kinds sent as raw buffers


class ChannelClosed(EOFError):
    """The other end closed the pipe (the child exited, or the parent is done)."""


def write_message(stream: IO[bytes], kind: str, columns: Sequence[tuple[Hashable, np.ndarray]] = (),
                  **fields: Any) -> None:
    """Send one message: ``fields`` go into the JSON header, ``columns`` as buffers after it."""
    specs, buffers = [], []
    for label, values in columns:
        if values.dtype.kind in _RAW_KINDS and not values.dtype.hasobject:
            data = np.ascontiguousarray(values).tobytes()
            specs.append({"label": _label(label), "dtype": values.dtype.str, "shape": list(values.shape),
                          "nbytes": len(data)})
        else:
            data = pickle.dumps(values.tolist(), protocol=4)
            specs.append({"label": _label(label), "pickled": True, "nbytes": len(data)})
        buffers.append(data)
    header = orjson.dumps({"kind": kind, "columns": specs, **fields}, option=orjson.OPT_SERIALIZE_NUMPY)
    stream.write(_LENGTH.pack(len(header)))
    stream.write(header)
    for data in buffers:
        stream.write(data)
    stream.flush()


def read_message(stream: IO[bytes]) -> tuple[dict[str, Any], list[tuple[Hashable, np.ndarray]]]:
    """Receive one message: its header and its columns. ChannelClosed at the end of the stream."""
    (size,) = _LENGTH.unpack(_read(stream, _LENGTH.size))
    header = orjson.loads(_read(stream, size))
    columns: list[tuple[Hashable, np.ndarray]] = []
    for spec in header.pop("columns"):
        data = _read(stream, spec["nbytes"])
        label = _unlabel(spec["label"])
        if spec.get("pickled"):
            values = pickle.loads(data)  # written by the modelpack process at the other end of the pipe
            array = np.empty(len(values), dtype=object)
            array[:] = values
            columns.append((label, array))
        else:
            dtype = np.dtype(spec["dtype"])
            columns.append((label, np.frombuffer(data, dtype=dtype).reshape(spec["shape"])))
    return header, columns


def _read(stream: IO[bytes], size: int) -> bytearray:
    """Exactly ``size`` bytes, into a writable buffer (so arrays made from it are writable)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise ChannelClosed(f"the pipe closed after {done} of {size} bytes")
        done += got
    return buffer


def _label(label: Hashable) -> list[Any]:
    """A column label as JSON that keeps its type: positions stay ints, names stay strings."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return ["i", int(label)]
    return ["s", str(label)]


def _unlabel(value: list[Any]) -> Hashable:
    return int(value[1]) if value[0] == "i" else str(value[1])
