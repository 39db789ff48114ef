"""modelpack.spark_udf with real pyspark in local[2] mode (modelpack/spark/).

One Spark session serves the module (starting one takes about 10 s). The data is the diabetes frame
repeated to 100,334 rows, made in Spark; predictions are compared with ``load_model().predict`` on the same
rows collected back. Models whose classes live in this module are pickled by value: the Python workers
Spark starts cannot import the test module. The environment test (slow) rebuilds a model's environment
with a package this interpreter does not have, so a right answer proves the model ran there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.errors import InvalidInputError

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("no Java runtime for Spark (.ci/run installs one)", allow_module_level=True)

from pyspark.sql import functions as F  # noqa: E402

#: pyspark's own warnings about this pandas (3.x), from its conversions on the driver
pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

REPEAT = 227  # 442 diabetes rows x 227 = 100,334 rows


@contextlib.contextmanager
def by_value() -> Iterator[None]:
    """Pickle this module's classes by value while saving (the Python workers cannot import it)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n    {text}")


@pytest.fixture(scope="module")
def spark_home(tmp_path_factory) -> Path:
    """The environment cache the executors use (MODELPACK_HOME, set when the session starts)."""
    return tmp_path_factory.mktemp("modelpack-home")


@pytest.fixture(scope="module")
def spark(spark_home):
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as patch:  # read when the session starts
        patch.setenv("PYSPARK_PYTHON", sys.executable)  # the Python workers run this interpreter
        session = (SparkSession.builder.master("local[2]").appName("modelpack-tests")
                   .config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "2")
                   .config("spark.executorEnv.MODELPACK_HOME", str(spark_home))
                   .config("spark.executorEnv.PYTHONWARNINGS", "ignore::FutureWarning")
                   .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def frame(spark, diabetes):
    """The diabetes features repeated to 100,334 rows, in 4 partitions."""
    X, _ = diabetes
    return spark.createDataFrame(X).crossJoin(spark.range(REPEAT).select()).repartition(4).cache()


@pytest.fixture(scope="module")
def small(spark, diabetes):
    """The diabetes features repeated to 5,304 rows, in 2 partitions (Spark evaluates a UDF above a limit on
    whole partitions, so the tests of argument forms and result types use a small frame, not a limit)."""
    X, _ = diabetes
    return spark.createDataFrame(X).crossJoin(spark.range(12).select()).repartition(2).cache()


def test_predictions_equal_load_model_predict_on_100k_rows(spark, frame, diabetes, diabetes_model_dir, capsys):
    X, _ = diabetes
    predict = modelpack.spark_udf(spark, diabetes_model_dir)  # result_type double, env_manager local
    started = time.monotonic()
    out = frame.withColumn("prediction", predict(*frame.columns)).toPandas()
    seconds = time.monotonic() - started
    assert len(out) == len(X) * REPEAT == 100_334
    expected = modelpack.load_model(diabetes_model_dir).predict(out[list(X.columns)])
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=1e-12, atol=0)
    assert out["prediction"].dtype == np.float64
    report(capsys, f"100,334 rows scored and collected in {seconds:.1f}s")


def test_predict_without_columns_by_name_by_position_and_struct_agree(spark, small, diabetes, diabetes_model_dir):
    X, _ = diabetes
    predict = modelpack.spark_udf(spark, f"file://{diabetes_model_dir}")
    shuffled = list(reversed(X.columns))  # names match by name: order does not matter
    out = small.select(
        predict().alias("none"),
        predict(*shuffled).alias("names"),
        predict(*[F.col(c) for c in X.columns]).alias("position"),
        predict(F.struct(*shuffled)).alias("struct"),
        *X.columns,
    ).toPandas()
    expected = modelpack.load_model(diabetes_model_dir).predict(out[list(X.columns)])
    for column in ("none", "names", "position", "struct"):
        np.testing.assert_allclose(out[column].to_numpy(), expected, rtol=1e-12, err_msg=column)


def test_the_udf_registers_for_sql(spark, small, diabetes, diabetes_model_dir):
    X, _ = diabetes
    spark.udf.register("diabetes_progression", modelpack.spark_udf(spark, diabetes_model_dir).udf)
    small.createOrReplaceTempView("patients")
    out = spark.sql(f"SELECT *, diabetes_progression({', '.join(X.columns)}) AS p FROM patients").toPandas()
    np.testing.assert_allclose(out["p"], modelpack.load_model(diabetes_model_dir).predict(out[list(X.columns)]),
                               rtol=1e-12)


