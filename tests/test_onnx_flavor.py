"""The onnx flavor: MLflow's layout and fields, predictions like MLflow's onnxruntime wrapper (one input fed the
frame, several fed per column, dicts of arrays), multi-input and multi-output graphs, skl2onnx-converted
scikit-learn models, the float-rows path, serving, and both MLflow directions (slow: MLflow 3.17's virtualenv).

Models are built at test time: small graphs with ``onnx.helper`` and scikit-learn estimators converted by skl2onnx.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

import modelpack
from modelpack.errors import FlavorError, InvalidInputError, ModelLoadError
from modelpack.float_rows import FloatRows

onnx = pytest.importorskip("onnx", reason="onnx is in the 'test' extra")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'test' extra")
skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is in the 'test' extra")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402  # after the skips

from modelpack.flavors import onnx as onnx_flavor  # noqa: E402

FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tensor(name: str, shape: list, elem: int = FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _split_body(frame: pd.DataFrame) -> str:
    return json.dumps({"dataframe_split": {"columns": [str(c) for c in frame.columns],
                                           "data": frame.to_numpy().tolist()}})


def _same_model(loaded, original) -> bool:
    """Equal models; onnx marks tensors it read from external data with an explicit DEFAULT location."""
    loaded = onnx.ModelProto.FromString(loaded.SerializeToString())
    for tensor in loaded.graph.initializer:
        if tensor.data_location == TensorProto.DEFAULT:
            tensor.ClearField("data_location")
    return loaded == original


def _ort_run(proto, feeds: dict) -> list:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.fixture(scope="module")
def data(diabetes):
    X, y = diabetes
    return X, y, (y > y.median()).astype(int)


@pytest.fixture(scope="module")
def models(data):
    """ONNX models: scikit-learn ones converted by skl2onnx, and graphs built with onnx.helper."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y, binary = data
    x32 = X.to_numpy(np.float32)
    ridge = Ridge(alpha=0.1).fit(X.to_numpy(), y)
    logreg = LogisticRegression(max_iter=1000).fit(X.to_numpy(), binary)
    mixed = _mixed_frame(X)
    pipeline = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["bmi", "bp"]), ("cat", OneHotEncoder(), ["group"])]),
        LogisticRegression(max_iter=1000),
    ).fit(mixed, binary)
    rng = np.random.default_rng(0)
    return {
        # one float input [N, 10]; one output 'variable' [N, 1]
        "regressor": skl2onnx.to_onnx(ridge, x32[:1]),
        # outputs 'label' [N] and 'probabilities' [N, 2]
        "classifier": skl2onnx.to_onnx(logreg, x32[:1], options={"zipmap": False}),
        # outputs 'output_label' [N] and 'output_probability', a sequence of maps (skl2onnx's default ZipMap)
        "classifier_zipmap": skl2onnx.to_onnx(logreg, x32[:1]),
        # one input per column, each [N, 1]: 'bmi' and 'bp' double, 'group' string
        "pipeline": skl2onnx.to_onnx(pipeline, mixed.head(1), options={"zipmap": False}),
        # two 1-D inputs, two 1-D outputs
        "multi_io": _model([helper.make_node("Add", ["a", "b"], ["total"]),
                            helper.make_node("Mul", ["a", "b"], ["product"])],
                           [_tensor("a", [None]), _tensor("b", [None])],
                           [_tensor("total", [None]), _tensor("product", [None])]),
        # two 2-D inputs; outputs [N, 3] and [N]
        "tensors": _model([helper.make_node("Mul", ["x", "scale"], ["scaled"]),
                           helper.make_node("ReduceSum", ["scaled", "axes"], ["row_sum"], keepdims=0)],
                          [_tensor("x", [None, 3]), _tensor("scale", [None, 1])],
                          [_tensor("scaled", [None, 3]), _tensor("row_sum", [None])],
                          [numpy_helper.from_array(np.array([1], np.int64), "axes")]),
        # 10 -> 64 -> 1 with ReLU: 2.5 KB of weights, stored as external data by default
        "mlp": _model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                       helper.make_node("MatMul", ["r", "w2"], ["y"])],
                      [_tensor("x", [None, 10])], [_tensor("y", [None, 1])],
                      [numpy_helper.from_array(rng.normal(size=(10, 64)).astype(np.float32), "w1"),
                       numpy_helper.from_array(rng.normal(size=(64, 1)).astype(np.float32), "w2")]),
    }


