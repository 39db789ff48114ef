"""FRAMING: where one HTTP/1.1 request ends in the bytes received so far, without blocking on the client.

The buffering worker (``worker.py``) receives whatever a connection has sent and asks :func:`request_end`
whether a whole request (request line, headers and body, by ``Content-Length`` or chunked framing) is there.
Only then does it parse the request and run the app, so a client that sends slowly, or not at all, holds a few
kilobytes of buffer instead of a worker. Framing errors are the client's: each is a :class:`FramingError` with the
status to answer (400 malformed, 413 over the body limit, 431 headers too large), found as soon as the bytes show
it - a body over the limit is refused from its length or its chunk sizes, before it is received.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Request line and headers together may not exceed this (gunicorn's own limits are about the same size).
MAX_HEADER_BYTES = 64 * 1024
#: A chunk-size line (hex size and extensions) longer than this is malformed.
MAX_CHUNK_LINE = 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass
class FramingError(Exception):
    """The client's bytes cannot be a valid request: answer ``status`` and close the connection."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def request_end(buf: bytes | bytearray, max_body: int) -> int | None:
    """The offset just past the first complete request in ``buf``, or None while it is incomplete.

    Raises :class:`FramingError` when the bytes can only be a bad request."""
    head_end = buf.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
    if head_end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise FramingError(431, f"Request line and headers are larger than {MAX_HEADER_BYTES} bytes")
        return None
    body_start = head_end + 4
    length, chunked = _body_framing(bytes(buf[:head_end]))
    if chunked:
        return _chunked_end(buf, body_start, max_body)
    if length > max_body:
        raise FramingError(413, f"Request body of {length} bytes is larger than the server's limit of "
                                f"{max_body} bytes (MODELPACK_MAX_BODY_BYTES)")
    end = body_start + length
    return end if len(buf) >= end else None


def _body_framing(head: bytes) -> tuple[int, bool]:
    """(Content-Length, chunked) from the request head; RFC 9112's rules for conflicting framing."""
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue  # the parser that reads the request later reports a malformed header line
        key = name.strip().lower()
        if key == b"content-length":
            lengths.append(value.strip())
        elif key == b"transfer-encoding":
            encodings.extend(v.strip().lower() for v in value.split(b","))
    if encodings:
        if lengths:
            raise FramingError(400, "Request has both Content-Length and Transfer-Encoding")
        if encodings[-1] != b"chunked" or encodings.count(b"chunked") != 1:
            raise FramingError(400, "Unsupported Transfer-Encoding: only 'chunked' is accepted")
        return 0, True
    if not lengths:
        return 0, False
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
        raise FramingError(400, "Invalid Content-Length header")
    return int(lengths[0]), False


def _chunked_end(buf: bytes | bytearray, pos: int, max_body: int) -> int | None:
    """The end of a chunked body starting at ``pos`` (after the trailers), or None if not all here yet."""
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
        if line_end < 0:
            if len(buf) - pos > MAX_CHUNK_LINE:
                raise FramingError(400, "Invalid chunked body: chunk-size line too long")
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 15 or not _HEX.issuperset(size_text):
            raise FramingError(400, f"Invalid chunked body: bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        total += size
        if total > max_body:
            raise FramingError(413, f"Chunked request body is larger than the server's limit of {max_body} bytes "
                                    "(MODELPACK_MAX_BODY_BYTES)")
        pos = line_end + 2
        if size == 0:
            return _trailers_end(buf, pos)
        data_end = pos + size
        if len(buf) < data_end + 2:
            return None
        if buf[data_end:data_end + 2] != b"\r\n":
            raise FramingError(400, "Invalid chunked body: chunk data not followed by CRLF")
        pos = data_end + 2


def _trailers_end(buf: bytes | bytearray, pos: int) -> int | None:
    """The end of the trailer section at ``pos`` (an empty line ends it)."""
    if buf[pos:pos + 2] == b"\r\n":
        return pos + 2
    end = buf.find(b"\r\n\r\n", pos, pos + MAX_HEADER_BYTES)
    if end < 0:
        if len(buf) - pos > MAX_HEADER_BYTES:
            raise FramingError(431, "Chunked body trailers are too large")
        return None
    return end + 4