def test_extra_columns_are_ignored_when_passed_by_name(spark, small, diabetes, diabetes_model_dir):
    X, _ = diabetes
    predict = modelpack.spark_udf(spark, diabetes_model_dir)
    wide = small.withColumn("id", F.monotonically_increasing_id()).withColumn("note", F.lit("x"))
    out = wide.select("*", predict(*wide.columns).alias("p")).toPandas()
    np.testing.assert_allclose(out["p"], modelpack.load_model(diabetes_model_dir).predict(out[list(X.columns)]),
                               rtol=1e-12)


class CountingModel(modelpack.PythonModel):
    """Records each load (load_context) and each batch it predicts, one line per event, in ``log_dir``."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def load_context(self, context):
        with open(os.path.join(self.log_dir, "loads"), "a") as f:
            f.write(f"{os.getpid()}\n")

    def predict(self, context, model_input, params=None):
        with open(os.path.join(self.log_dir, "batches"), "a") as f:
            f.write(f"{os.getpid()} {len(model_input)}\n")
        return model_input["age"].to_numpy() * 2 + 1


def test_the_model_loads_once_per_python_worker_not_per_batch(spark, frame, diabetes, tmp_path):
    X, _ = diabetes
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    with by_value():
        modelpack.save_model(CountingModel(str(log_dir)), tmp_path / "counting", input_example=X.head(3))
    for name in ("loads", "batches"):  # saving predicted on the example
        (log_dir / name).unlink(missing_ok=True)
    predict = modelpack.spark_udf(spark, tmp_path / "counting")
    for _ in range(2):  # two jobs: the second finds the model loaded in the workers the first used
        total = frame.select(F.sum(predict()).alias("s")).first()["s"]
        assert total == pytest.approx(100_334, abs=1e-6)  # the features are centred: age sums to 0
    loads = (log_dir / "loads").read_text().split()
    batches = [line.split() for line in (log_dir / "batches").read_text().splitlines()]
    assert sum(int(rows) for _, rows in batches) == 2 * 100_334
    assert len(batches) >= 16  # 4 partitions x 2 jobs, each batch at most 10,000 rows
    assert len(loads) == len(set(loads)), f"a worker loaded the model twice: {loads}"
    assert set(loads) == {pid for pid, _ in batches}  # every worker that predicted loaded it once
    assert len(loads) <= 4


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, diabetes) -> Path:
    """A logistic regression (progression above the median) saved to answer predict_proba."""
    from sklearn.linear_model import LogisticRegression

    X, y = diabetes
    model = LogisticRegression(max_iter=1000).fit(X, y > y.median())
    path = tmp_path_factory.mktemp("models") / "classifier"
    modelpack.save_model(model, path, input_example=X.head(3), predict_fn="predict_proba")
    return path


def test_array_and_struct_result_types_from_predict_proba(spark, small, diabetes, classifier_dir):
    X, _ = diabetes
    as_array = modelpack.spark_udf(spark, classifier_dir, result_type="array<double>")
    as_struct = modelpack.spark_udf(spark, classifier_dir, result_type="below double, above double")
    as_float = modelpack.spark_udf(spark, classifier_dir, result_type="array<float>")
    out = small.select(as_array().alias("a"), as_struct().alias("s"), as_float().alias("f"), *X.columns).toPandas()
    expected = modelpack.load_model(classifier_dir).predict(out[list(X.columns)])
    assert expected.shape == (5304, 2)
    np.testing.assert_allclose(np.stack(out["a"].to_numpy()), expected, rtol=1e-12)
    np.testing.assert_allclose([[r["below"], r["above"]] for r in out["s"]], expected, rtol=1e-12)
    np.testing.assert_allclose(np.stack(out["f"].to_numpy()), expected.astype(np.float32), rtol=1e-6)


class LabelScoreModel(modelpack.PythonModel):
    """Returns a DataFrame with a string column and a number column."""

    def predict(self, context, model_input, params=None):
        score = model_input["bmi"].to_numpy() * 10
        return pd.DataFrame({"label": np.where(score > 0, "high", "low"), "score": score,
                             "rank": (score > 0).astype(np.int64)})


def test_several_output_columns_as_struct_string_and_leftmost_number(spark, small, diabetes, tmp_path):
    X, _ = diabetes
    with by_value():
        modelpack.save_model(LabelScoreModel(), tmp_path / "label_score", input_example=X.head(3))
    uri = tmp_path / "label_score"
    as_struct = modelpack.spark_udf(spark, uri, result_type="score double, label string, rank int")
    as_double = modelpack.spark_udf(spark, uri)  # the leftmost numeric column: score
    as_string = modelpack.spark_udf(spark, uri, result_type="string")  # the leftmost column: label
    as_long = modelpack.spark_udf(spark, uri, result_type="long")  # the leftmost integer column: rank
    out = small.select(as_struct().alias("s"), as_double().alias("d"), as_string().alias("t"), as_long().alias("n"),
                       "bmi").toPandas()
    score = out["bmi"].to_numpy() * 10
    assert [r["score"] for r in out["s"]] == pytest.approx(score.tolist())
    assert [r["label"] for r in out["s"]] == out["t"].tolist() == np.where(score > 0, "high", "low").tolist()
    assert [r["rank"] for r in out["s"]] == out["n"].tolist() == (score > 0).astype(int).tolist()
    np.testing.assert_allclose(out["d"], score)

    missing = modelpack.spark_udf(spark, uri, result_type="score double, grade string")
    with pytest.raises(Exception, match="asks for field 'grade'.*columns are \\['label', 'score', 'rank'\\]"):
        small.select(missing()).collect()


def test_a_bad_column_name_fails_with_the_server_message(spark, small, diabetes, diabetes_model_dir, serve):
    X, _ = diabetes
    renamed = small.withColumnRenamed("bmi", "BMI")
    body = {"dataframe_split": json.loads(X.head(2).rename(columns={"bmi": "BMI"}).to_json(orient="split"))}
    body["dataframe_split"].pop("index", None)
    reply = serve(diabetes_model_dir).post(json.dumps(body))
    assert reply.status_code == 400
    message = reply.json()["message"]
    assert "missing required input columns ['bmi']" in message

    predict = modelpack.spark_udf(spark, diabetes_model_dir)
    with pytest.raises(InvalidInputError) as on_driver:  # names are checked before any job
        predict(*renamed.columns)
    assert str(on_driver.value) == message
    with pytest.raises(Exception) as in_task:  # a struct's field names are known only in the task
        renamed.select(predict(F.struct(*renamed.columns))).collect()
    assert message in str(in_task.value)
    assert "InvalidInputError" in str(in_task.value)


def test_a_value_that_does_not_fit_fails_the_task_with_the_server_message(spark, diabetes_model_dir, serve):
    columns = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    row = [0.1] * 9 + ["high"]
    reply = serve(diabetes_model_dir).post(json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}))
    assert reply.status_code == 400 and "'s6'" in reply.json()["message"]
    predict = modelpack.spark_udf(spark, diabetes_model_dir)
    with pytest.raises(Exception) as in_task:
        spark.createDataFrame([tuple(row)], columns).select(predict()).collect()
    assert f"InvalidInputError: {reply.json()['message']}" in str(in_task.value)


def test_arguments_are_checked_on_the_driver(spark, diabetes_model_dir, custom_model_dir):
    with pytest.raises(InvalidInputError, match="is not a Spark type"):
        modelpack.spark_udf(spark, diabetes_model_dir, result_type="doubel")
    with pytest.raises(InvalidInputError, match="cannot return map<string,double>; result_type must be double"):
        modelpack.spark_udf(spark, diabetes_model_dir, result_type="map<string, double>")
    with pytest.raises(InvalidInputError, match="env_manager must be one of"):
        modelpack.spark_udf(spark, diabetes_model_dir, env_manager="conda")
    with pytest.raises(modelpack.ModelpackError, match="does not exist"):
        modelpack.spark_udf(spark, diabetes_model_dir.parent / "nope")
    with pytest.raises(InvalidInputError, match="accepts no parameters"):
        modelpack.spark_udf(spark, diabetes_model_dir, params={"alpha": 1})
    no_signature = modelpack.spark_udf(spark, custom_model_dir)
    with pytest.raises(InvalidInputError, match="names none \\(it has no signature\\)"):
        no_signature()
    predict = modelpack.spark_udf(spark, diabetes_model_dir)
    with pytest.raises(InvalidInputError, match="has 10 input column\\(s\\).*got 11 columns"):
        predict(*[F.col("c") for _ in range(11)])


def test_a_model_without_signature_gets_columns_by_name_and_params(spark, custom_model_dir):
    # custom_model_dir doubles column 'x' times param 'scale'; it has no signature, so params pass as given
    predict = modelpack.spark_udf(spark, custom_model_dir, result_type="long", params={"scale": 3})
    df = spark.range(0, 50).select(F.col("id").alias("other"), (F.col("id") + 1).alias("x"))
    out = df.select("x", predict("other", "x").alias("p")).toPandas()
    assert (out["p"] == out["x"] * 6).all()


def test_a_registered_model_uri(spark, small, diabetes, elasticnet, tmp_path, monkeypatch):
    X, _ = diabetes
    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(tmp_path / "mlruns"))
    modelpack.set_experiment("diabetes")
    with modelpack.start_run():
        modelpack.log_model(elasticnet, "model", registered_model_name="diabetes", input_example=X.head(3))
    modelpack.set_alias("diabetes", "champion", 1)
    predict = modelpack.spark_udf(spark, "models:/diabetes@champion", result_type="double", env_manager="local")
    out = small.withColumn("prediction", predict(*small.columns)).toPandas()
    np.testing.assert_allclose(out["prediction"], elasticnet.predict(out[list(X.columns)]), rtol=1e-12)


def test_result_conversion_rules(spark):
    """modelpack/spark/results.py on model outputs of each shape (the Spark runs above cover the common ones)."""
    from pyspark.sql.types import _parse_datatype_string

    from modelpack.spark.results import output_columns, plan_of, to_spark

    def convert(output, ddl, rows=3):
        return to_spark(output_columns(output, rows), rows, plan_of(_parse_datatype_string(ddl)))

    assert convert(np.array([1.0, np.nan, 3.0]), "long").tolist() == [1, None, 3]  # NaN: a null of the column
    with pytest.raises(InvalidInputError, match="column 0 does not fit int .*: 3000000000 is out of range"):
        convert(np.array([1, 2, 3_000_000_000]), "int")
    with pytest.raises(InvalidInputError, match="column 0 does not fit long .*: 1.5 is not a whole number"):
        convert(np.array([1.0, 1.5, 2.0]), "long")
    with pytest.raises(InvalidInputError, match="no column of double values .*'ok' \\(bool\\)"):
        convert(pd.DataFrame({"ok": [True, False, True], "name": ["a", "b", "c"]}), "double")
    assert convert(np.array([1, 2, 3]), "string").tolist() == ["1", "2", "3"]
    assert convert(pd.Series([True, False, True]), "boolean").tolist() == [True, False, True]
    nested = convert(np.arange(12.0).reshape(3, 2, 2), "array<double>")  # one 2x2 array per row, flattened
    assert [list(v) for v in nested] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    text = convert(pd.Series(["a", None, "c"], dtype="str"), "string")  # a missing string stays missing
    assert text[[0, 2]].tolist() == ["a", "c"] and pd.isna(text[1])
    lists = convert(pd.DataFrame({"tokens": [["a"], ["b", "c"], []]}), "array<string>")
    assert [list(v) for v in lists] == [["a"], ["b", "c"], []]
    with pytest.raises(InvalidInputError, match="returned 2 value\\(s\\) in output column 0 for 3 input row"):
        convert(np.array([1.0, 2.0]), "double")


class EchoModel(modelpack.PythonModel):
    """Returns its input as it received it, with the column of strings upper-cased."""

    def predict(self, context, model_input, params=None):
        if (model_input["x"] < 0).any():
            os._exit(7)  # a crash of the scoring process, not an exception
        return model_input.assign(s=model_input["s"].str.upper(), scale=(params or {}).get("scale", 1))


def test_the_scoring_process_pipes_batches_and_errors(tmp_path, diabetes, diabetes_model_dir):
    """modelpack/spark/worker.py without Spark: the child the env managers use, run with this interpreter."""
    from modelpack.errors import ModelpackError
    from modelpack.spark.worker import ScoringProcess

    X, _ = diabetes
    scoring = ScoringProcess(sys.executable, diabetes_model_dir)
    try:
        [(label, values)] = scoring.predict(X, None)
        assert label == 0
        np.testing.assert_allclose(values, modelpack.load_model(diabetes_model_dir).predict(X), rtol=1e-12)
        with pytest.raises(InvalidInputError) as error:  # the same class and message as in this process
            scoring.predict(X.drop(columns=["bmi"]), None)
        with pytest.raises(InvalidInputError) as here:
            modelpack.load_model(diabetes_model_dir).predict(X.drop(columns=["bmi"]))
        assert str(error.value) == str(here.value)
        assert scoring.alive()  # an error answers the batch; the process goes on
    finally:
        scoring.close()
    assert scoring.proc.returncode == 0  # closing stdin ends it

    with by_value():
        modelpack.save_model(EchoModel(), tmp_path / "echo")
    scoring = ScoringProcess(sys.executable, tmp_path / "echo")
    frame = pd.DataFrame({"x": np.arange(5, dtype=np.int32), "s": ["a", "b", None, "d", "é"],
                          "when": pd.date_range("2024-01-01", periods=5), "flag": [True, False] * 2 + [True]})
    output = dict(scoring.predict(frame, {"scale": 3}))
    assert output["x"].dtype == np.int32 and output["x"].tolist() == [0, 1, 2, 3, 4]
    assert output["s"][[0, 1, 3, 4]].tolist() == ["A", "B", "D", "É"] and pd.isna(output["s"][2])
    assert output["when"].dtype.kind == "M" and (output["when"] == frame["when"].to_numpy()).all()
    assert output["flag"].tolist() == frame["flag"].tolist()
    assert output["scale"].tolist() == [3] * 5
    with pytest.raises(ModelpackError, match="exited with code 7"):
        scoring.predict(frame.assign(x=-1), None)
    assert not scoring.alive()


class RomanModel(modelpack.PythonModel):
    def predict(self, context, model_input, params=None):
        import roman  # only in the rebuilt environment

        return pd.DataFrame({"roman": [roman.toRoman(int(v)) for v in model_input["x"]], "python": sys.prefix})


def to_roman(n: int) -> str:
    out = ""
    for value, letters in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
                           (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        count, n = divmod(n, value)
        out += letters * count
    return out


@pytest.mark.slow
def test_env_manager_runs_the_model_in_its_rebuilt_environment(spark, spark_home, tmp_path, monkeypatch, capsys):
    assert importlib.util.find_spec("roman") is None, "roman must not be installed in the test interpreter"
    monkeypatch.setenv("MODELPACK_HOME", str(spark_home))  # the driver builds where the executors look
    with by_value():
        modelpack.save_model(RomanModel(), tmp_path / "roman", extra_pip_requirements=["roman==4.2"],
                             signature=modelpack.infer_signature(pd.DataFrame({"x": [1, 2]})))
    started = time.monotonic()
    predict = modelpack.spark_udf(spark, tmp_path / "roman", result_type="roman string, python string",
                                  env_manager="virtualenv")
    built = time.monotonic() - started
    (key,) = [p.name for p in (spark_home / "envs").iterdir()]
    df = spark.range(1, 3001, numPartitions=2).withColumnRenamed("id", "x")
    started = time.monotonic()
    out = df.select("x", predict("x").alias("r")).toPandas()
    scored = time.monotonic() - started
    assert [r["roman"] for r in out["r"]] == [to_roman(int(x)) for x in out["x"]]
    environments = {Path(r["python"]).resolve() for r in out["r"]}
    assert environments == {(spark_home / "envs" / key).resolve()}  # the rebuilt environment, not this one
    assert [p.name for p in (spark_home / "envs").iterdir()] == [key]  # the executors built nothing more

    with pytest.raises(Exception) as bad:  # the child's schema error comes back as the same message
        df.select(predict(F.struct(F.col("x").alias("y")))).collect()
    assert "InvalidInputError: Model is missing required input columns ['x']" in str(bad.value)
    report(capsys, f"environment built in {built:.0f}s; 3,000 rows scored in it in {scored:.1f}s")
