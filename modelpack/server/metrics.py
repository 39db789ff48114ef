"""METRICS: the scoring server's Prometheus metrics, right with any number of gunicorn workers.

Each request is scored by one of several worker processes, and a scrape of ``GET /metrics`` is answered by one
of them, so the numbers cannot live in one process's memory. They live in files, in prometheus_client's
multiprocess format: every process writes its own samples to memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``), and a scrape reads and adds up the files of every process, dead ones included
(prometheus_client's ``MultiProcessCollector`` and its exposition: text or OpenMetrics by the Accept header).
Counters and histograms therefore survive a worker's restart (its files stay); the ``live`` gauges (requests in
flight, the model info) go with their process when the master reaps it (:func:`worker_exited`, gunicorn's
``child_exit`` hook, which also counts the restart).

The writer is this module's own, not prometheus_client's metric classes: those take a lock, check the pid and
go through several objects per update, about 12 µs per request here (five updates) where :class:`_Value`
writes 8 bytes into the mapped page directly (a few µs in all; ``bench/metrics_cost.py``). Its files are named
``<type>_<pid>-modelpack.db``, so that prometheus_client metrics a model's own code defines (they land in the
same directory, in ``<type>_<pid>.db``, and show in /metrics too) never share a file with them.

The master makes a fresh private directory before any worker forks (:func:`prepare_directory`) and removes it
when it exits, unless the user named one in ``PROMETHEUS_MULTIPROC_DIR`` (then it is theirs: it should be empty
when the server starts, as prometheus_client's documentation says). prometheus_client chooses multiprocess
mode when it is imported, so the variable is set before anything imports it; this module imports it only
inside functions (``import modelpack`` stays light).
"""

from __future__ import annotations

import atexit
import bisect
import glob
import json
import logging
import mmap
import os
import shutil
import struct
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger("modelpack.server")

#: prometheus_client's variable naming the directory of the processes' metric files.
DIRECTORY_VAR = "PROMETHEUS_MULTIPROC_DIR"
#: Set (to the same path) when modelpack made that directory: the master removes it at exit. It survives the
#: master's re-exec (``--preload never``), which keeps the pid, so the new process image still owns it.
_OWNED_VAR = "_MODELPACK_OWNED_METRICS_DIR"

#: Seconds: from a fraction of a millisecond (one row) to the default timeout.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Rows of one scoring request.
ROW_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000, 100_000, 1_000_000)
#: The labels of ``modelpack_model_info``.
INFO_LABELS = ("model", "source", "version", "uuid", "flavor", "flavor_version", "modelpack_version")

_pack_double = struct.Struct("d").pack
_INITIAL_FILE_BYTES = 1 << 16


def prepare_directory() -> Path:
    """The directory of the metric files, made (private, empty) unless the user named one; call it in the
    master before anything imports prometheus_client and before workers fork."""
    given = os.environ.get(DIRECTORY_VAR)
    if given and os.environ.get(_OWNED_VAR) != given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        logger.debug("Metrics: the processes' files are in %s=%s (kept at exit)", DIRECTORY_VAR, path)
        if any(path.glob("*.db")):
            logger.warning("%s=%s holds metric files of an earlier run: their counts are added to this "
                           "server's (empty it before starting the server)", DIRECTORY_VAR, path)
        return path
    if given:
        path = Path(given)  # ours, made before this process re-executed itself
        path.mkdir(mode=0o700, exist_ok=True)
    else:
        _sweep_stale_directories(Path(tempfile.gettempdir()))
        path = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (path / _OWNER_FILE).write_text(json.dumps(_process_identity(os.getpid())))
        os.environ[DIRECTORY_VAR] = os.environ[_OWNED_VAR] = str(path)
    atexit.register(_remove_directory, path, os.getpid())
    _check_multiprocess_mode()
    logger.debug("Metrics: the processes' files are in %s (removed at exit)", path)
    return path


