"""The pytorch flavor: its four forms round trip, MLflow's MLmodel fields, the float-rows path, serving over HTTP,
and (slow) both MLflow directions with real MLflow 3.17."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

import modelpack
from modelpack.errors import InvalidInputError
from modelpack.float_rows import FloatRows

torch = pytest.importorskip("torch")

from modelpack.flavors import pytorch as pt_flavor  # noqa: E402  # after the skip

#: A module of network classes, imported by name (the state_dict form rebuilds its class that way).
NETS_SOURCE = textwrap.dedent('''
    import torch


    class MLP(torch.nn.Module):
        """Two layers with dropout: predictions differ between train and eval mode."""

        def __init__(self, n_in=10, hidden=16, dropout=0.2):
            super().__init__()
            self.hidden = torch.nn.Linear(n_in, hidden)
            self.dropout = torch.nn.Dropout(dropout)
            self.out = torch.nn.Linear(hidden, 1)

        def forward(self, x):
            return self.out(self.dropout(torch.relu(self.hidden(x))))


    class Scaled(MLP):
        def forward(self, x, scale: float = 1.0):
            return self.out(self.dropout(torch.relu(self.hidden(x)))) * scale  # TorchScript has no super()
''')
NETS_MODULE = "modelpack_test_torch_nets"
LOADERS = {"pickle": "mlflow.pytorch", "pt2": "mlflow.pytorch", "torchscript": "mlflow.pytorch",
           "state_dict": "modelpack.flavors.pytorch"}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """The module of NETS_SOURCE, importable in this process only (a server must get it from the model's code/)."""
    root = tmp_path_factory.mktemp("nets")
    (root / f"{NETS_MODULE}.py").write_text(NETS_SOURCE)
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(NETS_MODULE)
        yield module
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(NETS_MODULE, None)


def _local_mlp_class():
    """An MLP class defined in a function: cloudpickle stores it by value, so MLflow's side needs no module."""

    class LocalMLP(torch.nn.Module):
        def __init__(self, n_in=10, hidden=16):
            super().__init__()
            self.hidden = torch.nn.Linear(n_in, hidden)
            self.dropout = torch.nn.Dropout(0.2)
            self.out = torch.nn.Linear(hidden, 1)

        def forward(self, x):
            return self.out(self.dropout(torch.relu(self.hidden(x))))

    return LocalMLP


def _train(model, X, y, steps=40):
    """A few Adam steps on the diabetes data (targets scaled); left in train mode, as after a training loop."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    inputs = torch.tensor(X.to_numpy(), dtype=torch.float32)
    target = torch.tensor(y.to_numpy() / 100, dtype=torch.float32)[:, None]
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), target)
        loss.backward()
        optimizer.step()
    return model


def _expected(model, X, dtype=torch.float32):
    """The module's eval-mode prediction on the frame's values."""
    training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(np.asarray(X, dtype=float), dtype=dtype)).numpy()
    model.train(training)
    return out


@pytest.fixture(scope="module")
def mlp(nets, diabetes):
    X, y = diabetes
    torch.manual_seed(1)
    return _train(nets.MLP(), X, y)


@pytest.fixture(scope="module")
def local_mlp(diabetes):
    X, y = diabetes
    torch.manual_seed(2)
    return _train(_local_mlp_class()(), X, y)


def _options(fmt, nets):
    """Options saving ``mlp`` in ``fmt``: its module in code/ (a whole-module pickle names its class too)."""
    options: dict = {"code_paths": [nets.__file__]}
    if fmt == "state_dict":
        options["init_kwargs"] = {"n_in": 10, "hidden": 16, "dropout": 0.2}
    return options


FORMS = ["pickle", "pt2", "torchscript", "state_dict"]


@pytest.mark.parametrize("fmt", FORMS)
def test_round_trip(tmp_path, diabetes, nets, mlp, fmt):
    X = diabetes[0]
    descriptor = pt_flavor.save_model(mlp, tmp_path / "m", serialization_format=fmt, input_example=X.head(3),
                                      **_options(fmt, nets))
    assert set(descriptor.flavors) == {"pytorch", "python_function"}
    assert descriptor.flavors["python_function"]["loader_module"] == LOADERS[fmt]
    assert mlp.training  # saving did not change the user's module
    native = pt_flavor.load_model(tmp_path / "m")
    assert isinstance(native, torch.nn.Module)
    if fmt in ("pickle", "state_dict"):
        assert type(native) is nets.MLP and not native.training
    loaded = modelpack.load_model(tmp_path / "m")
    pred = loaded.predict(X)
    assert isinstance(pred, pd.DataFrame) and list(pred.columns) == [0] and pred.index.equals(X.index)
    assert pred[0].dtype == np.float32
    np.testing.assert_allclose(pred.to_numpy(), _expected(mlp, X), rtol=1e-5, atol=1e-6)  # eval mode: no dropout
    np.testing.assert_array_equal(loaded.predict(X).to_numpy(), pred.to_numpy())  # deterministic


def test_torchscript_traced_with_example_inputs(tmp_path, diabetes, mlp):
    X = diabetes[0]
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format="torchscript", example_inputs=X.head(5))
    native = pt_flavor.load_model(tmp_path / "m")
    assert isinstance(native, torch.jit.ScriptModule)
    np.testing.assert_allclose(modelpack.load_model(tmp_path / "m").predict(X).to_numpy(), _expected(mlp, X),
                               rtol=1e-5, atol=1e-6)


def test_default_form_is_what_the_object_is(tmp_path, diabetes, mlp):
    """A module: pickle; an ExportedProgram: pt2 (no example needed); a ScriptModule: torchscript."""
    X = diabetes[0]
    example = torch.tensor(X.head(4).to_numpy(), dtype=torch.float32)
    mlp.eval()
    try:
        program = torch.export.export(mlp, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        scripted = torch.jit.script(mlp)
    finally:
        mlp.train()
    for name, obj, fmt in [("module", mlp, "pickle"), ("program", program, "pt2"), ("script", scripted, "torchscript")]:
        descriptor = modelpack.save_model(obj, tmp_path / name)  # chosen by type: the pytorch flavor
        assert descriptor.flavors["pytorch"]["serialization_format"] == fmt
        pred = modelpack.load_model(tmp_path / name).predict(X.head(20))
        np.testing.assert_allclose(pred.to_numpy(), _expected(mlp, X.head(20)), rtol=1e-5, atol=1e-6)
    with pytest.raises(modelpack.ModelpackError, match="saved as 'pt2'"):
        modelpack.save_model(program, tmp_path / "bad", serialization_format="pickle")
    assert not (tmp_path / "bad").exists()


def test_mlmodel_has_mlflow_fields(tmp_path, local_mlp):
    pt_flavor.save_model(local_mlp, tmp_path / "m")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["flavors"]["pytorch"] == {
        "pytorch_version": torch.__version__, "model_data": "data", "code": None, "serialization_format": "pickle",
    }
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pytorch" and pyfunc["data"] == "data"
    assert pyfunc["pickle_module_name"] == "mlflow.pytorch.pickle_module"
    assert sorted(p.name for p in (tmp_path / "m" / "data").iterdir()) == ["model.pth", "pickle_module_info.txt"]
    assert (tmp_path / "m" / "data" / "pickle_module_info.txt").read_text() == "mlflow.pytorch.pickle_module"


def test_pt2_layout(tmp_path, diabetes, local_mlp):
    X = diabetes[0]
    pt_flavor.save_model(local_mlp, tmp_path / "m", serialization_format="pt2", input_example=X.head(3))
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["flavors"]["pytorch"]["serialization_format"] == "pt2"
    assert sorted(p.name for p in (tmp_path / "m" / "data").iterdir()) == ["model.pt2"]
    assert "pickle_module_name" not in mlmodel["flavors"]["python_function"]


def test_state_dict_fields_and_code(tmp_path, nets, mlp):
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format="state_dict", **_options("state_dict", nets))
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]
    assert conf["pytorch"]["model_class"] == f"{NETS_MODULE}.MLP"
    assert conf["pytorch"]["init_kwargs"] == {"n_in": 10, "hidden": 16, "dropout": 0.2}
    assert conf["pytorch"]["code"] == conf["python_function"]["code"] == "code"
    assert (tmp_path / "m" / "code" / f"{NETS_MODULE}.py").read_text() == NETS_SOURCE
    assert sorted(p.name for p in (tmp_path / "m" / "data").iterdir()) == ["state_dict.pth"]


def test_pt2_needs_an_example(tmp_path, diabetes, local_mlp):
    X = diabetes[0]
    with pytest.raises(modelpack.ModelpackError, match="needs example_inputs"):
        modelpack.save_model(local_mlp, tmp_path / "m", serialization_format="pt2", input_example=X.head(3))
    assert not (tmp_path / "m").exists()
    # the core keeps input_example to itself: the explicit example_inputs works with the generic save_model
    modelpack.save_model(local_mlp, tmp_path / "m", serialization_format="pt2", example_inputs=X.head(1))
    pred = modelpack.load_model(tmp_path / "m").predict(X.head(37))  # a one-row example still exports any batch
    np.testing.assert_allclose(pred.to_numpy(), _expected(local_mlp, X.head(37)), rtol=1e-5, atol=1e-6)


def test_pt2_refuses_a_program_with_a_fixed_batch(tmp_path, diabetes):
    class FixedBatch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(10, 1)

        def forward(self, x):
            return self.linear(x.reshape(3, 10))  # only ever a batch of 3

    X = diabetes[0]
    with pytest.raises(modelpack.ModelpackError, match="batch"):
        pt_flavor.save_model(FixedBatch(), tmp_path / "m", serialization_format="pt2", input_example=X.head(3))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("options, message", [
    ({"serialization_format": "onnx"}, "serialization_format must be one of"),
    ({"serialization_format": "pickle", "init_kwargs": {"n_in": 10}}, "init_kwargs applies only"),
    ({"serialization_format": "pickle", "example_inputs": np.zeros((2, 10))}, "example_inputs applies only"),
    ({"serialization_format": "state_dict", "init_kwargs": {"n_in": np.int64(10)}}, "init_kwargs\\['n_in'\\] is a"),
    ({"serialization_format": "pt2", "example_inputs": [np.zeros((2, 10)), np.zeros((2, 3))]}, "one input"),
])
def test_bad_options_are_refused(tmp_path, mlp, options, message):
    with pytest.raises(modelpack.ModelpackError, match=message):
        pt_flavor.save_model(mlp, tmp_path / "m", **options)
    assert not (tmp_path / "m").exists()


def test_state_dict_needs_an_importable_class(tmp_path, local_mlp):
    with pytest.raises(modelpack.ModelpackError, match="cannot be imported elsewhere.*serialization_format='pickle'"):
        pt_flavor.save_model(local_mlp, tmp_path / "m", serialization_format="state_dict")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("model_class, message", [
    ("no_such_package.nets.MLP", "'no_such_package.nets.MLP' cannot be imported: No module named 'no_such_package'"),
    (f"{NETS_MODULE}.Missing", "is not a torch.nn.Module subclass \\(found nothing"),
    ("collections.OrderedDict", "is not a torch.nn.Module subclass \\(found type"),
])
def test_a_class_that_cannot_be_imported_is_a_clear_error(tmp_path, nets, mlp, model_class, message):
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format="state_dict", **_options("state_dict", nets))
    mlmodel = tmp_path / "m" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace(f"{NETS_MODULE}.MLP", model_class))
    with pytest.raises(modelpack.ModelpackError, match=message):
        modelpack.load_model(tmp_path / "m")


class _RunsCode:
    """Unpickling this calls os.mkdir: what a malicious pickle would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.mkdir, (self.path,)


def test_state_dict_loads_weights_only(tmp_path, nets, mlp):
    """A state dict file holding anything but tensors and plain containers is refused without running it."""
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format="state_dict", **_options("state_dict", nets))
    marker = tmp_path / "code-ran"
    state = dict(mlp.state_dict(), payload=_RunsCode(marker))
    torch.save(state, tmp_path / "m" / "data" / "state_dict.pth")
    with pytest.raises(modelpack.ModelpackError, match="weights-only unpickler refused it"):
        modelpack.load_model(tmp_path / "m")
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMS)
def test_float_rows_path_is_taken_and_matches_dataframe_path(tmp_path, diabetes, nets, mlp, fmt):
    X = diabetes[0]
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format=fmt, input_example=X.head(3),
                         **_options(fmt, nets))
    model = modelpack.load_model(tmp_path / "m")
    assert model.float_rows_columns == list(X.columns)
    impl = model.unwrap_python_model()
    rows = FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns))
    frame_calls: list[int] = []
    real_predict = impl.predict
    impl.predict = lambda *a, **kw: frame_calls.append(1) or real_predict(*a, **kw)
    fast = model.predict(rows)
    assert frame_calls == []  # the float block went to torch without a DataFrame
    slow = model.predict(rows.to_frame())
    assert frame_calls == [1]
    pd.testing.assert_frame_equal(fast, slow)
    np.testing.assert_allclose(fast.to_numpy(), _expected(mlp, X), rtol=1e-5, atol=1e-6)


