"""``modelpack runs|experiments|models`` end to end, in subprocesses on a temporary store (MODELPACK_TRACKING_URI):
readable tables, ``--json`` for scripts, one-line errors with their exit codes; and the journey of issue 13, from
a run's logged model to ``modelpack serve -m "models:/diabetes@champion"`` answering over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelpack

SUBCOMMANDS = [["runs", "list"], ["runs", "show"], ["experiments", "list"], ["models", "list"], ["models", "show"],
               ["models", "register"], ["models", "alias"], ["models", "delete-alias"]]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


def ok(*args: str) -> str:
    out = cli(*args)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    return out.stdout


def fails(code: int, *args: str) -> str:
    """The one ``Error:`` line of a command that must exit with ``code``."""
    out = cli(*args)
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """An empty store, created here (its creation is logged, which is not what these tests look at)."""
    from modelpack.tracking.store import Store

    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(tmp_path / "mlruns"))
    Store.open()
    return tmp_path / "mlruns"


@pytest.fixture
def journey(store, diabetes):
    """The seed's journey: three ElasticNet runs in experiment 'diabetes' (each registered as 'diabetes'), one
    run in 'other'; run ids by alpha."""
    from sklearn.linear_model import ElasticNet
    from sklearn.metrics import mean_squared_error

    X, y = diabetes
    modelpack.set_experiment("diabetes")
    runs = {}
    for alpha in (0.01, 0.1, 1.0):
        with modelpack.start_run(run_name=f"en-{alpha}") as run:
            modelpack.log_params({"alpha": alpha, "l1_ratio": 0.5})
            model = ElasticNet(alpha=alpha, l1_ratio=0.5).fit(X, y)
            modelpack.log_metric("rmse", float(np.sqrt(mean_squared_error(y, model.predict(X)))))
            modelpack.log_model(model, "model", input_example=X.head(3), registered_model_name="diabetes")
        runs[alpha] = run.info.run_id
    with modelpack.start_run(run_name="baseline", experiment="other"):
        modelpack.log_metric("rmse", 80.0)
    return runs


def test_help_of_every_command_and_a_light_top_level_help():
    top = ok("--help")
    for name in ("runs", "experiments", "models"):
        assert f"  {name} " in top
    for args in SUBCOMMANDS:
        assert "Usage: modelpack " + " ".join(args) in ok(*args, "--help")
    code = ("import sys; from modelpack.cli.main import main\n"
            "for argv in (['--help'], ['runs', '--help'], ['models', '--help'], ['experiments', '--help']):\n"
            "    assert main(argv) == 0\n"
            "print('sqlalchemy' in sys.modules, 'pandas' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "False False", out.stderr


def test_an_empty_store(store):
    assert ok("runs", "list") == "No experiments yet: runs are logged with modelpack.start_run().\n"
    assert ok("models", "list").startswith("No registered models.")
    assert json.loads(ok("runs", "list", "--json")) == [] and json.loads(ok("models", "list", "--json")) == []


def test_runs_list(journey):
    table = ok("runs", "list", "--experiment", "diabetes").splitlines()
    assert table[0].split() == ["RUN", "ID", "NAME", "STATUS", "STARTED", "params.alpha", "params.l1_ratio",
                                "metrics.rmse"]
    assert len(table) == 2 + 3 and all(run_id in "\n".join(table) for run_id in journey.values())
    row = next(line for line in table if journey[0.1] in line)
    assert row.split()[1:3] == ["en-0.1", "FINISHED"] and row.split()[-3:-1] == ["0.1", "0.5"]

    ordered = json.loads(ok("runs", "list", "-e", "diabetes", "--order-by", "metrics.rmse", "--json"))
    assert [r["run_id"] for r in ordered] == [journey[0.01], journey[0.1], journey[1.0]]
    assert ordered[0]["params"] == {"alpha": "0.01", "l1_ratio": "0.5"} and ordered[0]["experiment"] == "diabetes"
    assert ordered[0]["metrics"]["rmse"] < ordered[2]["metrics"]["rmse"]
    best = json.loads(ok("runs", "list", "-e", "diabetes", "--filter", "params.alpha = '0.1'", "--json"))
    assert [r["run_id"] for r in best] == [journey[0.1]]
    both = ok("runs", "list")  # every experiment: an EXPERIMENT column
    assert "EXPERIMENT" in both.splitlines()[0] and "baseline" in both and "other" in both

    assert fails(2, "runs", "list", "-e", "diabetis").endswith("experiments: ['diabetes', 'other']")
    assert "metrics.rmse <" in fails(2, "runs", "list", "--filter", "metrics.rmse <")


def test_runs_show(journey):
    run_id = journey[0.01]
    text = ok("runs", "show", run_id)
    for line in (f"Run:          {run_id}", "Name:         en-0.01", "Status:       FINISHED", "  alpha     0.01",
                 f"  runs:/{run_id}/model  (sklearn, python_function)", "  models:/diabetes/1"):
        assert line in text.splitlines(), line
    shown = json.loads(ok("runs", "show", run_id, "--json"))
    assert shown["params"] == {"alpha": "0.01", "l1_ratio": "0.5"} and shown["experiment"] == "diabetes"
    assert [m["artifact_path"] for m in shown["logged_models"]] == ["model"]
    assert shown["registered_versions"] == [{"name": "diabetes", "version": 1, "aliases": []}]
    assert "No run with id 'nope'" in fails(2, "runs", "show", "nope")


def test_experiments_list(journey):
    text = ok("experiments", "list").splitlines()
    assert text[0].split() == ["ID", "NAME", "RUNS", "CREATED", "ARTIFACT", "LOCATION"]
    listed = {e["name"]: e for e in json.loads(ok("experiments", "list", "--json"))}
    assert listed["diabetes"]["runs"] == 3 and listed["other"]["runs"] == 1


def test_models_commands(journey, tmp_path, diabetes_model_dir):
    run_id = journey[0.1]
    assert ok("models", "register", f"runs:/{run_id}/model", "diabetes", "--tag", "stage=review") == \
        f"Registered diabetes version 4 (models:/diabetes/4) from runs:/{run_id}/model\n"
    registered = json.loads(ok("models", "register", str(diabetes_model_dir), "churn", "--description", "first",
                               "--json"))
    assert registered["version"] == 1 and registered["description"] == "first" and registered["run_id"] is None

    assert ok("models", "alias", "diabetes", "champion", "1") == "diabetes@champion -> version 1\n"
    assert ok("models", "alias", "diabetes", "champion", "4") == "diabetes@champion -> version 4 (was version 1)\n"
    moved = json.loads(ok("models", "alias", "diabetes", "challenger", "2", "--json"))
    assert moved == {"name": "diabetes", "alias": "challenger", "version": 2, "previous_version": None}

    table = ok("models", "list").splitlines()
    assert table[0].split() == ["NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"]
    assert table[2].split()[:2] == ["churn", "1"]
    assert table[3].split()[:4] == ["diabetes", "4", "challenger=2,", "champion=4"]
    shown = ok("models", "show", "diabetes")
    assert "Aliases:      challenger=2, champion=4" in shown
    version_rows = shown.split("\n\n")[1].splitlines()[2:]
    assert [r.split()[0] for r in version_rows] == ["4", "3", "2", "1"]
    assert version_rows[0].split()[3:5] == ["champion", run_id]
    detail = json.loads(ok("models", "show", "diabetes", "--json"))
    assert [v["version"] for v in detail["versions"]] == [1, 2, 3, 4]
    assert detail["versions"][3]["tags"] == {"stage": "review"} and detail["aliases"] == {"challenger": 2,
                                                                                         "champion": 4}

    assert ok("models", "delete-alias", "diabetes", "challenger") == \
        "Deleted alias diabetes@challenger (it named version 2)\n"
    assert json.loads(ok("models", "list", "--json"))[1]["aliases"] == {"champion": 4}


@pytest.mark.parametrize("code, args, message", [
    (3, ["models", "show", "diabetis"], "Error: No registered model named 'diabetis'; registered models: "
                                        "['diabetes']"),
    (3, ["models", "alias", "diabetes", "champion", "9"], "Error: Registered model 'diabetes' has no version 9; "
                                                          "its versions: [1, 2, 3]"),
    (3, ["models", "delete-alias", "diabetes", "champion"], "Error: Registered model 'diabetes' has no alias "
                                                            "'champion'; it has no aliases"),
    (2, ["models", "alias", "diabetes", "latest", "1"], "Error: The alias 'latest' is reserved"),
    (2, ["models", "alias", "diabetes", "champion", "one"], "Error: A model version is a positive integer, "
                                                            "got 'one'"),
    (3, ["models", "register", "/no/such/model", "diabetes"], "Error: Model directory '/no/such/model' does not "
                                                              "exist"),
    (3, ["models", "register", "models:/diabetes@champion", "copy"], "Error: Registered model 'diabetes' has no "
                                                                     "alias 'champion'"),
    (2, ["models", "register", "models:/diabetes/1", "a/b"], "Error: Invalid registered model name 'a/b'"),
    (2, ["models", "register", "models:/diabetes/1", "copy", "--tag", "novalue"], "Error: --tag takes KEY=VALUE, "
                                                                                  "got 'novalue'"),
])
def test_models_errors_are_one_line_with_their_exit_code(journey, code, args, message):
    assert fails(code, *args).startswith(message)


def test_the_journey_from_a_run_to_serving_by_alias(journey, serve, diabetes):
    """Issue 13's journey: pick the best run, alias its version 'champion', serve models:/diabetes@champion;
    moving the alias changes what a new server answers with, and a run's model serves as runs:/<id>/model."""
    X, _ = diabetes
    best = json.loads(ok("runs", "list", "-e", "diabetes", "--order-by", "metrics.rmse", "--json"))[0]
    shown = json.loads(ok("runs", "show", best["run_id"], "--json"))
    version = shown["registered_versions"][0]["version"]
    ok("models", "alias", "diabetes", "champion", str(version))
    body = json.dumps({"dataframe_split": json.loads(X.head(5).to_json(orient="split", index=False))})
    from modelpack.registry import get_model_version

    expected = modelpack.load_model(get_model_version("diabetes", version).path).predict(X.head(5))

    response = serve("models:/diabetes@champion").post(body)
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["predictions"], expected)

    by_run = serve(f"runs:/{best['run_id']}/model").post(body)
    assert by_run.status_code == 200 and np.allclose(by_run.json()["predictions"], expected)

    ok("models", "alias", "diabetes", "champion", "3")  # alpha 1.0: a worse model, different answers
    moved = serve("models:/diabetes@champion").post(body)
    assert moved.status_code == 200 and not np.allclose(moved.json()["predictions"], expected)
