"""scikit-learn autolog (modelpack/autolog/): runs with params, training metrics and a servable model from ``fit``
alone; meta-estimators log once; post-training metrics; ``disable`` restores the exact originals; a failure of
autolog's own logging never breaks training. Real scikit-learn, a real SQLite store in tmp_path, real servers."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import sklearn.metrics as skm
from mlflow_interop import split_body
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import VotingRegressor
from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import modelpack
from modelpack.autolog import AutologError, patching
from modelpack.autolog import sklearn as sklearn_autolog
from modelpack.model_uri import resolve_model_uri
from modelpack.tracking.artifacts import artifact_dir, list_artifacts
from modelpack.tracking.models import logged_models_of
from modelpack.tracking.store import Store, _forget_stores

AUTOLOG_LOGGER = "modelpack.autolog"


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A fresh SQLite store in tmp_path as the process's tracking URI; afterwards autolog is off (whatever the
    test enabled) and active runs are ended."""
    from modelpack.tracking import fluent, uri

    _forget_stores()
    monkeypatch.setattr(uri, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_experiment_name", None)
    modelpack.set_tracking_uri(tmp_path / "mlruns")
    yield tmp_path / "mlruns"
    modelpack.autolog(disable=True)
    while fluent._active:
        fluent.end_run("KILLED")
    _forget_stores()


@pytest.fixture
def autologged(tracking):
    modelpack.sklearn.autolog()
    yield tracking
    modelpack.autolog(disable=True)


@pytest.fixture(scope="module")
def split(diabetes):
    X, y = diabetes
    return train_test_split(X, y, random_state=0)


def runs() -> list:
    """Every run of the current experiment, oldest first."""
    frame = modelpack.search_runs()
    return sorted((modelpack.get_run(r) for r in frame["run_id"]), key=lambda r: r.info.start_time)


def only_run():
    found = runs()
    assert len(found) == 1, [r.info.run_name for r in found]
    return found[0]


def artifacts(run) -> list[str]:
    return list_artifacts(artifact_dir(run.info.artifact_uri))


def model_of(run):
    return modelpack.load_model(resolve_model_uri(f"runs:/{run.info.run_id}/model"))


def test_fit_logs_params_training_metrics_and_a_model_and_ends_the_run(autologged, diabetes):
    X, y = diabetes
    model = ElasticNet(alpha=0.01, l1_ratio=0.5)
    assert model.fit(X, y) is model
    assert modelpack.active_run() is None  # the run fit started is ended
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in model.get_params(deep=True).items()}
    assert run.data.tags["modelpack.autologging"] == "sklearn"
    assert run.data.tags["estimator_name"] == "ElasticNet"
    assert run.data.tags["estimator_class"] == "sklearn.linear_model._coordinate_descent.ElasticNet"
    predicted = model.predict(X)
    mse = float(np.mean((y - predicted) ** 2))
    metrics = run.data.metrics
    assert set(metrics) == {"training_mse", "training_rmse", "training_mae", "training_r2"}
    assert metrics["training_mse"] == pytest.approx(mse)
    assert metrics["training_rmse"] == pytest.approx(math.sqrt(mse))
    assert metrics["training_mae"] == pytest.approx(float(np.mean(np.abs(y - predicted))))
    assert metrics["training_r2"] == pytest.approx(1 - mse / float(np.var(y)))
    np.testing.assert_allclose(model_of(run).predict(X), predicted)
    model_dir = resolve_model_uri(f"runs:/{run.info.run_id}/model")
    signature_inputs = json.loads(modelpack.ModelDescriptor.read(model_dir).signature["inputs"])
    assert [c["name"] for c in signature_inputs] == list(X.columns)
    example = json.loads((model_dir / "input_example.json").read_text())
    assert example["columns"] == list(X.columns) and len(example["data"]) == 5