_PREFIX = "modelpack-metrics-"
#: In a private directory: which process made it (a server killed with SIGKILL cannot remove it; the next one does).
_OWNER_FILE = "owner.json"


def _process_identity(pid: int) -> dict[str, Any] | None:
    """What tells process ``pid`` apart from a later one with the same number: its start time (clock ticks
    since boot), the boot, and the pid namespace the number belongs to (None when /proc does not say)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return {"pid": pid, "start": int(stat[stat.rindex(")") + 2:].split()[19]),
                "boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                "pidns": os.stat("/proc/self/ns/pid").st_ino}
    except (OSError, ValueError, IndexError):
        return None


def _sweep_stale_directories(tmp: Path) -> None:
    """Remove the private directories of servers that are gone without removing theirs (killed): only this
    user's, only with an owner file, and only when the owner surely is no more (another boot, or, in this pid
    namespace, no process with its pid and start time). Anything unclear is left alone."""
    here = _process_identity(os.getpid())
    if here is None:
        return
    for path in tmp.glob(f"{_PREFIX}*"):
        try:
            if path.stat().st_uid != os.getuid():
                continue
            owner = json.loads((path / _OWNER_FILE).read_text())
            if owner["boot"] == here["boot"]:
                if owner["pidns"] != here["pidns"] or _process_identity(int(owner["pid"])) == owner:
                    continue  # another namespace's process (cannot tell), or alive
        except (OSError, ValueError, KeyError, TypeError):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _remove_directory(path: Path, owner: int) -> None:
    """atexit: remove the metrics directory, in the master only (forked workers inherit the handler)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _check_multiprocess_mode() -> None:
    """prometheus_client chooses its value store when first imported; if something imported it before the
    directory was set, switch it now, so that metrics a model defines later are shared by the workers too."""
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


# -- the writer ---------------------------------------------------------------------------------------------------

class _File:
    """One process's samples of one metric type: prometheus_client's multiprocess file format (a 4-byte count of
    the bytes used, 4 bytes of padding, then entries: a 4-byte key length, the UTF-8 key padded to 8 bytes, the
    value and a timestamp as 8-byte doubles). Entries are only appended; a value is rewritten in place."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a+b")  # noqa: SIM115  # open as long as the process writes to it
        size = os.fstat(self._f.fileno()).st_size
        if size == 0:
            self._f.truncate(_INITIAL_FILE_BYTES)
            size = _INITIAL_FILE_BYTES
        self.capacity = size
        self.m = mmap.mmap(self._f.fileno(), size)
        self.used = struct.unpack_from("i", self.m, 0)[0]
        self.positions: dict[str, int] = {}
        if self.used == 0:
            self.used = 8
            self.m[0:4] = struct.pack("i", 8)
        else:  # a file of a dead process whose pid this one got: continue its totals
            pos = 8
            while pos < self.used:
                length = struct.unpack_from("i", self.m, pos)[0]
                key = bytes(self.m[pos + 4:pos + 4 + length]).decode("utf-8")
                pos += 4 + length + (8 - (length + 4) % 8)
                self.positions[key] = pos
                pos += 16

    def slot(self, key: str) -> tuple[int, float]:
        """The offset of ``key``'s value (appended as 0 if new) and its current value."""
        pos = self.positions.get(key)
        if pos is None:
            encoded = key.encode("utf-8")
            padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
            entry = struct.pack(f"i{len(padded)}sdd", len(encoded), padded, 0.0, 0.0)
            while self.used + len(entry) > self.capacity:
                self.capacity *= 2
                self._f.truncate(self.capacity)
                self.m = mmap.mmap(self._f.fileno(), self.capacity)
            self.m[self.used:self.used + len(entry)] = entry
            self.used += len(entry)
            self.m[0:4] = struct.pack("i", self.used)  # after the entry: a reader never sees half of one
            pos = self.positions[key] = self.used - 16
        return pos, struct.unpack_from("d", self.m, pos)[0]


