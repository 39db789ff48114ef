"""Tracking through the public API (``modelpack.start_run``, ``log_*``, ``search_runs``), on a real SQLite store
and a real PostgreSQL server (tests/postgres.py): runs, params, metrics, tags, artifacts, logged models, and how
runs end (context manager, atexit, uncaught exceptions)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from postgres import postgres_server, postgres_url, store_uri_fixture  # noqa: F401  (pytest fixtures)

import modelpack
from modelpack.tracking import fluent
from modelpack.tracking.errors import (
    ExperimentNotFoundError,
    InvalidTrackingRequestError,
    ParamChangeError,
    RunNotFoundError,
    RunStateError,
)
from modelpack.tracking.runs import get_info, metric_history
from modelpack.tracking.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def experiment(store_uri) -> str:
    """A fresh experiment of this test's own, made current."""
    name = f"exp-{uuid.uuid4().hex[:8]}"
    modelpack.set_experiment(name)
    return name


def test_import_modelpack_and_the_tracking_names_stay_light():
    code = ("import sys, modelpack\n"
            "names = [modelpack.start_run, modelpack.log_metric, modelpack.search_runs, modelpack.set_tracking_uri,\n"
            "         modelpack.log_model, modelpack.get_tracking_uri]\n"
            "modelpack.set_tracking_uri(sys.argv[1])\n"
            "print(sorted({'sqlalchemy', 'alembic', 'pandas', 'numpy', 'psycopg'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, "somewhere"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_run_records_who_what_when_and_ends_finished(store_uri, experiment):
    before = int(time.time() * 1000)
    with modelpack.start_run(run_name="first") as run:
        assert modelpack.active_run() is run
        assert run.info.status == "RUNNING" and run.info.end_time is None
        modelpack.log_params({"alpha": 0.01, "l1_ratio": 0.75})
        modelpack.log_metric("rmse", 61.5)
        modelpack.set_tag("team", "ml")
        assert run.data.params == {"alpha": "0.01", "l1_ratio": "0.75"}
    assert modelpack.active_run() is None
    info = modelpack.get_run(run.info.run_id).info
    assert info == run.info  # the handle was updated by the end
    assert info.status == "FINISHED" and info.run_name == "first"
    assert before <= info.start_time <= info.end_time <= int(time.time() * 1000)
    assert info.user_id and info.source_name
    assert info.experiment_id == modelpack.set_experiment(experiment).experiment_id
    assert info.artifact_uri.endswith(f"/{info.experiment_id}/{info.run_id}/artifacts")
    data = modelpack.get_run(run.info.run_id).data
    assert data.metrics == {"rmse": 61.5} and data.tags == {"team": "ml"}


def test_runs_end_failed_on_an_exception_and_killed_on_ctrl_c(store_uri, experiment):
    with pytest.raises(ValueError), modelpack.start_run() as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), modelpack.start_run() as killed:
        raise KeyboardInterrupt
    assert modelpack.get_run(failed.info.run_id).info.status == "FAILED"
    assert modelpack.get_run(killed.info.run_id).info.status == "KILLED"
    assert modelpack.active_run() is None


def test_one_active_run_unless_nested(store_uri, experiment):
    with modelpack.start_run(run_name="parent") as parent:
        with pytest.raises(RunStateError, match=f"Run {parent.info.run_id} is already active.*nested=True"):
            modelpack.start_run()
        with modelpack.start_run(run_name="child", nested=True) as child:
            modelpack.log_metric("loss", 1.0)
            assert modelpack.active_run() is child
        assert modelpack.active_run() is parent
        inner = modelpack.start_run(nested=True)  # left open: ends with its parent
    assert modelpack.get_run(child.info.run_id).data.tags == {"modelpack.parentRunId": parent.info.run_id}
    assert modelpack.get_run(child.info.run_id).data.metrics == {"loss": 1.0}
    assert modelpack.get_run(parent.info.run_id).data.metrics == {}
    assert modelpack.get_run(inner.info.run_id).info.status == "FINISHED"


