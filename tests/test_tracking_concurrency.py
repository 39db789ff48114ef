"""Concurrency and faults, with real processes on real stores (SQLite in WAL mode, and a PostgreSQL server):
four processes logging at once lose nothing, and a process killed with SIGKILL in the middle of ``log_model``
leaves no ``logged_models`` row pointing at a missing or half-written model."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from postgres import postgres_server, postgres_url, store_uri_fixture  # noqa: F401  (pytest fixtures)
from sqlalchemy import func, select

import modelpack
from modelpack.tracking.models import logged_models_of
from modelpack.tracking.runs import get_run, metric_history
from modelpack.tracking.schema import experiments, metrics, runs
from modelpack.tracking.store import Store

PROCESSES = 4
STEPS = 150

LOGGER = """\
import sys, time
import modelpack
uri, shared_run, experiment, index, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
steps = int(sys.argv[6])
modelpack.set_tracking_uri(uri)
time.sleep(max(0.0, start - time.time()))
modelpack.set_experiment(experiment)  # created by whichever process gets there first
with modelpack.start_run(run_name=f"worker-{index}") as own:
    with modelpack.start_run(run_id=shared_run, nested=True):
        for j in range(steps):
            modelpack.log_metric("shared", index * steps + j, step=index * steps + j)
            modelpack.log_metric(f"own{index}", j, step=j)
            if j % 10 == 0:
                modelpack.log_metrics({"batch_a": j, "batch_b": -j}, step=j)
        modelpack.log_param(f"p{index}", index)
        modelpack.set_tag("last_writer", index)
    modelpack.log_metric("mine", index)
print(own.info.run_id)
"""


def test_four_processes_logging_at_once_lose_nothing(store_uri):
    experiment = f"crowd-{uuid.uuid4().hex[:6]}"
    with modelpack.start_run(experiment=f"{experiment}-shared") as shared:
        pass
    start = time.time() + 5  # every interpreter has imported modelpack by then
    procs = [subprocess.Popen([sys.executable, "-c", LOGGER, store_uri, shared.info.run_id, experiment, str(i),
                               str(start), str(STEPS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(PROCESSES)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, [err[-3000:] for _, err in results]
    store = Store.open()
    batches = len(range(0, STEPS, 10))
    with store.reading() as conn:
        counted = conn.execute(select(func.count()).select_from(metrics)
                               .where(metrics.c.run_id == shared.info.run_id)).scalar()
        same_name = conn.execute(select(func.count()).select_from(experiments)
                                 .where(experiments.c.name == experiment)).scalar()
        own_runs = conn.execute(select(func.count()).select_from(runs).join(experiments)
                                .where(experiments.c.name == experiment)).scalar()
    assert counted == PROCESSES * (2 * STEPS + 2 * batches)
    assert (same_name, own_runs) == (1, PROCESSES)
    data = get_run(store, shared.info.run_id).data
    assert data.metrics["shared"] == PROCESSES * STEPS - 1  # the highest step won, whoever wrote last
    assert all(data.metrics[f"own{i}"] == STEPS - 1 for i in range(PROCESSES))
    assert data.params == {f"p{i}": str(i) for i in range(PROCESSES)}
    history = metric_history(store, shared.info.run_id, "shared")
    assert sorted(m.step for m in history) == list(range(PROCESSES * STEPS))
    workers = modelpack.search_runs(experiment, order_by=["metrics.mine"])
    assert workers["metrics.mine"].tolist() == list(range(PROCESSES))
    assert set(workers["status"]) == {"FINISHED"}


SLOW_LOGGER = """\
import sys, time
import modelpack

class Slow(modelpack.PythonModel):
    def __getstate__(self):  # runs while save_model pickles the model into its staging directory
        open(sys.argv[3], "w").close()
        time.sleep(120)
        return self.__dict__

    def predict(self, context, model_input, params=None):
        return model_input

modelpack.set_tracking_uri(sys.argv[1])
with modelpack.start_run(run_id=sys.argv[2]):
    modelpack.log_model(Slow(), "model")
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the child exited with {proc.returncode}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "the child never reached the model save"
        time.sleep(0.05)


def _assert_rows_point_at_complete_models(store: Store, run_id: str) -> list[str]:
    root = Path(get_run(store, run_id).info.artifact_uri)
    paths = [m["artifact_path"] for m in logged_models_of(store, run_id)]
    for path in paths:
        loaded = modelpack.load_model(root / path)  # complete: the MLmodel and the files it names
        assert loaded.metadata.model_uuid == next(m["model_uuid"] for m in logged_models_of(store, run_id)
                                                  if m["artifact_path"] == path)
    return paths


