"""Entry point inside the serving environment: ``python -m modelpack.server --model PATH ...``.

Loads the model (a clear message and exit code 3 if it cannot), then runs gunicorn.

Fork safety (docs/performance.md): a forked worker has only the thread that forked it. A library that
keeps threads after loading a model (GNU OpenMP's pool, which xgboost and lightgbm start while loading a
booster) would wait in the worker for threads that do not exist, and every request would hang. So with
MODELPACK_PRELOAD=auto the master counts the threads that outlive a fork after loading the model; if the
load started any, it re-executes itself with ``--preload never``: a clean master that never loads the model,
and each worker loads its own after fork. The master itself never predicts (each worker's warm-up does).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..config import LOG_FORMATS, PRELOAD_MODES, ServeConfig, ServedModel
from .load import load_app, load_app_in_worker

logger = logging.getLogger("modelpack.server")


def parse_args(argv: list[str] | None = None) -> ServeConfig:
    ns = vars(_parser().parse_args(argv))
    ns.pop("preimport")
    return config_from_args(ns)


def config_from_args(ns: dict[str, Any]) -> ServeConfig:
    """The :class:`ServeConfig` of parsed arguments (``ns`` loses the model arguments)."""
    paths, names, uris = ns.pop("model"), ns.pop("name") or [], ns.pop("uri") or []
    if names and not (len(names) == len(paths) == len(uris)):
        raise SystemExit("python -m modelpack.server: each --model needs its --name and --uri")
    models = tuple(ServedModel(n, p, u) for n, p, u in zip(names, paths, uris, strict=True)) if names else ()
    return ServeConfig.from_env(paths[0], models=models or None, **ns)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelpack.server")
    parser.add_argument("--model", required=True, type=Path, action="append")
    parser.add_argument("--name", action="append", help="the name of the --model before it (several models)")
    parser.add_argument("--uri", action="append", help="the URI the --model before it was named by")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--timeout", type=int)
    parser.add_argument("--max-body-bytes", type=int)
    parser.add_argument("--worker-class")
    parser.add_argument("--log-level")
    parser.add_argument("--preload", choices=PRELOAD_MODES)
    parser.add_argument("--watch-interval", type=int)
    parser.add_argument("--no-metrics", dest="metrics", action="store_const", const=False)
    parser.add_argument("--log-format", choices=LOG_FORMATS)
    parser.add_argument("--no-access-log", dest="access_log", action="store_const", const=False)
    # internal: modules (comma-separated) a ``--preload never`` master imports, for its workers to share
    parser.add_argument("--preimport", default="", help=argparse.SUPPRESS)
    return parser


def share_cores(workers: int) -> None:
    """Give each worker its share of the cores in the OpenMP (and OpenBLAS) thread pools, unless the user set
    OMP_NUM_THREADS. Set before any such library loads (they read it then). Each worker's pool otherwise takes
    every core, and on 2 cores two xgboost workers spinning against each other served 126 one-row requests/s
    instead of 3,400 (docs/performance.md)."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // max(1, workers)))


#: Threads (by name) that a forked child does without: jemalloc's background purger, which pyarrow's
#: allocator starts when pandas 3 imports pyarrow; jemalloc's at-fork handlers reset it, and the child starts
#: its own when it needs one. Counting it made every model load in each worker wherever pyarrow is installed.
FORK_SAFE_THREADS = frozenset({"jemalloc_bg_thd"})