def test_logging_without_a_run_starts_one_and_end_run_ends_it(store_uri, experiment):
    modelpack.log_metric("m", 1)
    run = modelpack.active_run()
    assert run is not None and run.info.status == "RUNNING"
    modelpack.end_run("KILLED")
    assert modelpack.active_run() is None
    assert modelpack.get_run(run.info.run_id).info.status == "KILLED"
    modelpack.end_run()  # no active run: nothing to do
    with pytest.raises(RunStateError, match="FINISHED"):
        modelpack.end_run("DONE")


def test_resume_a_run_by_id(store_uri, experiment):
    with modelpack.start_run() as run:
        modelpack.log_param("a", 1)
    with modelpack.start_run(run_id=run.info.run_id) as again:
        assert again.info.status == "RUNNING" and again.info.run_id == run.info.run_id
        modelpack.log_param("b", 2)
    assert modelpack.get_run(run.info.run_id).data.params == {"a": "1", "b": "2"}
    with pytest.raises(RunNotFoundError, match="No run with id 'nope'"):
        modelpack.start_run(run_id="nope")


def test_params_are_immutable_and_log_params_is_all_or_nothing(store_uri, experiment):
    with modelpack.start_run() as run:
        assert modelpack.log_param("alpha", 0.01) == 0.01
        modelpack.log_param("alpha", "0.01")  # the same value again is fine
        with pytest.raises(ParamChangeError) as caught:
            modelpack.log_param("alpha", 0.02)
        message = str(caught.value)
        assert "'alpha'" in message and "'0.01'" in message and "'0.02'" in message
        assert caught.value.status == 400 and caught.value.exit_code == 2
        with pytest.raises(ParamChangeError):
            modelpack.log_params({"l1_ratio": 0.5, "alpha": 0.5})
        assert run.data.params == {"alpha": "0.01"}  # l1_ratio was not logged either
        with pytest.raises(InvalidTrackingRequestError, match="6000"):
            modelpack.log_param("long", "x" * 6001)


def test_metric_history_and_latest_value(store_uri, experiment):
    store = Store.open()
    with modelpack.start_run() as run:
        modelpack.log_metric("loss", 3.0, step=3, timestamp=1000)
        modelpack.log_metric("loss", 9.0, step=1, timestamp=5000)  # a lower step never replaces the latest
        assert run.data.metrics["loss"] == 3.0
        modelpack.log_metric("loss", 2.0, step=3, timestamp=2000)  # same step, later: replaces
        modelpack.log_metric("loss", 7.0, step=3, timestamp=1500)  # same step, earlier: does not
        assert run.data.metrics["loss"] == 2.0
        modelpack.log_metrics({"loss": 1.5, "acc": 0.9}, step=4)
        modelpack.log_metric("diverged", float("nan"))
        modelpack.log_metric("big", float("inf"), step=2)
        modelpack.log_metric("big", float("-inf"), step=1)
        data = run.data
    assert data.metrics["loss"] == 1.5 and data.metrics["acc"] == 0.9
    assert math.isnan(data.metrics["diverged"]) and data.metrics["big"] == math.inf
    history = metric_history(store, run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 9.0), (3, 3.0), (3, 7.0), (3, 2.0), (4, 1.5)]
    assert [m.value for m in metric_history(store, run.info.run_id, "big")] == [-math.inf, math.inf]


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda: modelpack.log_metric("rmse", "0.5"), "must be a number, got the string '0.5'"),
    (lambda: modelpack.log_metric("rmse", None), "must be a number, got None"),
    (lambda: modelpack.log_metric("rmse", 1.0, step=1.5), "step of metric 'rmse' must be an integer, got 1.5"),
    (lambda: modelpack.log_metric("bad*key", 1.0), r"Invalid metric key 'bad\*key'"),
    (lambda: modelpack.log_param("", 1), "Invalid param key ''"),
    (lambda: modelpack.set_tag("k" * 251, 1), "Invalid tag key"),
    (lambda: modelpack.start_run(run_name=""), "run name must be a non-empty string"),
])
def test_bad_names_and_values_are_clear_errors(store_uri, experiment, call, pattern):
    with pytest.raises(InvalidTrackingRequestError, match=pattern):
        call()