def test_sigkill_in_the_middle_of_log_model_leaves_no_row(store_uri, tmp_path, elasticnet):
    with modelpack.start_run(experiment=f"kill-{uuid.uuid4().hex[:6]}") as run:
        pass
    marker = tmp_path / "saving"
    child = subprocess.Popen([sys.executable, "-c", SLOW_LOGGER, store_uri, run.info.run_id, str(marker)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, child)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = Store.open()
    root = Path(run.info.artifact_uri)
    assert logged_models_of(store, run.info.run_id) == []
    assert not (root / "model").exists()
    assert [p.name for p in root.iterdir() if ".staging-" in p.name], "the kill should have hit the staging save"
    with modelpack.start_run(run_id=run.info.run_id):  # logging again works and sweeps the dead save's staging
        info = modelpack.log_model(elasticnet, "model")
    assert _assert_rows_point_at_complete_models(store, run.info.run_id) == ["model"]
    assert [p.name for p in root.iterdir()] == ["model"]
    assert modelpack.load_model(info.path).metadata.model_uuid == info.model_uuid


RANDOM_LOGGER = """\
import sys, time
import modelpack
from sklearn.linear_model import LinearRegression
model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
modelpack.set_tracking_uri(sys.argv[1])
with modelpack.start_run(run_id=sys.argv[2]):
    print("saving", flush=True)
    modelpack.log_model(model, sys.argv[3])
    print("logged", flush=True)
"""


def test_sigkill_at_random_moments_of_log_model_never_leaves_a_bad_row(store_uri):
    """Kills spread over the whole of log_model (staging, rename, insert): every row that exists points at a
    complete model, and logging again at the same path always works."""
    with modelpack.start_run(experiment=f"kills-{uuid.uuid4().hex[:6]}") as run:
        pass
    store = Store.open()
    rng = random.Random(7)
    outcomes = []
    for attempt in range(4):
        path = f"model{attempt}"
        child = subprocess.Popen([sys.executable, "-c", RANDOM_LOGGER, store_uri, run.info.run_id, path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "saving", child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        outcomes.append(child.returncode == -signal.SIGKILL)
        _assert_rows_point_at_complete_models(store, run.info.run_id)
        if path not in [m["artifact_path"] for m in logged_models_of(store, run.info.run_id)]:
            with modelpack.start_run(run_id=run.info.run_id):
                modelpack.log_model(_tiny_model(), path)
    assert _assert_rows_point_at_complete_models(store, run.info.run_id) == [f"model{i}" for i in range(4)]
    assert any(outcomes), "no child was killed before it finished: the test proved nothing"


def test_a_model_directory_without_its_row_is_replaced_by_the_next_log_model(store_uri, elasticnet):
    """What a kill between the rename and the insert leaves: a complete directory and no row."""
    with modelpack.start_run(experiment=f"orphan-{uuid.uuid4().hex[:6]}") as run:
        orphan = modelpack.save_model(elasticnet, Path(run.info.artifact_uri) / "model")
        assert logged_models_of(Store.open(), run.info.run_id) == []
        info = modelpack.log_model(elasticnet, "model")
    assert info.model_uuid != orphan.model_uuid
    assert _assert_rows_point_at_complete_models(Store.open(), run.info.run_id) == ["model"]


def _tiny_model():
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])


def test_killed_logger_processes_do_not_corrupt_the_store(store_uri):
    """SIGKILL while metrics stream in: the store stays readable and every committed metric is whole."""
    with modelpack.start_run(experiment=f"kill-metrics-{uuid.uuid4().hex[:6]}") as run:
        pass
    code = ("import sys, modelpack\nmodelpack.set_tracking_uri(sys.argv[1])\n"
            "with modelpack.start_run(run_id=sys.argv[2]):\n"
            "    print('go', flush=True)\n"
            "    for j in range(100000):\n"
            "        modelpack.log_metrics({'a': j, 'b': j}, step=j)\n")
    child = subprocess.Popen([sys.executable, "-c", code, store_uri, run.info.run_id], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ})
    assert child.stdout is not None and child.stdout.readline().strip() == "go", child.stderr.read()
    time.sleep(1.0)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    store = Store.open()
    a, b = (metric_history(store, run.info.run_id, key) for key in ("a", "b"))
    assert len(a) == len(b) > 0  # each log_metrics call was one transaction: both keys or neither
    assert [m.step for m in a] == list(range(len(a)))
    data = get_run(store, run.info.run_id).data
    assert data.metrics == {"a": len(a) - 1, "b": len(a) - 1}
    with modelpack.start_run(run_id=run.info.run_id):
        modelpack.log_metric("after", 1.0)
    assert get_run(store, run.info.run_id).data.metrics["after"] == 1.0


def _forked_logger(index: int) -> None:
    for j in range(50):
        modelpack.log_metric(f"fork{index}", j, step=j)


def test_forked_children_log_to_the_parents_active_run(store_uri):
    """Children forked while a run is active use fresh connections (the store's at-fork hook) and lose nothing;
    they never end the parent's run at their exit."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with modelpack.start_run(experiment=f"fork-{uuid.uuid4().hex[:6]}") as run:
        modelpack.log_metric("parent", 1.0)  # the parent's pool holds a connection when it forks
        children = [context.Process(target=_forked_logger, args=(i,)) for i in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
        assert [c.exitcode for c in children] == [0, 0]
        assert modelpack.get_run(run.info.run_id).info.status == "RUNNING"
        modelpack.log_metric("parent", 2.0, step=1)
    store = Store.open()
    assert [len(metric_history(store, run.info.run_id, f"fork{i}")) for i in range(2)] == [50, 50]
    assert get_run(store, run.info.run_id).data.metrics == {"parent": 2.0, "fork0": 49.0, "fork1": 49.0}
