"""Entry point inside the serving environment: ``python -m modelpack.server --model PATH ...``.

Loads the model (a clear message and exit code 3 if it cannot), then runs gunicorn.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from ..config import ServeConfig


def parse_args(argv: list[str] | None = None) -> ServeConfig:
    parser = argparse.ArgumentParser(prog="python -m modelpack.server")
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--timeout", type=int)
    parser.add_argument("--max-body-bytes", type=int)
    parser.add_argument("--worker-class")
    parser.add_argument("--log-level")
    ns = vars(parser.parse_args(argv))
    return ServeConfig.from_env(ns.pop("model"), **ns)


def main(argv: list[str] | None = None) -> int:
    from ..errors import ModelpackError

    try:
        config = parse_args(argv)
        logging.basicConfig(
            level=config.log_level.upper(),
            format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        )
        from ..pyfunc import load_model

        model = load_model(config.model_path)
        from .app import create_app
        from .gunicorn import ScoringServer

        app = create_app(model, config)
    except ModelpackError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    logging.getLogger("modelpack.server").info(
        "Serving %s on %s:%d with %d worker(s)", config.model_path, config.host, config.port, config.workers
    )
    # Everything loaded so far lives as long as the workers: keep the garbage collector from
    # walking (and so writing to, and un-sharing) the pages they inherit from this process.
    gc.collect()
    gc.freeze()
    ScoringServer(app, config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