def test_tags_change_and_keys_may_hold_dots_slashes_and_spaces(store_uri, experiment):
    with modelpack.start_run() as run:
        modelpack.set_tag("stage", "dev")
        modelpack.set_tags({"stage": "prod", "data set/version 2": "v2.1"})
        modelpack.log_metric("val.loss:avg", 0.25)
    data = run.data
    assert data.tags == {"stage": "prod", "data set/version 2": "v2.1"}
    assert data.metrics == {"val.loss:avg": 0.25}


def test_experiments_are_created_on_first_use(store_uri, monkeypatch):
    name = f"first-use-{uuid.uuid4().hex[:6]}"
    created = modelpack.set_experiment(name)
    assert created.name == name and Path(created.artifact_location).name == created.experiment_id
    assert modelpack.set_experiment(name) == created
    assert modelpack.set_experiment(experiment_id=created.experiment_id).name == name
    with modelpack.start_run(experiment=f"{name}-other") as other:
        pass
    assert other.info.experiment_id != created.experiment_id
    monkeypatch.setattr(fluent, "_experiment_name", None)
    monkeypatch.setenv("MODELPACK_EXPERIMENT_NAME", f"{name}-env")
    with modelpack.start_run() as from_env:
        pass
    assert modelpack.search_runs(f"{name}-env")["run_id"].tolist() == [from_env.info.run_id]
    with pytest.raises(ExperimentNotFoundError, match=r"No experiment called 'nope' in .*; experiments: \['"):
        modelpack.search_runs("nope")


def test_a_run_keeps_logging_to_its_store_when_the_tracking_uri_changes(store_uri, experiment, tmp_path):
    with modelpack.start_run() as run:
        modelpack.set_tracking_uri(tmp_path / "elsewhere")
        modelpack.log_metric("m", 1.0)
    assert run.store.uri == store_uri
    modelpack.set_tracking_uri(store_uri)
    assert modelpack.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_artifacts_are_copied_under_the_run(store_uri, experiment, tmp_path):
    (tmp_path / "plot.png").write_bytes(b"\x89PNG fake")
    report = tmp_path / "report"
    (report / "sub").mkdir(parents=True)
    (report / "a.txt").write_text("a")
    (report / "sub" / "b.txt").write_text("b")
    with modelpack.start_run() as run:
        modelpack.log_artifact(tmp_path / "plot.png")
        modelpack.log_artifact(str(tmp_path / "plot.png"), "figures/2024")
        modelpack.log_artifacts(report, "report")
        (tmp_path / "plot.png").write_bytes(b"new")
        modelpack.log_artifact(tmp_path / "plot.png")  # the same path again replaces the file
        for bad in ("../escape", "/abs", "a/../../b"):
            with pytest.raises(InvalidTrackingRequestError, match="relative and stays inside"):
                modelpack.log_artifact(tmp_path / "plot.png", bad)
        with pytest.raises(InvalidTrackingRequestError, match="a directory: use log_artifacts"):
            modelpack.log_artifact(report)
    root = Path(run.info.artifact_uri)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["figures/2024/plot.png", "plot.png", "report/a.txt", "report/sub/b.txt"]
    assert (root / "plot.png").read_bytes() == b"new"
    assert (root / "figures/2024/plot.png").read_bytes() == b"\x89PNG fake"


def test_log_model_saves_through_save_model_and_records_it(store_uri, experiment, diabetes, elasticnet):
    from modelpack.tracking.models import logged_models_of

    X, _ = diabetes
    with modelpack.start_run() as run:
        info = modelpack.log_model(elasticnet, "model", input_example=X.head(3))
        with pytest.raises(InvalidTrackingRequestError, match="already has a model at 'model'"):
            modelpack.log_model(elasticnet, "model")
    assert info.model_uri == f"runs:/{run.info.run_id}/model"
    assert Path(info.path) == Path(run.info.artifact_uri) / "model"
    assert "sklearn" in info.flavors and "python_function" in info.flavors
    loaded = modelpack.load_model(info.path)
    assert loaded.metadata.model_uuid == info.model_uuid
    assert list(loaded.predict(X.head(5))) == pytest.approx(list(elasticnet.predict(X.head(5))))
    assert [m["artifact_path"] for m in logged_models_of(Store.open(), run.info.run_id)] == ["model"]
    assert {"MLmodel", "input_example.json"} <= {p.name for p in Path(info.path).iterdir()}