class _Value:
    """One sample of this process: a float kept here and written to its file on every change."""

    __slots__ = ("key", "prefix", "file", "pos", "value")
    file: _File
    pos: int
    value: float

    def __init__(self, store: _Store, prefix: str, key: str) -> None:
        self.key = key
        self.prefix = prefix
        store.add(self)

    def inc(self, amount: float = 1.0) -> None:
        value = self.value = self.value + amount
        self.file.m[self.pos:self.pos + 8] = _pack_double(value)

    def set(self, value: float) -> None:
        self.value = value
        self.file.m[self.pos:self.pos + 8] = _pack_double(value)


class _Store:
    """This process's files (one per metric type), made on first use. A forked child makes its own (its pid
    names them) and starts its values from zero, since each process's file holds that process's counts: a fork
    marks the store ``stale`` (no file work in children that never write), and :meth:`check`, at the start
    of each request, moves every value to the new process's files."""

    def __init__(self) -> None:
        self.stale = True
        self.directory = ""
        self.files: dict[str, _File] = {}
        self.values: list[_Value] = []
        #: Held while a request's samples change (the gthread worker serves several requests at once).
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.stale:
            self.stale = False
            self.directory = os.environ.get(DIRECTORY_VAR) or str(prepare_directory())
            self.files = {}
            self.lock = threading.Lock()
            for value in self.values:
                self._place(value)

    def mark_stale(self) -> None:
        self.stale = True

    def add(self, value: _Value) -> None:
        self.check()
        self.values.append(value)
        self._place(value)

    def _place(self, value: _Value) -> None:
        file = self.files.get(value.prefix)
        if file is None:
            name = f"{value.prefix}_{os.getpid()}-modelpack.db"
            file = self.files[value.prefix] = _File(os.path.join(self.directory, name))
        value.file = file
        value.pos, value.value = file.slot(value.key)


_store = _Store()
os.register_at_fork(after_in_child=_store.mark_stale)


class _Family:
    """A metric: its name, help, type and label names; ``labels(...)`` gives its samples for label values."""

    def __init__(self, name: str, help_text: str, kind: str, labelnames: tuple[str, ...] = (),
                 mode: str = "", buckets: tuple[float, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.kind = kind
        self.labelnames = labelnames
        self.prefix = f"gauge_{mode}" if kind == "gauge" else kind
        self.bounds = (*buckets, float("inf"))
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        """The sample(s) for these label values: a :class:`_Value` (counter, gauge) or :class:`_Histogram`."""
        child = self._children.get(values)
        if child is None:
            labels = dict(zip(self.labelnames, values, strict=True))
            if self.kind == "histogram":
                child = _Histogram(self, labels)
            else:
                sample = f"{self.name}_total" if self.kind == "counter" else self.name
                child = _Value(_store, self.prefix, self._key(sample, labels))
            self._children[values] = child
        return child

    def _key(self, sample: str, labels: dict[str, str]) -> str:
        return json.dumps([self.name, sample, labels, self.help], sort_keys=True)


class _Histogram:
    """A histogram's samples for one set of label values: the sum, and a count per bucket (the scrape makes
    them cumulative and adds ``_count``)."""

    __slots__ = ("bounds", "sum", "buckets")

    def __init__(self, family: _Family, labels: dict[str, str]) -> None:
        self.bounds = family.bounds
        self.sum = _Value(_store, family.prefix, family._key(f"{family.name}_sum", labels))
        # the scrape reads ``le`` back with float() (and writes it as Prometheus does): no need to import
        # prometheus_client on the request path for its formatting
        self.buckets = [_Value(_store, family.prefix, family._key(
            f"{family.name}_bucket", {**labels, "le": "+Inf" if bound == float("inf") else repr(float(bound))}))
            for bound in self.bounds]

    def observe(self, amount: float) -> None:
        self.sum.inc(amount)
        self.buckets[bisect.bisect_left(self.bounds, amount)].inc()


class Metrics:
    """The server's metrics (one set per process: :func:`get_metrics`)."""

    def __init__(self) -> None:
        self.store = _store
        self.requests = _Family(
            "modelpack_requests", "HTTP requests answered, by model, route template, method and status",
            "counter", ("model", "route", "method", "status"))
        self.duration = _Family(
            "modelpack_request_duration_seconds",
            "Time from receiving a whole request to its response being ready, by model and route template",
            "histogram", ("model", "route"), buckets=DURATION_BUCKETS)
        self.rows = _Family(
            "modelpack_request_rows", "Rows (or tensor entries along the first axis) per scoring request",
            "histogram", ("model",), buckets=ROW_BUCKETS)
        self.in_flight = _Family(
            "modelpack_requests_in_flight", "Requests being handled now, by model", "gauge", ("model",),
            mode="livesum")
        self.model_errors = _Family(
            "modelpack_model_errors", "Predictions that failed in the model: it raised (MODEL_ERROR) or ran past "
            "the timeout (PREDICTION_TIMEOUT)", "counter", ("model", "error_code"))
        self.schema_rejections = _Family(
            "modelpack_schema_rejections", "Requests refused by the model's signature, by the signature column "
            "at fault (each missing column counts; empty: the rejection names no column)", "counter",
            ("model", "column"))
        self.worker_restarts = _Family(
            "modelpack_worker_restarts", "Workers that exited while the server kept running (crash, kill, "
            "timeout, max requests, reload); the master starts a new one each time", "counter")
        self.reload_failures = _Family(
            "modelpack_reload_failures", "Reloads (SIGHUP, --watch) whose models did not load: the server kept "
            "serving the models loaded before", "counter")
        self.load_seconds = _Family(
            "modelpack_model_load_seconds", "Seconds it took to load the model", "gauge", ("model",),
            mode="livemax")
        self.info = _Family(
            "modelpack_model_info", "The model served under each name (always 1)", "gauge", INFO_LABELS,
            mode="livemax")
        self._scrape_app: Any = None

    def wsgi_app(self) -> Any:
        """The WSGI app answering a scrape: every process's files added up by prometheus_client (text or
        OpenMetrics by the Accept header, gzip when asked, ``name[]`` filters), plus ``python_info``."""
        if self._scrape_app is None:
            from prometheus_client import CollectorRegistry, PlatformCollector, make_wsgi_app, multiprocess

            registry = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(registry, path=self.store.directory or os.environ[DIRECTORY_VAR])
            PlatformCollector(registry=registry)
            self._scrape_app = make_wsgi_app(registry)
        return self._scrape_app


_metrics: Metrics | None = None


def get_metrics() -> Metrics:
    """This process's :class:`Metrics` (made once: two objects for one sample would overwrite each other)."""
    global _metrics
    if _metrics is None:
        if not os.environ.get(DIRECTORY_VAR):
            prepare_directory()  # e.g. an app built outside ``python -m modelpack.server``
        _metrics = Metrics()
    return _metrics


def count_reload_failure(config: Any) -> None:
    """In the master, when a reload failed (gunicorn.py calls it)."""
    if getattr(config, "metrics", True):
        _store.check()
        get_metrics().reload_failures.labels().inc()


def worker_exited(arbiter: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook, in the master: remove the dead worker's live gauges (its requests in
    flight, its model info), and count a restart unless the server is stopping (``Arbiter.stop`` has closed the
    listeners by then)."""
    directory = os.environ.get(DIRECTORY_VAR)
    if directory:
        for path in glob.glob(os.path.join(directory, f"gauge_live*_{worker.pid}[.-]*db")):
            try:
                os.remove(path)
            except OSError:
                pass
    if getattr(arbiter, "LISTENERS", None):
        _store.check()
        get_metrics().worker_restarts.labels().inc()
