"""Model signatures: column, tensor and parameter specs, and MLflow's JSON-string form.

A signature says what a model takes (``inputs``), what it returns (``outputs``) and
which inference parameters it accepts (``params``). In the ``MLmodel`` file each part
is stored as a JSON *string*, exactly as MLflow writes it, so either tool reads the
other's models. :func:`modelpack.signature_inference.infer_signature` builds one from example data;
:mod:`modelpack.enforce` checks input against one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelpack.errors import InvalidInputError, quote

#: Column types and the numpy dtype a model receives for each.
DATA_TYPES: dict[str, np.dtype] = {
    "boolean": np.dtype("bool"),
    "integer": np.dtype("int32"),
    "long": np.dtype("int64"),
    "float": np.dtype("float32"),
    "double": np.dtype("float64"),
    "string": np.dtype("object"),
    "binary": np.dtype("object"),
    "datetime": np.dtype("datetime64[ns]"),
}
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _check_type_name(type_name: Any, allowed: Any, what: str) -> str:
    if not isinstance(type_name, str) or type_name not in allowed:
        raise InvalidInputError(f"Unsupported {what} type {type_name!r}; expected one of {sorted(allowed)}")
    return type_name


@dataclass(frozen=True)
class ColSpec:
    """One column of a tabular input or output: its type, name, and whether it is ``required``.

    A required column must be sent and hold a value in every row; an optional one (``required=False``,
    named columns only) may be left out or hold missing values (see modelpack/enforce.py). This is
    MLflow's ``"required"`` key, which MLflow's inference also sets false for a column with missing values.
    """

    type: str
    name: str | None = None
    required: bool = True

    def __post_init__(self) -> None:
        _check_type_name(self.type, DATA_TYPES, "column")
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"ColSpec name must be a str or None, got {type(self.name).__name__}")

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype a model receives for this column."""
        return DATA_TYPES[self.type]

    def to_dict(self) -> dict[str, Any]:
        """MLflow's JSON object for a column spec (``name`` omitted when unnamed)."""
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColSpec:
        """Read MLflow's JSON object for a column spec (no ``required``: required, as MLflow reads it)."""
        required = d.get("required", True)
        if not isinstance(required, bool):
            raise InvalidInputError(f"A column spec's 'required' must be true or false, got {required!r}")
        name: Any = d.get("name")
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)  # MLflow writes the output column of an unnamed frame as "name": 0
        return cls(d["type"], name, required)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor input or output: numpy dtype and shape, ``-1`` marking a variable dimension."""

    dtype: np.dtype
    shape: tuple[int, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        dtype = np.dtype(self.dtype)
        if dtype.kind in "US" and dtype.itemsize:
            base = "str" if dtype.kind == "U" else "bytes"
            raise InvalidInputError(f"TensorSpec dtype {dtype} carries a size; use np.dtype({base!r}) instead")
        if not isinstance(self.shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and d >= -1 for d in self.shape
        ):
            raise TypeError(f"TensorSpec shape must be a tuple of ints >= -1, got {self.shape!r}")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def required(self) -> bool:
        """Tensors are always required."""
        return True

    def to_dict(self) -> dict[str, Any]:
        """MLflow's JSON object for a tensor spec."""
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["type"] = "tensor"
        out["tensor-spec"] = {"dtype": self.dtype.name, "shape": list(self.shape)}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        """Read MLflow's JSON object for a tensor spec."""
        spec = d.get("tensor-spec")
        if d.get("type") != "tensor" or not isinstance(spec, dict):
            raise InvalidInputError(f"Not a tensor spec: {d!r}")
        return cls(np.dtype(spec["dtype"]), tuple(spec["shape"]), d.get("name"))


