"""The flavor plugin registry: entry-point discovery (built-ins included) and validation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

from modelpack.errors import FlavorError
from modelpack.flavor import Flavor
from modelpack.flavor_registry import ENTRY_POINT_GROUP, FlavorRegistry, get_registry


def test_builtin_flavors_come_from_entry_points():
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"sklearn", "python_model"} <= names
    registry = get_registry()
    assert {"sklearn", "python_model"} <= set(registry.names)
    assert registry.for_loader_module("mlflow.sklearn").name == "sklearn"
    assert registry.for_loader_module("modelpack.flavors.custom").name == "python_model"


PLUGIN = '''
import pickle
from modelpack.flavor import Flavor, SavedFlavor

class Doubler:
    """A toy "model library" object."""
    factor = 2

class DoublerFlavor(Flavor):
    name = "doubler"
    loader_module = "doubler_flavor"

    def can_save(self, model):
        return isinstance(model, Doubler)

    def save(self, model, path):
        (path / "factor.txt").write_text(str(model.factor))
        return SavedFlavor(native={"factor_file": "factor.txt"})

    def load(self, model_dir, descriptor):
        return int((model_dir / descriptor.flavors["doubler"]["factor_file"]).read_text())

    def load_pyfunc(self, model_dir, descriptor):
        factor = self.load(model_dir, descriptor)

        class Wrapper:
            def predict(self, model_input, params=None):
                return [int(v) * factor for v in model_input]
        return Wrapper()

    def requirements(self, model):
        return []
'''

BROKEN = '''
class NotAFlavor:
    pass
'''


def _install_fake_distribution(root, name, module_source, entry):
    """A real installed distribution as importlib.metadata sees one: a module plus a
    .dist-info with METADATA and entry_points.txt on sys.path."""
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry}\n")


def test_third_party_flavor_registered_only_through_an_entry_point(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_distribution(site, "doubler_flavor", PLUGIN, "doubler = doubler_flavor:DoublerFlavor")
    _install_fake_distribution(site, "broken_flavor", BROKEN, "broken = broken_flavor:NotAFlavor")
    script = textwrap.dedent(f"""
        import modelpack, doubler_flavor
        from modelpack.flavor_registry import get_registry
        d = modelpack.save_model(doubler_flavor.Doubler(), {str(tmp_path / 'm')!r}, pip_requirements=[])
        print(d.flavors["python_function"]["loader_module"])
        print(modelpack.load_model({str(tmp_path / 'm')!r}).predict([1, 2, 3]))
        print(get_registry().broken["broken"])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "doubler_flavor"
    assert lines[1] == "[2, 4, 6]"
    assert "Flavor plugin 'broken' (broken_flavor:NotAFlavor)" in lines[2]
    assert "is not a modelpack.flavor.Flavor subclass" in lines[2]
    assert "Flavor plugin 'broken'" in out.stderr  # logged when discovered


def test_validation_at_registration():
    registry = FlavorRegistry()

    class Incomplete(Flavor):
        name = "incomplete"
        loader_module = "x"

        def can_save(self, model):
            return False

    with pytest.raises(FlavorError, match=r"Incomplete does not implement \['load', 'load_pyfunc'"):
        registry.register(Incomplete, "'incomplete' (test)")

    class NoName(Flavor):
        loader_module = "x"
        name = ""

        def can_save(self, model): return False
        def save(self, model, path): ...
        def load(self, model_dir, descriptor): ...
        def load_pyfunc(self, model_dir, descriptor): ...
        def requirements(self, model): return []

    with pytest.raises(FlavorError, match="'name' must be a non-empty string"):
        registry.register(NoName)


def test_unknown_flavor_lists_registered():
    with pytest.raises(FlavorError, match=r"Unknown flavor 'nope'; registered flavors: \["):
        get_registry().get("nope")


@pytest.mark.parametrize("flavor, library", [
    ("catboost", "catboost"), ("lightgbm", "lightgbm"), ("statsmodels", "statsmodels"), ("xgboost", "xgboost"),
    ("onnx", "onnxruntime"), ("onnx", "onnx"), ("pytorch", "torch"),
])
def test_flavor_modules_import_without_their_library(flavor, library):
    """Discovering and importing a flavor does not import its model library, and the flavor does not claim
    models of other libraries (the gradient-boosting flavors outrank sklearn's only for their own classes)."""
    code = ("import sys, modelpack; from modelpack.flavor_registry import get_registry; "
            f"import modelpack.flavors.{flavor}; r = get_registry(); "
            "from sklearn.linear_model import LinearRegression; "
            "assert r.for_model(LinearRegression()).name == 'sklearn'; "
            f"assert {flavor!r} in r.names; print({library!r} in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr

