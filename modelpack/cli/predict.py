"""``modelpack predict``: score a file with a model, without a server, in the model's environment.

Two kinds of input. A JSON request body (``.json``, or ``-t json``: what ``POST /invocations`` takes) is
small by nature and is read whole, as before, with the server's decoder (its parameters included). A row file
(CSV, JSON lines, Parquet, Arrow IPC) is streamed: read in chunks of ``--batch-size`` rows, each scored and
appended to the output, so memory stays flat whatever the file's size (modelpack/batch/).

The output format is ``--output-format``, else the one the output file's name ends with, else the input's;
on standard output a CSV or JSON input gives the server's ``{"predictions": [...]}`` document, as it always
has (and as ``mlflow models predict`` prints it). An output file is written under a temporary name and renamed
when the job ends well.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..batch.formats import DEFAULT_BATCH_ROWS, OUTPUT_FORMATS, ROW_FORMATS, format_for
from .options import checked_model_dir, env_manager_option, model_option, python_option
from .serve import trust_loader_module_option

#: The request-body formats (``validate`` reads these too).
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv"}
INPUT_FORMATS = ("json", *ROW_FORMATS)
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class Plan:
    """What a ``predict`` command will do, decided (and checked) before any environment is built."""

    input_path: str
    input_format: str
    output_path: str | None
    output_format: str
    keep: list[str]
    on_error: str
    rejects_path: str | None


def make_plan(input_path: str, output_path: str | None, input_format: str | None, output_format: str | None,
              keep: str | None, on_error: str, rejects_path: str | None) -> Plan:
    """The formats and files of a command, or a UsageError for options that do not go together."""
    if input_format is None:
        input_format = "json" if input_path == "-" else (format_for(input_path) or "json")
    if input_path == "-" and input_format in ("parquet", "arrow"):
        raise click.UsageError(f"{input_format} input must be a file: it cannot be read from standard input")
    if output_format is None:
        named = format_for(output_path) if output_path else None
        if named is not None:
            output_format = named
        elif output_path is None and input_format in ("json", "csv"):
            output_format = "json"  # what predict has always printed (and mlflow models predict prints)
        else:
            output_format = input_format
    kept = [name.strip() for name in keep.split(",") if name.strip()] if keep else []
    if keep is not None and not kept:
        raise click.UsageError("--keep needs column names, separated by commas (--keep id,region)")
    if len(set(kept)) != len(kept):
        raise click.UsageError(f"--keep names a column twice: {keep}")
    if kept and output_format == "json":
        raise click.UsageError(
            "--keep writes columns next to the predictions: choose a row format with --output-format "
            "csv, jsonl, parquet or arrow (the JSON document holds predictions only)"
        )
    if rejects_path is not None and on_error != "skip":
        raise click.UsageError("--rejects is where --on-error skip writes bad rows; add --on-error skip")
    if on_error == "skip":
        if input_format == "json":
            raise click.UsageError(
                "--on-error skip needs a row file (csv, jsonl, parquet, arrow); a JSON request body is "
                "scored whole"
            )
        if rejects_path is None:
            if output_path is None:
                raise click.UsageError("--on-error skip with output on standard output needs --rejects FILE")
            rejects_path = f"{output_path}.rejects.jsonl"
    return Plan(input_path, input_format, output_path, output_format, kept, on_error, rejects_path)


@click.command(help=(
    "Score a file with a model, without a server. JSON request bodies (.json) are read whole; CSV, JSON lines "
    "(.jsonl), Parquet and Arrow files are streamed in chunks, their predictions written as they come, so a "
    "file of any size scores in flat memory."))
@model_option
@click.option("-i", "--input-path", "input_path", required=True, metavar="FILE",
              help="Input file, or '-' for standard input (JSON, CSV or JSON lines).")
@click.option("-o", "--output-path", "output_path", default=None, metavar="FILE",
              help="Output file, written under a temporary name and renamed at the end (default: standard "
                   "output).")
@click.option("-t", "--content-type", "--input-format", "input_format", type=click.Choice(INPUT_FORMATS),
              default=None, help="Input format (default: from the file name's ending; json otherwise).")
@click.option("--output-format", "output_format", type=click.Choice(OUTPUT_FORMATS), default=None,
              help="Output format (default: from the output file's ending, else the input's; on standard "
                   "output, CSV and JSON input give the {\"predictions\": [...]} JSON document).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=DEFAULT_BATCH_ROWS,
              show_default=True, help="Rows per chunk of a streamed file (a text chunk also stops at 16 MB).")
@click.option("--keep", "keep", default=None, metavar="COLUMNS",
              help="Input columns to copy next to the predictions, separated by commas (e.g. --keep id,region).")
@click.option("--on-error", "on_error", type=click.Choice(ON_ERROR), default="fail", show_default=True,
              help="A row the model's checks refuse: 'fail' stops with its row number (exit 2); 'skip' writes "
                   "it to the rejects file with the reason and goes on.")
@click.option("--rejects", "rejects_path", default=None, metavar="FILE",
              help="Where --on-error skip writes bad rows, as JSON lines (default: <output>.rejects.jsonl).")
@click.option("-q", "--quiet", "quiet", is_flag=True,
              help="No progress line (it is shown only when standard error is a terminal).")
@env_manager_option
@python_option
@trust_loader_module_option
def predict(model_uri: str, input_path: str, output_path: str | None, input_format: str | None,
            output_format: str | None, batch_size: int, keep: str | None, on_error: str, rejects_path: str | None,
            quiet: bool, env_manager: str, python: str | None, trusted_loader_modules: tuple[str, ...]) -> None:
    from ..config import export_trusted_loader_modules
    from ..descriptor import ModelDescriptor
    from .prepare_env import environment_python

    export_trusted_loader_modules(trusted_loader_modules)  # load_model below, or the rerun child, reads it
    plan = make_plan(input_path, output_path, input_format, output_format, keep, on_error, rejects_path)
    model_dir = checked_model_dir(model_uri)
    ModelDescriptor.read(model_dir).check_paths(model_dir)  # before an environment is built from its files
    python = environment_python(model_dir, env_manager, python)
    if python != sys.executable:
        _rerun_in(python, model_dir, plan, batch_size, quiet)
        return

    from ..pyfunc import load_model

    if plan.input_format == "json":
        model = load_model(model_dir)
        _predict_document(model, plan)
    else:
        _predict_rows(model_dir, plan, batch_size, quiet)


def read_body(input_path: str) -> bytes:
    """The bytes of ``input_path`` ('-' is standard input); InvalidInputError if unreadable."""
    from ..errors import InvalidInputError

    if input_path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(input_path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read input file '{input_path}': {exc.strerror}") from None


def _predict_document(model: Any, plan: Plan) -> None:
    """A JSON request body, read whole: the server's decoder, and its answer (or rows, for a row format)."""
    from ..batch.writers import open_writer
    from ..server.decode import RequestDecoder
    from ..server.encode import encode_predictions

    body = read_body(plan.input_path)
    data, params = RequestDecoder.for_model(model)(CONTENT_TYPES["json"], body)
    predictions = model.predict(data, params=params)
    if plan.output_format == "json":
        result = encode_predictions(predictions) + b"\n"
        with _Output(plan.output_path) as sink:
            sink.write(result)
        return
    kept = None
    if plan.keep:
        kept = _kept_from_body(data, plan.keep)
    rows = _row_count(data)
    with _Output(plan.output_path) as sink:
        writer = open_writer(plan.output_format, sink)
        try:
            writer.write(predictions, kept, rows)
            writer.close()
        except BaseException:
            writer.abort()
            raise