class Schema:
    """An ordered list of column specs or of tensor specs (never both)."""

    def __init__(self, inputs: Sequence[ColSpec | TensorSpec]) -> None:
        inputs = list(inputs)
        if not inputs:
            raise InvalidInputError("A schema needs at least one column or tensor spec")
        kinds = {type(x) for x in inputs}
        if not kinds <= {ColSpec, TensorSpec} or len(kinds) != 1:
            raise InvalidInputError("A schema holds only ColSpec or only TensorSpec items")
        names = [x.name for x in inputs]
        if any(n is None for n in names) and any(n is not None for n in names):
            raise InvalidInputError(f"Either name every input or none; got names {names}")
        if len(set(names)) != len(names) and names[0] is not None:
            raise InvalidInputError(f"Input names must be unique; got {names}")
        if names[0] is None and not all(x.required for x in inputs):
            raise InvalidInputError("Unnamed inputs cannot be optional")
        if kinds == {TensorSpec} and len(inputs) > 1 and names[0] is None:
            raise InvalidInputError("Several tensor specs need a name each")
        self._inputs: list[Any] = inputs

    @property
    def inputs(self) -> list[Any]:
        """The specs, in order."""
        return list(self._inputs)

    @property
    def is_tensor(self) -> bool:
        """True when the schema is made of tensor specs."""
        return isinstance(self._inputs[0], TensorSpec)

    @property
    def has_input_names(self) -> bool:
        """True when the specs are named."""
        return self._inputs[0].name is not None

    @property
    def input_names(self) -> list[str | int]:
        """Spec names, or their positions when unnamed."""
        return [x.name if x.name is not None else i for i, x in enumerate(self._inputs)]

    @property
    def required_input_names(self) -> list[str | int]:
        """Names (or positions) of the specs that must be present."""
        return [n for n, x in zip(self.input_names, self._inputs, strict=True) if x.required]

    @property
    def optional_input_names(self) -> list[str | int]:
        """Names of the specs that may be left out."""
        return [n for n, x in zip(self.input_names, self._inputs, strict=True) if not x.required]

    def to_dict(self) -> list[dict[str, Any]]:
        """The JSON-ready list of spec objects."""
        return [x.to_dict() for x in self._inputs]

    def to_json(self) -> str:
        """MLflow's JSON string for this schema."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | list[dict[str, Any]]) -> Schema:
        """Read MLflow's JSON string (or the already-parsed list)."""
        items = json.loads(text) if isinstance(text, str) else text
        if not isinstance(items, list):
            raise InvalidInputError(f"A schema's JSON must be a list, got {type(items).__name__}")
        return cls([_spec_from_dict(x) for x in items])

    def __len__(self) -> int:
        return len(self._inputs)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._inputs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self._inputs == other._inputs

    def __repr__(self) -> str:
        return f"Schema({self._inputs!r})"


def _spec_from_dict(d: Any) -> ColSpec | TensorSpec:
    if not isinstance(d, dict) or "type" not in d:
        raise InvalidInputError(f"A spec must be a JSON object with a 'type', got {d!r}")
    return TensorSpec.from_dict(d) if d["type"] == "tensor" else ColSpec.from_dict(d)


# ---------------------------------------------------------------- parameters


def show_value(value: Any) -> str:
    return quote(value, 40)


def _param_scalar(type_name: str, value: Any) -> Any:
    """Convert one parameter value to ``type_name``'s Python type, or raise ValueError."""
    is_bool = isinstance(value, (bool, np.bool_))
    if type_name == "boolean":
        if is_bool:
            return bool(value)
    elif type_name in _INT_RANGES:
        if isinstance(value, (int, np.integer)) and not is_bool:
            number = int(value)
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            number = int(value)
        else:
            raise ValueError
        low, high = _INT_RANGES[type_name]
        if not low <= number <= high:
            raise ValueError("out of range for " + ("int32" if type_name == "integer" else "int64"))
        return number
    elif type_name in ("float", "double"):
        if isinstance(value, (int, float, np.integer, np.floating)) and not is_bool:
            return float(value)
    elif type_name == "string":
        if isinstance(value, str):
            return value
    elif type_name == "datetime":
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day)
        if isinstance(value, np.datetime64):
            return value.astype("datetime64[us]").item()
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("not an ISO 8601 datetime") from None
    raise ValueError