def thread_count() -> int | None:
    """This process's threads, less the ones a forked child does without (None where /proc is not there)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                name = fh.read().strip()
        except OSError:
            name = ""  # the thread ended meanwhile
        count += name not in FORK_SAFE_THREADS
    return count


def threads_kept_across_fork() -> int | None:
    """This process's threads once a fork has run every at-fork handler: libraries that can live with fork
    (OpenBLAS) stop their threads before one; what is left would be missing in a forked worker."""
    if thread_count() == 1:
        return 1
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return thread_count()


def modules_to_share(names: list[str], model_dirs: Path | list[Path]) -> list[str]:
    """``names`` (modules the models' loading imported) cut to packages and their direct submodules,
    leaving out the models' own code: what a master that does not load the models imports for its workers."""
    kept: dict[str, None] = {}
    dirs = [d.resolve() for d in ([model_dirs] if isinstance(model_dirs, Path) else model_dirs)]
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if name == "__main__" or (path and any(Path(path).resolve().is_relative_to(d) for d in dirs)):
            continue
        kept[".".join(name.split(".")[:2])] = None
    return list(kept)


def reexec_loading_in_workers(config: ServeConfig, preimport: list[str]) -> None:
    """Replace this process (same pid) by a master that never loads the model; does not return."""
    sys.stdout.flush()
    sys.stderr.flush()
    args = [sys.executable, "-m", "modelpack.server", *config.to_args(), "--preload", "never"]
    if preimport:
        args += ["--preimport", ",".join(preimport)]
    os.execv(sys.executable, args)


def preimport_modules(names: list[str]) -> None:
    """Import what the workers will (a failure is theirs to report, when they load the model)."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # e.g. the model's own code, on sys.path only while it loads
            logger.debug("Not preimporting %s: %s: %s", name, type(exc).__name__, exc)


def main(argv: list[str] | None = None) -> int:
    from ..errors import ModelpackError

    threads_at_start = threads_kept_across_fork()
    try:
        ns = vars(_parser().parse_args(argv))
        preimport = [name for name in ns.pop("preimport").split(",") if name]
        config = config_from_args(ns)
        share_cores(config.workers)
        from .observe import configure_logging

        configure_logging(config.log_level, config.log_format)
        if config.metrics:  # before anything imports prometheus_client, and before fork
            from .metrics import prepare_directory

            prepare_directory()
        from .gunicorn import ScoringServer

        if config.preload == "never":
            from ..descriptor import ModelDescriptor

            for served in config.served_models():  # a directory that is no model fails here, exit 3
                ModelDescriptor.read(served.path)
            from ..pyfunc import load_model  # noqa: F401  # what every worker imports, shared
            from .app import create_app  # noqa: F401

            preimport_modules(preimport)
            kept = threads_kept_across_fork() if preimport else None
            if kept is not None and threads_at_start is not None and kept > threads_at_start:
                logger.warning("Importing the model's libraries started threads: restarting without them")
                reexec_loading_in_workers(config, [])
            server = ScoringServer(None, config, load_app=load_app_in_worker)
        else:
            modules_before = set(sys.modules)
            app = load_app(config)
            kept = threads_kept_across_fork() if config.preload == "auto" else None
            if kept is not None and threads_at_start is not None and kept > threads_at_start:
                logger.info(
                    "Loading the model started %d thread(s) that a forked worker would not have (an OpenMP or "
                    "other thread pool): restarting to load it in each worker after fork instead",
                    kept - threads_at_start,
                )
                new = [name for name in sys.modules if name not in modules_before]
                model_dirs = [served.path for served in config.served_models()]
                reexec_loading_in_workers(config, modules_to_share(new, model_dirs))
            server = ScoringServer(app, config)
    except ModelpackError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    where = "in each worker" if config.preload == "never" else "before fork"
    every = config.served_models()
    what = (str(config.model_path) if len(every) == 1
            else f"{len(every)} models ({', '.join(m.name for m in every)})")
    logger.info(
        "Serving %s on %s:%d with %d worker(s), model%s loaded %s",
        what, config.host, config.port, config.workers, "s" if len(every) > 1 else "", where,
    )
    # Everything loaded so far lives as long as the workers: keep the garbage collector from
    # walking (and so writing to, and un-sharing) the pages they inherit from this process.
    gc.collect()
    gc.freeze()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