def test_log_model_registers_through_the_registry(store_uri, experiment, elasticnet):
    registry = pytest.importorskip("modelpack.registry", reason="the registry half is not built yet")
    name = f"reg-{uuid.uuid4().hex[:6]}"
    with modelpack.start_run() as run:
        info = modelpack.log_model(elasticnet, "model", registered_model_name=name)
        second = modelpack.log_model(elasticnet, "model2", registered_model_name=name)
    assert (info.registered_model_version, second.registered_model_version) == (1, 2)
    version = registry.get_model_version(name, 1)
    assert getattr(version, "run_id", run.info.run_id) == run.info.run_id


def test_search_runs_compiles_the_filter_to_sql(store_uri, experiment):
    """Every clause kind is one EXISTS in the query the store runs; only matching runs are fetched."""
    from sqlalchemy import event

    with modelpack.start_run():
        modelpack.log_metric("rmse", 50)
        modelpack.log_params({"alpha": "0.1"})
    statements: list[str] = []
    engine = Store.open().engine

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        modelpack.search_runs(filter_string="metrics.rmse < 60 and params.alpha = '0.1' and tags.t != 'x'")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    (query,) = [s for s in statements if "FROM runs" in s and "EXISTS" in s]
    assert query.count("EXISTS") == 3
    assert "latest_metrics" in query and "params" in query and "run_tags" in query


@pytest.fixture
def six_runs(store_uri, experiment):
    """Runs with the values the search tests filter and order on (start times 1..6 s apart)."""
    table = [
        ("en-0.01", {"alpha": "0.01", "l1_ratio": "0.75"}, {"rmse": 55.0, "r2": 0.45}, {"Data": "Diabetes"},
         "FINISHED"),
        ("en-0.1", {"alpha": "0.1", "l1_ratio": "0.75"}, {"rmse": 58.5, "r2": 0.41}, {"Data": "diabetes"},
         "FINISHED"),
        ("en-1", {"alpha": "1", "l1_ratio": "0.5"}, {"rmse": 70.0}, {"Data": "iris"}, "FAILED"),
        ("ridge", {"alpha": "0.01"}, {"rmse": float("nan")}, {}, "FINISHED"),
        ("no-metrics", {"alpha": "5"}, {}, {"note": "it's"}, "KILLED"),
        ("lasso 100%", {"model type": "lasso"}, {"rmse": 52.0, "val.loss": 1.0}, {}, "FINISHED"),
    ]
    ids = {}
    for n, (name, params, metrics, tags, status) in enumerate(table):
        run = modelpack.start_run(run_name=name)
        modelpack.log_params(params)
        modelpack.log_metrics(metrics)
        modelpack.set_tags(tags)
        modelpack.end_run(status)
        ids[name] = run.info.run_id
        from sqlalchemy import update

        from modelpack.tracking.schema import runs
        with Store.open().transaction() as conn:  # distinct, known start times
            conn.execute(update(runs).where(runs.c.run_id == run.info.run_id).values(start_time=(n + 1) * 1000))
    return ids