@dataclass(frozen=True)
class ParamSpec:
    """An inference parameter: name, type, default; shape None (scalar) or (-1,) (list)."""

    name: str
    type: str
    default: Any
    shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_type_name(self.type, set(DATA_TYPES) - {"binary"}, "parameter")
        shape = None if self.shape is None else tuple(self.shape)
        if shape not in (None, (-1,)):
            raise InvalidInputError(f"Parameter {self.name!r} shape must be None or (-1,), got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        if self.default is None:
            raise InvalidInputError(f"Parameter {self.name!r} needs a default value")
        object.__setattr__(self, "default", self.validate(self.default))

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise InvalidInputError."""
        if self.shape is None:
            if isinstance(value, (list, tuple, np.ndarray)):
                raise self._error(value)
            return self._scalar(value, "")
        if not isinstance(value, (list, tuple, np.ndarray)) or np.ndim(value) != 1:
            raise self._error(value, "a list of ")
        return [self._scalar(v, "a list of ", f" at index {i}") for i, v in enumerate(value)]

    def _scalar(self, value: Any, prefix: str, where: str = "") -> Any:
        try:
            return _param_scalar(self.type, value)
        except ValueError as exc:
            raise self._error(value, prefix, where, str(exc)) from None

    def _error(self, value: Any, prefix: str = "", where: str = "", why: str = "") -> Exception:
        reason = f" ({why})" if why else ""
        return InvalidInputError(
            f"Parameter {self.name!r} expects {prefix}{self.type}, "
            f"got {type(value).__name__} {show_value(value)}{where}{reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        """MLflow's JSON object for a parameter spec (datetimes as ISO 8601 strings)."""
        iso = self.type == "datetime"
        default = self.default
        if iso:
            default = [v.isoformat() for v in default] if self.shape else default.isoformat()
        shape = list(self.shape) if self.shape else None
        return {"name": self.name, "type": self.type, "default": default, "shape": shape}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParamSpec:
        """Read MLflow's JSON object for a parameter spec (older files say ``dtype``)."""
        type_name = d.get("type", d.get("dtype"))
        return cls(str(d["name"]), str(type_name or ""), d["default"], d.get("shape"))


class ParamSchema:
    """The inference parameters a model accepts."""

    def __init__(self, params: list[ParamSpec]) -> None:
        params = list(params)
        if not all(isinstance(p, ParamSpec) for p in params):
            raise TypeError("ParamSchema holds ParamSpec items only")
        names = [p.name for p in params]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInputError(f"Duplicate parameter names: {duplicates}")
        self._params = params

    @property
    def params(self) -> list[ParamSpec]:
        """The specs, in order."""
        return list(self._params)

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return [p.name for p in self._params]

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter name -> default value."""
        return {p.name: p.default for p in self._params}

    def to_dict(self) -> list[dict[str, Any]]:
        """The JSON-ready list of parameter objects."""
        return [p.to_dict() for p in self._params]

    def to_json(self) -> str:
        """MLflow's JSON string for these parameters."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | list[dict[str, Any]]) -> ParamSchema:
        """Read MLflow's JSON string (or the already-parsed list)."""
        items = json.loads(text) if isinstance(text, str) else text
        if not isinstance(items, list):
            raise InvalidInputError("A parameter schema's JSON must be a list")
        return cls([ParamSpec.from_dict(x) for x in items])

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self._params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSchema) and self._params == other._params

    def __repr__(self) -> str:
        return f"ParamSchema({self._params!r})"


@dataclass(frozen=True)
class ModelSignature:
    """What a model takes, returns, and which parameters it accepts."""

    inputs: Schema | None
    outputs: Schema | None = None
    params: ParamSchema | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The ``signature`` section of MLmodel: each part a JSON string or None."""
        return {
            "inputs": self.inputs.to_json() if self.inputs is not None else None,
            "outputs": self.outputs.to_json() if self.outputs is not None else None,
            "params": self.params.to_json() if self.params else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSignature:
        """Read the ``signature`` section of an MLmodel file (written by modelpack or MLflow)."""
        if not isinstance(d, dict):
            raise InvalidInputError(f"A signature must be a mapping, got {type(d).__name__}")
        inputs, outputs, params = d.get("inputs"), d.get("outputs"), d.get("params")
        return cls(
            Schema.from_json(inputs) if inputs else None,
            Schema.from_json(outputs) if outputs else None,
            ParamSchema.from_json(params) if params else None,
        )


__all__ = [
    "DATA_TYPES",
    "ColSpec",
    "ModelSignature",
    "ParamSchema",
    "ParamSpec",
    "Schema",
    "TensorSpec",
]
