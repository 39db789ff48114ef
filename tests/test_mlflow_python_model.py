"""MLflow's custom models (``mlflow.pyfunc.save_model(python_model=...)``) in modelpack.

Their pickle refers to ``mlflow.pyfunc.PythonModel``, so they load only where ``mlflow`` is importable. This
process has no mlflow: loading, ``predict`` and ``serve --env-manager local`` fail with one line naming the
package, the version the model records and how to serve it. The rebuilt environment (``--env-manager
virtualenv`` or ``uv``) installs mlflow from the model's requirements.txt, and there modelpack serves MLflow's
predictions. The directories are written at test time by MLflow 3.17 in its cached virtualenv (slow tests).
"""

from __future__ import annotations

import importlib.util
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import free_port
from mlflow_interop import mlflow_predict, run_mlflow_script, split_body

import modelpack
from modelpack.errors import ModelLoadError

#: Writes one MLflow model directory per kind into sys.argv[1] (classes defined here: pickled by value).
WRITE = r'''
import os
import mlflow
from mlflow.pyfunc import PythonModel

root = sys.argv[1]
example = pd.DataFrame({"x": [1.0, 2.0]})

class Plain(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"].to_numpy() * 2 + 1

class WithArtifacts(PythonModel):
    def load_context(self, context):
        with open(context.artifacts["weight"]) as fh:
            self.weight = float(fh.read())
        self.bias = context.model_config["bias"]

    def predict(self, context, model_input, params=None):
        return model_input["x"].to_numpy() * self.weight + self.bias

class NoContext(PythonModel):  # MLflow 3 lets predict leave out the context
    def predict(self, model_input, params=None):
        return model_input["x"].to_numpy() - 4

os.makedirs(f"{root}/src")
with open(f"{root}/src/mp_test_helper.py", "w") as fh:
    fh.write("def scale(values):\n    return values * 10\n")
with open(f"{root}/weight.txt", "w") as fh:
    fh.write("3.5")
sys.path.insert(0, f"{root}/src")
import mp_test_helper  # pickled by reference: loading needs the model's code/ directory on sys.path

class UsesCode(PythonModel):
    def predict(self, context, model_input, params=None):
        return mp_test_helper.scale(model_input["x"].to_numpy())

with open(f"{root}/model_code.py", "w") as fh:
    fh.write(
        "import mlflow\n"
        "from mlflow.pyfunc import PythonModel\n"
        "class FromCode(PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input['x'].to_numpy() * 5\n"
        "mlflow.models.set_model(FromCode())\n"
    )

save = mlflow.pyfunc.save_model
save(f"{root}/plain", python_model=Plain(), input_example=example)
save(f"{root}/artifacts", python_model=WithArtifacts(), artifacts={"weight": f"{root}/weight.txt"},
     model_config={"bias": 0.25}, input_example=example)
save(f"{root}/code_paths", python_model=UsesCode(), code_paths=[f"{root}/src/mp_test_helper.py"],
     input_example=example)
save(f"{root}/no_context", python_model=NoContext(), input_example=example)
os.environ["MLFLOW_LOG_MODEL_COMPRESSION"] = "lzma"
save(f"{root}/compressed", python_model=Plain(), input_example=example)
del os.environ["MLFLOW_LOG_MODEL_COMPRESSION"]
save(f"{root}/from_code", python_model=f"{root}/model_code.py", input_example=example)
print(mlflow.__version__)
'''

KINDS = ("plain", "artifacts", "code_paths", "no_context", "compressed", "from_code")
FRAME = pd.DataFrame({"x": [1.0, 2.5, -3.0]})


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def recorded_mlflow(model_dir: Path) -> str:
    lines = (model_dir / "requirements.txt").read_text().splitlines()
    return next(line for line in lines if line.startswith("mlflow=="))


@pytest.fixture(scope="module")
def mlflow_py() -> Path:
    from mlflow_env import mlflow_python

    return mlflow_python([])