@pytest.mark.parametrize(("filter_string", "expected"), [
    ("metrics.rmse < 60", ["lasso 100%", "en-0.1", "en-0.01"]),
    ("metrics.rmse < 60 and params.alpha = '0.01'", ["en-0.01"]),
    ("METRICS.rmse >= 58.5 AND params.l1_ratio != '0.5'", ["en-0.1"]),
    ("metrics.rmse != 55", ["lasso 100%", "en-1", "en-0.1"]),  # NaN and a missing metric never match
    ("metrics.r2 > 4.2e-1", ["en-0.01"]),
    ("metrics.`val.loss` = 1 and params.`model type` = 'lasso'", ["lasso 100%"]),
    ('params."model type" LIKE \'las%\'', ["lasso 100%"]),
    ("tags.Data LIKE 'diab%'", ["en-0.1"]),  # LIKE is case-sensitive in every database
    ("tags.Data ILIKE 'DIAB%'", ["en-0.1", "en-0.01"]),
    ("tags.Data LIKE '_iabetes'", ["en-0.1", "en-0.01"]),
    ("tags.note = 'it''s'", ["no-metrics"]),
    ("params.alpha IN ('0.01', '5')", ["no-metrics", "ridge", "en-0.01"]),
    ("params.alpha NOT IN ('0.01', '5')", ["en-1", "en-0.1"]),
    ("attributes.status = 'FINISHED' and metrics.rmse > 53", ["en-0.1", "en-0.01"]),
    ("status != 'FINISHED'", ["no-metrics", "en-1"]),
    ("run_name LIKE '%100[%]'", []),
    ("run_name LIKE '%100%'", ["lasso 100%"]),
    ("attributes.run_name IN ('ridge', 'en-1')", ["ridge", "en-1"]),
    ("start_time > 2000 and start_time <= 4000", ["ridge", "en-1"]),
    ("", ["lasso 100%", "no-metrics", "ridge", "en-1", "en-0.1", "en-0.01"]),
])
def test_search_filters(six_runs, filter_string, expected):
    found = modelpack.search_runs(filter_string=filter_string)
    assert found["run_name"].tolist() == expected


@pytest.mark.parametrize(("order_by", "expected"), [
    (["metrics.rmse"], ["lasso 100%", "en-0.01", "en-0.1", "en-1", "ridge", "no-metrics"]),
    (["metrics.rmse DESC"], ["en-1", "en-0.1", "en-0.01", "lasso 100%", "ridge", "no-metrics"]),
    (["params.l1_ratio ASC", "start_time ASC"], ["en-1", "en-0.01", "en-0.1", "ridge", "no-metrics", "lasso 100%"]),
    ("attributes.run_name desc", ["ridge", "no-metrics", "lasso 100%", "en-1", "en-0.1", "en-0.01"]),
    (["status", "metrics.r2 DESC"], ["en-1", "en-0.01", "en-0.1", "lasso 100%", "ridge", "no-metrics"]),
])
def test_search_order_puts_missing_values_last(six_runs, order_by, expected):
    assert modelpack.search_runs(order_by=order_by)["run_name"].tolist() == expected


def test_search_frame_has_mlflow_columns(six_runs, experiment):
    import pandas as pd

    frame = modelpack.search_runs([experiment], "params.alpha = '0.01'", order_by=["metrics.rmse"], max_results=1)
    assert len(frame) == 1
    assert list(frame.columns[:7]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time",
                                       "end_time", "run_name"]
    row = frame.iloc[0]
    assert row["run_id"] == six_runs["en-0.01"] and row["metrics.rmse"] == 55.0 and row["params.alpha"] == "0.01"
    assert row["tags.Data"] == "Diabetes" and row["start_time"] == pd.Timestamp(1000, unit="ms", tz="UTC")
    assert frame["metrics.rmse"].dtype == float
    empty = modelpack.search_runs(filter_string="metrics.rmse > 1000")
    assert empty.empty and list(empty.columns) == list(frame.columns[:7])
    assert modelpack.search_runs(filter="params.alpha = '5'")["run_name"].tolist() == ["no-metrics"]


