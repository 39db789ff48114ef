"""The flavor plugin contract, and the few helpers flavors may use.

A flavor knows one model library. It is a :class:`Flavor` subclass registered in the
``modelpack.flavors`` entry-point group (built-in flavors too, see pyproject.toml).
The flavor registry (:mod:`modelpack.flavor_registry`) checks a flavor when it is registered,
so a broken plugin fails early.

A flavor implements four things:

* ``save(model, path, **options)`` writes the native files into ``path`` (a staging
  directory) and returns a :class:`SavedFlavor` with its MLmodel sections;
* ``load(model_dir, descriptor)`` returns the native model object;
* ``load_pyfunc(model_dir, descriptor)`` returns a :class:`PyFuncImplementation` - the
  python_function wrapper: ``predict(model_input, params=None)``, and optionally the
  ``predict_float_rows`` fast path;
* ``requirements(model)`` names the distributions to pin (``["scikit-learn"]``).

This module is the bottom of the plugin SDK: it imports only :mod:`modelpack.descriptor`
and :mod:`modelpack.errors`, never the core that uses it (saving, loading, the flavor registry).
Flavors import only this module, :mod:`modelpack.errors`, :mod:`modelpack.descriptor` and
:mod:`modelpack.python_model` from the core, and import their model library lazily; their
``save_model`` helpers call the public :func:`modelpack.save_model`.
"""

from __future__ import annotations

import abc
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .descriptor import ModelDescriptor, resolve_inside

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .float_rows import FloatRows


class PyFuncImplementation(abc.ABC):
    """What ``Flavor.load_pyfunc`` returns: the model behind the python_function interface.

    ``predict`` is required. ``predict_float_rows`` is the optional fast path (see
    :mod:`modelpack.float_rows`): it receives :class:`~modelpack.float_rows.FloatRows` whose
    columns are exactly the signature's, all doubles, and must give exactly what ``predict``
    gives on the equivalent DataFrame. The default builds that DataFrame; override it when
    the library takes a numpy array directly.
    """

    @abc.abstractmethod
    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        """Predict on input already checked against the model's signature."""

    def predict_float_rows(self, rows: FloatRows, params: dict | None = None) -> Any:
        """Predict on a float64 block with the signature's columns (default: as a DataFrame)."""
        return self.predict(rows.to_frame(), params)


@dataclass
class SavedFlavor:
    """What a flavor's ``save`` wrote.

    ``native`` becomes ``flavors.<name>`` in MLmodel (None for pyfunc-only flavors);
    ``pyfunc`` is merged into ``flavors.python_function`` (the core adds
    ``loader_module``, ``python_version`` and ``env``); ``requirements`` names distributions
    this saved form needs beyond ``Flavor.requirements(model)`` (e.g. the serializer it chose).

    ``loader_module`` replaces ``Flavor.loader_module`` in the MLmodel when set; it must be one of the
    flavor's ``aliases``. A flavor sets MLflow's module (``"mlflow.xgboost"``) when the files it wrote are
    exactly what MLflow's own loader reads, so MLflow loads the directory without modelpack installed
    (docs/flavors.md, "MLflow reads modelpack's directories").
    """

    native: dict[str, Any] | None
    pyfunc: dict[str, Any] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)
    loader_module: str | None = None


class Flavor(abc.ABC):
    """Base class of every flavor plugin."""

    #: Section name in MLmodel and flavor registry name, e.g. ``"sklearn"``.
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


def load_native(flavor: Flavor, model_dir: str | Path) -> Any:
    """Load the native model of ``model_dir`` with ``flavor`` (each module's ``load_model``)."""
    from .errors import ModelLoadError

    model_dir = Path(model_dir)
    descriptor = ModelDescriptor.read(model_dir)
    descriptor.check_paths(model_dir)
    if flavor.name not in descriptor.flavors:
        raise ModelLoadError(
            f"Model at '{model_dir}' has no '{flavor.name}' flavor; "
            f"flavors present: {sorted(descriptor.flavors)}"
        )
    return flavor.load(model_dir, descriptor)


def load_pyfunc_at(flavor: Flavor, data_path: str | Path) -> PyFuncImplementation:
    """MLflow's ``_load_pyfunc(data_path)`` hook for ``flavor``: ``data_path`` is the model directory or a
    file in it. Each flavor module's ``_load_pyfunc`` calls this, so MLflow (with modelpack installed) loads it."""
    path = Path(data_path)
    model_dir = path.parent if path.is_file() else path
    descriptor = ModelDescriptor.read(model_dir)
    descriptor.check_paths(model_dir)
    return flavor.load_pyfunc(model_dir, descriptor)


def model_path(model_dir: str | Path, relative: Any, field: str) -> Path:
    """The file or directory that the MLmodel field ``field`` (e.g. ``"flavors.xgboost.data"``) names inside
    ``model_dir``, symlinks resolved. A ModelLoadError names the field when the value is not a non-empty string
    or resolves outside the model directory: use it instead of ``model_dir / value`` for every path read from
    MLmodel. (The loaders already check the fields they know before a flavor runs; this covers the rest.)"""
    from .errors import ModelLoadError

    if not isinstance(relative, str) or not relative:
        raise ModelLoadError(f"MLmodel field '{field}' must be a relative path inside the model directory, got "
                             f"{relative!r}")
    return resolve_inside(model_dir, relative, field)


class PredictParams:
    """The keyword parameters a library's predict method takes, for a flavor's python_function wrapper:
    request ``params`` it does not take are dropped with a warning (as MLflow does), the rest pass through."""

    def __init__(self, predict: Callable[..., Any], library: str, exclude: Iterable[str] = ()) -> None:
        self.accepted = frozenset(inspect.signature(predict).parameters) - set(exclude)
        self.library = library

    def kwargs(self, params: dict | None) -> dict:
        """The part of ``params`` to pass to predict."""
        if not params:
            return {}
        unknown = sorted(set(params) - self.accepted)
        if unknown:
            logger.warning("Params %s are not accepted by the %s model's predict; ignoring them", unknown, self.library)
        return {k: v for k, v in params.items() if k in self.accepted}


def copy_code_paths(code_paths: Iterable[str | Path], code_dir: Path) -> str:
    """Copy the files and directories of ``code_paths`` into ``code_dir`` (created); MLmodel's ``code`` value.

    The saved model imports them at load time, from ``code_dir`` put first on ``sys.path``, as MLflow does."""
    import shutil

    from .errors import FlavorError

    code_dir.mkdir()
    for source in code_paths:
        src = Path(source)
        if not src.exists():
            raise FlavorError(f"Code path '{src}' not found")
        if src.is_dir():
            shutil.copytree(src, code_dir / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, code_dir / src.name)
    return code_dir.name
