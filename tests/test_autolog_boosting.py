"""XGBoost and LightGBM autolog: ``train`` and the scikit-learn API's ``fit`` log params, per-iteration evaluation
metrics with their steps, feature importance and the model; ``disable`` restores the originals exactly; a
failure of autolog's own logging never breaks training. Real libraries, a real SQLite store in tmp_path."""

from __future__ import annotations

import json
import logging

import lightgbm as lgb
import numpy as np
import pytest
import sklearn.metrics as skm
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from test_autolog import AUTOLOG_LOGGER, artifacts, model_of, only_run, runs, tracking  # noqa: F401  (fixture)

import modelpack
from modelpack.autolog import patching
from modelpack.tracking.artifacts import artifact_dir
from modelpack.tracking.runs import metric_history
from modelpack.tracking.store import Store


@pytest.fixture
def autologged(tracking):  # noqa: F811  (the fixture imported above)
    modelpack.autolog()
    yield tracking
    modelpack.autolog(disable=True)


@pytest.fixture(scope="module")
def regression(diabetes):
    X, y = diabetes
    return train_test_split(X, y, random_state=0)


@pytest.fixture(scope="module")
def classification():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return train_test_split(X, y, random_state=0)


def history(run, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in metric_history(Store.open(), run.info.run_id, key)]


def importance(run, kind: str) -> dict:
    return json.loads((artifact_dir(run.info.artifact_uri) / f"feature_importance_{kind}.json").read_text())


# -- XGBoost ----------------------------------------------------------------------------------------------------


def test_xgboost_train_logs_params_metrics_per_iteration_importance_and_the_booster(autologged, regression):
    X_train, X_test, y_train, y_test = regression
    train, valid = xgb.DMatrix(X_train, label=y_train), xgb.DMatrix(X_test, label=y_test)
    recorded: dict = {}
    booster = xgb.train({"max_depth": 3, "eta": 0.3, "seed": 0}, train, num_boost_round=40,
                        evals=[(train, "train"), (valid, "valid")], early_stopping_rounds=3, evals_result=recorded,
                        verbose_eval=False)
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["modelpack.autologging"] == "xgboost"
    params = run.data.params
    assert params["max_depth"] == "3" and params["eta"] == "0.3" and params["num_boost_round"] == "40"
    assert params["early_stopping_rounds"] == "3" and "dtrain" not in params and "evals" not in params
    iterations = len(recorded["valid"]["rmse"])
    assert iterations < 40  # early stopping stopped it
    for data in ("train", "valid"):
        steps = history(run, f"{data}-rmse")
        assert [s for s, _ in steps[:iterations]] == list(range(iterations))
        assert [v for _, v in steps[:iterations]] == pytest.approx(recorded[data]["rmse"])
        assert steps[-1] == (iterations, pytest.approx(recorded[data]["rmse"][booster.best_iteration]))
    assert run.data.metrics["best_iteration"] == booster.best_iteration
    assert run.data.metrics["stopped_iteration"] == iterations - 1
    assert importance(run, "weight") == pytest.approx(booster.get_score(importance_type="weight"))
    loaded = model_of(run)
    np.testing.assert_allclose(loaded.predict(X_test), booster.predict(xgb.DMatrix(X_test)), rtol=1e-6)
    model_dir = artifact_dir(run.info.artifact_uri) / "model"
    assert json.loads((model_dir / "input_example.json").read_text())["columns"] == list(X_train.columns)


