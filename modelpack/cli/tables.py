"""Readable output of the tracking and registry commands: aligned tables, times, values, and ``--json``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, allow_nan=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``rows`` under ``headers``, columns aligned (numbers to the right), one line per row."""
    cells = [[cell_text(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [any(_is_number(r[i]) for r in rows) and all(_is_number(r[i]) or r[i] is None for r in rows)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell_text(value: Any) -> str:
    """A cell: ``-`` for nothing, floats in 6 significant digits."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return str(value) if math.isnan(value) or math.isinf(value) else f"{value:.6g}"
    return str(value)


def when(ms: int | None) -> str:
    """A store time (ms since the epoch) as local ``YYYY-MM-DD HH:MM:SS``."""
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def key_values(mapping: dict[str, Any]) -> str:
    """``a=1, b=2``: a mapping in one cell."""
    return ", ".join(f"{k}={cell_text(v)}" for k, v in mapping.items())
