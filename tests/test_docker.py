"""Container images: the per-model build context, builder detection, and real builds with buildah.

The slow tests build the top-level image and a per-model image with buildah (vfs storage, chroot isolation:
no container engine needed, as root) on a Debian base made locally with debootstrap and cached in buildah's
storage between runs, then serve the model inside each image with ``buildah run`` and score the seed's body.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import free_port

from modelpack.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SEED_BODY = (
    '{"columns":["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],"data":[[0.038076,0.050680,0.061696,'
    '0.021872,-0.044223,-0.034821,-0.043401,-0.002592,0.019908,-0.017646]]}'
)
BUILDAH = ["buildah", "--storage-driver", "vfs"]
SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
#: The host's CA bundle goes here inside builds: mounting over /etc/ssl/certs/ca-certificates.crt breaks apt.
CA_IN_BUILD = "/run/modelpack-test/host-ca.crt"


def _fake_wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "wheels" / "modelpack-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"not really a zip")
    return wheel


# -- generate-dockerfile ------------------------------------------------------------------------------------


def test_generate_dockerfile_writes_a_build_context(diabetes_model_dir, tmp_path, capsys):
    wheel = _fake_wheel(tmp_path)
    out = tmp_path / "ctx"
    assert main(["generate-dockerfile", "-m", str(diabetes_model_dir), "-d", str(out),
                 "--modelpack-wheel", str(wheel)]) == 0
    assert "docker build" in capsys.readouterr().out

    model_files = sorted(p.name for p in diabetes_model_dir.iterdir())
    assert sorted(p.name for p in (out / "model").iterdir()) == model_files
    assert (out / "requirements" / wheel.name).read_bytes() == wheel.read_bytes()
    recorded = (diabetes_model_dir / "requirements.txt").read_text().splitlines()
    installed = (out / "requirements" / "requirements.txt").read_text().splitlines()
    assert installed[0] == f"modelpack @ file:///tmp/requirements/{wheel.name}"
    assert installed[1:] == [r for r in recorded if not r.startswith("modelpack")]
    # the image's non-root user must be able to read everything, whatever the model dir's modes were
    for path in out.rglob("*"):
        assert path.stat().st_mode & 0o004, path

    dockerfile = (out / "Dockerfile").read_text()
    major_minor = ".".join(sys.version.split(".")[:2])
    assert f"ARG BASE_IMAGE=python:{major_minor}-slim" in dockerfile
    for line in ("USER 10001:10001", "EXPOSE 8080", "COPY model/ /opt/model/", "COPY --from=build /opt/venv",
                 "MODELPACK_HOST=0.0.0.0", "pip install -r /tmp/requirements/requirements.txt",
                 'CMD ["modelpack", "serve", "--model-uri", "/opt/model", "--env-manager", "local"]'):
        assert line in dockerfile
    (healthcheck,) = [line for line in dockerfile.splitlines() if line.strip().startswith("CMD [\"python\"")]
    assert "/ping" in healthcheck and json.loads(healthcheck.strip()[4:])[:2] == ["python", "-c"]
    assert "--build-arg" not in dockerfile and "ca-certificates.crt" not in dockerfile


def test_generate_dockerfile_base_image_option(diabetes_model_dir, tmp_path):
    out = tmp_path / "ctx"
    assert main(["generate-dockerfile", "-m", str(diabetes_model_dir), "-d", str(out), "--base-image",
                 "registry.example/python:3.11", "--modelpack-wheel", str(_fake_wheel(tmp_path))]) == 0
    assert "ARG BASE_IMAGE=registry.example/python:3.11\n" in (out / "Dockerfile").read_text()


def test_generate_dockerfile_installs_the_system_libraries_a_wheel_needs(diabetes_model_dir, tmp_path):
    """lightgbm's wheel loads the system's libgomp.so.1, which slim images lack; other models get no apt layer."""
    model = tmp_path / "lgb_model"
    shutil.copytree(diabetes_model_dir, model)
    (model / "requirements.txt").write_text("lightgbm==4.6.0\nscikit-learn==1.5.2\n")
    wheel = _fake_wheel(tmp_path)
    assert main(["generate-dockerfile", "-m", str(model), "-d", str(tmp_path / "ctx"), "--modelpack-wheel",
                 str(wheel)]) == 0
    final_stage = (tmp_path / "ctx" / "Dockerfile").read_text().split("AS build", 1)[1].split("\nFROM ", 1)[1]
    assert "apt-get install -y --no-install-recommends libgomp1" in final_stage
    assert main(["generate-dockerfile", "-m", str(diabetes_model_dir), "-d", str(tmp_path / "plain"),
                 "--modelpack-wheel", str(wheel)]) == 0
    assert "apt-get" not in (tmp_path / "plain" / "Dockerfile").read_text()


def test_generate_dockerfile_adds_modelpack_to_a_model_without_it(diabetes_model_dir, tmp_path):
    """A model saved by MLflow lists mlflow, not modelpack: the image still needs modelpack to serve it."""
    model = tmp_path / "mlflow_model"
    shutil.copytree(diabetes_model_dir, model)
    (model / "requirements.txt").write_text("mlflow==2.17.0\nscikit-learn==1.5.2\n")
    out = tmp_path / "ctx"
    wheel = _fake_wheel(tmp_path)
    assert main(["generate-dockerfile", "-m", str(model), "-d", str(out), "--modelpack-wheel", str(wheel)]) == 0
    assert (out / "requirements" / "requirements.txt").read_text().splitlines() == [
        f"modelpack @ file:///tmp/requirements/{wheel.name}", "mlflow==2.17.0", "scikit-learn==1.5.2"]
    assert (model / "requirements.txt").read_text() == "mlflow==2.17.0\nscikit-learn==1.5.2\n"  # untouched


def test_generate_dockerfile_keeps_the_model_constraints(diabetes_model_dir, tmp_path):
    """pip reads ``-c constraints.txt`` relative to the requirements file: it must sit next to it."""
    model = tmp_path / "m"
    shutil.copytree(diabetes_model_dir, model)
    (model / "requirements.txt").write_text("scikit-learn==1.5.2\n-c constraints.txt\n")
    (model / "constraints.txt").write_text("numpy<3\n")
    out = tmp_path / "ctx"
    assert main(["generate-dockerfile", "-m", str(model), "-d", str(out),
                 "--modelpack-wheel", str(_fake_wheel(tmp_path))]) == 0
    assert (out / "requirements" / "requirements.txt").read_text().splitlines()[1:] == [
        "scikit-learn==1.5.2", "-c constraints.txt"]
    assert (out / "requirements" / "constraints.txt").read_text() == "numpy<3\n"


def test_generate_dockerfile_installs_the_running_modelpack(diabetes_model_dir, tmp_path, monkeypatch):
    """Like a rebuilt environment, the image gets the modelpack that builds it, not the saving machine's path."""
    import modelpack.env.spec

    model = tmp_path / "m"
    shutil.copytree(diabetes_model_dir, model)
    (model / "requirements.txt").write_text("modelpack @ file:///elsewhere/modelpack-src\nscikit-learn==1.5.2\n")
    monkeypatch.setattr(modelpack.env.spec, "modelpack_requirement", lambda: "modelpack==0.1.0")
    assert main(["generate-dockerfile", "-m", str(model), "-d", str(tmp_path / "ctx")]) == 0
    assert (tmp_path / "ctx" / "requirements" / "requirements.txt").read_text() == (
        "modelpack==0.1.0\nscikit-learn==1.5.2\n")
    assert not list((tmp_path / "ctx" / "requirements").glob("*.whl"))


