"""RUN: read a chunk -> predict -> write, until the file ends; what a bad row does.

Every chunk goes through the same checks as a request to the server (its decoder, then the model's
signature in ``PyFuncModel.predict``). When a chunk fails, it is cut in halves until the failing rows
are alone (a chunk of n rows with one bad row costs about 2·log2(n) more, small chunks): with
``on_error="fail"`` the first bad row stops the job, its error naming the row; with ``"skip"`` each bad
row goes to the rejects file with its reason and every other row is scored, in order. Only input the
checks refuse (InvalidInputError) is skipped: an error of the model itself stops the job either way,
naming the row it failed on. When the file's first 100 rows (all its rows, in a shorter file) are all refused
the job stops too: the file, not a row, is at fault (a column of the wrong type, say), and refusing it row by
row would only be slow.
"""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import InputMismatchError, InvalidInputError, ModelpackError, quote_names
from .progress import Progress
from .readers import Chunk, Reader
from .writers import RejectsWriter, Writer

logger = logging.getLogger(__name__)

#: ``on_error="skip"`` stops when this many rows were refused before any was scored (or all, if fewer).
FIRST_ROWS_REFUSED = 100


@dataclass
class Summary:
    """What a job did."""

    rows: int  # rows read
    scored: int
    rejected: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Scored:
    predictions: Any
    kept: pd.DataFrame | None
    rows: int


