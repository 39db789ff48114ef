"""Floor: Flask on gunicorn that reads the body and answers a constant; the stack's own cost.

Run: gunicorn -w 2 floor_const:app
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)
REPLY = b'{"predictions": [0.0]}'


@app.get("/ping")
def ping() -> Response:
    return Response(b"", status=200)


@app.post("/invocations")
def invocations() -> Response:
    request.get_data()
    return Response(REPLY, status=200, mimetype="application/json")
