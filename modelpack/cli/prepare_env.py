"""``modelpack prepare-env``: build a model's environment ahead of time; and the build
progress display that ``serve`` and ``predict`` share (:func:`environment_python`)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import click

from .options import checked_model_dir, env_manager_option, model_option, python_option


class BuildDisplay:
    """Build progress on stderr: one refreshing line with a spinner and the elapsed time on a
    terminal, plain timestamped lines otherwise. Nothing is shown unless a build happens."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started: float | None = None
        self.status = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        utf8 = (getattr(self.stream, "encoding", "") or "").lower().replace("-", "") == "utf8"
        self._frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if utf8 else "|/-\\"

    def __call__(self, line: str) -> None:
        if self.started is None:
            self.started = time.monotonic()
            if self.tty:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()
        if self.tty:
            with self._lock:
                self.status = line
            self._draw()
        else:
            click.echo(f"  [{time.monotonic() - self.started:6.1f}s] {line}", file=self.stream)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Erase the progress line and keep it away while something else is printed."""
        with self._lock:
            if self.tty and self.started is not None:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            yield

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self.paused():
            pass

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            self._draw()

    def _draw(self) -> None:
        assert self.started is not None
        elapsed = int(time.monotonic() - self.started)
        frame = self._frames[int(time.monotonic() * 10) % len(self._frames)]
        width = shutil.get_terminal_size((100, 20)).columns - 1
        with self._lock:
            text = f"{frame} [{elapsed // 60}:{elapsed % 60:02d}] {self.status}"
            self.stream.write("\r" + text[:width] + "\x1b[K")
            self.stream.flush()


@contextlib.contextmanager
def build_display(stream: TextIO | None = None) -> Iterator[BuildDisplay]:
    """A :class:`BuildDisplay` (on stderr by default); log messages printed meanwhile erase its line first."""
    display = BuildDisplay(stream)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        def emit(record: logging.LogRecord, _emit=handler.emit) -> None:
            with display.paused():
                _emit(record)

        handler.emit = emit  # type: ignore[method-assign]
    try:
        yield display
    finally:
        display.close()
        for handler in handlers:
            del handler.emit  # back to the class's method


def environment_python(model_dir: Path, env_manager: str, python: str | None) -> str:
    """The interpreter to run ``model_dir`` with, building its environment (with progress) if needed."""
    if env_manager == "local":
        if python:
            raise click.UsageError("--python picks the interpreter of a rebuilt environment; "
                                   "it cannot be combined with --env-manager local")
        return sys.executable
    from ..env import python_for_model

    with build_display() as display:
        return python_for_model(model_dir, env_manager, python=python, progress=display)


@click.command(help="Build the environment a model is served in (or find it in the cache) ahead of time, "
                    "and print its Python interpreter's path.")
@model_option
@env_manager_option
@python_option
def prepare_env(model_uri: str, env_manager: str, python: str | None) -> None:

    model_dir = checked_model_dir(model_uri)
    click.echo(environment_python(model_dir, env_manager, python))