def test_xgboost_sklearn_api_fit_logs_eval_metrics_params_model_and_post_training_metrics(autologged, classification):
    X_train, X_test, y_train, y_test = classification
    model = xgb.XGBClassifier(n_estimators=12, max_depth=2, random_state=0)
    assert model.fit(X_train, y_train, eval_set=[(X_test, y_test)], verbose=False) is model
    run = only_run()  # XGBClassifier.fit calls train(): one run
    assert run.data.params["n_estimators"] == "12" and run.data.params["max_depth"] == "2"
    assert run.data.tags["estimator_name"] == "XGBClassifier"
    expected = model.evals_result()["validation_0"]["logloss"]
    assert history(run, "validation_0-logloss") == [(i, pytest.approx(v)) for i, v in enumerate(expected)]
    assert importance(run, "weight") == pytest.approx(model.get_booster().get_score(importance_type="weight"))
    np.testing.assert_array_equal(model_of(run).predict(X_test), model.predict(X_test))
    assert "model/input_example.json" in artifacts(run)

    accuracy = model.score(X_test, y_test)
    predicted = model.predict(X_test)
    f1 = skm.f1_score(y_test, predicted)
    metrics = modelpack.get_run(run.info.run_id).data.metrics
    assert metrics["XGBClassifier_score_X_test"] == pytest.approx(accuracy)
    assert metrics["f1_score_X_test"] == pytest.approx(f1)


@pytest.mark.usefixtures("tracking")
def test_xgboost_disable_restores_the_originals():
    import xgboost.sklearn

    targets = [(xgb, "train"), (xgboost.sklearn, "train"), (xgb.DMatrix, "__init__"), (xgb.XGBRegressor, "fit"),
               (xgb.XGBRegressor, "predict"), (xgb.XGBRegressor, "score"), (xgb.XGBClassifier, "predict_proba")]
    missing = object()
    before = [vars(owner).get(name, missing) for owner, name in targets]
    modelpack.xgboost.autolog()
    assert all(vars(owner).get(name, missing) is not old for (owner, name), old in zip(targets, before, strict=True))
    modelpack.xgboost.autolog(disable=True)
    assert all(vars(owner).get(name, missing) is old for (owner, name), old in zip(targets, before, strict=True))
    assert patching.patched("xgboost") == [] and patching.patched("sklearn-api") == []


def test_ctrl_c_during_training_ends_the_run_killed(autologged, regression):
    X_train, _, y_train, _ = regression

    class Interrupt(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if epoch == 2:
                raise KeyboardInterrupt
            return False

    train = xgb.DMatrix(X_train, label=y_train)
    with pytest.raises(KeyboardInterrupt):
        xgb.train({"max_depth": 2}, train, 10, evals=[(train, "train")], callbacks=[Interrupt()], verbose_eval=False)
    run = only_run()
    assert run.info.status == "KILLED" and modelpack.active_run() is None
    assert [step for step, _ in history(run, "train-rmse")] == [0, 1, 2]  # what was trained is logged


@pytest.mark.usefixtures("tracking")
def test_xgboost_training_survives_an_unwritable_store(tmp_path, regression, caplog):
    X_train, _, y_train, _ = regression
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    modelpack.set_tracking_uri(blocker / "mlruns")
    modelpack.xgboost.autolog()
    try:
        with caplog.at_level(logging.WARNING, logger=AUTOLOG_LOGGER):
            booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X_train, label=y_train), 5)
            model = xgb.XGBRegressor(n_estimators=5).fit(X_train, y_train)
    finally:
        modelpack.xgboost.autolog(disable=True)
    assert booster.num_boosted_rounds() == 5 and model.get_booster().num_boosted_rounds() == 5
    messages = [r.getMessage() for r in caplog.records if r.name == AUTOLOG_LOGGER]
    assert len(messages) == 2 and all("training is unaffected" in m for m in messages)


# -- LightGBM ---------------------------------------------------------------------------------------------------