def _row_count(data: Any) -> int:
    import pandas as pd

    from ..float_rows import FloatRows

    if isinstance(data, FloatRows):
        return len(data.array)
    if isinstance(data, (pd.DataFrame, pd.Series)):
        return len(data.index)
    if isinstance(data, dict):
        return len(next(iter(data.values()), []))
    return len(data)


def _kept_from_body(data: Any, keep: list[str]) -> Any:
    from ..errors import InvalidInputError, quote_names
    from ..float_rows import FloatRows

    if isinstance(data, FloatRows):
        data = data.to_frame()
    columns = list(getattr(data, "columns", []))
    missing = [name for name in keep if name not in columns]
    if missing:
        raise InvalidInputError(f"--keep names column(s) {quote_names(missing)} that the request body does not "
                                f"have; its columns: {quote_names(columns)}")
    return data[keep].reset_index(drop=True)


class _Output:
    """The output as a binary sink: standard output, or a file renamed into place when the block ends well."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.file: Any = None

    def __enter__(self) -> Any:
        if self.path is None:
            return sys.stdout.buffer
        from ..batch.writers import AtomicFile

        self.file = AtomicFile(self.path)
        return self.file.file

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if self.file is None:
            sys.stdout.flush()
        elif kind is None:
            self.file.commit()
        else:
            self.file.discard()


def _predict_rows(model_dir: Path, plan: Plan, batch_size: int, quiet: bool) -> None:
    """A row file, streamed: see modelpack/batch/."""
    import logging

    from ..batch.progress import Progress
    from ..batch.readers import open_reader
    from ..batch.run import BatchJob
    from ..batch.writers import AtomicFile, RejectsWriter, open_writer
    from ..pyfunc import load_model

    logger = logging.getLogger("modelpack.cli")
    reader = open_reader(plan.input_path, plan.input_format, batch_size)  # a missing file fails before loading
    files: list[AtomicFile] = []
    writer = None
    with _sigterm_as_exit():
        try:
            output = AtomicFile(plan.output_path) if plan.output_path else None
            if output is not None:
                files.append(output)
            writer = open_writer(plan.output_format, output.file if output else sys.stdout.buffer)
            rejects = None
            if plan.rejects_path is not None:
                rejects_file = AtomicFile(plan.rejects_path)
                files.append(rejects_file)
                rejects = RejectsWriter(rejects_file.file)
            model = load_model(model_dir)
            progress = Progress.for_stream(sys.stderr, quiet)
            try:
                summary = BatchJob(model, reader, writer, plan.keep, rejects, progress).run()
            except BaseException:
                progress.clear()
                raise
            writer.close()
            writer = None
            for file in reversed(files):  # the rejects first: the output's name appearing means done
                file.commit()
            files.clear()
            if output is None:
                sys.stdout.flush()
        finally:
            if writer is not None:
                writer.abort()
            for file in files:
                file.discard()
            reader.close()
    if summary.rejected:
        logger.warning("%d of %d row(s) could not be scored; they are in '%s' with the reasons",
                       summary.rejected, summary.rows, plan.rejects_path)


class _Terminated(BaseException):
    """SIGTERM arrived (a BaseException: a model's ``except Exception`` must not take it for its own error)."""


class _sigterm_as_exit:
    """SIGTERM ends the job like Ctrl-C (exit 143), so its temporary files are removed, not left behind."""

    def __enter__(self) -> None:
        import signal
        import threading

        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._stop)

    @staticmethod
    def _stop(signum: int, frame: Any) -> None:
        raise _Terminated

    def __exit__(self, kind: Any, *exc: object) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        if kind is _Terminated:
            click.echo("Terminated.", err=True)
            raise click.exceptions.Exit(128 + signal.SIGTERM)


def _rerun_in(python: str, model_dir: Path, plan: Plan, batch_size: int, quiet: bool) -> None:
    """Run the same command with the model environment's interpreter (SIGTERM is passed on to it)."""
    import signal
    import subprocess

    argv = [python, "-m", "modelpack.cli", "predict", "-m", str(model_dir), "-i", plan.input_path,
            "-t", plan.input_format, "--output-format", plan.output_format, "--batch-size", str(batch_size),
            "--on-error", plan.on_error, "--env-manager", "local"]
    if plan.output_path:
        argv += ["-o", plan.output_path]
    if plan.keep:
        argv += ["--keep", ",".join(plan.keep)]
    if plan.rejects_path and plan.on_error == "skip":
        argv += ["--rejects", plan.rejects_path]
    if quiet:
        argv.append("--quiet")
    child = subprocess.Popen(argv)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code:  # the child printed its own "Error: ..." line; exit with its code (128+N if signal N ended it)
        raise click.exceptions.Exit(code if code > 0 else 128 - code)