def test_signature_inferred_from_input_example(tmp_path, diabetes, local_mlp):
    X = diabetes[0]
    pt_flavor.save_model(local_mlp, tmp_path / "frame", input_example=X.head(5))
    signature = modelpack.load_model(tmp_path / "frame").signature
    assert signature.inputs.input_names == list(X.columns)
    assert {s.type for s in signature.inputs.inputs} == {"double"}
    assert [(s.name, s.type) for s in signature.outputs.inputs] == [("0", "float")]  # a DataFrame of the float32 output

    pt_flavor.save_model(local_mlp, tmp_path / "array", input_example=X.head(5).to_numpy(np.float32))
    model = modelpack.load_model(tmp_path / "array")
    assert model.signature.inputs.is_tensor and model.signature.outputs.is_tensor
    spec = model.signature.inputs.inputs[0]
    # the core infers from the example as read back from input_example.json: float64 (MLflow keeps float32)
    assert spec.dtype.kind == "f" and spec.shape == (-1, 10)
    pred = model.predict(X.head(20).to_numpy())  # float64 rows: cast to the spec's float32
    assert isinstance(pred, np.ndarray) and pred.shape == (20, 1) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, _expected(local_mlp, X.head(20)), rtol=1e-5, atol=1e-6)


def test_float64_module_gets_float64_input(tmp_path, diabetes, nets, mlp):
    X = diabetes[0]
    double = nets.MLP().double()
    double.load_state_dict({k: v.double() for k, v in mlp.state_dict().items()})
    pt_flavor.save_model(double, tmp_path / "m", input_example=X.head(3))
    model = modelpack.load_model(tmp_path / "m")
    pred = model.predict(X)
    assert pred[0].dtype == np.float64
    np.testing.assert_allclose(pred.to_numpy(), _expected(double, X, torch.float64), rtol=1e-12)
    fast = model.predict(FloatRows(np.asfortranarray(X.to_numpy()), list(X.columns)))
    pd.testing.assert_frame_equal(fast, model.predict(FloatRows(np.asfortranarray(X.to_numpy()),
                                                                list(X.columns)).to_frame()))


