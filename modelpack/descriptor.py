"""The MLmodel descriptor: the only code that reads or writes the ``MLmodel`` file.

Field names follow MLflow's so each tool reads the other's directories. Keys this
version does not know are kept in ``extra`` and written back unchanged.

A model directory is untrusted input: :meth:`ModelDescriptor.check_paths` refuses one whose MLmodel names a
file outside it (``../``, an absolute path, a symlink leading out) before any flavor opens anything
(docs/trust.md). :func:`recover_interrupted_overwrite` puts back a model that a save killed in the middle of
an overwrite left aside (only where the atomic exchange of modelpack/save.py is unavailable).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

logger = logging.getLogger(__name__)

MLMODEL_FILE = "MLmodel"
PYFUNC = "python_function"

#: Keys of ``python_function`` and of the native flavor sections whose string value is a file or directory of
#: the model: the built-in flavors' and MLflow's (data files, pickles, code and saved-model directories).
PATH_FIELDS = ("data", "model_path", "pickled_model", "model_data", "python_model", "code", "saved_model_dir",
               "model_binary", "serialized_explainer", "parameters_path")
#: MLflow's "models from code" record the script's original absolute path; loaders open its base name inside
#: the model directory (MLflow's code_model loader does), so that name is what is checked.
BASENAME_FIELDS = ("model_code_path",)
#: An old model moved aside by an overwrite that cannot swap atomically: ``.NAME.old-XXXXXXXX`` next to it.
ASIDE_RE = re.compile(r"\.(?P<name>.+)\.old-[a-z0-9_]{8}")

_KNOWN = (
    "flavors",
    "model_uuid",
    "utc_time_created",
    "signature",
    "saved_input_example_info",
    "metadata",
    "modelpack_version",
)


@dataclass
class ModelDescriptor:
    """One model directory's ``MLmodel`` file as a typed object."""

    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    utc_time_created: str = field(
        default_factory=lambda: str(_dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None))
    )
    signature: dict[str, str | None] | None = None
    saved_input_example_info: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    modelpack_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- access -------------------------------------------------------------------
    @property
    def pyfunc(self) -> dict[str, Any]:
        """The ``python_function`` section; raises ModelLoadError when absent."""
        conf = self.flavors.get(PYFUNC)
        if not isinstance(conf, dict):
            raise ModelLoadError(
                "MLmodel has no 'python_function' flavor; flavors present: "
                f"{sorted(self.flavors)}"
            )
        return conf

    @property
    def loader_module(self) -> str:
        module = self.pyfunc.get("loader_module")
        if not isinstance(module, str) or not module:
            raise ModelLoadError("MLmodel 'python_function' flavor has no 'loader_module'")
        return module

    @property
    def native_flavors(self) -> list[str]:
        return [name for name in self.flavors if name != PYFUNC]

    def check_paths(self, model_dir: str | Path) -> None:
        """Refuse (ModelLoadError naming the field and the path) a model whose MLmodel names a file outside
        ``model_dir``, or that holds a symlink leading out of it. Called before any flavor code runs, so a
        directory cannot make modelpack read, unpickle or import what lies elsewhere."""
        root = _resolved_root(model_dir)
        for field_name, value in self._path_values():
            resolve_inside(root, value, field_name)
        _refuse_escaping_symlinks(root)

    def _path_values(self) -> list[tuple[str, str]]:
        """``(field, relative path)`` of every path-valued MLmodel field this version knows."""
        found: list[tuple[str, str]] = []
        for section, conf in self.flavors.items():
            if not isinstance(conf, dict):
                continue
            where = f"flavors.{section}"
            for key in PATH_FIELDS:
                if isinstance(conf.get(key), str):
                    found.append((f"{where}.{key}", conf[key]))
            for key in BASENAME_FIELDS:
                if isinstance(conf.get(key), str):
                    found.append((f"{where}.{key}", os.path.basename(conf[key])))
            artifacts = conf.get("artifacts")
            if isinstance(artifacts, dict):
                for name, spec in artifacts.items():
                    rel = spec.get("path") if isinstance(spec, dict) else spec
                    if isinstance(rel, str):
                        found.append((f"{where}.artifacts.{name}", rel))
            extra_files = conf.get("extra_files")
            if isinstance(extra_files, list):
                for i, spec in enumerate(extra_files):
                    if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                        found.append((f"{where}.extra_files[{i}]", spec["path"]))
            env = conf.get("env")
            for kind, rel in (env.items() if isinstance(env, dict) else [("", env)]):
                if isinstance(rel, str):
                    found.append((f"{where}.env" + (f".{kind}" if kind else ""), rel))
        for key, rel in (self.saved_input_example_info or {}).items():
            if key.endswith("_path") and isinstance(rel, str):
                found.append((f"saved_input_example_info.{key}", rel))
        return found

    def get_signature(self) -> Any:
        """The parsed :class:`~modelpack.signature.ModelSignature`, or None."""
        if not self.signature or not self.signature.get("inputs"):
            return None
        from .signature import ModelSignature

        try:
            return ModelSignature.from_dict(self.signature)
        except Exception as exc:  # a corrupt signature must not be silently ignored
            raise ModelLoadError(f"MLmodel 'signature' cannot be parsed: {exc}") from exc

    # -- (de)serialisation --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["flavors"] = self.flavors
        out["model_uuid"] = self.model_uuid
        out["utc_time_created"] = self.utc_time_created
        for key in ("signature", "saved_input_example_info", "metadata", "modelpack_version"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDescriptor:
        flavors = data.get("flavors")
        if not isinstance(flavors, dict):
            raise ModelLoadError("MLmodel has no 'flavors' mapping")
        return cls(
            flavors=flavors,
            model_uuid=str(data.get("model_uuid") or ""),
            utc_time_created=str(data.get("utc_time_created") or ""),
            signature=data.get("signature"),
            saved_input_example_info=data.get("saved_input_example_info"),
            metadata=data.get("metadata"),
            modelpack_version=data.get("modelpack_version"),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), default_flow_style=False, sort_keys=True)

    def write(self, model_dir: str | Path) -> Path:
        target = Path(model_dir) / MLMODEL_FILE
        target.write_text(self.to_yaml(), encoding="utf-8")
        return target

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelDescriptor:
        """Read ``model_dir/MLmodel``; every failure is a ModelLoadError naming the path."""
        import yaml

        model_dir = Path(model_dir)
        if not model_dir.exists() and not recover_interrupted_overwrite(model_dir):
            raise ModelLoadError(f"Model directory '{model_dir}' does not exist")
        if not model_dir.is_dir():
            raise ModelLoadError(f"'{model_dir}' is not a directory")
        path = model_dir / MLMODEL_FILE
        if not path.is_file():
            raise ModelLoadError(f"No MLmodel file in '{model_dir}'; is this a model directory?")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ModelLoadError(f"Cannot read '{path}': {exc}") from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"'{path}' is not a YAML mapping")
        return cls.from_dict(data)