def test_classifier_metrics_with_and_without_predict_proba(autologged):
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    metrics = only_run().data.metrics
    predicted, proba = clf.predict(X), clf.predict_proba(X)
    expected = {
        "training_accuracy": skm.accuracy_score(y, predicted),
        "training_precision": skm.precision_score(y, predicted, average="weighted"),
        "training_recall": skm.recall_score(y, predicted, average="weighted"),
        "training_f1": skm.f1_score(y, predicted, average="weighted"),
        "training_log_loss": skm.log_loss(y, proba),
        "training_roc_auc": skm.roc_auc_score(y, proba, multi_class="ovo", average="weighted"),
    }
    assert metrics == pytest.approx(expected)

    Xb, yb = load_breast_cancer(return_X_y=True)
    SVC().fit(Xb[:200], yb[:200])  # no predict_proba: no log loss, no ROC AUC
    assert set(runs()[-1].data.metrics) == {"training_accuracy", "training_precision", "training_recall",
                                            "training_f1"}


def test_fit_inside_an_active_run_logs_into_it_and_leaves_it_running(autologged, diabetes):
    X, y = diabetes
    with modelpack.start_run(run_name="mine") as run:
        ElasticNet(alpha=0.1).fit(X, y)
        assert modelpack.active_run() is run
        assert modelpack.get_run(run.info.run_id).info.status == "RUNNING"
    logged = only_run()
    assert logged.info.run_name == "mine" and logged.info.status == "FINISHED"
    assert logged.data.params["alpha"] == "0.1" and "training_r2" in logged.data.metrics
    assert "modelpack.autologging" not in logged.data.tags  # autolog did not start it
    assert "model/MLmodel" in artifacts(logged)


def test_a_second_model_in_one_run_keeps_the_first_ones_values_and_warns(autologged, diabetes, caplog):
    X, y = diabetes
    with modelpack.start_run():
        first = ElasticNet(alpha=0.1).fit(X, y)
        with caplog.at_level(logging.WARNING, logger=AUTOLOG_LOGGER):
            ElasticNet(alpha=0.5).fit(X, y)
    run = only_run()
    assert run.data.params["alpha"] == "0.1"  # params are immutable
    np.testing.assert_allclose(model_of(run).predict(X), first.predict(X))
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == AUTOLOG_LOGGER)
    assert "already has params ['alpha']" in messages and "already has a model at 'model'" in messages


def test_a_pipeline_logs_one_run_with_its_steps_params_and_the_whole_pipeline(autologged):
    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5, max_iter=500))]).fit(X, y)
    run = only_run()
    assert run.data.params["clf__C"] == "0.5" and run.data.params["scale__with_mean"] == "True"
    assert run.data.tags["estimator_name"] == "Pipeline"
    assert run.data.metrics["training_accuracy"] == pytest.approx(pipe.score(X, y))
    np.testing.assert_array_equal(model_of(run).predict(X), pipe.predict(X))


