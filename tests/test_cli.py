"""The command line: predict, info, help, exit codes, and light imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    if args[:1] == ("predict",) and "--env-manager" not in args:
        args = (*args, "--env-manager", "local")  # as helpers.start_server; test_env_build.py rebuilds
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], input=stdin,
                          capture_output=True, timeout=120)


def test_predict_json_and_csv(tmp_path, diabetes, elasticnet, diabetes_model_dir):
    X, _ = diabetes
    expected = elasticnet.predict(X.head(7))
    (tmp_path / "in.json").write_text(json.dumps({"dataframe_split": X.head(7).to_dict(orient="split")}))
    out = run("predict", "-m", str(diabetes_model_dir), "-i", str(tmp_path / "in.json"))
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(json.loads(out.stdout)["predictions"], expected, rtol=1e-12)

    X.head(7).to_csv(tmp_path / "in.csv", index=False, float_format="%.17g")
    out = run("predict", "-m", str(diabetes_model_dir), "-i", str(tmp_path / "in.csv"),
              "-o", str(tmp_path / "o.json"))
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(json.loads((tmp_path / "o.json").read_text())["predictions"], expected, rtol=1e-12)

    out = run("predict", "-m", str(diabetes_model_dir), "-i", "-", "-t", "csv",
              stdin=X.head(7).to_csv(index=False, float_format="%.17g").encode())
    np.testing.assert_allclose(json.loads(out.stdout)["predictions"], expected, rtol=1e-12)


def test_predict_serving_example_file(diabetes_model_dir):
    out = run("predict", "-m", str(diabetes_model_dir), "-i", str(diabetes_model_dir / "serving_input_example.json"))
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["predictions"]) == 3


@pytest.mark.parametrize("body, code, message", [
    (b"{nope", 2, b"Error: Request body is not valid JSON"),
    (b'{"foo": 1}', 2, b"Error: JSON body must have one of the keys"),
])
def test_predict_bad_input(tmp_path, diabetes_model_dir, body, code, message):
    (tmp_path / "bad.json").write_bytes(body)
    out = run("predict", "-m", str(diabetes_model_dir), "-i", str(tmp_path / "bad.json"),
              "-o", str(tmp_path / "o.json"))
    assert out.returncode == code
    assert out.stderr.startswith(message)
    assert b"Traceback" not in out.stderr
    assert not (tmp_path / "o.json").exists()


def test_predict_missing_input_and_model(tmp_path, diabetes_model_dir):
    out = run("predict", "-m", str(diabetes_model_dir), "-i", str(tmp_path / "none.json"))
    assert out.returncode == 2 and b"Cannot read input file" in out.stderr
    out = run("predict", "-m", str(tmp_path / "nomodel"), "-i", str(tmp_path / "none.json"))
    assert out.returncode == 3 and b"does not exist" in out.stderr


def test_unwritable_output_is_a_clear_error(tmp_path, diabetes_model_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run("generate-dockerfile", "-m", str(diabetes_model_dir), "-d", str(blocker / "ctx"))
    assert out.returncode == 2, out.stderr
    err = out.stderr.decode().strip()
    assert err.startswith("Error: ") and err.endswith(f"'{blocker}'") and "Traceback" not in err, err
    assert not list(tmp_path.glob(".ctx.*"))


def test_info(diabetes_model_dir):
    out = run("info", "-m", str(diabetes_model_dir))
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "Flavor:        sklearn (loader mlflow.sklearn)" in text
    assert "age: double" in text and "model.pkl" in text and "scikit-learn==" in text
    summary = json.loads(run("info", "-m", str(diabetes_model_dir), "--json").stdout)
    assert summary["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert "requirements.txt" in summary["files"]


def test_help_and_usage_errors():
    out = run("--help")
    assert out.returncode == 0 and b"serve" in out.stdout and b"predict" in out.stdout
    for cmd in ("serve", "predict", "info"):
        out = run(cmd, "--help")
        assert out.returncode == 0 and b"--model-uri" in out.stdout
    out = run("serve")
    assert out.returncode == 2 and b"Missing option '-m'" in out.stderr
    out = run("nope")
    assert out.returncode == 2 and b"No such command 'nope'" in out.stderr
    out = run("--version")
    assert out.returncode == 0 and b"modelpack, version" in out.stdout


def test_imports_stay_light():
    # Autolog too: its public names are modules imported on first use, and enabling it imports no library
    # (each is patched when the script imports it; tests/test_autolog.py).
    code = ("import sys, modelpack; from modelpack.cli.main import cli; "
            "modelpack.sklearn, modelpack.xgboost, modelpack.lightgbm; modelpack.autolog(); "
            "modelpack.autolog(disable=True); "
            "heavy = {'pandas', 'numpy', 'flask', 'gunicorn', 'sklearn', 'cloudpickle', 'xgboost', 'lightgbm'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
