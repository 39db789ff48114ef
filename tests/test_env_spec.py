"""What a model records about its environment, the cache key of a rebuild, and install-failure
messages (modelpack/env/spec.py, reqfile.py, recorded.py, modelpack_source.py, failure.py)."""

from __future__ import annotations

import logging

import pytest
import yaml

import modelpack
from modelpack.env.failure import summarize
from modelpack.env.modelpack_source import installed
from modelpack.env.recorded import RecordedEnv
from modelpack.env.reqfile import expand, read_lines


def _identity(model_input):
    return model_input


def test_requirement_files_are_inlined_and_constraints_copied(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "other.txt").write_text("# a comment\nroman==4.2  # pinned\n-r sub/more.txt\n")
    (tmp_path / "sub" / "more.txt").write_text("inflection==\\\n0.5.1\n-c ../cons.txt\n")
    (tmp_path / "cons.txt").write_text("numpy<3\n-c sub/cons2.txt\n")
    (tmp_path / "sub" / "cons2.txt").write_text("pandas<4\n")
    modelpack.save_model(_identity, tmp_path / "m", extra_pip_requirements=["-r other.txt"])

    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert lines[-3:] == ["roman==4.2", "inflection==0.5.1", "-c constraints.txt"]
    assert (tmp_path / "m" / "constraints.txt").read_text().splitlines() == ["numpy<3", "pandas<4"]
    conda = yaml.safe_load((tmp_path / "m" / "conda.yaml").read_text())
    assert conda["dependencies"][-1]["pip"] == lines

    # The model directory alone is enough: the originals may go.
    for name in ("other.txt", "cons.txt", "sub/more.txt", "sub/cons2.txt"):
        (tmp_path / name).unlink()
    recorded = RecordedEnv.from_model(tmp_path / "m")
    assert "roman==4.2" in recorded.requirements
    assert f"-c {tmp_path / 'm' / 'constraints.txt'}" in recorded.requirements


def test_an_extra_from_a_file_replaces_the_inferred_pin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pins.txt").write_text("numpy==1.26.4\n")
    modelpack.save_model(_identity, tmp_path / "m", extra_pip_requirements=["-r pins.txt"])
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line.startswith("numpy")] == ["numpy==1.26.4"]


def test_missing_requirement_file_is_kept_as_written_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="modelpack.env.spec"):
        modelpack.save_model(_identity, tmp_path / "m", extra_pip_requirements=["-r nope.txt"])
    assert (tmp_path / "m" / "requirements.txt").read_text().splitlines()[-1] == "-r nope.txt"
    assert "nope.txt" in caplog.text and "kept as written" in caplog.text


def test_reqfile_parsing(tmp_path):
    (tmp_path / "r.txt").write_text(
        "a==1 \\\n  ; python_version > '3'\n\n# x\n--requirement=r2.txt\n--require-hashes\n")
    (tmp_path / "r2.txt").write_text("b\n-r r.txt\n--constraint https://example.com/c.txt\n")
    assert read_lines(tmp_path / "r.txt")[0] == "a==1   ; python_version > '3'"
    assert expand(["-r r.txt"], tmp_path) == [
        "a==1   ; python_version > '3'", "b", "--constraint https://example.com/c.txt", "--require-hashes",
    ]


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m"
    modelpack.save_model(_identity, path, extra_pip_requirements=["roman==4.2"])
    return path


def test_recorded_env_and_key(saved, tmp_path):
    recorded = RecordedEnv.from_model(saved)
    assert recorded.python.count(".") == 2
    assert any(d.startswith("pip==") for d in recorded.build_dependencies)
    lines = recorded.install_lines()
    assert lines[-1] == " ".join(installed().install_args)
    assert sum(line.startswith("modelpack") or line.startswith("-e") for line in lines) == 1

    key = recorded.key("3.11.7", "virtualenv")
    assert len(key) == 16 and key == RecordedEnv.from_model(saved).key("3.11.7", "virtualenv")
    assert key != recorded.key("3.11.8", "virtualenv")
    assert key != recorded.key("3.11.7", "uv")

    # Another model with the same requirements shares the environment...
    twin = tmp_path / "twin"
    modelpack.save_model(_identity, twin, extra_pip_requirements=["roman==4.2"])
    assert RecordedEnv.from_model(twin).key("3.11.7", "virtualenv") == key
    # ... and a constraint file's content is part of the key.
    (saved / "constraints.txt").write_text("numpy<3\n")
    with open(saved / "requirements.txt", "a") as fh:
        fh.write("-c constraints.txt\n")
    constrained = RecordedEnv.from_model(saved).key("3.11.7", "virtualenv")
    assert constrained != key
    (saved / "constraints.txt").write_text("numpy<2\n")
    assert RecordedEnv.from_model(saved).key("3.11.7", "virtualenv") != constrained