def test_odd_param_names_and_long_values_are_made_loggable(autologged):
    from sklearn.preprocessing import FunctionTransformer

    X, y = load_iris(return_X_y=True)
    def passthrough(X, note=""):
        return X

    pad = FunctionTransformer(passthrough, kw_args={"note": "x" * 7000})
    Pipeline([("scale (std)", StandardScaler()), ("pad", pad), ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    params = only_run().data.params
    assert params["scale _std___with_mean"] == "True"  # '(' and ')' cannot be in a key
    assert len(params["pad__kw_args"]) == 6000 and params["pad__kw_args"].endswith("...")


def test_grid_search_logs_once_with_best_params_and_cv_results(autologged, split):
    X_train, _, y_train, _ = split
    search = GridSearchCV(ElasticNet(), {"alpha": [0.01, 0.1, 1.0], "l1_ratio": [0.2, 0.8]}, cv=3)
    search.fit(X_train, y_train)  # 18 nested fits and a refit: none starts a run
    run = only_run()
    assert run.data.params["best_alpha"] == str(search.best_params_["alpha"])
    assert run.data.params["best_l1_ratio"] == str(search.best_params_["l1_ratio"])
    assert run.data.params["cv"] == "3" and run.data.params["estimator"] == "ElasticNet()"
    assert "estimator__alpha" not in run.data.params  # the untuned seed's values would mislead
    assert run.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert "training_r2" in run.data.metrics
    table = (artifact_dir(run.info.artifact_uri) / "cv_results.csv").read_text().splitlines()
    header = table[0].split(",")
    assert {"mean_test_score", "param_alpha", "rank_test_score"} <= set(header) and len(table) == 1 + 6
    np.testing.assert_allclose(model_of(run).predict(X_train), search.predict(X_train))


def test_nested_fits_of_meta_estimators_and_cross_validation_make_no_runs(autologged, split):
    X_train, _, y_train, _ = split
    VotingRegressor([("lr", LinearRegression()), ("en", ElasticNet())]).fit(X_train, y_train)
    assert [r.data.tags["estimator_name"] for r in runs()] == ["VotingRegressor"]
    # cross_val_score was imported before autolog() was enabled: its fold fits still log nothing
    scores = cross_val_score(ElasticNet(), X_train, y_train, cv=3)
    assert len(scores) == 3 and len(runs()) == 1


def test_fit_predict_and_fit_transform_log_once(autologged, diabetes):
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    X, _ = diabetes
    labels = KMeans(n_clusters=3, n_init=2, random_state=0).fit_predict(X)  # calls fit inside
    PCA(n_components=2).fit_transform(X)
    found = runs()
    assert [r.data.tags["estimator_name"] for r in found] == ["KMeans", "PCA"]
    assert found[0].data.params["n_clusters"] == "3" and len(labels) == len(X)
    assert "model/MLmodel" in artifacts(found[0])
    assert not any(a.startswith("model/") for a in artifacts(found[1]))  # PCA has no predict: no model


def test_post_training_metrics_go_to_the_models_run(autologged, split):
    X_train, X_test, y_train, y_test = split
    model = ElasticNet(alpha=0.01).fit(X_train, y_train)
    run_id = only_run().info.run_id

    predictions = model.predict(X_test)
    mse = skm.mean_squared_error(y_test, predictions)
    score = model.score(X_test, y_test)
    r2_unnamed = skm.r2_score(y_test.iloc[:50], model.predict(X_test.iloc[:50]))
    r2_other = skm.r2_score(y_test.iloc[50:], model.predict(X_test.iloc[50:]))
    skm.mean_absolute_error(y_test, predictions + 0)  # derived from the prediction: not recognised
    for X_part in (X_test.iloc[:60], X_test.iloc[60:]):  # one name, two objects
        skm.max_error(y_test.loc[X_part.index], model.predict(X_part))

    metrics = modelpack.get_run(run_id).data.metrics
    assert metrics["mean_squared_error_X_test"] == pytest.approx(mse)
    assert metrics["ElasticNet_score_X_test"] == pytest.approx(score)
    assert metrics["r2_score_eval"] == pytest.approx(r2_unnamed)
    assert metrics["r2_score_eval-1"] == pytest.approx(r2_other)
    assert {"max_error_X_part", "max_error_X_part-1"} <= set(metrics)
    assert not any(k.startswith("mean_absolute_error") for k in metrics)
    assert len(runs()) == 1  # the metric calls started no run


def test_disable_restores_the_exact_original_methods_and_functions(tracking):
    import sklearn.model_selection
    from sklearn.utils import all_estimators

    classes = [cls for _, cls in all_estimators()]
    names = (*sklearn_autolog.FIT_METHODS, *sklearn_autolog.PREDICT_METHODS, "score")
    missing = object()
    before = {(cls, name): vars(cls).get(name, missing) for cls in classes for name in names}
    functions = {(module, name): vars(module)[name] for module in (skm, sklearn.model_selection)
                 for name in dir(module) if callable(vars(module).get(name))}

    modelpack.sklearn.autolog()
    wrapped = [(cls, name) for (cls, name), old in before.items() if vars(cls).get(name, missing) is not old]
    assert (ElasticNet, "fit") in wrapped and (Pipeline, "predict") in wrapped and (GridSearchCV, "fit") in wrapped
    assert (StandardScaler, "fit") not in wrapped  # plain data transformers start no run (as in MLflow)
    for cls in classes:  # every estimator all_estimators() lists, with its fit, is patched (but the exclusions)
        if hasattr(cls, "fit") and not sklearn_autolog._excluded(cls):
            assert (cls, "fit") in wrapped, cls
    assert skm.r2_score is not functions[(skm, "r2_score")]
    # scikit-learn still sees the same signatures and the same conditional methods
    assert list(inspect.signature(ElasticNet.fit).parameters) == ["self", "X", "y", "sample_weight", "check_input"]
    assert not hasattr(SVC(), "predict_proba") and hasattr(SVC(probability=True), "predict_proba")
    assert not hasattr(Pipeline([("m", ElasticNet())]), "predict_proba")

    modelpack.sklearn.autolog(disable=True)
    assert all(vars(cls).get(name, missing) is old for (cls, name), old in before.items())
    assert all(vars(module)[name] is old for (module, name), old in functions.items())
    assert not patching.finder_installed() and patching.patched("sklearn") == []
    assert ElasticNet.fit is ElasticNet.__dict__["fit"]


def test_a_store_that_cannot_be_written_warns_and_training_goes_on(tmp_path, tracking, diabetes, caplog):
    X, y = diabetes
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    modelpack.set_tracking_uri(blocker / "mlruns")  # mkdir fails: no store
    modelpack.sklearn.autolog()
    try:
        with caplog.at_level(logging.WARNING, logger=AUTOLOG_LOGGER):
            model = ElasticNet(alpha=0.01).fit(X, y)
    finally:
        modelpack.sklearn.autolog(disable=True)
    assert model.coef_.shape == (X.shape[1],)
    warnings = [r for r in caplog.records if r.name == AUTOLOG_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "training is unaffected" in warnings[0].getMessage()
    assert "ElasticNet.fit" in warnings[0].getMessage()


def test_an_unpicklable_model_warns_and_keeps_the_params_and_metrics(autologged, diabetes, caplog):
    X, y = diabetes
    model = ElasticNet(alpha=0.01)
    model.lock = threading.Lock()  # cloudpickle cannot pickle a lock
    with caplog.at_level(logging.WARNING, logger=AUTOLOG_LOGGER):
        assert model.fit(X, y) is model
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.01" and "training_rmse" in run.data.metrics
    assert logged_models_of(Store.open(), run.info.run_id) == []
    messages = [r.getMessage() for r in caplog.records if r.name == AUTOLOG_LOGGER]
    assert len(messages) == 1 and "log the model of ElasticNet" in messages[0] and "lock" in messages[0]


def test_the_users_own_error_propagates_unchanged_and_the_run_fails(autologged, diabetes):
    X, y = diabetes
    broken = X.copy()
    broken.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN") as raised:
        ElasticNet().fit(broken, y)
    assert raised.value.__traceback__ is not None
    run = only_run()
    assert run.info.status == "FAILED" and run.data.params["alpha"] == "1.0"
    assert modelpack.active_run() is None


def test_a_subclass_of_an_estimator_is_logged_under_its_own_name(autologged, split):
    X_train, _, y_train, _ = split

    class Shrunk(ElasticNet):
        def fit(self, X, y):  # the user's own fit around scikit-learn's: one run, the outer class
            return super().fit(X * 0.5, y)

    Shrunk(alpha=0.01).fit(X_train, y_train)
    run = only_run()
    assert run.data.tags["estimator_name"] == "Shrunk" and run.data.params["alpha"] == "0.01"


def test_autolog_options(autologged, split):
    X_train, X_test, y_train, y_test = split
    modelpack.sklearn.autolog(registered_model_name="diabetes")
    ElasticNet().fit(X_train, y_train)
    registered = only_run()
    assert modelpack.get_model_version("diabetes", 1).run_id == registered.info.run_id

    modelpack.sklearn.autolog(log_models=False, log_post_training_metrics=False, extra_tags={"team": "ml"})
    model = ElasticNet().fit(X_train, y_train)
    skm.r2_score(y_test, model.predict(X_test))
    run = runs()[-1]
    assert run.data.tags["team"] == "ml" and "training_r2" in run.data.metrics
    assert artifacts(run) == [] and not any(k.startswith("r2_score") for k in run.data.metrics)
    with pytest.raises(AutologError, match="extra_tags must be a mapping"):
        modelpack.sklearn.autolog(extra_tags=["team"])
    from modelpack.autolog.common import require

    with pytest.raises(AutologError, match=r"needs no-such-dist, which is not installed.*pip install no-such-dist"):
        require("no_such_module_xyz", "no-such-dist", "sklearn")


SCRIPT = textwrap.dedent("""
    import modelpack
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import ElasticNet

    modelpack.sklearn.autolog()
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    ElasticNet(alpha=0.01, l1_ratio=0.75).fit(X, y)
""")


def test_a_script_that_only_enables_autolog_gives_a_run_whose_model_serves(tmp_path, tracking, diabetes, serve):
    """The issue's journey: no logging code but ``modelpack.sklearn.autolog()``; the run's model served by
    ``runs:/<id>/model`` over HTTP."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    store = tmp_path / "mlruns"
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MODELPACK_TRACKING_URI": str(store)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "modelpack autolog" not in out.stderr  # nothing went wrong in autolog's own logging
    run = only_run()
    assert run.info.status == "FINISHED" and run.info.source_name == str(script.resolve())
    assert run.data.params["alpha"] == "0.01" and run.data.params["l1_ratio"] == "0.75"
    assert {"training_mse", "training_rmse", "training_mae", "training_r2"} <= set(run.data.metrics)
    model_dir = resolve_model_uri(f"runs:/{run.info.run_id}/model")
    X, y = diabetes
    expected = ElasticNet(alpha=0.01, l1_ratio=0.75).fit(X, y)  # autolog is not enabled in this process
    response = serve(model_dir).post(split_body(X.head(20)))
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected.predict(X.head(20)), rtol=1e-9)


def test_under_modelpack_run_the_projects_run_gets_the_training(tmp_path, tracking):
    """``modelpack run`` hands its run to the script: autolog logs into it and leaves it to end with the command,
    so the script's later logging lands there too."""
    project = tmp_path / "trainer"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT + "modelpack.log_metric('after_fit', 1.0)\n")
    out = subprocess.run([sys.executable, "-m", "modelpack.cli", "run", str(project), "-e", "train.py",
                          "--env-manager", "local"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MODELPACK_TRACKING_URI": str(tmp_path / "mlruns")})
    assert out.returncode == 0, out.stderr[-3000:]
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["modelpack.autologging"] == "sklearn"
    assert run.data.params["alpha"] == "0.01" and {"training_r2", "after_fit"} <= set(run.data.metrics)
    assert "model/MLmodel" in artifacts(run)


LAZY = textwrap.dedent("""
    import sys, modelpack
    modelpack.autolog()
    print(sorted({"sklearn", "xgboost", "lightgbm", "pandas", "numpy"} & set(sys.modules)))
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor  # a module first imported after autolog()
    X, y = load_diabetes(return_X_y=True)
    RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    runs = modelpack.search_runs()
    print(len(runs), runs["tags.estimator_name"].iloc[0], runs["params.n_estimators"].iloc[0])
""")


def test_autolog_imports_nothing_and_patches_modules_imported_later(tmp_path):
    out = subprocess.run([sys.executable, "-c", LAZY], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MODELPACK_TRACKING_URI": str(tmp_path / "mlruns")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["[]", "1 RandomForestRegressor 5"]


def test_public_names(tracking):
    assert callable(modelpack.autolog)
    assert modelpack.sklearn.autolog is sklearn_autolog.autolog
    assert modelpack.xgboost.__name__ == "modelpack.autolog.xgboost"
    assert modelpack.lightgbm.__name__ == "modelpack.autolog.lightgbm"
    assert {"autolog", "sklearn", "xgboost", "lightgbm"} <= set(dir(modelpack))
    import modelpack.autolog as package  # the package, callable as the function is

    package(disable=True)