def _mixed_frame(X: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"bmi": X["bmi"], "bp": X["bp"],
                         "group": np.where(X["age"] > 0, "older", np.where(X["sex"] > 0, "a", "b"))})


def _ab_frame(n: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})


# -- saving: MLflow's layout and fields --------------------------------------------------------------------------

def test_mlmodel_has_mlflows_fields_and_loader(tmp_path, data, models):
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m", input_example=X.head(3))
    mlmodel = _mlmodel(tmp_path / "m")
    assert mlmodel["flavors"]["onnx"] == {
        "onnx_version": onnx.__version__, "data": "model.onnx", "providers": ["CUDAExecutionProvider",
                                                                              "CPUExecutionProvider"],
        "onnx_session_options": None, "code": None,
    }
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.onnx" and pyfunc["data"] == "model.onnx"
    assert _same_model(onnx.load(str(tmp_path / "m" / "model.onnx")), models["regressor"])
    requirements = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert f"onnx=={onnx.__version__}" in requirements and f"onnxruntime=={ort.__version__}" in requirements


@pytest.mark.parametrize("kind", ["regressor", "classifier", "pipeline", "multi_io", "tensors", "mlp"])
def test_native_round_trip(tmp_path, models, kind):
    onnx_flavor.save_model(models[kind], tmp_path / "m")
    native = onnx_flavor.load_model(tmp_path / "m")
    assert isinstance(native, onnx.ModelProto)
    assert _same_model(native, models[kind])  # with its external data read back in


def test_external_data_as_mlflow_writes_it_and_the_callers_model_is_untouched(tmp_path, data, models):
    X = data[0]
    proto = models["mlp"]
    before = proto.SerializeToString()
    onnx_flavor.save_model(proto, tmp_path / "ext")
    onnx_flavor.save_model(proto, tmp_path / "one", save_as_external_data=False)
    assert proto.SerializeToString() == before
    ext_files = sorted(p.name for p in (tmp_path / "ext").iterdir() if p.suffix == ".data")
    assert len(ext_files) == 1  # the 2.5 KB weight matrix (onnx's threshold is 1 KB); the 256 B one stays inline
    assert (tmp_path / "ext" / "model.onnx").stat().st_size < 1024 < (tmp_path / "ext" / ext_files[0]).stat().st_size
    assert not [p for p in (tmp_path / "one").iterdir() if p.suffix == ".data"]
    x = X.head(7).to_numpy(np.float32)
    expected = _ort_run(proto, {"x": x})[0].reshape(-1)
    for name in ("ext", "one"):
        prediction = modelpack.load_model(tmp_path / name).predict(pd.DataFrame(x))
        np.testing.assert_array_equal(prediction["y"].to_numpy(), expected)


def test_bytes_and_file_paths_are_saved_with_the_flavor_named(tmp_path, data, models):
    X = data[0]
    proto = models["regressor"]
    onnx.save_model(proto, str(tmp_path / "given.onnx"))
    onnx_flavor.save_model(proto.SerializeToString(), tmp_path / "from_bytes")
    modelpack.save_model(tmp_path / "given.onnx", tmp_path / "from_path", flavor="onnx")
    for name in ("from_bytes", "from_path"):
        assert _same_model(onnx_flavor.load_model(tmp_path / name), proto)
    frame = X.head(5)
    np.testing.assert_array_equal(modelpack.load_model(tmp_path / "from_path").predict(frame)["variable"],
                                  modelpack.load_model(tmp_path / "from_bytes").predict(frame)["variable"])
    with pytest.raises(FlavorError, match="No flavor can save an object of type builtins.bytes"):
        modelpack.save_model(proto.SerializeToString(), tmp_path / "unnamed")  # bytes are not claimed
    with pytest.raises(FlavorError, match="does not exist"):
        onnx_flavor.save_model(tmp_path / "nope.onnx", tmp_path / "missing")
    with pytest.raises(FlavorError, match="Cannot read an ONNX model from bytes"):
        onnx_flavor.save_model(b"not a model", tmp_path / "garbage")
    with pytest.raises(FlavorError, match="got list"):
        onnx_flavor.save_model([1, 2], tmp_path / "list")
    assert not any((tmp_path / n).exists() for n in ("unnamed", "missing", "garbage", "list"))


def test_an_invalid_graph_is_refused_at_save(tmp_path):
    broken = _model([helper.make_node("Add", ["a", "missing"], ["y"])], [_tensor("a", [None])], [_tensor("y", [None])])
    with pytest.raises(FlavorError, match=r"not a valid ONNX model \(onnx.checker\): ValidationError: .*'missing'"):
        onnx_flavor.save_model(broken, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_session_options_and_providers_are_recorded_and_applied(tmp_path, models):
    options = {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "sequential",
               "graph_optimization_level": 1, "enable_mem_pattern": False,
               "extra_session_config": {"session.intra_op.allow_spinning": "0"}}
    onnx_flavor.save_model(models["regressor"], tmp_path / "m", onnx_session_options=options,
                           onnx_execution_providers=["CPUExecutionProvider"])
    conf = _mlmodel(tmp_path / "m")["flavors"]["onnx"]
    assert conf["onnx_session_options"] == options and conf["providers"] == ["CPUExecutionProvider"]
    session = modelpack.load_model(tmp_path / "m").unwrap_python_model().session
    applied = session.get_session_options()
    assert applied.intra_op_num_threads == 1 and applied.inter_op_num_threads == 1
    assert applied.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert applied.enable_mem_pattern is False
    assert applied.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("options, message", [
    ({"no_such_option": 1}, "not an onnxruntime SessionOptions attribute"),
    ({"execution_mode": "fast"}, "must be one of \\['sequential', 'parallel'\\]"),
    ({"graph_optimization_level": 5}, "must be one of \\[0, 1, 2, 99\\]"),
    ({"intra_op_num_threads": -1}, "whole number >= 0"),
    ({"extra_session_config": "x"}, "must be a dict of config keys"),
    ("threads=1", "must be a dict"),
])
def test_bad_session_options_are_refused(tmp_path, models, options, message):
    with pytest.raises(FlavorError, match=message):
        onnx_flavor.save_model(models["regressor"], tmp_path / "m", onnx_session_options=options)
    assert not (tmp_path / "m").exists()


def test_bad_providers_are_refused(tmp_path, models):
    with pytest.raises(FlavorError, match="neither a name nor a \\(name, options\\) pair"):
        onnx_flavor.save_model(models["regressor"], tmp_path / "m", onnx_execution_providers=[1])
    cpu_options = {"arena_extend_strategy": "kSameAsRequested"}
    onnx_flavor.save_model(models["regressor"], tmp_path / "m",
                           onnx_execution_providers=[("CPUExecutionProvider", cpu_options)])
    assert _mlmodel(tmp_path / "m")["flavors"]["onnx"]["providers"] == [["CPUExecutionProvider", cpu_options]]
    session = modelpack.load_model(tmp_path / "m").unwrap_python_model().session
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_intra_op_threads_follow_omp_num_threads_unless_recorded(tmp_path, models, monkeypatch):
    """The server sets OMP_NUM_THREADS to each worker's share of the cores: onnxruntime's pool follows it."""
    onnx_flavor.save_model(models["regressor"], tmp_path / "free")
    onnx_flavor.save_model(models["regressor"], tmp_path / "fixed", onnx_session_options={"intra_op_num_threads": 2})

    def threads(name: str) -> int:
        return modelpack.load_model(tmp_path / name).unwrap_python_model().session.get_session_options() \
            .intra_op_num_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads("free") == 1 and threads("fixed") == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads("free") == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads("free") == 0  # onnxruntime's own default


# -- predictions like MLflow's wrapper ---------------------------------------------------------------------------

def test_single_input_is_fed_the_frame_and_answers_a_frame(tmp_path, data, models):
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m")
    model = modelpack.load_model(tmp_path / "m")
    prediction = model.predict(X)
    expected = _ort_run(models["regressor"], {"X": X.to_numpy(np.float32)})[0]
    assert isinstance(prediction, pd.DataFrame) and list(prediction.columns) == ["variable"]
    np.testing.assert_array_equal(prediction["variable"].to_numpy(), expected.reshape(-1))
    from_array = model.predict(X.to_numpy())  # an array answers a dict of the outputs as they are
    assert list(from_array) == ["variable"] and from_array["variable"].shape == (len(X), 1)
    np.testing.assert_array_equal(from_array["variable"], expected)


def test_several_inputs_are_fed_one_column_each(tmp_path, models):
    frame = _ab_frame()
    onnx_flavor.save_model(models["multi_io"], tmp_path / "m")
    prediction = modelpack.load_model(tmp_path / "m").predict(frame[["b", "a"]])  # by name, not position
    a, b = frame["a"].to_numpy(np.float32), frame["b"].to_numpy(np.float32)
    assert list(prediction.columns) == ["total", "product"]
    np.testing.assert_array_equal(prediction["total"].to_numpy(), a + b)
    np.testing.assert_array_equal(prediction["product"].to_numpy(), a * b)
    with pytest.raises(InvalidInputError, match=r"no column \['b'\]"):
        modelpack.load_model(tmp_path / "m").predict(frame[["a"]])


def test_dict_of_tensors_answers_a_dict(tmp_path, models):
    onnx_flavor.save_model(models["tensors"], tmp_path / "m")
    model = modelpack.load_model(tmp_path / "m")
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    scale = np.array([[1.0], [2.0], [0.5], [-1.0]])
    prediction = model.predict({"x": x, "scale": scale})  # float64 is cast to the graph's float32
    assert list(prediction) == ["scaled", "row_sum"]
    np.testing.assert_array_equal(prediction["scaled"], (x * scale).astype(np.float32))
    np.testing.assert_array_equal(prediction["row_sum"], (x * scale).sum(axis=1).astype(np.float32))
    with pytest.raises(InvalidInputError, match=r"takes the inputs \['x', 'scale'\]; received \['x'\]"):
        model.predict({"x": x})
    with pytest.raises(InvalidInputError, match="A single array feeds only a model with one input"):
        model.predict(x)
    with pytest.raises(InvalidInputError, match="refused the input: Got invalid dimensions for input: x"):
        model.predict({"x": x[:, :2], "scale": scale})


def test_classifier_labels_and_probabilities(tmp_path, data, models):
    """Outputs of different lengths: MLflow's wrapper fails on a DataFrame; modelpack answers the dict."""
    X, _, binary = data
    onnx_flavor.save_model(models["classifier"], tmp_path / "m")
    model = modelpack.load_model(tmp_path / "m")
    label, probabilities = _ort_run(models["classifier"], {"X": X.to_numpy(np.float32)})
    for given in (X, X.to_numpy()):
        prediction = model.predict(given)
        assert list(prediction) == ["label", "probabilities"]
        np.testing.assert_array_equal(prediction["label"], label)
        np.testing.assert_array_equal(prediction["probabilities"], probabilities)
    assert (prediction["label"] == binary.to_numpy()).mean() > 0.7  # a classifier, not noise


def test_zipmap_classifier_answers_a_frame_of_labels_and_maps(tmp_path, data, models):
    X = data[0]
    onnx_flavor.save_model(models["classifier_zipmap"], tmp_path / "m")
    prediction = modelpack.load_model(tmp_path / "m").predict(X.head(4))
    assert list(prediction.columns) == ["output_label", "output_probability"]
    first = prediction["output_probability"].iloc[0]
    assert set(first) == {0, 1} and first[0] + first[1] == pytest.approx(1, abs=1e-6)


def test_skl2onnx_pipeline_with_one_input_per_column(tmp_path, data, models):
    """skl2onnx gives each column an input of shape [N, 1] (MLflow's wrapper feeds [N] and fails); text columns
    of pandas' string dtype are fed as str."""
    X, _, binary = data
    mixed = _mixed_frame(X)
    onnx_flavor.save_model(models["pipeline"], tmp_path / "m", input_example=mixed.head(3))
    model = modelpack.load_model(tmp_path / "m")
    prediction = model.predict(mixed)
    feeds = {"bmi": mixed[["bmi"]].to_numpy(), "bp": mixed[["bp"]].to_numpy(),
             "group": mixed[["group"]].to_numpy(dtype=object)}
    label, probabilities = _ort_run(models["pipeline"], feeds)
    np.testing.assert_array_equal(prediction["label"], label)
    np.testing.assert_array_equal(prediction["probabilities"], probabilities)
    assert (label == binary.to_numpy()).mean() > 0.6
    assert [(s.name, s.type) for s in model.signature.inputs.inputs] == [
        ("bmi", "double"), ("bp", "double"), ("group", "string")]


def test_wrong_input_types_are_the_callers_mistake(tmp_path, data, models):
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m")  # no signature: onnxruntime checks the input
    model = modelpack.load_model(tmp_path / "m")
    with pytest.raises(InvalidInputError, match="Got invalid dimensions for input: X"):
        model.predict(X.iloc[:, :4])
    with pytest.raises(InvalidInputError, match="Unexpected input data type"):
        model.predict(pd.DataFrame({"a": ["x", "y"]}))
    np.testing.assert_array_equal(model.predict(X.head(3).astype(int))["variable"],  # whole numbers: cast
                                  model.predict(X.head(3).astype(int).astype(float))["variable"])


# -- signature inference and the float-rows path -----------------------------------------------------------------

def test_signature_inferred_from_a_frame_example(tmp_path, data, models):
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m", input_example=X.head(5))
    model = modelpack.load_model(tmp_path / "m")
    assert model.signature.inputs.input_names == list(X.columns)
    assert {s.type for s in model.signature.inputs.inputs} == {"double"}
    assert [(s.name, s.type) for s in model.signature.outputs.inputs] == [("variable", "float")]
    assert model.float_rows_columns == list(X.columns)


def test_signature_inferred_from_a_dict_of_arrays_example(tmp_path, models):
    example = {"a": np.array([0.5, 1.5, -2.0]), "b": np.array([1.0, 2.0, 3.0])}
    onnx_flavor.save_model(models["multi_io"], tmp_path / "m", input_example=example)
    model = modelpack.load_model(tmp_path / "m")
    assert [(s.name, s.type) for s in model.signature.inputs.inputs] == [("a", "double"), ("b", "double")]
    assert [(s.name, s.type) for s in model.signature.outputs.inputs] == [("total", "float"), ("product", "float")]
    prediction = model.predict(example)
    np.testing.assert_array_equal(prediction["total"].to_numpy(), np.float32([1.5, 3.5, 1.0]))


def test_signature_of_named_tensors(tmp_path, models):
    """A dict of 2-D arrays gives a tensor signature (passed here: the core writes examples of columns only)."""
    example = {"x": np.ones((2, 3), np.float32), "scale": np.ones((2, 1), np.float32)}
    onnx_flavor.save_model(models["tensors"], tmp_path / "probe")
    signature = modelpack.infer_signature(example, modelpack.load_model(tmp_path / "probe").predict(example))
    onnx_flavor.save_model(models["tensors"], tmp_path / "m", signature=signature)
    model = modelpack.load_model(tmp_path / "m")
    assert model.signature.inputs.is_tensor and model.signature.inputs.input_names == ["x", "scale"]
    assert [s.shape for s in model.signature.outputs.inputs] == [(-1, 3), (-1,)]
    with pytest.raises(InvalidInputError, match=r"Shape of input 'scale' \(2, 3\) does not match"):
        model.predict({"x": np.ones((2, 3), np.float32), "scale": np.ones((2, 3), np.float32)})


@pytest.mark.parametrize("kind", ["regressor", "classifier", "mlp"])
def test_float_rows_path_is_taken_and_matches_the_frame_path(tmp_path, data, models, kind):
    X = data[0]
    onnx_flavor.save_model(models[kind], tmp_path / "m", input_example=X.head(3))
    model = modelpack.load_model(tmp_path / "m")
    assert model.float_rows_columns == list(X.columns)
    impl = model.unwrap_python_model()
    rows = FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns))
    frame_calls: list[int] = []
    real_predict = impl.predict
    impl.predict = lambda *a, **kw: frame_calls.append(1) or real_predict(*a, **kw)
    fast = model.predict(rows)
    assert frame_calls == []  # the float64 block went straight to onnxruntime
    slow = model.predict(rows.to_frame())
    assert frame_calls == [1]
    if isinstance(slow, pd.DataFrame):
        pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    else:
        assert list(fast) == list(slow)
        for name in slow:
            np.testing.assert_array_equal(fast[name], slow[name])