@pytest.mark.parametrize("fmt", ["pickle", "torchscript", "state_dict"])
def test_params_go_to_forward(tmp_path, diabetes, nets, mlp, fmt):
    X = diabetes[0]
    scaled = nets.Scaled()
    scaled.load_state_dict(mlp.state_dict())
    signature = modelpack.infer_signature(X.head(3), params={"scale": 1.0})
    pt_flavor.save_model(scaled, tmp_path / "m", serialization_format=fmt, signature=signature,
                         **_options(fmt, nets))
    model = modelpack.load_model(tmp_path / "m")
    base = model.predict(X.head(5))
    np.testing.assert_allclose(model.predict(X.head(5), params={"scale": 3.0}).to_numpy(), base.to_numpy() * 3,
                               rtol=1e-6)
    impl = model.unwrap_python_model()  # without a signature's check: unknown params are dropped
    np.testing.assert_array_equal(impl.predict(X.head(5), params={"unknown": 1}).to_numpy(), base.to_numpy())


def test_non_tensor_input_is_a_client_error(tmp_path, diabetes, local_mlp):
    pt_flavor.save_model(local_mlp, tmp_path / "m")  # no signature: nothing checks the input before the flavor
    with pytest.raises(modelpack.ModelpackError, match="takes a DataFrame or an array") as info:
        modelpack.load_model(tmp_path / "m").unwrap_python_model().predict({"a": [1.0]})
    assert isinstance(info.value, InvalidInputError)


