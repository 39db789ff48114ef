"""A model directory is untrusted input (docs/trust.md): the paths its MLmodel names stay inside it, its
loader_module is imported only when a flavor claims it or the user trusts it, the docs say what runs code, and
two servers do not share (or delete) one gunicorn control socket."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, free_port, wait_until_ready

import modelpack
from modelpack.descriptor import ModelDescriptor
from modelpack.errors import ModelLoadError


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _write_mlmodel(path: Path, doc: dict) -> None:
    (path / "MLmodel").write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def sklearn_dir(tmp_path_factory, elasticnet, diabetes) -> Path:
    path = tmp_path_factory.mktemp("saved") / "sklearn_model"
    modelpack.save_model(elasticnet, path, input_example=diabetes[0].head(2))
    return path


@pytest.fixture(scope="module")
def custom_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("saved")
    (root / "weights.txt").write_text("3")
    (root / "helpers_pkg").mkdir()
    (root / "helpers_pkg" / "__init__.py").write_text("FACTOR = 2\n")

    class Weighted(modelpack.PythonModel):
        def load_context(self, context):
            self.w = float(Path(context.artifacts["weights"]).read_text())

        def predict(self, context, model_input, params=None):
            return [self.w] * len(model_input)

    path = root / "custom_model"
    modelpack.save_model(Weighted(), path, artifacts={"weights": root / "weights.txt"},
                         code_paths=[root / "helpers_pkg"], pip_requirements=[])
    return path


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory next to the model holding what an attacker wants loaded: a pickle that leaves a marker."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "evil.pkl").write_bytes(pickle.dumps(_Payload(path / "PAYLOAD_RAN")))
    (path / "secret.txt").write_text("not the model's")
    return path


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "models" / "m"
    shutil.copytree(src, dest)
    return dest


# -- 1. paths named in MLmodel stay inside the model directory ---------------------------------------------------

def _relative_pickle(m: Path, outside: Path) -> str:
    doc = _mlmodel(m)
    doc["flavors"]["sklearn"]["pickled_model"] = "../../outside/evil.pkl"
    _write_mlmodel(m, doc)
    return "MLmodel field 'flavors.sklearn.pickled_model' names '../../outside/evil.pkl'"


def _absolute_model_path(m: Path, outside: Path) -> str:
    doc = _mlmodel(m)
    del doc["flavors"]["sklearn"]["pickled_model"]  # the sklearn flavor then reads python_function.model_path
    doc["flavors"]["python_function"]["model_path"] = str(outside / "evil.pkl")
    _write_mlmodel(m, doc)
    return f"MLmodel field 'flavors.python_function.model_path' names '{outside / 'evil.pkl'}'"


def _symlinked_pickle(m: Path, outside: Path) -> str:
    (m / "model.pkl").unlink()
    (m / "model.pkl").symlink_to(outside / "evil.pkl")  # MLmodel unchanged: python_function.model_path and
    return "' names 'model.pkl', which resolves through a symlink to"  # sklearn.pickled_model name model.pkl


def _serving_example_elsewhere(m: Path, outside: Path) -> str:
    doc = _mlmodel(m)
    doc["saved_input_example_info"]["serving_input_path"] = str(outside / "secret.txt")
    _write_mlmodel(m, doc)
    return "MLmodel field 'saved_input_example_info.serving_input_path' names"


@pytest.mark.parametrize("tamper", [_relative_pickle, _absolute_model_path, _symlinked_pickle,
                                    _serving_example_elsewhere])
def test_sklearn_paths_outside_the_model_are_refused_before_anything_is_read(tmp_path, sklearn_dir, outside,
                                                                             tamper):
    m = _copy(sklearn_dir, tmp_path)
    expected = tamper(m, outside)
    from modelpack.flavors import sklearn as sklearn_flavor

    for load in (modelpack.load_model, sklearn_flavor.load_model):  # the pyfunc and the native loader
        with pytest.raises(ModelLoadError) as info:
            load(m)
        assert expected in info.value.message
        assert str(outside.resolve()) in info.value.message and "outside the model directory" in info.value.message
    assert not (outside / "PAYLOAD_RAN").exists()


def test_the_symlink_case_says_so(tmp_path, sklearn_dir, outside):
    m = _copy(sklearn_dir, tmp_path)
    _symlinked_pickle(m, outside)
    with pytest.raises(ModelLoadError, match=r"names 'model.pkl', which resolves through a symlink to '.*evil.pkl'"):
        modelpack.load_model(m)


@pytest.mark.parametrize("field, value", [
    ("python_model", "../../outside/evil.pkl"),
    ("code", "../../outside"),
    ("artifacts", {"weights": {"path": "../../outside/secret.txt"}}),
    ("artifacts", {"weights": "/etc/hostname"}),
])
def test_custom_model_paths_outside_are_refused(tmp_path, custom_dir, outside, field, value):
    m = _copy(custom_dir, tmp_path)
    doc = _mlmodel(m)
    doc["flavors"]["python_function"][field] = value
    _write_mlmodel(m, doc)
    path_before = list(sys.path)
    with pytest.raises(ModelLoadError, match=rf"MLmodel field 'flavors\.python_function\.{field}[^']*' names .*"
                                             "outside the model directory"):
        modelpack.load_model(m)
    assert sys.path == path_before  # code/ was not put on sys.path
    assert not (outside / "PAYLOAD_RAN").exists()


def test_xgboost_data_symlinked_to_another_model_is_refused(tmp_path, diabetes):
    """The libraries' own formats run no code, but a directory still may not read files elsewhere."""
    import xgboost as xgb

    X, y = diabetes
    model = xgb.XGBRegressor(n_estimators=3, max_depth=2).fit(X, y)
    modelpack.save_model(model, tmp_path / "elsewhere", pip_requirements=[])
    m = tmp_path / "m"
    modelpack.save_model(model, m, pip_requirements=[])
    data = _mlmodel(m)["flavors"]["xgboost"]["data"]
    (m / data).unlink()
    (m / data).symlink_to(tmp_path / "elsewhere" / data)
    with pytest.raises(ModelLoadError, match=r"'flavors\.(python_function|xgboost)\.data' names 'model\.ubj', "
                                             r"which resolves through a symlink to '.*/elsewhere/model\.ubj', outside"):
        modelpack.load_model(m)


