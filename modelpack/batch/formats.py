"""The file formats of ``modelpack predict`` and the file name endings that name them (no heavy imports:
the command decides its formats before it builds, or re-runs itself in, the model's environment)."""

from __future__ import annotations

from pathlib import Path

#: The row formats, read in chunks (``json``, a request body, is read whole by ``modelpack predict``).
ROW_FORMATS = ("csv", "jsonl", "parquet", "arrow")
#: What the output can be: a row format, or ``json``, the server's ``{"predictions": [...]}`` document.
OUTPUT_FORMATS = ("json", "csv", "jsonl", "parquet", "arrow")
#: File name endings -> format.
EXTENSIONS = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow", ".json": "json",
}
#: What ``--batch-size`` defaults to: about 2 MB of text for ten numeric columns, where the fixed costs of a
#: chunk (a pandas read, a predict call, a write) are already under 5% of its time.
DEFAULT_BATCH_ROWS = 10_000


def format_for(path: str) -> str | None:
    """The format a file name's ending names (``.csv``, ``.jsonl``, ``.parquet``, ``.arrow``...), or None."""
    return EXTENSIONS.get(Path(path).suffix.lower())