def test_reads_mlflow_layouts_without_mlflow(tmp_path, diabetes, local_mlp):
    """MLflow records no serialization format: the form is told from the files, and the pickle module MLflow
    names (mlflow.pytorch.pickle_module) is never imported."""
    assert importlib.util.find_spec("mlflow") is None  # this process could not import it anyway
    X = diabetes[0]
    for fmt in ("pickle", "pt2", "torchscript"):
        path = tmp_path / fmt
        example = None if fmt == "pickle" else X.head(2)  # a class in a function: traced, not scripted
        pt_flavor.save_model(local_mlp, path, serialization_format=fmt, example_inputs=example)
        mlmodel = yaml.safe_load((path / "MLmodel").read_text())
        del mlmodel["flavors"]["pytorch"]["serialization_format"]
        (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        loaded = pt_flavor.load_model(path)
        assert isinstance(loaded, torch.jit.ScriptModule) == (fmt == "torchscript")
        np.testing.assert_allclose(modelpack.load_model(path).predict(X).to_numpy(), _expected(local_mlp, X),
                                   rtol=1e-5, atol=1e-6)


def test_pickle_naming_mlflow_pickle_module_loads_without_mlflow(tmp_path, monkeypatch, local_mlp):
    """A pickle that references mlflow.pytorch.pickle_module (cloudpickle re-exported) reads it from cloudpickle."""
    import types

    import cloudpickle

    fake = types.ModuleType("mlflow.pytorch.pickle_module")

    def dumps(obj):  # stands in for the re-exported cloudpickle.dumps, pickled by reference
        return b""

    dumps.__module__, dumps.__qualname__ = fake.__name__, "dumps"
    fake.dumps = dumps
    for name, module in [("mlflow", types.ModuleType("mlflow")), ("mlflow.pytorch", types.ModuleType("m")),
                         (fake.__name__, fake)]:
        monkeypatch.setitem(sys.modules, name, module)
    local_mlp.serializer = dumps
    try:
        pt_flavor.save_model(local_mlp, tmp_path / "m")
    finally:
        del local_mlp.serializer
    for name in ("mlflow", "mlflow.pytorch", fake.__name__):
        monkeypatch.delitem(sys.modules, name)
    assert b"mlflow.pytorch.pickle_module" in (tmp_path / "m" / "data" / "model.pth").read_bytes()
    assert pt_flavor.load_model(tmp_path / "m").serializer is cloudpickle.dumps


def test_mlflow_loader_hook(tmp_path, diabetes, nets, mlp):
    X = diabetes[0]
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format="state_dict", **_options("state_dict", nets))
    impl = pt_flavor._load_pyfunc(str(tmp_path / "m" / "data"))  # MLflow passes the model's `data` path
    np.testing.assert_allclose(impl.predict(X).to_numpy(), _expected(mlp, X), rtol=1e-5, atol=1e-6)