class BatchJob:
    """Scores every row of ``reader`` with ``model`` into ``writer``.

    ``keep``: input columns copied next to the predictions. ``rejects``: where ``--on-error skip`` puts bad
    rows (None: the first bad row stops the job)."""

    def __init__(self, model: Any, reader: Reader, writer: Writer, keep: list[str] | None = None,
                 rejects: RejectsWriter | None = None, progress: Progress | None = None) -> None:
        self.model, self.reader, self.writer = model, reader, writer
        self.keep = keep or []
        self.rejects = rejects
        self.progress = progress or Progress(io.StringIO(), enabled=False)
        self.rows = 0
        self.scored = 0

    def run(self) -> Summary:
        started = time.monotonic()
        self._check_columns()
        first = True
        for chunk in self.reader.chunks():
            if first and self.keep and self.reader.columns is None:
                self._check_kept_in_first(chunk)
            first = False
            result = self._score(chunk)
            if isinstance(result, _Scored):
                self._write(result)
            else:
                self._recover(chunk, result)
            self.rows += len(chunk)
            self.progress.update(self.rows, self.reader.fraction(), self._rejected())
        if self.rejects and self.rows and not self.scored:
            raise self._nothing_fits()
        summary = Summary(self.rows, self.scored, self._rejected(), time.monotonic() - started)
        self.progress.finish(summary.rows, summary.rejected)
        return summary

    def _rejected(self) -> int:
        return self.rejects.count if self.rejects else 0

    # ---------------------------------------------------------------- checks before scoring

    def _check_columns(self) -> None:
        """Columns known before any row is read (a CSV header, a Parquet or Arrow schema) are checked first:
        a missing column is the file's fault, not a row's, and is reported as such whatever ``on_error``."""
        columns = self.reader.columns
        if columns is None:
            return
        missing_kept = [name for name in self.keep if name not in columns]
        if missing_kept:
            raise InvalidInputError(
                f"--keep names column(s) {quote_names(missing_kept)} that {self.reader.source} does not have; "
                f"its columns: {quote_names(columns)}"
            )
        signature = getattr(self.model, "signature", None)
        schema = signature.inputs if signature is not None else None
        if schema is None or schema.is_tensor or not schema.has_input_names:
            return
        required = [str(spec.name) for spec in schema.inputs if spec.required]
        missing = [name for name in required if name not in columns]
        if missing:
            raise InputMismatchError(
                f"{self.reader.source} has no column(s) {quote_names(missing)}, which the model's signature "
                f"requires; its columns: {quote_names(columns)}"
            )

    def _check_kept_in_first(self, chunk: Chunk) -> None:
        """JSON lines have no header: a ``--keep`` name in no row of the first chunk is taken for a typo."""
        try:
            frame = chunk.decode()
        except InvalidInputError:
            return  # the loop reports it
        missing = [name for name in self.keep if name not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"--keep names column(s) {quote_names(missing)} that no row of the first {len(chunk)} of "
                f"{chunk.source} has; their columns: {quote_names(frame.columns)}"
            )

    # ---------------------------------------------------------------- scoring

    def _score(self, chunk: Chunk) -> _Scored | ModelpackError:
        """Predictions for ``chunk``, or the error that stopped them (nothing is written here)."""
        try:
            frame = chunk.decode()
            predictions = self.model.predict(frame)
            kept = chunk.kept(frame, self.keep) if self.keep else None
        except ModelpackError as exc:
            return exc
        return _Scored(predictions, kept, len(chunk))

    def _write(self, scored: _Scored) -> None:
        self.writer.write(scored.predictions, scored.kept, scored.rows)
        self.scored += scored.rows

    def _recover(self, chunk: Chunk, error: ModelpackError) -> None:
        """A chunk failed: skip its bad rows (``rejects``), or stop at its first bad row."""
        if self.rejects is None or not isinstance(error, InvalidInputError):
            raise self._first_failure(chunk, error)
        self._skip_bad_rows(chunk, error)

    def _skip_bad_rows(self, chunk: Chunk, error: ModelpackError) -> None:
        assert self.rejects is not None
        if not isinstance(error, InvalidInputError):  # the model itself failed: not a bad row
            raise self._first_failure(chunk, error)
        if len(chunk) == 1:
            where = chunk.where(0)
            self.rejects.write(where.row, where.line, _reason(error, single=True), chunk.raw(0))
            if not self.scored and self.rejects.count >= FIRST_ROWS_REFUSED:
                raise self._nothing_fits()
            return
        middle = len(chunk) // 2
        for part in (chunk.slice(0, middle), chunk.slice(middle, len(chunk))):
            result = self._score(part)
            if isinstance(result, _Scored):
                self._write(result)
            else:
                self._skip_bad_rows(part, result)

    def _nothing_fits(self) -> InvalidInputError:
        """The first rows of the file (all of them, in a short file) were all refused: the file, not a row, is
        at fault (a column of the wrong type, say), and refusing it row by row would only be slow."""
        assert self.rejects is not None
        count = self.rejects.count
        what = f"All {count} row(s)" if count < FIRST_ROWS_REFUSED else f"The first {count} rows"
        return InvalidInputError(
            f"{what} of {self.reader.source} were refused, so the file as a whole does not fit the model and "
            f"--on-error skip stops; the first row's error: {self.rejects.first_error}"
        )

    def _first_failure(self, chunk: Chunk, error: ModelpackError) -> ModelpackError:
        """``error`` located at the first row it comes from, by halving ``chunk``; when no single row fails
        alone (a model failing on a batch as a whole), located at the rows that fail together."""
        while len(chunk) > 1:
            middle = len(chunk) // 2
            left = chunk.slice(0, middle)
            result = self._score(left)
            if not isinstance(result, _Scored):
                chunk, error = left, result
                continue
            right = chunk.slice(middle, len(chunk))
            result = self._score(right)
            if isinstance(result, _Scored):
                break  # both halves pass alone
            chunk, error = right, result
        if len(chunk) == 1:
            return _located(error, chunk.where(0).describe(), single=True)
        return _located(error, chunk.where(0).span(chunk.where(len(chunk) - 1)), single=False)


#: A message about a one-row body says "row 0": that row is the one already named.
_ROW_ZERO = re.compile(r"\b(?:CSV )?row 0\b(?! \()")


def _reason(error: ModelpackError, single: bool) -> str:
    message = _ROW_ZERO.sub("this row", error.message) if single else error.message
    detail = next(iter(error.detail.strip().splitlines()), "")
    return f"{message}: {detail}" if detail else message


def _located(error: ModelpackError, where: str, single: bool) -> ModelpackError:
    """``error`` with ``where`` before its message, of the same class (so the same exit code)."""
    message = f"{where}: {_ROW_ZERO.sub('this row', error.message) if single else error.message}"
    try:
        located = type(error)(message, error.detail)
    except TypeError:  # a subclass with another constructor
        located = InvalidInputError(message, error.detail) if isinstance(error, InvalidInputError) \
            else ModelpackError(message, error.detail)
        located.exit_code = error.exit_code
    located.__cause__ = error.__cause__
    return located


