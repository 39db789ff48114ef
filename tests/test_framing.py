"""modelpack/server/framing.py: where a request ends in the bytes received so far, and which bytes are refused."""

from __future__ import annotations

import pytest

from modelpack.server.framing import MAX_HEADER_BYTES, FramingError, request_end

HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\n"


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n"


def test_get_without_body_ends_after_headers():
    raw = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    assert request_end(raw, 100) == len(raw)
    assert request_end(raw + b"GET /ping", 100) == len(raw)  # a pipelined request after it is not counted


@pytest.mark.parametrize("cut", range(0, 60, 7))
def test_content_length_body_is_incomplete_until_every_byte_arrives(cut):
    raw = HEAD + b"Content-Length: 20\r\n\r\n" + b"x" * 20
    assert request_end(raw, 100) == len(raw)
    assert request_end(raw[: len(raw) - 1 - cut], 100) is None


def test_chunked_body_ends_after_the_last_chunk_and_trailers():
    raw = chunked(b'{"a": ', b"1}")
    assert request_end(raw, 100) == len(raw)
    for cut in range(1, len(raw) - len(HEAD)):
        assert request_end(raw[:-cut], 100) is None, cut
    with_trailer = chunked(b"abc", trailer=b"X-Checksum: 1\r\n")
    assert request_end(with_trailer, 100) == len(with_trailer)


def test_chunk_extensions_are_allowed():
    raw = HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\n0\r\n\r\n"
    assert request_end(raw, 100) == len(raw)


@pytest.mark.parametrize("raw, status, words", [
    (HEAD + b"Content-Length: 101\r\n\r\n", 413, "limit of 100 bytes"),  # refused from the header alone
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n65\r\n", 413, "limit of 100 bytes"),  # from the first chunk size
    (chunked(b"x" * 60, b"y" * 41)[:-20], 413, "limit"),  # from the sum of chunk sizes
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad chunk size"),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n\r\n", 400, "bad chunk size"),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400, "not followed by CRLF"),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 2000, 400, "chunk-size line too long"),
    (HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both"),
    (HEAD + b"Transfer-Encoding: gzip\r\n\r\n", 400, "only 'chunked'"),
    (HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400, "only 'chunked'"),
    (HEAD + b"Content-Length: -1\r\n\r\n", 400, "Content-Length"),
    (HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "Content-Length"),
    (HEAD + b"Content-Length: 0x10\r\n\r\n", 400, "Content-Length"),
    (HEAD + b"X: " + b"a" * MAX_HEADER_BYTES, 431, "headers"),
])
def test_bad_framing_is_refused_with_its_status(raw, status, words):
    with pytest.raises(FramingError, match=words) as info:
        request_end(raw, 100)
    assert info.value.status == status


def test_a_body_at_the_limit_is_accepted():
    raw = HEAD + b"Content-Length: 100\r\n\r\n" + b"x" * 100
    assert request_end(raw, 100) == len(raw)
    assert request_end(chunked(b"x" * 50, b"y" * 50), 100) is not None