@pytest.mark.parametrize("link", ["requirements.txt", "artifacts/weights/leak.txt"])
def test_symlinks_out_of_the_directory_anywhere_inside_it_are_refused(tmp_path, custom_dir, outside, link):
    """Files read by fixed names (requirements.txt) and the contents of named directories (artifacts/) too."""
    m = _copy(custom_dir, tmp_path)
    (m / link).unlink(missing_ok=True)
    (m / link).symlink_to(outside / "secret.txt")
    with pytest.raises(ModelLoadError, match=rf"'{link}' in the model directory '.*' is a symlink to "
                                             rf"'{outside.resolve()}/secret.txt', outside the model directory"):
        modelpack.load_model(m)


@pytest.mark.parametrize("command", ["serve", "predict"])
def test_the_cli_refuses_before_building_an_environment_from_the_files(tmp_path, custom_dir, outside, command):
    """``--env-manager virtualenv`` (the default) reads requirements.txt to build the environment: a symlinked
    one is refused first, in a second, with nothing built."""
    m = _copy(custom_dir, tmp_path)
    (m / "requirements.txt").unlink()
    (m / "requirements.txt").symlink_to(outside / "secret.txt")
    (tmp_path / "in.json").write_text('{"columns": ["x"], "data": [[1]]}')
    args = ["-p", "0"] if command == "serve" else ["-i", str(tmp_path / "in.json")]
    proc = subprocess.run([sys.executable, "-m", "modelpack.cli", command, "-m", str(m), *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MODELPACK_HOME": str(tmp_path / "cache")})
    assert proc.returncode == ModelLoadError.exit_code, proc.stderr
    assert "'requirements.txt' in the model directory" in proc.stderr and "is a symlink to" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_links_that_stay_inside_and_a_linked_model_directory_load(tmp_path, sklearn_dir, diabetes):
    m = _copy(sklearn_dir, tmp_path)
    (m / "store").mkdir()
    (m / "model.pkl").rename(m / "store" / "model.pkl")
    (m / "model.pkl").symlink_to("store/model.pkl")  # relative, inside
    (tmp_path / "current").symlink_to(m)  # the directory itself reached through a link, as deployments do
    X, _ = diabetes
    expected = modelpack.load_model(sklearn_dir).predict(X.head(3))
    assert list(modelpack.load_model(tmp_path / "current").predict(X.head(3))) == list(expected)


def test_mlflow_model_code_path_is_checked_where_loaders_open_it(tmp_path):
    """MLflow's models from code record the script's original absolute path; its loader opens the base name
    inside the model directory. That absolute path is accepted, a base name linking out is not."""
    m = tmp_path / "m"
    m.mkdir()
    (m / "model_code.py").write_text("# set_model(...)\n")
    descriptor = ModelDescriptor.from_dict({"flavors": {"python_function": {
        "loader_module": "mlflow.pyfunc.loaders.code_model",
        "model_code_path": "/home/someone/project/model_code.py"}}})
    descriptor.check_paths(m)
    (tmp_path / "model_code.py").write_text("# elsewhere\n")
    (m / "model_code.py").unlink()
    (m / "model_code.py").symlink_to(tmp_path / "model_code.py")
    with pytest.raises(ModelLoadError, match=r"'flavors\.python_function\.model_code_path' names 'model_code\.py'"):
        descriptor.check_paths(m)


def test_the_sdk_helper_resolves_inside_and_refuses_outside(tmp_path):
    from modelpack.flavor import model_path

    (tmp_path / "m" / "data").mkdir(parents=True)
    assert model_path(tmp_path / "m", "data/model.bin", "flavors.x.data") == (tmp_path / "m" / "data" /
                                                                               "model.bin").resolve()
    with pytest.raises(ModelLoadError, match=r"MLmodel field 'flavors\.x\.data' names '\.\./m2/model\.bin'"):
        model_path(tmp_path / "m", "../m2/model.bin", "flavors.x.data")
    with pytest.raises(ModelLoadError, match=r"'flavors\.x\.data' must be a relative path .*, got \['a'\]"):
        model_path(tmp_path / "m", ["a"], "flavors.x.data")


def test_modelpack_predict_refuses_a_tampered_directory(tmp_path, sklearn_dir, outside, diabetes):
    m = _copy(sklearn_dir, tmp_path)
    _relative_pickle(m, outside)
    (tmp_path / "in.json").write_text(diabetes[0].head(2).to_json(orient="split", index=False))
    proc = subprocess.run([sys.executable, "-m", "modelpack.cli", "predict", "-m", str(m), "-i",
                           str(tmp_path / "in.json"), "--env-manager", "local"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ModelLoadError.exit_code, proc.stderr
    assert "MLmodel field 'flavors.sklearn.pickled_model' names '../../outside/evil.pkl'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (outside / "PAYLOAD_RAN").exists()


# -- 2. loader_module: only what a flavor claims, or what the user trusts -----------------------------------------

def _foreign_model(tmp_path: Path, module: str) -> Path:
    m = tmp_path / "foreign_model"
    m.mkdir()
    (m / "weights.txt").write_text("5")
    _write_mlmodel(m, {"flavors": {"python_function": {"loader_module": module, "data": "weights.txt"}}})
    return m


def _loader_package(tmp_path: Path, package: str) -> Path:
    """A third-party loader package on its own site dir: ``PACKAGE.pyfunc._load_pyfunc`` reads weights.txt;
    importing it leaves ``imported.txt`` next to it."""
    site = tmp_path / "site"
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text("")
    (site / package / "pyfunc.py").write_text(textwrap.dedent("""
        from pathlib import Path

        Path(__file__).with_name("imported.txt").write_text("imported")

        class _Constant:
            def __init__(self, value):
                self.value = value

            def predict(self, model_input):
                return [self.value] * len(model_input)

        def _load_pyfunc(data_path):
            return _Constant(float(Path(data_path).read_text()))
    """))
    return site


def _predict_cli(tmp_path: Path, model_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "in.json").write_text('{"columns": ["x"], "data": [[1], [2]]}')
    return subprocess.run([sys.executable, "-m", "modelpack.cli", "predict", "-m", str(model_dir), "-i",
                           str(tmp_path / "in.json"), "--env-manager", "local", *extra],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_loader_module_this_is_not_imported(tmp_path):
    proc = _predict_cli(tmp_path, _foreign_model(tmp_path, "this"))
    assert proc.returncode == ModelLoadError.exit_code
    assert "Beautiful is better than ugly" not in proc.stdout + proc.stderr  # `import this` prints the Zen
    assert "names loader module 'this', which no registered flavor provides" in proc.stderr
    assert "'modelpack.flavors.sklearn'" in proc.stderr and "'mlflow.sklearn'" in proc.stderr
    assert "MODELPACK_TRUSTED_LOADER_MODULES=this" in proc.stderr and "--trust-loader-module this" in proc.stderr


@pytest.mark.parametrize("module", ["os", "subprocess", "modelpack.flavors", "modelpack.server.gunicorn"])
def test_standard_and_core_modules_are_refused_as_loaders(tmp_path, module):
    with pytest.raises(ModelLoadError, match=rf"names loader module '{module}', which no registered flavor "
                                             "provides .* runs its code"):
        modelpack.load_model(_foreign_model(tmp_path, module))


def test_a_malformed_loader_module_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"loader_module must be a dotted module name .* got '\.\./evil'"):
        modelpack.load_model(_foreign_model(tmp_path, "../evil"))


def test_an_untrusted_third_party_loader_is_not_imported_and_a_trusted_one_loads(tmp_path):
    site = _loader_package(tmp_path, "acme_loader")
    m = _foreign_model(tmp_path, "acme_loader.pyfunc")
    path_env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    marker = site / "acme_loader" / "imported.txt"

    for env in ({}, {"MODELPACK_TRUSTED_LOADER_MODULES": "acme"}):  # a name prefix is no package
        proc = _predict_cli(tmp_path, m, env={**path_env, **env})
        assert proc.returncode == ModelLoadError.exit_code, proc.stderr
        assert "--trust-loader-module acme_loader.pyfunc" in proc.stderr
        assert not marker.exists()

    for extra, env in [((), {"MODELPACK_TRUSTED_LOADER_MODULES": "numpy, acme_loader"}),  # the package
                       (("--trust-loader-module", "acme_loader.pyfunc"), {})]:  # the module itself
        proc = _predict_cli(tmp_path, m, *extra, env={**path_env, **env})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"predictions": [5.0, 5.0]}
        assert marker.exists()


def test_load_model_takes_trusted_loader_modules(tmp_path, monkeypatch):
    site = _loader_package(tmp_path, "acme_loader_kw")
    monkeypatch.syspath_prepend(str(site))
    m = _foreign_model(tmp_path, "acme_loader_kw.pyfunc")
    with pytest.raises(ModelLoadError, match="no registered flavor provides"):
        modelpack.load_model(m)
    assert not (site / "acme_loader_kw" / "imported.txt").exists()
    assert modelpack.load_model(m, trusted_loader_modules=["acme_loader_kw"]).predict([[1]]) == [5.0]


def test_a_missing_loader_module_says_it_cannot_be_imported_and_how_to_trust_one(tmp_path):
    with pytest.raises(ModelLoadError, match=r"needs loader module 'no_such_pkg\.pyfunc', .* cannot be imported: "
                                             r"no module named 'no_such_pkg'\. Install the flavor plugin"):
        modelpack.load_model(_foreign_model(tmp_path, "no_such_pkg.pyfunc"))


def test_malformed_trusted_modules_setting_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPACK_TRUSTED_LOADER_MODULES", "ok_module,../bad")
    with pytest.raises(modelpack.ModelpackError, match=r"MODELPACK_TRUSTED_LOADER_MODULES must be comma-separated "
                                                       r"module or package names .* got \['\.\./bad'\]"):
        modelpack.load_model(_foreign_model(tmp_path, "whatever.loader"))


def test_serve_trusts_a_loader_module_only_when_told(tmp_path, serve):
    site = _loader_package(tmp_path, "acme_serving")
    m = _foreign_model(tmp_path, "acme_serving.pyfunc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "modelpack.cli", "serve", "-m", str(m), "-p", "0",
                           "--env-manager", "local"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == ModelLoadError.exit_code
    assert "names loader module 'acme_serving.pyfunc'" in proc.stderr
    assert not (site / "acme_serving" / "imported.txt").exists()

    server = serve(m, "--trust-loader-module", "acme_serving", env={"PYTHONPATH": env["PYTHONPATH"]})
    response = server.post('{"columns": ["x"], "data": [[1], [2], [3]]}')
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [5.0, 5.0, 5.0]}


# -- 3. the trust page: what runs code, linked where users look ---------------------------------------------------

def test_the_trust_page_is_linked_and_covers_every_builtin_flavor():
    trust = (ROOT / "docs" / "trust.md").read_text()
    assert "[docs/trust.md](docs/trust.md)" in (ROOT / "README.md").read_text()
    assert "docs/trust.md" in (modelpack.save_model.__doc__ or "")
    builtin = sorted(p.stem for p in (ROOT / "flavors").glob("*.py") if p.stem != "__init__")
    from modelpack.flavor_registry import get_registry

    names = {type(get_registry().get(n)).__module__.rsplit(".", 1)[-1]: n for n in get_registry().names}
    for module in builtin:
        assert f"| `{names[module]}` |" in trust, f"docs/trust.md has no row for the {names[module]} flavor"
    for topic in ("MODELPACK_TRUSTED_LOADER_MODULES", "--trust-loader-module", "outside the model directory",
                  "__reduce__"):
        assert topic in trust


def test_what_the_trust_page_warns_about_a_pickle_runs_code_on_predict(tmp_path, sklearn_dir, outside, diabetes):
    """The page's first claim, as the tester saw it: a ``__reduce__`` payload in model.pkl runs on
    ``modelpack predict``. Path checks and loader checks cannot stop it: only not loading untrusted pickles does."""
    m = _copy(sklearn_dir, tmp_path)
    shutil.copy(outside / "evil.pkl", m / "model.pkl")
    (tmp_path / "in.json").write_text(diabetes[0].head(2).to_json(orient="split", index=False))
    proc = subprocess.run([sys.executable, "-m", "modelpack.cli", "predict", "-m", str(m), "-i",
                           str(tmp_path / "in.json"), "--env-manager", "local"],
                          capture_output=True, text=True, timeout=120)
    assert (outside / "PAYLOAD_RAN").exists()
    assert proc.returncode != 0  # what it unpickled is no model, but the payload has already run


# -- 4. every server its own gunicorn control socket, or none ----------------------------------------------------

def test_two_servers_share_no_gunicorn_control_socket(tmp_path, serve, diabetes_model_dir):
    """gunicorn >= 25.1 puts a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl, one
    path per user: a second server took it over and stopping either deleted it. modelpack's servers open none.
    The control: a plain gunicorn started after them, in the same kind of environment, does create one (shortly
    after it boots), so by the time it has, the modelpack servers would have too."""
    import gunicorn.config

    home, runtime = tmp_path / "home", tmp_path / "runtime"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    sockets = [home / ".gunicorn" / "gunicorn.ctl", runtime / "gunicorn.ctl"]
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    first = serve(diabetes_model_dir, env=env)
    second = serve(diabetes_model_dir, env=env)
    body = '{"columns": ["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"], "data": [[0,0,0,0,0,0,0,0,0,0]]}'
    assert first.post(body).status_code == 200 and second.post(body).status_code == 200

    if hasattr(gunicorn.config, "ControlSocket"):
        control_runtime = tmp_path / "control_runtime"
        control_runtime.mkdir(mode=0o700)
        (tmp_path / "plain_app.py").write_text(
            "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n")
        port = free_port()
        plain = wait_until_ready([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "plain_app:app"],
                                 port, tmp_path / "plain.log", {**os.environ, **env, "XDG_RUNTIME_DIR":
                                                                str(control_runtime)}, 60, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 20
            while not os.path.lexists(control_runtime / "gunicorn.ctl") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert os.path.lexists(control_runtime / "gunicorn.ctl"), plain.log()
        finally:
            plain.stop()

    assert [s for s in sockets if os.path.lexists(s)] == []
    assert "Control socket" not in first.log() + second.log()
    assert first.stop() == 0
    assert second.post(body).status_code == 200
    assert [s for s in sockets if os.path.lexists(s)] == []