def _served(predictions) -> np.ndarray:
    """Served predictions as an array: a DataFrame's rows come as records (MLflow) or lists."""
    if predictions and isinstance(predictions[0], dict):
        return np.asarray([list(row.values()) for row in predictions], dtype=float)
    return np.asarray(predictions, dtype=float)


@pytest.mark.parametrize("fmt", ["pickle", "pt2", "state_dict"])
def test_served_predictions_equal_in_process(tmp_path, serve, diabetes, nets, mlp, fmt):
    """The server runs without the nets module on its path: a state dict gets its class from the model's code/."""
    X = diabetes[0]
    pt_flavor.save_model(mlp, tmp_path / "m", serialization_format=fmt, input_example=X.head(3),
                         **_options(fmt, nets))
    expected = modelpack.load_model(tmp_path / "m").predict(X.head(50))
    server = serve(tmp_path / "m", "-w", "1")
    body = orjson.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.head(50).values.tolist()}})
    response = server.post(body)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(_served(response.json()["predictions"]), expected.to_numpy(), rtol=1e-6)
    bad = server.post(orjson.dumps({"dataframe_split": {"columns": ["age"], "data": [[1.0]]}}))
    assert bad.status_code == 400, bad.text


def test_served_dataframe_predictions_are_records_as_mlflow(tmp_path, serve, diabetes, local_mlp):
    X = diabetes[0]
    pt_flavor.save_model(local_mlp, tmp_path / "m", input_example=X.head(3))
    response = serve(tmp_path / "m", "-w", "1").post(orjson.dumps(
        {"dataframe_split": {"columns": list(X.columns), "data": X.head(2).values.tolist()}}))
    assert response.status_code == 200, response.text
    assert list(response.json()["predictions"][0]) == ["0"]