def test_generate_dockerfile_needs_a_wheel_when_the_source_is_gone(diabetes_model_dir, tmp_path, monkeypatch,
                                                                   capsys):
    import modelpack.env.spec

    monkeypatch.setattr(modelpack.env.spec, "modelpack_requirement",
                        lambda: "modelpack @ file:///nonexistent/modelpack-src")
    assert main(["generate-dockerfile", "-m", str(diabetes_model_dir), "-d", str(tmp_path / "ctx")]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/modelpack-src" in err and "--modelpack-wheel" in err
    assert list(tmp_path.iterdir()) == []  # neither the context nor its staging directory is left behind


def test_generate_dockerfile_refuses_a_non_empty_directory(diabetes_model_dir, tmp_path, capsys):
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["generate-dockerfile", "-m", str(diabetes_model_dir), "-d", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_generate_dockerfile_rejects_a_missing_model(tmp_path, capsys):
    assert main(["generate-dockerfile", "-m", str(tmp_path / "nope"), "-d", str(tmp_path / "ctx")]) == 3
    assert not (tmp_path / "ctx").exists()


# -- build-docker: builder detection and the builder's command line -----------------------------------------


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_build_docker_without_any_builder_says_so(diabetes_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(["build-docker", "-m", str(diabetes_model_dir), "-n", "diabetes:1"])
    err = capsys.readouterr().err
    assert code == 5, err
    assert "No container builder available" in err
    for tool in ("docker", "podman", "buildah"):
        assert f"{tool}: not installed" in err
    assert "generate-dockerfile" in err


def test_build_docker_skips_a_docker_client_without_engine(diabetes_model_dir, tmp_path, monkeypatch, capsys):
    """A docker CLI whose daemon does not answer is not a builder; the next one found is used."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    _fake_tool(bin_dir, "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1\n')
    _fake_tool(bin_dir, "podman",
               f'echo "$@" > {log}\neval last=\\${{$#}}\ncp "$last/Dockerfile" {tmp_path}/seen.Dockerfile\n'
               f'cp "$last/requirements/requirements.txt" {tmp_path}/seen.requirements.txt\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code = main(["build-docker", "-m", str(diabetes_model_dir), "-n", "diabetes:1", "--modelpack-wheel",
                 str(_fake_wheel(tmp_path)), "--build-arg", "PIP_INDEX_URL=http://127.0.0.1:1/simple",
                 "--", "--pull=never"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    argv = log.read_text().split()
    assert argv[:5] == ["build", "--format", "docker", "--tag", "diabetes:1"]
    assert argv[5:8] == ["--build-arg", "PIP_INDEX_URL=http://127.0.0.1:1/simple", "--pull=never"]
    assert not Path(argv[8]).exists()  # the temporary build context is removed afterwards
    assert "USER 10001:10001" in (tmp_path / "seen.Dockerfile").read_text()
    assert (tmp_path / "seen.requirements.txt").read_text().startswith("modelpack @ file:///tmp/requirements/")
    assert "Built image diabetes:1 with podman" in captured.out


def test_build_docker_reports_a_failed_build(diabetes_model_dir, tmp_path, monkeypatch, capsys):
    _fake_tool(tmp_path / "bin", "buildah", "echo 'STEP 1/9: boom' >&2; exit 125\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    code = main(["build-docker", "-m", str(diabetes_model_dir), "-n", "x", "--builder", "buildah",
                 "--modelpack-wheel", str(_fake_wheel(tmp_path))])
    assert code == 5
    assert "buildah could not build image 'x' (exit code 125)" in capsys.readouterr().err


# -- real images with buildah ---------------------------------------------------------------------------------

needs_buildah = pytest.mark.skipif(
    shutil.which("buildah") is None or shutil.which("debootstrap") is None,
    reason="buildah and debootstrap are not installed (apt-get install -y buildah debootstrap; .ci/run does)",
)


def _buildah(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run([*BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"buildah {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources first, then the classic list)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for stanza in sources.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []) and fields.get("uris"):
                return fields["uris"][0]
    classic = Path("/etc/apt/sources.list")
    if classic.is_file():
        for line in classic.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    pytest.fail(f"No Debian {SUITE} mirror in this machine's apt sources (/etc/apt/sources.list.d/debian.sources)")


def _host_ca_bundle() -> str | None:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def debian_base() -> str:
    """A local Debian base image with python3 and venv, built once per machine and kept in buildah's storage."""
    import filelock

    key = hashlib.sha256(f"{SUITE} minbase {BASE_PACKAGES} v1".encode()).hexdigest()[:10]
    name = f"localhost/modelpack-test-base:{SUITE}-{key}"
    with filelock.FileLock(os.path.join(tempfile.gettempdir(), "modelpack-test-base.lock"), timeout=1800):
        if name in _buildah("images", "--format", "{{.Name}}:{{.Tag}}").split():
            return name
        with tempfile.TemporaryDirectory(prefix="modelpack-debootstrap-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE,
                                   str(rootfs), _debian_mirror()], capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, f"debootstrap failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / cache).glob("*"):
                    if path.is_file():
                        path.unlink()
            container = _buildah("from", "scratch").strip()
            try:
                mount = _buildah("mount", container).strip()
                subprocess.run(["cp", "-a", f"{rootfs}/.", f"{mount}/"], check=True, timeout=600)
                _buildah("unmount", container)
                _buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                         "--cmd", "/bin/bash", container)
                _buildah("commit", "--quiet", container, name)
            finally:
                subprocess.run([*BUILDAH, "rm", container], capture_output=True, timeout=120)
    return name


def _build_env(tmp: Path) -> dict[str, str]:
    """Environment for `modelpack build-docker --builder buildah`: the same vfs storage as BUILDAH."""
    store = json.loads(_buildah("info"))["store"]
    conf = tmp / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{store["GraphRoot"]}"\n'
                    f'runroot = "{store["RunRoot"]}"\n')
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}


@pytest.fixture(scope="module")
def images(debian_base, diabetes_model_dir, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Build the top-level image and the diabetes model's image, side by side; removed afterwards."""
    tmp = tmp_path_factory.mktemp("images")
    tag = uuid.uuid4().hex[:8]
    names = {"top": f"localhost/modelpack-test-top:{tag}", "model": f"localhost/modelpack-test-model:{tag}"}
    build_opts = ["--isolation", "chroot", "--pull=never"]
    cert_args: list[str] = []
    ca = _host_ca_bundle()
    if ca:  # pip inside the build trusts what the host trusts (e.g. a TLS-intercepting proxy)
        cert_args = ["--build-arg", f"PIP_CERT={CA_IN_BUILD}"]
        build_opts += ["--volume", f"{ca}:{CA_IN_BUILD}:ro"]
    builds = {
        "top": ([*BUILDAH, "bud", "--format", "docker", *build_opts, "--build-arg", f"BASE_IMAGE={debian_base}",
                 *cert_args, "--tag", names["top"], "--file", str(ROOT / "Dockerfile"), str(ROOT)],
                dict(os.environ)),
        "model": ([sys.executable, "-m", "modelpack.cli", "build-docker", "-m", str(diabetes_model_dir),
                   "-n", names["model"], "--builder", "buildah", "--base-image", debian_base, *cert_args,
                   "--", *build_opts], _build_env(tmp)),
    }
    procs = {}
    for key, (argv, env) in builds.items():
        with open(tmp / f"{key}.log", "wb") as log:
            procs[key] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        for key, proc in procs.items():
            code = proc.wait(timeout=1800)
            assert code == 0, f"building the {key} image failed:\n{(tmp / f'{key}.log').read_text()[-6000:]}"
        yield names
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for name in names.values():
            subprocess.run([*BUILDAH, "rmi", name], capture_output=True, timeout=300)


def _image_config(name: str) -> dict:
    return json.loads(_buildah("inspect", "--type", "image", name))["Docker"]["config"]


class _Container:
    """A working container of an image, its command run with `buildah run` (host network, chroot)."""

    def __init__(self, image: str, tmp_path: Path, volumes: tuple[str, ...] = ()) -> None:
        self.id = _buildah("from", "--pull=never", image).strip()
        self.volumes = volumes
        self.log_path = tmp_path / f"{self.id}.log"
        self.proc: subprocess.Popen | None = None

    def _argv(self, argv: list[str], env: dict[str, str], volumes: tuple[str, ...] = ()) -> list[str]:
        opts = ["--isolation", "chroot", *[f"--env={k}={v}" for k, v in env.items()],
                *[f"--volume={v}" for v in volumes]]
        return [*BUILDAH, "run", *opts, self.id, "--", *argv]

    def run(self, argv: list[str], env: dict[str, str]) -> None:
        """Start ``argv`` in the background (its own process group), with the container's volumes."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self._argv(argv, env, self.volumes), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def exec(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion (beside a running server: same host network)."""
        return subprocess.run(self._argv(argv, env), capture_output=True, text=True, timeout=120)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The whole group: the gunicorn master stops its workers; buildah run exits with them.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # anything left of the group
            except ProcessLookupError:
                pass
        subprocess.run([*BUILDAH, "rm", self.id], capture_output=True, timeout=120)


@pytest.fixture
def container(tmp_path) -> Iterator:
    made: list[_Container] = []

    def _make(image: str, volumes: tuple[str, ...] = ()) -> _Container:
        made.append(_Container(image, tmp_path, volumes))
        return made[-1]

    yield _make
    for c in made:
        c.remove()


def _serve_and_score(c: _Container, image: str, diabetes_model_dir: Path) -> None:
    """Run the image's own CMD on a free loopback port, check the HEALTHCHECK and score the seed body."""
    config = _image_config(image)
    port = free_port()
    env = {"MODELPACK_PORT": str(port), "MODELPACK_HOST": "127.0.0.1"}  # loopback only: the host's network
    c.run(config["Cmd"], env)
    deadline = time.monotonic() + 120
    while True:
        assert c.proc is not None and c.proc.poll() is None, f"server exited:\n{c.log()}"
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"server not ready:\n{c.log()}"
        time.sleep(0.2)

    check = config["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    assert c.exec(check[1:], env).returncode == 0  # the image's HEALTHCHECK passes against the live server
    assert c.exec(check[1:], {"MODELPACK_PORT": str(free_port())}).returncode != 0  # and fails without one

    r = requests.post(f"http://127.0.0.1:{port}/invocations", data=SEED_BODY,
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    import pandas as pd

    import modelpack

    seed = json.loads(SEED_BODY)
    expected = modelpack.load_model(diabetes_model_dir).predict(pd.DataFrame(seed["data"], columns=seed["columns"]))
    assert r.json()["predictions"] == pytest.approx(list(expected), rel=1e-9)


def _check_config(config: dict) -> None:
    env = dict(e.split("=", 1) for e in config["Env"])
    assert config["User"] == "10001:10001"
    assert env["MODELPACK_HOST"] == "0.0.0.0" and env["MODELPACK_PORT"] == "8080"
    assert env["MODELPACK_WORKERS"] and env["MODELPACK_TIMEOUT"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["modelpack", "serve", "--model-uri", "/opt/model", "--env-manager", "local"]


@pytest.mark.slow
@needs_buildah
def test_top_level_image_serves_a_mounted_model(images, container, diabetes_model_dir, tmp_path):
    _check_config(_image_config(images["top"]))
    model = tmp_path / "diabetes_model"  # readable by the image's user (uid 10001), as docs/deploying.md says
    shutil.copytree(diabetes_model_dir, model)
    subprocess.run(["chmod", "-R", "a+rX", str(model)], check=True)
    c = container(images["top"], volumes=(f"{model}:/opt/model:ro",))
    assert c.exec(["id", "-u"], {}).stdout.strip() == "10001"
    _serve_and_score(c, images["top"], diabetes_model_dir)


@pytest.mark.slow
@needs_buildah
def test_model_image_serves_its_model(images, container, diabetes_model_dir):
    _check_config(_image_config(images["model"]))
    c = container(images["model"])
    listing = c.exec(["ls", "/opt/model"], {}).stdout.split()
    assert sorted(listing) == sorted(p.name for p in diabetes_model_dir.iterdir())
    # nothing of the build stage is left: no requirements, wheels or caches
    leftovers = c.exec(["sh", "-c", "ls -A /tmp; find /opt /home -name 'modelpack-*.whl'; find /home -name .cache"],
                       {})
    assert leftovers.returncode == 0 and leftovers.stdout.strip() == "", leftovers.stdout
    _serve_and_score(c, images["model"], diabetes_model_dir)