def resolve_inside(model_dir: str | Path, relative: str, field_name: str) -> Path:
    """``model_dir / relative`` with every symlink resolved; ModelLoadError naming ``field_name`` and the path
    when that lies outside ``model_dir`` (``..``, an absolute path, a symlink leading out)."""
    root = _resolved_root(model_dir)
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
        raise ModelLoadError(f"MLmodel field '{field_name}' names {_shown(relative)}, which cannot be resolved in "
                             f"the model directory '{root}': {exc}") from None
    if path != root and not path.is_relative_to(root):
        lexical = Path(os.path.normpath(root / relative))
        how = " through a symlink" if lexical.is_relative_to(root) else ""
        raise ModelLoadError(
            f"MLmodel field '{field_name}' names {_shown(relative)}, which resolves{how} to '{path}', outside the "
            f"model directory '{root}'; a model directory may only refer to files inside it (docs/trust.md)"
        )
    return path


def _resolved_root(model_dir: str | Path) -> Path:
    try:
        return Path(model_dir).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ModelLoadError(f"Model directory '{model_dir}' cannot be resolved: {exc}") from None


def _refuse_escaping_symlinks(root: Path) -> None:
    """ModelLoadError for the first symlink under ``root`` whose target lies outside it (files read by fixed
    names, and the contents of ``code/``, ``artifacts/`` and data directories, are covered too)."""
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise ModelLoadError(f"Cannot list '{directory}' in the model directory: {exc.strerror}") from None
        for entry in entries:
            if entry.is_symlink():
                rel = Path(entry.path).relative_to(root).as_posix()
                try:
                    target = Path(entry.path).resolve()
                except (OSError, RuntimeError) as exc:
                    raise ModelLoadError(f"'{rel}' in the model directory '{root}' is a symlink that cannot be "
                                         f"resolved: {exc}") from None
                if target != root and not target.is_relative_to(root):
                    raise ModelLoadError(
                        f"'{rel}' in the model directory '{root}' is a symlink to '{target}', outside the model "
                        "directory; copy the files in (cp -rL) instead of linking to them (docs/trust.md)"
                    )
            elif entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))


def _shown(value: str, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text)} characters)"


def recover_interrupted_overwrite(model_dir: str | Path) -> bool:
    """Put back the old model of an overwrite that was killed between moving it aside and renaming the new one
    in (only where modelpack/save.py cannot swap the two atomically). True when ``model_dir`` exists after it.

    Nothing is done while ``model_dir`` exists: an aside copy next to an existing model is garbage of a finished
    overwrite, which the next save into the directory removes."""
    model_dir = Path(model_dir).absolute()
    if os.path.lexists(model_dir):
        return model_dir.exists()
    try:
        entries = list(os.scandir(model_dir.parent))
    except OSError:
        return False
    asides = []
    for entry in entries:
        match = ASIDE_RE.fullmatch(entry.name)
        if match and match["name"] == model_dir.name and entry.is_dir(follow_symlinks=False) \
                and os.path.isfile(os.path.join(entry.path, MLMODEL_FILE)):
            try:
                asides.append((entry.stat(follow_symlinks=False).st_ctime_ns, entry.path))
            except OSError:
                continue
    for _, aside in sorted(asides, reverse=True):
        try:
            os.rename(aside, model_dir)
        except OSError as exc:
            if model_dir.exists():  # another process put one back first
                return True
            logger.warning("Cannot restore the model at '%s' from '%s': %s", model_dir, aside, exc)
            continue
        logger.warning("Restored the model at '%s' from '%s', which an interrupted overwrite left aside",
                       model_dir, aside)
        return True
    return model_dir.exists()
