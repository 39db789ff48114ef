"""Fuzzing the scoring server (issue 12): no request ever gets a 5xx unless the model itself raised.

A seeded generator (a fixed corpus, the same on every run) makes a few hundred requests: JSON bodies of every shape
around the four format keys (wrong types, deep nesting, huge and non-finite numbers, unicode and lone surrogates,
truncated text), CSV bodies (ragged rows, quotes, empty fields, odd line ends, bytes that are no UTF-8), Parquet
bodies whole and damaged, random content types, chunked framing of random chunk sizes, and raw bytes on a socket.
They go to a real ``modelpack serve`` of the diabetes model (signature, fast path) and of a custom model without a
signature that raises only when it meets the word ``boom`` (a column, a key or a value). Every answer must be JSON
(never HTML or text): a 200 with ``predictions``, or an error with ``error_code`` and ``message`` whose status is
below 500, except ``MODEL_ERROR`` from the custom model on a body holding ``boom``. Afterwards both servers still
answer, and their logs hold no ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
import socket
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from helpers import Server, start_server

import modelpack

SEED = 20261125
COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW = [0.038076, 0.05068, 0.061696, 0.021872, -0.044223, -0.034821, -0.043401, -0.002592, 0.019908, -0.017646]
FORMATS = ["dataframe_split", "dataframe_records", "instances", "inputs"]
KEYS = [*FORMATS, "params", "columns", "data", "index", "boom", "x", "", "ключ", "🙂", *COLUMNS[:3]]
TRIGGER = "boom"
CONTENT_TYPES = [
    "application/json", "text/csv", "application/vnd.apache.parquet", "application/json; charset=utf-8",
    "application/json; charset=UTF8", "application/json;charset=\"utf-8\"", "application/json ; charset = UTF-8",
    "APPLICATION/JSON", "Text/CSV", "application/json;", "application/json; charset=latin-1",
    "application/json; format=pandas-split", "text/csv; header=present", "text/plain", "application/xml",
    "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "", ";", "application/", "*/*", None,
]
HAVE_ARROW = importlib.util.find_spec("pyarrow") is not None


# -- the generator -----------------------------------------------------------------------------------------------

class Gen:
    """Random request bodies from one seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # values, written as JSON text by hand: NaN and infinities as bare literals, lone surrogate escapes, duplicate
    # keys and odd white space are all things a client can send

    def number(self) -> str:
        r = self.rng
        return r.choice([
            "0", "-0", "1", "-1", "2147483648", "9223372036854775808", "18446744073709551616", "1" + "0" * 30,
            "1" + "0" * 400, "1" * 5000, "0.5", "-0.0", "1e308", "1e400", "-1e400", "5e-324", "1e-400", "NaN",
            "Infinity", "-Infinity", "3.141592653589793", repr(r.uniform(-1e6, 1e6)), str(r.randint(-99, 99)),
            "01", "1.", ".5", "+1", "0x10", "nan", "inf",  # the last ones are no JSON: refused as such
        ])

    def text(self) -> str:
        r = self.rng
        raw = r.choice(["", "a", "x y", TRIGGER, "95120", "1.5", "true", "null", "ü日本🙂", "\u0000", "\\", '"',
                        "a" * r.choice([100, 5000]), *COLUMNS, "".join(r.choice(string.printable) for _ in range(8))])
        quoted = json.dumps(raw, ensure_ascii=r.random() < 0.5)
        if r.random() < 0.08:  # a lone UTF-16 surrogate: no Unicode for it
            quoted = quoted[:-1] + r.choice(["\\ud800", "\\udfff", "\\ud83d"]) + '"'
        return quoted

    def value(self, depth: int = 0) -> str:
        r = self.rng
        kind = r.random()
        if depth > 4 or kind < 0.35:
            return self.number()
        if kind < 0.55:
            return self.text()
        if kind < 0.62:
            return r.choice(["true", "false", "null"])
        if kind < 0.82:
            return self.array(depth)
        if kind < 0.97:
            return self.obj(depth)
        n = r.choice([50, 1023, 1030, 3000])
        return "[" * n + self.number() + "]" * n

    def array(self, depth: int, items: Callable[[], str] | None = None, count: int | None = None) -> str:
        r = self.rng
        count = r.choice([0, 1, 2, 3, 5]) if count is None else count
        items = items or (lambda: self.value(depth + 1))
        return "[" + r.choice([",", ", ", " ,\n"]).join(items() for _ in range(count)) + "]"

    def obj(self, depth: int, keys: list[str] | None = None) -> str:
        r = self.rng
        keys = keys if keys is not None else r.sample(KEYS, r.choice([0, 1, 2, 3]))
        if keys and r.random() < 0.1:
            keys = [*keys, keys[0]]  # a key twice
        return "{" + ", ".join(f"{json.dumps(k)}: {self.value(depth + 1)}" for k in keys) + "}"

    # request bodies

    def diabetes_rows(self) -> list[list[str]]:
        """Rows of the diabetes columns as JSON texts, now and then mutated (a row short or long, a value of
        another type, a NaN, a huge number)."""
        r = self.rng
        rows = [[repr(v) for v in ROW] for _ in range(r.choice([1, 2, 3, 10]))]
        for _ in range(r.choice([0, 0, 0, 0, 1, 2, 3])):
            row = r.choice(rows)
            action = r.random()
            if action < 0.2 and row:
                row.pop(r.randrange(len(row)))
            elif action < 0.3:
                row.append(self.number())
            else:
                row[r.randrange(len(row))] = self.value(3)
        return rows

    def json_body(self) -> bytes:
        r = self.rng
        shape = r.random()
        columns = [json.dumps(c) for c in COLUMNS]
        if r.random() < 0.1:
            columns = [self.text() for _ in range(r.choice([0, 1, 10, 11]))]
        rows = self.diabetes_rows()
        inner = ", ".join(rows_text for rows_text in ("[" + ", ".join(row) + "]" for row in rows))
        if shape < 0.2:
            split = "{" + f'"columns": [{", ".join(columns)}], "data": [{inner}]'
            if r.random() < 0.2:
                split += ', "index": ' + self.array(2, self.number, r.choice([0, len(rows), len(rows) + 1]))
            body = '{"dataframe_split": ' + split + "}" + self.extras() + "}"
        elif shape < 0.3:
            body = "{" + f'"columns": [{", ".join(columns)}], "data": [{inner}]' + self.extras() + "}"
        elif shape < 0.45:
            records = ", ".join(self.obj(2, r.sample(COLUMNS, r.choice([10, 10, 9, 3]))) if r.random() < 0.3 else
                                "{" + ", ".join(f'"{c}": {v}' for c, v in zip(COLUMNS, row, strict=False)) + "}"
                                for row in rows)
            body = '{"dataframe_records": [' + records + "]" + self.extras() + "}"
        elif shape < 0.6:
            key = r.choice(["instances", "inputs"])
            content = r.choice([
                "[" + inner + "]",
                "{" + ", ".join(f"{c}: {self.array(2, self.number, len(rows))}" for c in columns[:10]) + "}",
                "[" + ", ".join(self.obj(2, r.sample(KEYS, 2)) for _ in rows) + "]",
                self.value(1),
            ])
            body = "{" + json.dumps(key) + ": " + content + self.extras() + "}"
        elif shape < 0.9:
            body = self.obj(0, r.sample(KEYS, r.choice([1, 2, 3])))
        else:
            body = self.value(0)
        data = body.encode("utf-8", "surrogatepass")
        corruption = r.random()
        if corruption < 0.06:
            data = data[: r.randrange(len(data) + 1)]  # cut short
        elif corruption < 0.09:
            data = b"\xef\xbb\xbf" + data  # a UTF-8 byte order mark
        elif corruption < 0.12:
            at = r.randrange(len(data) + 1)
            data = data[:at] + bytes([r.randrange(256)]) + data[at:]
        elif corruption < 0.14:
            data = data + b" trailing"
        elif corruption < 0.16:
            data = data.decode("utf-8", "surrogatepass").encode("utf-16")
        return data

    def extras(self) -> str:
        r = self.rng
        parts = []
        if r.random() < 0.3:
            params = r.choice([
                self.obj(1, r.sample(["k", "alpha", TRIGGER, "scale", "tag"], r.choice([0, 1, 2]))),
                self.value(1),
                "null",
            ])
            parts.append('"params": ' + params)
        if r.random() < 0.15:
            parts.append(f"{json.dumps(r.choice(KEYS))}: {self.value(2)}")  # another key: maybe a second format
        return "".join(", " + p for p in parts)

    def csv_body(self) -> bytes:
        r = self.rng
        header = list(COLUMNS)
        if r.random() < 0.3:
            header = r.choice([
                [*COLUMNS, "age"], COLUMNS[:5], ["x"], [TRIGGER, "x"], ["", "a"], ['"a,b"', "c"], ["ü", "日本"],
                [f"c{i}" for i in range(r.choice([1, 3, 12]))],
            ])
        lines = [",".join(header)]
        for _ in range(r.choice([0, 1, 2, 5, 20])):
            width = len(header) + r.choice([0, 0, 0, 0, -1, 1, 5])
            fields = []
            for _ in range(max(width, 0)):
                fields.append(repr(r.choice(ROW)) if r.random() < 0.9 else r.choice([
                    repr(r.choice(ROW)), "", "nan", "NaN", "inf", "-inf", "1e400", "1" + "0" * 30, "abc", TRIGGER,
                    '"1,5"', '"quoted ""x"""', '"line\nbreak"', '"unclosed', "true", "ü", " 0.5 ", "0x1",
                ]))
            lines.append(",".join(fields))
        end = r.choice(["\n", "\r\n", "\r"])
        text = end.join(lines) + r.choice([end, "", end * 3, end + "  " + end])
        data = text.encode()
        if r.random() < 0.08:
            data = b"\xef\xbb\xbf" + data
        if r.random() < 0.08:
            data = data.replace(b"a", b"\xe9")  # latin-1, no UTF-8
        if r.random() < 0.05:
            data = data[: r.randrange(len(data) + 1)]
        return data

    def parquet_body(self) -> bytes:
        r = self.rng
        if not HAVE_ARROW or r.random() < 0.15:
            return bytes(r.randrange(256) for _ in range(r.choice([0, 4, 12, 200])))
        import numpy as np
        import pandas as pd

        rows = r.choice([0, 1, 3, 50])
        pool = {
            "float": lambda: np.array([r.uniform(-1, 1) for _ in range(rows)]),
            "nan": lambda: np.array([r.choice([0.5, np.nan, np.inf]) for _ in range(rows)]),
            "int": lambda: np.array([r.randint(-5, 5) for _ in range(rows)], dtype=np.int64),
            "str": lambda: [r.choice(["a", TRIGGER, "ü", ""]) for _ in range(rows)],
            "bool": lambda: [r.random() < 0.5 for _ in range(rows)],
            "none": lambda: [None] * rows,
            "list": lambda: [[1.0, 2.0]] * rows,
            "date": lambda: pd.date_range("2024-01-01", periods=rows, freq="h"),
        }
        names = r.sample(COLUMNS, 10) if r.random() < 0.4 else r.sample([*COLUMNS[:4], "x", TRIGGER, "y"],
                                                                         r.choice([1, 2, 4]))
        frame = pd.DataFrame({name: pool["float" if name in COLUMNS and r.random() < 0.8 else r.choice(list(pool))]()
                              for name in names})
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        data = buffer.getvalue()
        if r.random() < 0.25:  # damaged: a byte flipped, or cut short
            at = r.randrange(len(data))
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:] if r.random() < 0.5 else data[:at]
        return data

    def content_type(self, natural: str) -> str | None:
        return natural if self.rng.random() < 0.75 else self.rng.choice(CONTENT_TYPES)

    def requests(self, count: int) -> Iterator[tuple[bytes, str | None, bool]]:
        """``count`` (body, content type, chunked) triples."""
        r = self.rng
        for _ in range(count):
            kind = r.random()
            if kind < 0.6:
                body, natural = self.json_body(), "application/json"
            elif kind < 0.85:
                body, natural = self.csv_body(), "text/csv"
            else:
                body, natural = self.parquet_body(), "application/vnd.apache.parquet"
            yield body, self.content_type(natural), r.random() < 0.15

    def chunked(self, body: bytes, faults: bool = True) -> bytes:
        """``body`` in chunks of random sizes (hex in either case, sometimes with an extension), now and then
        framed wrongly: a bad size, a missing CRLF, a size larger than the data."""
        r = self.rng
        out, at = [], 0
        while at < len(body):
            size = min(r.choice([1, 7, 100, 4096]), len(body) - at)
            head = format(size, r.choice(["x", "X", "04x"])) + (";ext=1" if r.random() < 0.1 else "")
            out.append(head.encode() + b"\r\n" + body[at:at + size] + b"\r\n")
            at += size
        out.append(b"0\r\n\r\n")
        data = b"".join(out)
        fault = r.random() if faults else 1.0
        if fault < 0.1:
            data = b"ZZ\r\n" + data
        elif fault < 0.15:
            data = data.replace(b"\r\n", b"\n", 1)
        elif fault < 0.2:
            data = b"FFFFFFFFFFFFFFFFFFFF\r\n" + data
        elif fault < 0.25:
            data = b"-1\r\n" + data
        return data

    def raw(self) -> bytes:
        """A whole request as bytes (or garbage ending in an empty line), always asking to close after it."""
        r = self.rng
        kind = r.random()
        if kind < 0.15:
            return bytes(r.randrange(256) for _ in range(r.choice([1, 10, 300]))) + b"\r\n\r\n"
        if kind < 0.45:  # well formed, in random chunks: scored as if sent whole
            body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW] * r.choice([1, 3, 50])}}).encode()
            head = (b"POST /invocations HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                    b"Content-Type: application/json\r\n")
            if r.random() < 0.3:
                return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
            return head + b"Transfer-Encoding: chunked\r\n\r\n" + self.chunked(body, faults=False)
        method = r.choice([b"POST", b"POST", b"POST", b"GET", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"BREW",
                           b"P\x00ST"])
        path = r.choice([b"/invocations", b"/invocations", b"/ping", b"/health", b"/version", b"/metadata", b"/nope",
                         b"/invocations?x=1", b"http://host/invocations", b"/../../etc/passwd", b"*", b"/%zz",
                         b"/" + b"a" * 9000])
        version = r.choice([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 extra", b"", b"HTTP/9"])
        body = self.json_body()
        headers = [b"Host: fuzz", b"Connection: close"]
        if r.random() < 0.8:
            headers.append(b"Content-Type: " + (self.content_type("application/json") or "").encode())
        framing = r.random()
        if framing < 0.3:
            headers.append(b"Transfer-Encoding: chunked")
            payload = self.chunked(body)
        elif framing < 0.8:
            headers.append(b"Content-Length: %d" % len(body))
            payload = body
        else:
            headers.append(r.choice([b"Content-Length: abc", b"Content-Length: -5", b"Content-Length: 1, 2",
                                     b"Content-Length: 99999999999999999999", b"Transfer-Encoding: gzip",
                                     b"Transfer-Encoding: chunked, chunked"]))
            payload = b""
        if r.random() < 0.15:
            headers.append(r.choice([b"no colon here", b"X-Null: a\x00b", b"X-Long: " + b"v" * 70_000,
                                     b" folded: header", b"Content-Length: 3", b"Expect: 100-continue",
                                     b"X-\xff: \xfe"]))
        return method + b" " + path + b" " + version + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + payload


# -- checks ------------------------------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def check(answer: Answer, request_body: bytes, raising_model: bool, scoring: bool = True) -> str | None:
    """What is wrong with ``answer`` (None: nothing). ``scoring``: whether the request was a POST to /invocations
    (another route's 200 is its own answer: /ping's status, /version's bare text, a HEAD's empty body)."""
    if b"<html" in answer.body.lower() or b"<!doctype" in answer.body.lower():
        return f"HTML answer {answer.status}"
    if answer.status < 400 and not scoring:
        return None
    if request_body.startswith(b"HEAD "):  # an answer without its body
        return None if answer.status < 500 and answer.content_type.startswith("application/json") else \
            f"HEAD answered {answer.status} as {answer.content_type!r}"
    if not answer.content_type.startswith("application/json"):
        return f"{answer.status} answered as {answer.content_type!r}: {answer.body[:200]!r}"
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return f"{answer.status} with a body that is no JSON: {answer.body[:200]!r}"
    if answer.status == 200:
        return None if isinstance(doc, dict) and "predictions" in doc else f"200 without predictions: {doc!r:.200}"
    if not (isinstance(doc, dict) and isinstance(doc.get("error_code"), str) and isinstance(doc.get("message"), str)):
        return f"{answer.status} without error_code and message: {doc!r:.200}"
    if answer.status >= 500:
        triggered = TRIGGER.encode() in request_body or TRIGGER.encode("utf-16-le") in request_body
        allowed = raising_model and doc["error_code"] == "MODEL_ERROR" and triggered
        if not allowed:
            return f"{answer.status} {doc['error_code']}: {doc['message'][:300]}"
    return None


def read_answers(sock: socket.socket) -> list[Answer]:
    """Every HTTP answer on ``sock`` until the server closes it (bodies framed by Content-Length)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/1."):
            answers.append(Answer(-1, "", data[:300]))  # no HTTP answer at all
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        length = int(headers.get(b"content-length", len(rest)))
        answers.append(Answer(status, headers.get(b"content-type", b"").decode("latin-1"), rest[:length]))
        data = rest[length:]
    return answers


def fuzz_model_dir(path: Path) -> Path:
    """A custom model without a signature that takes anything and answers something about it, raising only on
    ``boom`` (a column, a key or a value)."""

    class Robust(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import numpy as np
            import pandas as pd

            if isinstance(model_input, pd.DataFrame):
                if any(str(c) == "boom" for c in model_input.columns):
                    raise ValueError("boom column")
                first = ([str(v)[:20] for v in model_input.iloc[:, 0]] if model_input.shape[1]
                         else [""] * len(model_input))
                return pd.DataFrame({"row": np.arange(len(model_input)), "first": first})
            if isinstance(model_input, dict):
                if "boom" in model_input:
                    raise ValueError("boom key")
                return {str(k): list(np.shape(v)) for k, v in model_input.items()}
            values = np.asarray(model_input, dtype=object).ravel()
            if any(isinstance(v, str) and v == "boom" for v in values[:1000]):
                raise ValueError("boom value")
            return {"shape": list(np.shape(model_input)), "first": str(values[0])[:20] if values.size else None}

    modelpack.save_model(Robust(), path)
    return path


@pytest.fixture(scope="module")
def servers(diabetes_model_dir, tmp_path_factory) -> Iterator[dict[str, Server]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    custom = fuzz_model_dir(tmp / "robust")
    started = {"diabetes": start_server(diabetes_model_dir, tmp, "-w", "1"),
               "custom": start_server(custom, tmp, "-w", "1")}
    yield started
    for server in started.values():
        server.stop()


def _post(session: requests.Session, server: Server, body: bytes, content_type: str | None, chunked: bool) -> Answer:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    data: bytes | Iterator[bytes] = body
    if chunked and body:
        data = iter([body[: len(body) // 2], body[len(body) // 2:]])
    resp = session.post(f"{server.url}/invocations", data=data, headers=headers, timeout=30)
    return Answer(resp.status_code, resp.headers.get("Content-Type", ""), resp.content)


@pytest.mark.parametrize("name", ["diabetes", "custom"])
def test_no_request_gets_a_5xx_unless_the_model_raised(servers, name):
    server = servers[name]
    gen = Gen(SEED + (name == "custom"))
    failures, statuses = [], {}
    with requests.Session() as session:
        for i, (body, content_type, chunked) in enumerate(gen.requests(300)):
            answer = _post(session, server, body, content_type, chunked)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            problem = check(answer, body, raising_model=name == "custom")
            if problem:
                failures.append(f"#{i} {content_type!r} chunked={chunked} {body[:150]!r}: {problem}")
    assert not failures, f"{len(failures)} of 300 requests:\n" + "\n".join(failures[:25])
    # the corpus reaches the model and its refusals alike
    assert statuses.get(200, 0) >= 15 and statuses.get(400, 0) >= 60, statuses
    assert requests.get(f"{server.url}/ping", timeout=5).status_code == 200
    assert "INTERNAL_ERROR" not in server.log()


@pytest.mark.parametrize("name", ["diabetes", "custom"])
def test_raw_requests_and_chunked_framing(servers, name):
    server = servers[name]
    gen = Gen(SEED + 10 + (name == "custom"))
    host, port = server.url.removeprefix("http://").split(":")
    failures, statuses = [], {}
    for i in range(80):
        request = gen.raw()
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            sock.sendall(request)
            answers = read_answers(sock)
        scoring = request.startswith(b"POST /invocations ")
        for answer in answers:
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            problem = "no HTTP answer" if answer.status == -1 else check(answer, request, name == "custom", scoring)
            if problem:
                failures.append(f"#{i} {request[:160]!r}: {problem}")
    assert not failures, f"{len(failures)} raw requests:\n" + "\n".join(failures[:25])
    assert statuses.get(200, 0) >= 5 and statuses.get(400, 0) >= 20, statuses
    assert requests.get(f"{server.url}/ping", timeout=5).status_code == 200
    assert "INTERNAL_ERROR" not in server.log()


def test_the_trigger_raises_and_nothing_else_does(servers):
    """The custom model's one way to fail, checked once by hand so the fuzz's allowance means something."""
    custom = servers["custom"]
    answer = custom.post(b'{"dataframe_split": {"columns": ["boom"], "data": [[1]]}}')
    assert answer.status_code == 500 and answer.json()["error_code"] == "MODEL_ERROR"
    assert custom.post(b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}}').json()["predictions"] == [
        {"row": 0, "first": "1"}]