def test_float_rows_of_several_inputs_take_the_frame_path(tmp_path, models):
    frame = _ab_frame()
    onnx_flavor.save_model(models["multi_io"], tmp_path / "m", input_example=frame.head(3))
    model = modelpack.load_model(tmp_path / "m")
    rows = FloatRows(np.asfortranarray(frame.to_numpy()), ["a", "b"])
    pd.testing.assert_frame_equal(model.predict(rows), model.predict(frame), check_exact=True)


# -- loading errors, MLflow's hook -------------------------------------------------------------------------------

def test_missing_or_corrupt_model_file_is_a_clear_load_error(tmp_path, models):
    onnx_flavor.save_model(models["regressor"], tmp_path / "m")
    model_file = tmp_path / "m" / "model.onnx"
    model_file.write_bytes(b"\x08\x07garbage, not a protobuf")
    with pytest.raises(ModelLoadError, match=r"onnxruntime cannot load '.*model\.onnx'"):
        modelpack.load_model(tmp_path / "m")
    with pytest.raises(ModelLoadError, match=r"onnx cannot load '.*model\.onnx'"):
        onnx_flavor.load_model(tmp_path / "m")
    model_file.unlink()
    for load in (modelpack.load_model, onnx_flavor.load_model):
        with pytest.raises(ModelLoadError, match=r"ONNX model file '.*model\.onnx' is missing"):
            load(tmp_path / "m")


