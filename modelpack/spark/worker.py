"""The scoring child: a model running in its rebuilt environment, fed by a Spark Python worker.

``env_manager="virtualenv"|"uv"`` means the model's libraries may differ from the Spark job's, so the model
cannot be loaded into the Spark worker's interpreter. The worker (:class:`ScoringProcess`) starts
``<environment python> -I -m modelpack.spark.worker <model dir>`` once and keeps it for every later batch and
task of that Python worker; the child loads the model, says ``ready``, then answers each ``batch`` message
with the output's columns (modelpack.spark.wire). Pipes rather than a local HTTP server: no port to find,
no readiness polling, no JSON of every value, and the child ends when its stdin closes or, on Linux, when
the worker that started it dies. The child's stdout is the protocol channel, so anything the model prints
is sent to stderr, which the worker relays to the executor's log (the last lines also go into errors).
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from ..errors import ModelLoadError, ModelpackError
from .results import Columns, output_columns, series_values
from .wire import ChannelClosed, read_message, write_message

logger = logging.getLogger(__name__)

_TAIL_LINES = 40
#: Variables that would make the environment's interpreter import the Spark worker's packages.
_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX")


class ScoringProcess:
    """The Spark worker's handle on one scoring child (one model, one environment)."""

    def __init__(self, python: str, model_dir: Path) -> None:
        from ..env.runner import _die_with_parent, _prctl

        prctl = _prctl()
        env = {k: v for k, v in os.environ.items() if k not in _DROP}
        self.model_dir = model_dir
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.proc = subprocess.Popen(
            # -I: neither the working directory (the model's, which is untrusted) nor PYTHON* variables reach sys.path
            [python, "-I", "-m", "modelpack.spark.worker", str(model_dir)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(model_dir),
            preexec_fn=_die_with_parent(prctl, os.getpid()) if prctl else None,
        )
        self._relay = threading.Thread(target=self._relay_stderr, daemon=True, name="modelpack-scoring-stderr")
        self._relay.start()
        header, _ = self._receive()
        if header["kind"] != "ready":
            self.close()
            _raise(header, f"Loading the model in its environment ({python}) failed")
        logger.info("Scoring child %d serves %s with %s", self.proc.pid, model_dir, python)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def predict(self, frame: Any, params: dict[str, Any] | None) -> Columns:
        """The model's output for ``frame`` (a DataFrame), as columns."""
        columns = [(label, series_values(frame.iloc[:, i])) for i, label in enumerate(frame.columns)]
        assert self.proc.stdin is not None
        try:
            write_message(self.proc.stdin, "batch", columns, rows=len(frame), params=params)
        except (BrokenPipeError, ValueError):
            self._died()
        header, output = self._receive()
        if header["kind"] != "result":
            _raise(header)
        return output

    def close(self) -> None:
        """Close the child's stdin (it exits) and wait a little for it; kill it if it does not go."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _receive(self) -> tuple[dict[str, Any], Columns]:
        assert self.proc.stdout is not None
        try:
            return read_message(self.proc.stdout)
        except ChannelClosed:
            self._died()
            raise  # unreachable: _died raises

    def _died(self) -> None:
        code = self.proc.wait()
        self._relay.join(timeout=5)
        tail = "".join(self.tail).strip()
        raise ModelpackError(f"The scoring process of model '{self.model_dir}' exited with code {code}",
                             detail=f"its last output:\n{tail}" if tail else "it printed nothing")

    def _relay_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.tail.append(line)
            sys.stderr.write(f"[modelpack scoring {self.proc.pid}] {line}")


def _raise(header: dict[str, Any], context: str = "") -> None:
    """Re-raise the child's error as the same ModelpackError class, with the same message."""
    from .. import errors

    if header.get("kind") != "error":
        raise ModelpackError(f"The scoring process sent an unexpected {header.get('kind')!r} message")
    cls = getattr(errors, str(header.get("error_class")), None)
    if not (isinstance(cls, type) and issubclass(cls, ModelpackError)):
        cls = ModelpackError
    message = str(header.get("message", ""))
    raise cls(f"{context}: {message}" if context else message, detail=str(header.get("detail", "")))


# ---------------------------------------------------------------- the child


def _send_error(out: IO[bytes], exc: BaseException) -> None:
    if isinstance(exc, ModelpackError):
        name, message, detail = type(exc).__name__, exc.message, exc.detail
    else:
        name, message, detail = "PredictionError", f"The model raised {type(exc).__name__} while predicting", str(exc)
    write_message(out, "error", error_class=name, message=message, detail=detail)


def main(argv: list[str]) -> int:
    """Serve the model at ``argv[0]`` over stdin/stdout until stdin closes."""
    import pandas as pd

    from ..pyfunc import load_model

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    out = os.fdopen(os.dup(1), "wb")  # the protocol channel
    os.dup2(2, 1)  # whatever the model prints goes to stderr
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    try:
        if len(argv) != 1:
            raise ModelLoadError(f"usage: python -m modelpack.spark.worker MODEL_DIR (got {argv})")
        model = load_model(argv[0])
    except Exception as exc:
        _send_error(out, exc)
        return 1
    write_message(out, "ready")
    while True:
        try:
            header, columns = read_message(inp)
        except ChannelClosed:
            return 0
        try:
            frame = pd.DataFrame(dict(columns), index=pd.RangeIndex(header["rows"]))
            output = output_columns(model.predict(frame, header.get("params")), len(frame))
        except Exception as exc:
            _send_error(out, exc)
            continue
        write_message(out, "result", output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