@pytest.mark.parametrize(("bad", "pattern"), [
    ("metrics.rmse < '60'", "at character 16: expected a number to compare metrics.rmse with, got \"'60'\""),
    ("params.alpha = 0.01", "at character 16: expected a quoted string to compare params.alpha with"),
    ("metrics.rmse LIKE 5", r"at character 14: expected an operator for metrics.rmse \(=, !=, <, <=, >, >=\)"),
    ("metrics.rmse < 60 or params.a = 'x'", "at character 19: expected 'and' \\('or' is not supported"),
    ("metrics.rmse < 60 and", "at character 22: expected metrics.<key>.*got the end of the text"),
    ("foo = 'x'", r"at character 1: expected an attribute, one of \['artifact_uri'"),
    ("colour.x = 'x'", "at character 1: expected metrics.<key>, params.<key>, tags.<key> or attributes.<name>"),
    ("params.a IN ('x' 'y')", "at character 18: expected ',' or '\\)'"),
    ("params.a = 'x' ; drop table runs", "at character 16: unexpected '; drop table runs'"),
])
def test_bad_filters_name_the_position(six_runs, bad, pattern):
    from modelpack.tracking.errors import FilterSyntaxError

    with pytest.raises(FilterSyntaxError, match=pattern):
        modelpack.search_runs(filter_string=bad)


def test_bad_order_by_and_max_results(six_runs):
    from modelpack.tracking.errors import FilterSyntaxError

    with pytest.raises(FilterSyntaxError, match="order_by clause 'metrics.rmse UP' at character 14: expected ASC"):
        modelpack.search_runs(order_by=["metrics.rmse UP"])
    with pytest.raises(FilterSyntaxError, match="max_results is an integer from 1"):
        modelpack.search_runs(max_results=0)


# -- how a process's runs end -------------------------------------------------------------------------------------

EXIT_SCRIPT = """\
import sys, modelpack
modelpack.set_tracking_uri(sys.argv[1])
modelpack.set_experiment("exits")
run = modelpack.start_run(run_name=sys.argv[2])
print(run.info.run_id, flush=True)
modelpack.log_metric("m", 1)
how = sys.argv[2]
if how == "exception":
    raise RuntimeError("crash")
if how == "ctrl-c":
    raise KeyboardInterrupt
if how == "exit-3":
    sys.exit(3)
"""


@pytest.mark.parametrize(("how", "status", "code"), [
    ("normal", "FINISHED", 0), ("exception", "FAILED", 1), ("ctrl-c", "KILLED", None), ("exit-3", "FINISHED", 3)])
def test_a_run_left_active_is_ended_at_exit(tmp_path, how, status, code):
    script = tmp_path / "train.py"
    script.write_text(EXIT_SCRIPT)
    store = tmp_path / "mlruns"
    out = subprocess.run([sys.executable, script, store, how], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    if code is not None:
        assert out.returncode == code, out.stderr
    run_id = out.stdout.split()[0]
    info = get_info(Store.open(str(store)), run_id)
    assert info.status == status and info.end_time is not None
    assert info.source_name == str(script)


def test_the_git_commit_of_the_source_is_recorded(tmp_path):
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    (repo / "train.py").write_text(textwrap.dedent(EXIT_SCRIPT))
    for argv in (["init", "-q"], ["add", "train.py"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-c", f"safe.directory={repo}", *argv], cwd=repo, check=True, env=env, timeout=60)
    commit = subprocess.run(["git", "-c", f"safe.directory={repo}", "rev-parse", "HEAD"], cwd=repo, env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text(EXIT_SCRIPT)
    found = []
    for script in (repo / "train.py", plain / "train.py"):
        out = subprocess.run([sys.executable, script, tmp_path / "mlruns", "normal"], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path, env=env, check=True)
        found.append(get_info(Store.open(str(tmp_path / "mlruns")),
                                                      out.stdout.split()[0]).source_git_commit)
    assert found == [commit, None]


def test_without_sqlalchemy_the_store_says_what_to_install(tmp_path):
    code = ("import sys\nsys.modules['sqlalchemy'] = None  # as if it were not installed\n"
            "import modelpack\nmodelpack.set_tracking_uri(sys.argv[1])\n"
            "try:\n    modelpack.start_run()\nexcept modelpack.ModelpackError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert "Tracking needs SQLAlchemy and Alembic" in out.stdout and "modelpack[tracking]" in out.stdout, out.stderr
