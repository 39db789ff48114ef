"""Typed settings, and the one place that reads ``MODELPACK_*`` environment variables.

The CLI builds a :class:`ServeConfig` from its flags (falling back to the environment)
and hands it to the server as command-line arguments of ``python -m modelpack.server``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 5000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: MODELPACK_PRELOAD: where the server loads the model (docs/performance.md, "Fork safety"). ``auto``: in the
#: gunicorn master, shared by the workers, unless loading it started threads a forked worker would not have
#: (an OpenMP pool: xgboost, lightgbm), then in each worker after fork; ``always`` / ``never``: force one.
PRELOAD_MODES = ("auto", "always", "never")
#: Comma-separated module or package names whose modules a model may name as ``loader_module`` although no
#: registered flavor provides them (modelpack imports only those: importing a module runs its code).
TRUSTED_LOADER_MODULES_VAR = "MODELPACK_TRUSTED_LOADER_MODULES"
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        from .errors import ModelpackError

        raise ModelpackError(f"Environment variable {name} must be an integer, got {value!r}") from None


def env_bool(name: str, default: bool) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off (any case); unset or empty is ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    from .errors import ModelpackError

    raise ModelpackError(f"Environment variable {name} must be 1 or 0 (true/false, yes/no, on/off), got {value!r}")


#: MODELPACK_LOG_FORMAT / --log-format: every server log line as plain text or as one JSON object.
LOG_FORMATS = ("plain", "json")


def is_module_name(name: object) -> bool:
    """Whether ``name`` is an absolute dotted module name (``pkg.mod``)."""
    return isinstance(name, str) and bool(_MODULE_NAME.fullmatch(name))


def trusted_loader_modules() -> list[str]:
    """The module and package names of MODELPACK_TRUSTED_LOADER_MODULES (a package trusts its submodules)."""
    names = [n.strip() for n in env_str(TRUSTED_LOADER_MODULES_VAR, "").split(",") if n.strip()]
    bad = [n for n in names if not is_module_name(n)]
    if bad:
        from .errors import ModelpackError

        raise ModelpackError(f"{TRUSTED_LOADER_MODULES_VAR} must be comma-separated module or package names "
                             f"such as 'mlflow.tensorflow,my_flavor', got {bad}")
    return names


def export_trusted_loader_modules(names: list[str] | tuple[str, ...]) -> None:
    """Add ``names`` to MODELPACK_TRUSTED_LOADER_MODULES of this process, so the server or the model's environment
    started from it (which inherit the environment) trusts them too (``--trust-loader-module``)."""
    if not names:
        return
    bad = [n for n in names if not is_module_name(n)]
    if bad:
        from .errors import ModelpackError

        raise ModelpackError(f"--trust-loader-module takes a module or package name such as 'mlflow.tensorflow', "
                             f"got {bad}")
    merged = list(dict.fromkeys([*trusted_loader_modules(), *names]))
    os.environ[TRUSTED_LOADER_MODULES_VAR] = ",".join(merged)


def default_workers() -> int:
    return env_int("MODELPACK_WORKERS", 1)


#: A served model's name: it appears in URLs (``/models/<name>/invocations``) and in metric labels.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ServedModel:
    """One model of a server: its name, its directory, and the URI it was named by (re-resolved on reload:
    ``models:/name@alias`` may point to another version by then)."""

    name: str
    path: Path
    uri: str | None = None


def default_model_name(uri: str | None, path: Path) -> str:
    """The name of a model given without one: a registered model's name, else its directory's name."""
    if uri and uri.startswith("models:/"):
        candidate = uri[len("models:/"):].split("@")[0].split("/")[0]
    else:
        candidate = Path(path).name
    candidate = re.sub(r"[^A-Za-z0-9_.-]", "-", candidate).lstrip("-_.")[:64]
    return candidate if MODEL_NAME.fullmatch(candidate) else "model"


@dataclass(frozen=True)
class ServeConfig:
    """How to run the scoring server: ``model_path`` is its (first) model; ``models`` names every model of a
    server of several (empty: the one model at ``model_path``, named after it)."""

    model_path: Path
    models: tuple[ServedModel, ...] = ()
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    timeout: int = 60
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    worker_class: str = "buffered"
    log_level: str = "info"
    preload: str = "auto"
    #: seconds between looks at the model URIs (``--watch``; 0: only SIGHUP reloads)
    watch_interval: int = 0
    metrics: bool = True  #: GET /metrics (MODELPACK_METRICS, --no-metrics)
    log_format: str = "plain"  #: MODELPACK_LOG_FORMAT, --log-format: plain or json
    access_log: bool = True  #: one log line per request (MODELPACK_ACCESS_LOG, --no-access-log)

    @classmethod
    def from_env(cls, model_path: Path, **overrides: object) -> ServeConfig:
        """Settings from ``MODELPACK_*`` variables; explicit non-None overrides win."""
        values: dict[str, object] = {
            "host": env_str("MODELPACK_HOST", "127.0.0.1"),
            "port": env_int("MODELPACK_PORT", DEFAULT_PORT),
            "workers": default_workers(),
            "timeout": env_int("MODELPACK_TIMEOUT", 60),
            "max_body_bytes": env_int("MODELPACK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            "worker_class": env_str("MODELPACK_WORKER_CLASS", "buffered"),
            "log_level": env_str("MODELPACK_LOG_LEVEL", "info"),
            "preload": env_str("MODELPACK_PRELOAD", "auto").strip().lower() or "auto",
            "watch_interval": env_int("MODELPACK_WATCH_INTERVAL", 0),
            "metrics": env_bool("MODELPACK_METRICS", True),
            "log_format": env_str("MODELPACK_LOG_FORMAT", "plain").strip().lower() or "plain",
            "access_log": env_bool("MODELPACK_ACCESS_LOG", True),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["preload"] not in PRELOAD_MODES:
            from .errors import ModelpackError

            raise ModelpackError(f"MODELPACK_PRELOAD must be one of {list(PRELOAD_MODES)}, got {values['preload']!r}")
        if values["log_format"] not in LOG_FORMATS:
            from .errors import ModelpackError

            raise ModelpackError(f"MODELPACK_LOG_FORMAT must be one of {list(LOG_FORMATS)}, "
                                 f"got {values['log_format']!r}")
        return cls(model_path=Path(model_path), **values)  # type: ignore[arg-type]

    def served_models(self) -> tuple[ServedModel, ...]:
        """Every model of this server, named."""
        if self.models:
            return self.models
        return (ServedModel(default_model_name(None, self.model_path), self.model_path),)

    def to_args(self) -> list[str]:
        """The same settings as arguments of ``python -m modelpack.server``. ``preload`` is left out: it reaches
        the server as MODELPACK_PRELOAD, so a serving environment with an older modelpack accepts these."""
        models = ["--model", str(self.model_path)]
        if self.models:  # named models: each with --name and --uri, in the same order
            models = []
            for served in self.models:
                models += ["--model", str(served.path), "--name", served.name, "--uri", served.uri or str(served.path)]
        return [
            *models,
            "--host", self.host,
            "--port", str(self.port),
            "--workers", str(self.workers),
            "--timeout", str(self.timeout),
            "--max-body-bytes", str(self.max_body_bytes),
            "--worker-class", self.worker_class,
            "--log-level", self.log_level,
            *(["--watch-interval", str(self.watch_interval)] if self.watch_interval else []),
            # observability: only when not the default (a serving environment's older modelpack takes the rest)
            *(["--no-metrics"] if not self.metrics else []),
            *(["--log-format", self.log_format] if self.log_format != "plain" else []),
            *(["--no-access-log"] if not self.access_log else []),
        ]
