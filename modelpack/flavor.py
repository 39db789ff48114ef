"""The flavor plugin contract, and the few helpers flavors may use.

A flavor knows one model library. It is a :class:`Flavor` subclass registered in the
``modelpack.flavors`` entry-point group (built-in flavors too, see pyproject.toml).
The registry checks a flavor when it is registered, so a broken plugin fails early.

A flavor implements four things:

* ``save(model, path, **options)`` writes the native files into ``path`` (a staging
  directory) and returns a :class:`SavedFlavor` with its MLmodel sections;
* ``load(model_dir, descriptor)`` returns the native model object;
* ``load_pyfunc(model_dir, descriptor)`` returns an object with
  ``predict(model_input, params=None)`` - the python_function wrapper;
* ``requirements(model)`` names the distributions to pin (``["scikit-learn"]``).

Flavors import only this module, :mod:`modelpack.errors` and
:mod:`modelpack.python_model` from the core, and import their model library lazily.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .descriptor import ModelDescriptor


class PyFuncImplementation(Protocol):
    """What ``Flavor.load_pyfunc`` returns."""

    def predict(self, model_input: Any, params: dict | None = None) -> Any: ...


@dataclass
class SavedFlavor:
    """What a flavor's ``save`` wrote.

    ``native`` becomes ``flavors.<name>`` in MLmodel (None for pyfunc-only flavors);
    ``pyfunc`` is merged into ``flavors.python_function`` (the core adds
    ``loader_module``, ``python_version`` and ``env``).
    """

    native: dict[str, Any] | None
    pyfunc: dict[str, Any] = field(default_factory=dict)


class Flavor(abc.ABC):
    """Base class of every flavor plugin."""

    #: Section name in MLmodel and registry name, e.g. ``"sklearn"``.
    name: ClassVar[str]
    #: Written as ``python_function.loader_module``; a permanent public contract.
    loader_module: ClassVar[str]
    #: Other loader modules this flavor can read (e.g. MLflow's ``"mlflow.sklearn"``).
    aliases: ClassVar[tuple[str, ...]] = ()
    #: When several flavors accept a model, the highest priority wins.
    priority: ClassVar[int] = 0

    @abc.abstractmethod
    def can_save(self, model: Any) -> bool:
        """Whether this flavor handles ``model``; must not import heavy libraries."""

    @abc.abstractmethod
    def save(self, model: Any, path: Path, **options: Any) -> SavedFlavor:
        """Write the model's files into ``path``."""

    @abc.abstractmethod
    def load(self, model_dir: Path, descriptor: ModelDescriptor) -> Any:
        """Return the native model object."""

    @abc.abstractmethod
    def load_pyfunc(self, model_dir: Path, descriptor: ModelDescriptor) -> PyFuncImplementation:
        """Return the python_function wrapper of the model."""

    @abc.abstractmethod
    def requirements(self, model: Any) -> list[str]:
        """Distribution names this model needs at serving time (versions are pinned by the core)."""


def class_from_library(model: Any, library: str) -> bool:
    """Whether ``model``'s class (or a base class) comes from the top-level package ``library``.

    Lets ``can_save`` answer without importing the library.
    """
    return any(
        (getattr(cls, "__module__", "") or "").split(".", 1)[0] == library
        for cls in type(model).__mro__
    )


def save_model(flavor: str, model: Any, path: str | Path, **kwargs: Any) -> ModelDescriptor:
    """Save ``model`` with the named flavor (what each flavor module's ``save_model`` calls)."""
    from .save import save_model as _save

    return _save(model, path, flavor=flavor, **kwargs)


def load_native(flavor: Flavor, model_dir: str | Path) -> Any:
    """Load the native model of ``model_dir`` with ``flavor`` (each module's ``load_model``)."""
    from .errors import ModelLoadError

    model_dir = Path(model_dir)
    descriptor = ModelDescriptor.read(model_dir)
    if flavor.name not in descriptor.flavors:
        raise ModelLoadError(
            f"Model at '{model_dir}' has no '{flavor.name}' flavor; "
            f"flavors present: {sorted(descriptor.flavors)}"
        )
    return flavor.load(model_dir, descriptor)