@pytest.fixture(scope="module")
def mlflow_dirs(mlflow_py, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mlflow-python-models")
    printed = run_mlflow_script(mlflow_py, WRITE, str(root), cwd=root)
    assert printed.strip().splitlines()[-1].startswith("3.17."), printed
    return {kind: root / kind for kind in KINDS}


@pytest.fixture
def without_mlflow():
    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is importable in the test process; these tests check the error without it")


@pytest.fixture(scope="module")
def input_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "rows.json"
    path.write_text(split_body(FRAME))
    return path


def prepared(model_dir: Path, manager: str) -> str:
    """Build (or reuse from the cache) the model's environment; its python."""
    out = cli("prepare-env", "-m", str(model_dir), "--env-manager", manager, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


# -- what MLflow writes -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mlflow_writes_python_model_dirs(mlflow_dirs):
    for kind in KINDS:
        conf = yaml.safe_load((mlflow_dirs[kind] / "MLmodel").read_text())["flavors"]["python_function"]
        if kind == "from_code":  # no pickle: the script, run by MLflow's loader at load time
            assert conf["loader_module"] == "mlflow.pyfunc.loaders.code_model"
            assert Path(conf["model_code_path"]).name == "model_code.py"
            assert (mlflow_dirs[kind] / "model_code.py").is_file()
        else:
            assert conf["loader_module"] == "mlflow.pyfunc.model"
            assert (mlflow_dirs[kind] / conf["python_model"]).is_file()
        assert recorded_mlflow(mlflow_dirs[kind]).startswith("mlflow==3.17.")
    compressed = yaml.safe_load((mlflow_dirs["compressed"] / "MLmodel").read_text())["flavors"]["python_function"]
    assert compressed["python_model_compression"] == "lzma" and compressed["python_model"] == "python_model.pkl.xz"


# -- without mlflow: one clear line ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_load_without_mlflow_names_the_package_and_the_fix(mlflow_dirs, without_mlflow, kind):
    model_dir = mlflow_dirs[kind]
    with pytest.raises(ModelLoadError) as info:
        modelpack.load_model(model_dir)
    message = str(info.value)
    requirement = recorded_mlflow(model_dir)
    assert f"needs the 'mlflow' package ({requirement}), which is not installed" in message
    assert "--env-manager virtualenv" in message and f"pip install '{requirement}'" in message
    assert "\n" not in message
    cause = info.value.__cause__
    assert isinstance(cause, ModuleNotFoundError) and cause.name == "mlflow"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "from_code"])
def test_cli_without_mlflow_is_one_line_exit_3(mlflow_dirs, without_mlflow, input_file, kind):
    model_dir = mlflow_dirs[kind]
    requirement = recorded_mlflow(model_dir)
    port = str(free_port())
    for args in (["predict", "-i", str(input_file)], ["serve", "-p", port]):
        out = cli(args[0], "-m", str(model_dir), *args[1:], "--env-manager", "local")
        assert out.returncode == 3, (args, out.stderr)
        lines = out.stderr.splitlines()
        assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
        assert lines[0].startswith("Error: ") and f"needs the 'mlflow' package ({requirement})" in lines[0]
        assert "--env-manager virtualenv" in lines[0]


# -- the rebuilt environment has mlflow: modelpack serves MLflow's predictions -----------------------------------


@pytest.fixture(scope="module")
def virtualenv_python(mlflow_dirs) -> str:
    """Every kind records the same requirements (mlflow, cloudpickle, pandas): one environment serves them all."""
    requirements = {(mlflow_dirs[kind] / "requirements.txt").read_text() for kind in KINDS}
    assert len(requirements) == 1, requirements
    return prepared(mlflow_dirs["plain"], "virtualenv")


