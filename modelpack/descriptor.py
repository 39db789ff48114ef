"""The MLmodel descriptor: the only code that reads or writes the ``MLmodel`` file.

Field names follow MLflow's so each tool reads the other's directories. Keys this
version does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

MLMODEL_FILE = "MLmodel"
PYFUNC = "python_function"

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
        if not model_dir.exists():
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