def test_recorded_env_without_python_env_yaml(saved):
    (saved / "python_env.yaml").unlink()
    recorded = RecordedEnv.from_model(saved)
    assert recorded.build_dependencies == ("pip",)
    assert "roman==4.2" in recorded.requirements


def test_this_checkout_is_installed_from_source():
    # The test suite runs against an editable install of the checkout (README, .ci/run).
    this = installed()
    if this.source is None:
        pytest.skip("modelpack is not a development install here")
    assert this.recorded_requirement == f"modelpack @ {this.source.as_uri()}"
    assert this.install_args == (["-e", str(this.source)] if this.editable else [str(this.source)])
    assert "[project]" in this.fingerprint()  # its dependencies are part of the cache key


PIP_NOT_FOUND = """Collecting roman==4.2
ERROR: Could not find a version that satisfies the requirement nonexistent-package-xyz==1.0 (from versions: none)
ERROR: No matching distribution found for nonexistent-package-xyz==1.0"""
PIP_CONFLICT = """ERROR: Cannot install numpy==1.26.4 and pandas==3.1.1 because these package versions \
have conflicting dependencies.

The conflict is caused by:
    The user requested numpy==1.26.4
    pandas 3.1.1 depends on numpy>=2.0.2; python_version < "3.14"
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/..."""
PIP_BUILD = """Collecting roman==4.2
Processing ./badpkg
  Preparing metadata (setup.py): finished with status 'error'
  error: subprocess-exited-with-error
  × python setup.py egg_info did not run successfully.
      RuntimeError: boom
error: metadata-generation-failed"""
PIP_OFFLINE = """WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...: \
Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/roman/
ERROR: Could not find a version that satisfies the requirement roman==4.2 (from versions: none)
ERROR: No matching distribution found for roman==4.2"""
UV_NOT_FOUND = """error: No solution found when resolving dependencies
  cause: Because nonexistent-package-xyz was not found in the package registry and you require \
nonexistent-package-xyz==1.0, we can conclude that your requirements are unsatisfiable."""
UV_NO_VERSION = """error: No solution found when resolving dependencies
  cause: Because there is no version of roman==99.0 and you require roman==99.0, we can conclude that \
your requirements are unsatisfiable."""
UV_CONFLICT = """error: No solution found when resolving dependencies
  cause: Because you require numpy==2.4.6 and numpy<2, we can conclude that your requirements are unsatisfiable."""


@pytest.mark.parametrize("output, expected", [
    (PIP_NOT_FOUND, "no version of 'nonexistent-package-xyz==1.0' was found on the package index"),
    (PIP_CONFLICT, "conflicting requirements: numpy==1.26.4 and pandas==3.1.1 "
                   "(pandas 3.1.1 depends on numpy>=2.0.2; python_version < \"3.14\")"),
    (PIP_BUILD, "preparing './badpkg' failed"),
    (PIP_OFFLINE, "no version of 'roman==4.2' was found on the package index (the package index could not be reached"),
    (UV_NOT_FOUND, "no version of 'nonexistent-package-xyz==1.0' was found on the package index"),
    (UV_NO_VERSION, "no version of 'roman==99.0' was found on the package index"),
    (UV_CONFLICT, "conflicting requirements: Because you require numpy==2.4.6 and numpy<2, we can conclude"),
    ("something odd\nERROR: disk full\n", "ERROR: disk full"),
    ("", "the installer failed without output"),
])
def test_failure_summary_names_the_requirement(output, expected):
    assert summarize(output.splitlines()).startswith(expected)


def test_pins_drop_a_local_version_label():
    """torch's CPU build is installed as 2.13.0+cpu; PyPI hosts no '+cpu' files, so the pin must be 2.13.0."""
    from importlib import metadata

    from modelpack.env.spec import _public_version, pin

    assert _public_version("2.13.0+cpu") == "2.13.0"
    assert _public_version("1.2.3") == "1.2.3"
    assert _public_version("not a version") == "not a version"
    for dist in ("torch", "numpy"):
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        assert pin(dist) == f"{dist}=={installed.split('+', 1)[0]}"
