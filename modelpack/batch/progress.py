"""PROGRESS: rows scored and rows per second on a terminal; silence anywhere else.

The line is redrawn in place (carriage return) at most a few times a second, on standard error, and only
when standard error is a terminal: a log file or a pipe gets no control characters and no noise.
"""

from __future__ import annotations

import time
from typing import IO

_BAR = 24


class Progress:
    """``update`` after each chunk; ``finish`` once, with the summary line."""

    def __init__(self, stream: IO[str], enabled: bool, interval: float = 0.2) -> None:
        self.stream, self.enabled, self.interval = stream, enabled, interval
        self.started = time.monotonic()
        self.shown = 0.0
        self.width = 0

    @classmethod
    def for_stream(cls, stream: IO[str], quiet: bool) -> Progress:
        """Shown only on a terminal, and not with ``quiet``."""
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):  # a closed or unusual stream
            tty = False
        return cls(stream, tty and not quiet)

    def update(self, rows: int, fraction: float | None = None, rejected: int = 0) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.shown < self.interval:
            return
        self.shown = now
        self._draw(self._line(rows, fraction, rejected, now - self.started))

    def finish(self, rows: int, rejected: int = 0) -> None:
        if not self.enabled:
            return
        seconds = time.monotonic() - self.started
        rate = rows / seconds if seconds > 0 else 0.0
        skipped = f"; {rejected:,} rejected" if rejected else ""
        self._draw(f"Scored {rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s){skipped}")
        self.stream.write("\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the progress line (before an error message is printed under it)."""
        if self.enabled and self.width:
            self._draw("")

    @staticmethod
    def _line(rows: int, fraction: float | None, rejected: int, seconds: float) -> str:
        rate = rows / seconds if seconds > 0 else 0.0
        parts = []
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(fraction * _BAR)
            parts.append(f"[{'#' * filled}{'.' * (_BAR - filled)}] {fraction:4.0%}")
        parts.append(f"{rows:,} rows")
        parts.append(f"{rate:,.0f} rows/s")
        if fraction and rate and fraction < 1:
            left = seconds * (1 - fraction) / fraction
            parts.append(f"ETA {int(left // 60)}:{int(left % 60):02d}")
        if rejected:
            parts.append(f"{rejected:,} rejected")
        return "  ".join(parts)

    def _draw(self, line: str) -> None:
        pad = max(0, self.width - len(line))
        self.stream.write("\r" + line + " " * pad + ("\r" if not line else ""))
        self.stream.flush()
        self.width = len(line)