def test_lightgbm_train_logs_params_metrics_per_iteration_importance_and_the_booster(autologged, regression):
    X_train, X_test, y_train, y_test = regression
    train = lgb.Dataset(X_train, label=y_train)
    valid = lgb.Dataset(X_test, label=y_test, reference=train)
    recorded: dict = {}
    booster = lgb.train({"objective": "regression", "learning_rate": 0.3, "verbose": -1, "seed": 0}, train,
                        num_boost_round=60, valid_sets=[valid], valid_names=["valid"],
                        callbacks=[lgb.early_stopping(3, verbose=False), lgb.record_evaluation(recorded)])
    run = only_run()
    assert run.data.tags["modelpack.autologging"] == "lightgbm"
    assert run.data.params["objective"] == "regression" and run.data.params["num_boost_round"] == "60"
    assert "train_set" not in run.data.params
    iterations = len(recorded["valid"]["l2"])
    assert 0 < booster.best_iteration < iterations < 60
    steps = history(run, "valid-l2")
    assert steps[:iterations] == [(i, pytest.approx(v)) for i, v in enumerate(recorded["valid"]["l2"])]
    assert steps[-1] == (iterations, pytest.approx(recorded["valid"]["l2"][booster.best_iteration - 1]))
    assert run.data.metrics["best_iteration"] == booster.best_iteration
    for kind in ("split", "gain"):
        values = booster.feature_importance(importance_type=kind).tolist()
        assert importance(run, kind) == pytest.approx(dict(zip(booster.feature_name(), values, strict=True)))
    np.testing.assert_allclose(model_of(run).predict(X_test), booster.predict(X_test), rtol=1e-6)
    assert "model/input_example.json" in artifacts(run)


def test_lightgbm_sklearn_api_fit_logs_eval_metrics_params_and_model(autologged, classification):
    X_train, X_test, y_train, y_test = classification
    model = lgb.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1, random_state=0)
    model.fit(X_train, y_train, eval_X=(X_test,), eval_y=(y_test,))
    run = only_run()
    assert run.data.params["n_estimators"] == "15" and run.data.params["num_leaves"] == "7"
    assert run.data.tags["estimator_name"] == "LGBMClassifier"
    expected = model.evals_result_["valid_0"]["binary_logloss"]
    assert history(run, "valid_0-binary_logloss") == [(i, pytest.approx(v)) for i, v in enumerate(expected)]
    assert set(json.loads((artifact_dir(run.info.artifact_uri) / "feature_importance_split.json").read_text())) \
        == set(model.booster_.feature_name())  # LightGBM's names: 'mean radius' becomes 'mean_radius'
    np.testing.assert_array_equal(model_of(run).predict(X_test), model.predict(X_test))
    assert model.score(X_test, y_test) == pytest.approx(
        modelpack.get_run(run.info.run_id).data.metrics["LGBMClassifier_score_X_test"])


@pytest.mark.usefixtures("tracking")
def test_lightgbm_disable_restores_the_originals():
    import lightgbm.sklearn

    targets = [(lgb, "train"), (lightgbm.sklearn, "train"), (lgb.Dataset, "__init__"), (lgb.LGBMRegressor, "fit"),
               (lgb.LGBMClassifier, "predict_proba"), (lgb.LGBMModel, "predict")]
    missing = object()
    before = [vars(owner).get(name, missing) for owner, name in targets]
    modelpack.lightgbm.autolog()
    assert all(vars(owner).get(name, missing) is not old for (owner, name), old in zip(targets, before, strict=True))
    modelpack.lightgbm.autolog(disable=True)
    assert all(vars(owner).get(name, missing) is old for (owner, name), old in zip(targets, before, strict=True))
    assert not patching.finder_installed()


def test_autolog_logs_each_library_once_in_a_pipeline(autologged, regression):
    """With every integration on, a pipeline around a boosting model is one scikit-learn run."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, _, y_train, _ = regression
    make_pipeline(StandardScaler(), lgb.LGBMRegressor(n_estimators=5, verbose=-1)).fit(X_train, y_train)
    make_pipeline(StandardScaler(), xgb.XGBRegressor(n_estimators=5)).fit(X_train, y_train)
    assert [r.data.tags["modelpack.autologging"] for r in runs()] == ["sklearn", "sklearn"]
    assert all("lgbmregressor__n_estimators" in r.data.params or "xgbregressor__n_estimators" in r.data.params
               for r in runs())