# ---------------------------------------------------------------- MLflow 3.17, both directions (slow)

MLFLOW_SAVE = r'''
import torch, mlflow, mlflow.pytorch
X = read_frame(sys.argv[2])
y = torch.tensor(read_frame(sys.argv[3])["target"].to_numpy() / 100, dtype=torch.float32)[:, None]

class Net(torch.nn.Module):  # defined in __main__: cloudpickle stores it by value
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(10, 16)
        self.dropout = torch.nn.Dropout(0.2)
        self.out = torch.nn.Linear(16, 1)

    def forward(self, x):
        return self.out(self.dropout(torch.relu(self.hidden(x))))

torch.manual_seed(0)
net = Net()
inputs = torch.tensor(X.to_numpy(), dtype=torch.float32)
optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
for _ in range(40):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(net(inputs), y).backward()
    optimizer.step()
out = sys.argv[1]
net.eval()  # MLflow exports the module as it is: in train mode, the pt2 program would keep its dropout
mlflow.pytorch.save_model(net, out + "/default", input_example=X.head(5).to_numpy(np.float32))  # pt2 in 3.17
mlflow.pytorch.save_model(net, out + "/pickle", serialization_format="pickle", input_example=X.head(5))
mlflow.pytorch.save_model(net, out + "/pickle_array", serialization_format="pickle",
                          input_example=X.head(5).to_numpy(np.float32))
traced = torch.jit.trace(net, inputs[:4])
mlflow.pytorch.save_model(traced, out + "/torchscript", serialization_format="pickle", input_example=X.head(5))
print(mlflow.__version__)
'''
#: MLflow's directory -> whether its example was an array (tensor signature) rather than a DataFrame
MLFLOW_DIRS = {"default": True, "pickle_array": True, "pickle": False, "torchscript": False}


@pytest.fixture(scope="module")
def mlflow_py() -> Path:
    from mlflow_env import mlflow_python

    return mlflow_python(["torch==2.13.0"])  # the CPU build on disk; any other spec downloads CUDA torch


