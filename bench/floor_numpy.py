"""Floor: Flask on gunicorn, split JSON -> numpy -> model.predict -> JSON, with no pandas.

Run: BENCH_MODEL=model.joblib gunicorn -w 2 floor_numpy:app
"""

from __future__ import annotations

import os

import joblib
import numpy as np
import orjson
from flask import Flask, Response, request

app = Flask(__name__)
model = joblib.load(os.environ["BENCH_MODEL"])


@app.get("/ping")
def ping() -> Response:
    return Response(b"", status=200)


@app.post("/invocations")
def invocations() -> Response:
    split = orjson.loads(request.get_data())["dataframe_split"]
    rows = np.asarray(split["data"], dtype=np.float64)
    predictions = model.predict(rows)
    body = orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status=200, mimetype="application/json")
