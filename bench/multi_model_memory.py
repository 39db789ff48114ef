"""Memory of N small scikit-learn models in one server against N servers of one model each (PSS, summed over each
process tree: a page shared by forked workers counts once, split between them).

    python bench/multi_model_memory.py                 # 20 models, -w 2
    python bench/multi_model_memory.py --models 5 --workers 1

Both sides use the same models, workers and settings, started one after the other on this machine; every model is
asked one prediction before memory is read (so each worker has scored each of its models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process import ServerProcess, free_port  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def save_models(root: Path, count: int) -> list[Path]:
    """``count`` small models (random forests and linear models in turn) trained on the diabetes data."""
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import ElasticNet

    import modelpack

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    paths = []
    for i in range(count):
        model = (RandomForestRegressor(n_estimators=10, max_depth=6, random_state=i) if i % 2
                 else ElasticNet(alpha=0.01 * (i + 1)))
        path = root / f"m{i:02d}"
        modelpack.save_model(model.fit(X, y), path, input_example=X.head(2))
        paths.append(path)
    return paths


def body() -> bytes:
    from sklearn.datasets import load_diabetes

    X = load_diabetes(as_frame=True).data.head(1)
    return json.dumps({"dataframe_split": json.loads(X.to_json(orient="split", index=False))}).encode()


def post(port: int, path: str, data: bytes) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, data, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start(models: list[tuple[str, Path]], workers: int, logs: Path) -> tuple[ServerProcess, int]:
    port = free_port()
    argv = [sys.executable, "-m", "modelpack.cli", "serve", "-p", str(port), "-w", str(workers),
            "--env-manager", "local"]
    for name, path in models:
        argv += ["-m", f"{name}={path}" if len(models) > 1 else str(path)]
    server = ServerProcess(argv, env=dict(os.environ), cwd=None, log=logs / f"server-{port}.log")
    server.wait_ready(port, "/ping", 180)
    return server, port


def measure(args: argparse.Namespace, root: Path) -> dict[str, float]:
    paths = save_models(root, args.models)
    named = [(p.name, p) for p in paths]
    data = body()
    logs = root / "logs"
    logs.mkdir()

    log(f"one server, {len(paths)} models, -w {args.workers}")
    server, port = start(named, args.workers, logs)
    try:
        for _ in range(args.workers * 2):
            for name, _path in named:
                assert post(port, f"/models/{name}/invocations", data) == 200
        time.sleep(1)
        _, one_pss, one_procs = server.memory_bytes()
    finally:
        server.stop()

    log(f"{len(paths)} servers, one model each, -w {args.workers}")
    servers = []
    try:
        for item in named:
            servers.append(start([item], args.workers, logs))
        for _, port_i in servers:
            for _ in range(args.workers * 2):
                assert post(port_i, "/invocations", data) == 200
        time.sleep(1)
        many = [s.memory_bytes() for s, _ in servers]
    finally:
        for s, _ in servers:
            s.stop()
    many_pss = sum(m[1] for m in many)
    many_procs = sum(m[2] for m in many)
    return {"models": len(paths), "workers": args.workers, "one_server_pss_mib": one_pss / 2**20,
            "one_server_processes": one_procs, "many_servers_pss_mib": many_pss / 2**20,
            "many_servers_processes": many_procs, "ratio": many_pss / one_pss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelpack-mm-") as tmp:
        result = measure(args, Path(tmp))
    print(f"| {result['models']} models, -w {result['workers']} | PSS (MiB) | processes |")
    print("|---|---:|---:|")
    print(f"| one server | {result['one_server_pss_mib']:.0f} | {result['one_server_processes']} |")
    print(f"| one server per model | {result['many_servers_pss_mib']:.0f} | {result['many_servers_processes']} |")
    print(f"\n{result['many_servers_pss_mib'] / result['one_server_pss_mib']:.1f}x less memory in one server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