@pytest.mark.slow
def test_rebuilt_environment_has_the_recorded_mlflow(mlflow_dirs, virtualenv_python, tmp_path):
    out = subprocess.run([virtualenv_python, "-c", "import mlflow; print(mlflow.__version__)"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"mlflow=={out.stdout.strip()}" == recorded_mlflow(mlflow_dirs["plain"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_serves_in_the_rebuilt_environment_like_mlflow(serve, mlflow_py, mlflow_dirs, virtualenv_python, kind,
                                                       tmp_path):
    model_dir = mlflow_dirs[kind]
    expected = mlflow_predict(mlflow_py, model_dir, FRAME, tmp_path)["prediction"]
    reply = serve(model_dir, "--env-manager", "virtualenv", timeout=180).post(split_body(FRAME))
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-12)
    assert np.isfinite(expected).all() and len(expected) == len(FRAME)


@pytest.mark.slow
def test_serves_in_a_uv_environment(serve, mlflow_py, mlflow_dirs, tmp_path):
    model_dir = mlflow_dirs["artifacts"]
    prepared(model_dir, "uv")
    expected = mlflow_predict(mlflow_py, model_dir, FRAME, tmp_path)["prediction"]
    np.testing.assert_allclose(expected, FRAME["x"].to_numpy() * 3.5 + 0.25)
    reply = serve(model_dir, "--env-manager", "uv", timeout=180).post(split_body(FRAME))
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-12)


@pytest.mark.slow
def test_a_missing_mlflow_module_where_mlflow_is_installed(mlflow_dirs, virtualenv_python, input_file, tmp_path):
    """In the environment with mlflow, a pickle naming a module that mlflow lacks (a model saved by another
    mlflow version) says which module and which mlflow the model records."""
    model_dir = tmp_path / "other_mlflow"
    model_dir.mkdir()
    for item in mlflow_dirs["plain"].iterdir():
        (model_dir / item.name).write_bytes(item.read_bytes())
    (model_dir / "python_model.pkl").write_bytes(b"cmlflow.no_such_module\nThing\n.")  # protocol 0: GLOBAL
    out = cli("predict", "-m", str(model_dir), "-i", str(input_file), "--env-manager", "virtualenv")
    assert out.returncode == 3, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert last.startswith("Error: ") and "which has no module 'mlflow.no_such_module'" in last
    assert f"needs {recorded_mlflow(model_dir)}; this Python has mlflow 3.17." in last


# -- modelpack's own custom models need modelpack ----------------------------------------------------------------


@pytest.mark.slow
def test_mlflow_cannot_load_a_modelpack_python_model_without_modelpack(mlflow_py, tmp_path):
    class Doubler(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["x"].to_numpy() * 2

    modelpack.save_model(Doubler(), tmp_path / "m", input_example=FRAME.head(1))
    np.testing.assert_array_equal(modelpack.load_model(tmp_path / "m").predict(FRAME), FRAME["x"] * 2)
    printed = run_mlflow_script(mlflow_py, r'''
import cloudpickle, mlflow.pyfunc
for load in (lambda: mlflow.pyfunc.load_model(sys.argv[1]),
             lambda: cloudpickle.load(open(sys.argv[1] + "/python_model.pkl", "rb"))):
    try:
        load()
    except ModuleNotFoundError as exc:
        print(exc.name)
''', str(tmp_path / "m"), cwd=tmp_path)
    # the loader module (modelpack.flavors.custom) and the pickle (modelpack.PythonModel) both need modelpack
    assert printed.split() == ["modelpack", "modelpack"]


# -- the same loader without MLflow: fast ------------------------------------------------------------------------


def test_a_missing_module_other_than_mlflow_is_not_blamed_on_mlflow(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "mp_vanishing_mod.py").write_text(
        "import modelpack\n\nclass Gone(modelpack.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n        return model_input\n"
    )
    sys.path.insert(0, str(src))
    try:
        import mp_vanishing_mod

        modelpack.save_model(mp_vanishing_mod.Gone(), tmp_path / "m")  # pickled by reference to its module
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("mp_vanishing_mod", None)
    with pytest.raises(ModelLoadError, match="Cannot unpickle .*No module named 'mp_vanishing_mod'") as info:
        modelpack.load_model(tmp_path / "m")
    assert "mlflow" not in str(info.value)


def test_predict_without_context(tmp_path):
    class NoContext(modelpack.PythonModel):
        def predict(self, model_input, params=None):  # type: ignore[override]  # as MLflow 3 allows
            return np.asarray(model_input) + (params or {}).get("add", 1)

    modelpack.save_model(NoContext(), tmp_path / "m")
    model = modelpack.load_model(tmp_path / "m")
    assert model.predict([1, 2]).tolist() == [2, 3]
    assert model.predict([1, 2], params={"add": 10}).tolist() == [11, 12]


@pytest.mark.parametrize("compression, module, ext", [("lzma", "lzma", ".xz"), ("bzip2", "bz2", ".bz2"),
                                                      ("gzip", "gzip", ".gz")])
def test_compressed_pickle(tmp_path, compression, module, ext):
    """A python_model compressed as MLflow writes it (``python_model_compression``)."""
    def triple(model_input):
        return np.asarray(model_input) * 3

    model_dir = tmp_path / "m"
    modelpack.save_model(triple, model_dir)
    raw = (model_dir / "python_model.pkl").read_bytes()
    (model_dir / "python_model.pkl").unlink()
    with importlib.import_module(module).open(model_dir / f"python_model.pkl{ext}", "wb") as fh:
        fh.write(raw)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"] |= {"python_model": f"python_model.pkl{ext}",
                                              "python_model_compression": compression}
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    assert modelpack.load_model(model_dir).predict([1, 2]).tolist() == [3, 6]


def test_unknown_compression_is_a_load_error(tmp_path):
    model_dir = tmp_path / "m"
    modelpack.save_model(lambda model_input: model_input, model_dir)
    (model_dir / "python_model.pkl").write_bytes(lzma.compress((model_dir / "python_model.pkl").read_bytes()))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["python_model_compression"] = "zstd"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ModelLoadError, match="python_model_compression is 'zstd'; expected one of"):
        modelpack.load_model(model_dir)


def test_model_config_is_written_under_mlflows_key(tmp_path):
    """``model_config`` goes to the python_function ``config`` key, where MLflow reads it."""
    class Biased(modelpack.PythonModel):
        def load_context(self, context):
            self.bias = context.model_config["bias"]

        def predict(self, context, model_input, params=None):
            return np.asarray(model_input) + self.bias

    modelpack.save_model(Biased(), tmp_path / "m", model_config={"bias": 0.5})
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]["python_function"]
    assert conf["config"] == {"bias": 0.5} and "model_config" not in conf
    assert modelpack.load_model(tmp_path / "m").predict([1.0]).tolist() == [1.5]
