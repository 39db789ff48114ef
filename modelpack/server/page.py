"""PAGE: ``GET /``, a page where a person tries the server's models, and ``GET /openapi.json``, which it reads.

The page (``static/index.html``, ``page.js``, ``page.css``, ``favicon.svg``: hand-written, no library) lists the
models of the OpenAPI document, shows the chosen one's inputs, and sends the request in its text box (prefilled with
the model's saved example) to the model's invocations URL. Nothing comes from the network but this server: the
Content-Security-Policy allows this origin only, no inline script or style, no frame, no form target. The files are
read once, when the app is made, and answered from memory with an ETag.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import NotFound

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The static files served under ``/static/`` and their content types (only these: no directory is served).
STATIC_FILES = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Headers of every page response: the policy, no MIME sniffing, no referrer, revalidated before reuse.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

logger = logging.getLogger("modelpack.server")


class _File:
    """A static file in memory, with its media type and ETag."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'

    def response(self) -> Response:
        if self.etag in (request.headers.get("If-None-Match") or ""):
            response = Response(status=304)
        else:
            response = Response(self.body, content_type=self.content_type)
        response.headers.update(PAGE_HEADERS)
        response.headers["ETag"] = self.etag
        return response


def add_page_routes(app: Flask, openapi_json: bytes) -> None:
    """Add ``GET /``, ``GET /static/<name>`` and ``GET /openapi.json`` (answering ``openapi_json``) to ``app``.

    The app must be made with ``static_folder=None`` (Flask would otherwise serve this package's ``static``
    directory itself, without these headers)."""
    openapi = _File(openapi_json, "application/json")
    try:
        index = _File((STATIC_DIR / "index.html").read_bytes(), "text/html; charset=utf-8")
        files = {name: _File((STATIC_DIR / name).read_bytes(), kind) for name, kind in STATIC_FILES.items()}
    except OSError as exc:  # an install without the package data: score as usual, say why there is no page
        logger.error("The page at / is not served: its files are not installed (%s)", exc)
        index, files = None, {}

    @app.get("/", provide_automatic_options=False)
    def page() -> Response:
        if index is None:
            raise NotFound("The page's files are not installed with modelpack")
        return index.response()

    @app.get("/static/<name>", provide_automatic_options=False)
    def static_file(name: str) -> Response:
        file = files.get(name)
        if file is None:
            raise NotFound(f"No static file {name[:100]!r}")
        return file.response()

    @app.get("/openapi.json", provide_automatic_options=False)
    def openapi_document() -> Response:
        return openapi.response()