def test_reads_mlmodel_fields_as_mlflow_does(tmp_path, data, models):
    """A hand-written MLflow-style section: no providers field, a lone provider name, an unknown provider."""
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m")
    mlmodel = _mlmodel(tmp_path / "m")
    expected = modelpack.load_model(tmp_path / "m").predict(X)
    for providers in (None, "CPUExecutionProvider", ["NoSuchExecutionProvider"]):
        if providers is None:
            mlmodel["flavors"]["onnx"].pop("providers", None)
        else:
            mlmodel["flavors"]["onnx"]["providers"] = providers
        (tmp_path / "m" / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        pd.testing.assert_frame_equal(modelpack.load_model(tmp_path / "m").predict(X), expected)


def test_mlflow_loader_hook(tmp_path, data, models):
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m")
    impl = onnx_flavor._load_pyfunc(str(tmp_path / "m" / "model.onnx"))
    np.testing.assert_array_equal(impl.predict(X)["variable"].to_numpy(),
                                  _ort_run(models["regressor"], {"X": X.to_numpy(np.float32)})[0].reshape(-1))


# -- serving -----------------------------------------------------------------------------------------------------

def _records_to_columns(records: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in records]) for key in records[0]}


def test_served_frame_predictions_equal_in_process(tmp_path, serve, data, models):
    X = data[0]
    onnx_flavor.save_model(models["regressor"], tmp_path / "m", input_example=X.head(3))
    expected = modelpack.load_model(tmp_path / "m").predict(X.head(50))
    server = serve(tmp_path / "m", "-w", "1")
    for body, content_type in ((_split_body(X.head(50)), "application/json"),  # the float-rows path
                               (X.head(50).to_csv(index=False), "text/csv")):
        response = server.post(body, content_type)
        assert response.status_code == 200, response.text
        served = _records_to_columns(response.json()["predictions"])
        np.testing.assert_allclose(served["variable"], expected["variable"], rtol=1e-6)
    response = server.post(_split_body(X.head(2).iloc[:, :4]))
    assert response.status_code == 400 and "missing required input columns" in response.json()["message"]