@pytest.fixture(scope="module")
def mlflow_dirs(mlflow_py, tmp_path_factory, diabetes) -> Path:
    from mlflow_interop import run_mlflow_script, write_frame

    X, y = diabetes
    out = tmp_path_factory.mktemp("mlflow")
    rows, target = write_frame(X, out / "X.json"), write_frame(y.to_frame("target"), out / "y.json")
    printed = run_mlflow_script(mlflow_py, MLFLOW_SAVE, str(out), str(rows), str(target), cwd=out)
    assert printed.strip().splitlines()[-1].startswith("3.17."), printed
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "pickle_array", "pickle", "torchscript"])  # MLflow's output name 0
def test_modelpack_loads_and_serves_mlflow_dirs(mlflow_py, mlflow_dirs, serve, diabetes, tmp_path, name):
    from mlflow_interop import mlflow_predict, split_body

    assert importlib.util.find_spec("mlflow") is None
    X = diabetes[0].head(60)
    model_dir = mlflow_dirs / name
    conf = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]
    assert conf["python_function"]["loader_module"] == "mlflow.pytorch"
    assert "serialization_format" not in conf["pytorch"]  # told from the files
    if MLFLOW_DIRS[name]:  # MLflow's tensor signature refuses float64 columns; modelpack's casts them
        expected = mlflow_predict(mlflow_py, model_dir, X.astype(np.float32), tmp_path)["prediction"]
    else:
        expected = mlflow_predict(mlflow_py, model_dir, X, tmp_path)["0"]

    model = modelpack.load_model(model_dir)
    assert isinstance(model.unwrap_python_model(), pt_flavor.PyTorchPyFunc)
    pred = model.predict(X)
    np.testing.assert_allclose(np.asarray(pred).reshape(-1), expected.reshape(-1), rtol=1e-6)
    native = pt_flavor.load_model(model_dir)
    assert isinstance(native, torch.jit.ScriptModule) == (name == "torchscript")

    response = serve(model_dir, "-w", "1").post(split_body(X))
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(_served(response.json()["predictions"]).reshape(-1), expected.reshape(-1), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pickle", "pt2", "torchscript"])
def test_mlflow_loads_modelpack_dirs_without_modelpack(mlflow_py, diabetes, local_mlp, tmp_path, fmt):
    from mlflow_interop import mlflow_predict

    X = diabetes[0].head(60)
    traced = {"example_inputs": X.head(3)} if fmt == "torchscript" else {}  # a class in a function: traced
    pt_flavor.save_model(local_mlp, tmp_path / "m", serialization_format=fmt, input_example=X.head(3), **traced)
    expected = modelpack.load_model(tmp_path / "m").predict(X)
    got = mlflow_predict(mlflow_py, tmp_path / "m", X, tmp_path)  # MLflow's pyfunc, no modelpack there
    assert list(got) == ["0"]  # a DataFrame, as modelpack's
    np.testing.assert_allclose(got["0"], expected[0].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_mlflow_serves_modelpack_pickle_dir(mlflow_py, diabetes, local_mlp, tmp_path, serve):
    from mlflow_interop import mlflow_serve, split_body

    X = diabetes[0].head(40)
    pt_flavor.save_model(local_mlp, tmp_path / "m", input_example=X.head(3))
    ours = serve(tmp_path / "m", "-w", "1").post(split_body(X))
    server = mlflow_serve(mlflow_py, tmp_path / "m", tmp_path)
    try:
        theirs = server.post(split_body(X))
    finally:
        server.stop()
    assert theirs.status_code == 200 and ours.status_code == 200, (theirs.text, ours.text)
    np.testing.assert_allclose(_served(ours.json()["predictions"]), _served(theirs.json()["predictions"]), rtol=1e-6)
    np.testing.assert_allclose(_served(theirs.json()["predictions"]), _expected(local_mlp, X), rtol=1e-5, atol=1e-6)