def test_served_tensors_and_classifier_outputs(tmp_path, serve, data, models):
    X = data[0]
    onnx_flavor.save_model(models["classifier"], tmp_path / "clf", input_example=X.head(3))
    expected = modelpack.load_model(tmp_path / "clf").predict(X.head(20))
    response = serve(tmp_path / "clf", "-w", "1").post(_split_body(X.head(20)))
    assert response.status_code == 200, response.text
    served = response.json()["predictions"]
    assert served["label"] == expected["label"].tolist()
    np.testing.assert_allclose(served["probabilities"], expected["probabilities"], rtol=1e-6)

    onnx_flavor.save_model(models["tensors"], tmp_path / "tensors")
    server = serve(tmp_path / "tensors", "-w", "1")
    response = server.post(json.dumps({"inputs": {"x": [[1, 2, 3], [4, 5, 6]], "scale": [[2], [0.5]]}}))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == {"scaled": [[2, 4, 6], [2, 2.5, 3]], "row_sum": [12, 7.5]}
    response = server.post(json.dumps({"inputs": {"x": [[1, 2], [4, 5]], "scale": [[2], [0.5]]}}))
    assert response.status_code == 400, response.text
    assert "Got invalid dimensions for input: x" in response.json()["message"]


@pytest.mark.parametrize("workers", ["1", "4"])
def test_requests_right_after_ping_answer_and_workers_exit_cleanly(tmp_path, serve, data, models, workers):
    """Importing onnxruntime may start a thread that a forked worker would lack (it aborts or hangs at exit):
    wherever the master counted threads that outlive a fork it loads the model in each worker, and either way
    8 requests sent the moment /ping is 200 all answer and every worker exits cleanly."""
    X = data[0]
    onnx_flavor.save_model(models["mlp"], tmp_path / "m", input_example=X.head(3))
    rows = X.sample(40, random_state=0)
    expected = modelpack.load_model(tmp_path / "m").predict(rows)["y"].to_numpy()
    server = serve(tmp_path / "m", "-w", workers)  # returns at the first /ping 200
    body = _split_body(rows)

    def post(_):
        return requests.post(f"{server.url}/invocations", data=body, timeout=20,
                             headers={"Content-Type": "application/json"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    for response in answers:
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(_records_to_columns(response.json()["predictions"])["y"], expected, rtol=1e-6)
    assert server.stop(timeout=15) == 0
    log = server.log()
    # Where the model loads is decided by counting threads at run time: with -w 4 each session gets one
    # intra-op thread (no pool), and on some machines importing onnxruntime starts none either (seen in CI).
    assert "model loaded in each worker" in log or "model loaded before fork" in log, log
    if "model loaded before fork" in log:
        assert "restarting to load it in each worker" not in log, log
    assert "Worker exiting" in log and "Traceback" not in log, log
    assert "SIGABRT" not in log and "terminate called" not in log, log


# -- MLflow 3.17, both directions (slow) -------------------------------------------------------------------------

MLFLOW_SAVE = r'''
import mlflow.onnx, onnx
out = sys.argv[1]
for name, with_example in (("regressor", True), ("multi_io", True), ("classifier", False)):
    example = read_frame(f"{out}/{name}.example.json") if with_example else None
    mlflow.onnx.save_model(onnx.load(f"{out}/{name}.onnx"), f"{out}/{name}", input_example=example)
'''

MLFLOW_PREDICT_ARRAY = r'''
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
save_predictions(model.predict(np.load(sys.argv[2])), sys.argv[3])
'''


@pytest.fixture(scope="module")
def mlflow_py() -> Path:
    from mlflow_env import mlflow_python
    from mlflow_interop import pins

    return mlflow_python(pins("onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def mlflow_dirs(mlflow_py, tmp_path_factory, data, models) -> Path:
    """Directories written by mlflow.onnx.save_model (the models built here, passed as .onnx files)."""
    from mlflow_interop import run_mlflow_script, write_frame

    X = data[0]
    out = tmp_path_factory.mktemp("mlflow_onnx")
    for name in ("regressor", "multi_io", "classifier"):
        onnx.save_model(models[name], str(out / f"{name}.onnx"))
    write_frame(X.head(3), out / "regressor.example.json")
    write_frame(_ab_frame(3), out / "multi_io.example.json")
    run_mlflow_script(mlflow_py, MLFLOW_SAVE, str(out), cwd=out)
    return out


def _mlflow_array_predict(python: Path, model_dir: Path, array: np.ndarray, tmp_path: Path) -> dict:
    from mlflow_interop import load_predictions, run_mlflow_script

    np.save(tmp_path / "rows.npy", array)
    run_mlflow_script(python, MLFLOW_PREDICT_ARRAY, str(model_dir), str(tmp_path / "rows.npy"),
                      str(tmp_path / "pred.npz"), cwd=tmp_path)
    return load_predictions(tmp_path / "pred.npz")


def _frames(data) -> dict[str, pd.DataFrame]:
    return {"regressor": data[0].sample(30, random_state=1), "multi_io": _ab_frame(30)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["regressor", "multi_io"])
def test_modelpack_loads_and_serves_mlflow_dirs(serve, mlflow_py, mlflow_dirs, data, name, tmp_path):
    from mlflow_interop import mlflow_predict

    model_dir = mlflow_dirs / name
    assert _mlmodel(model_dir)["flavors"]["python_function"]["loader_module"] == "mlflow.onnx"
    frame = _frames(data)[name]
    theirs = mlflow_predict(mlflow_py, model_dir, frame, tmp_path)
    ours = modelpack.load_model(model_dir).predict(frame)
    assert list(ours.columns) == list(theirs)
    for column in theirs:
        np.testing.assert_array_equal(ours[column].to_numpy(), theirs[column])
    response = serve(model_dir).post(_split_body(frame))
    assert response.status_code == 200, response.text
    served = _records_to_columns(response.json()["predictions"])
    for column in theirs:
        np.testing.assert_allclose(served[column], theirs[column], rtol=1e-6)


@pytest.mark.slow
def test_modelpack_reads_mlflows_classifier_dir(mlflow_py, mlflow_dirs, data, tmp_path):
    rows = data[0].head(25).to_numpy()
    theirs = _mlflow_array_predict(mlflow_py, mlflow_dirs / "classifier", rows, tmp_path)
    ours = modelpack.load_model(mlflow_dirs / "classifier").predict(rows)
    assert list(ours) == list(theirs) == ["label", "probabilities"]
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])


@pytest.fixture
def uvicorn_on_path(mlflow_py, tmp_path, monkeypatch):
    """``mlflow models serve`` runs ``uvicorn`` from PATH; the virtualenv's own script names the build directory
    in its shebang (mlflow_env renames it into place), so a shim runs ``python -m uvicorn`` instead."""
    shim = tmp_path / "shim-bin" / "uvicorn"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{mlflow_py}" -m uvicorn "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["regressor", "multi_io"])
def test_mlflow_loads_and_serves_modelpack_dirs_without_modelpack(tmp_path, mlflow_py, uvicorn_on_path, data,
                                                                  models, name):
    from mlflow_interop import mlflow_predict, mlflow_serve

    frame = _frames(data)[name]
    model_dir = tmp_path / "m"
    onnx_flavor.save_model(models[name], model_dir, input_example=frame.head(3))
    ours = modelpack.load_model(model_dir).predict(frame)
    theirs = mlflow_predict(mlflow_py, model_dir, frame, tmp_path)
    assert list(theirs) == list(ours.columns)
    for column in theirs:
        np.testing.assert_array_equal(theirs[column], ours[column].to_numpy())
    server = mlflow_serve(mlflow_py, model_dir, tmp_path)
    try:
        response = server.post(_split_body(frame))
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    served = _records_to_columns(response.json()["predictions"])
    for column in theirs:
        np.testing.assert_allclose(served[column], ours[column].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_mlflow_reads_modelpacks_classifier_dir(tmp_path, mlflow_py, data, models):
    rows = data[0].head(25).to_numpy()
    onnx_flavor.save_model(models["classifier"], tmp_path / "m")
    theirs = _mlflow_array_predict(mlflow_py, tmp_path / "m", rows, tmp_path)
    ours = modelpack.load_model(tmp_path / "m").predict(rows)
    for name in ("label", "probabilities"):
        np.testing.assert_array_equal(theirs[name], ours[name])


def test_import_is_light():
    """Importing the flavor module (as discovery does) imports neither onnx nor onnxruntime."""
    import subprocess
    import sys

    code = ("import sys, modelpack.flavors.onnx; from modelpack.flavor_registry import get_registry; "
            "assert 'onnx' in get_registry().names; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.stdout.strip() == "False False", out.stderr
