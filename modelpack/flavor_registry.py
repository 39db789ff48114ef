"""The flavor registry: flavor discovery and lookup (not the Model Registry of named model versions).

Flavors are found through the ``modelpack.flavors`` entry-point group (the built-in
ones too) and validated when registered. A plugin that fails to import or breaks the
contract is not registered; the error names it and is kept in :attr:`FlavorRegistry.broken`
so lookups can say why a flavor is missing.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from .errors import FlavorError
from .flavor import Flavor

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "modelpack.flavors"
_REQUIRED_METHODS = ("can_save", "save", "load", "load_pyfunc", "requirements")


def validate_flavor(obj: Any, origin: str) -> Flavor:
    """Return a flavor instance from a Flavor subclass or instance, or raise FlavorError."""
    if inspect.isclass(obj):
        if not issubclass(obj, Flavor):
            raise FlavorError(f"Flavor plugin {origin}: {obj!r} is not a modelpack.flavor.Flavor subclass")
        if inspect.isabstract(obj):
            missing = sorted(getattr(obj, "__abstractmethods__", ()))
            raise FlavorError(f"Flavor plugin {origin}: {obj.__name__} does not implement {missing}")
        obj = obj()
    if not isinstance(obj, Flavor):
        raise FlavorError(f"Flavor plugin {origin}: {obj!r} is not a modelpack.flavor.Flavor")
    for attr in ("name", "loader_module"):
        value = getattr(obj, attr, None)
        if not isinstance(value, str) or not value:
            raise FlavorError(f"Flavor plugin {origin}: class attribute '{attr}' must be a non-empty string")
    for method in _REQUIRED_METHODS:
        if not callable(getattr(obj, method, None)):
            raise FlavorError(f"Flavor plugin {origin}: missing method '{method}'")
    return obj


class FlavorRegistry:
    """Registered flavors by name, and lookups by model object and by loader module."""

    def __init__(self) -> None:
        self._flavors: dict[str, Flavor] = {}
        self.broken: dict[str, str] = {}

    def register(self, obj: Any, origin: str = "<direct>") -> Flavor:
        flavor = validate_flavor(obj, origin)
        existing = self._flavors.get(flavor.name)
        if existing is not None and type(existing) is not type(flavor):
            raise FlavorError(
                f"Flavor plugin {origin}: name '{flavor.name}' is already registered by "
                f"{type(existing).__module__}.{type(existing).__name__}"
            )
        self._flavors[flavor.name] = flavor
        return flavor

    def discover(self) -> None:
        """Load every entry point of the group; broken plugins are logged and skipped."""
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            origin = f"'{ep.name}' ({ep.value})"
            try:
                self.register(ep.load(), origin)
            except FlavorError as exc:
                self.broken[ep.name] = exc.message
                logger.error("%s", exc.message)
            except Exception as exc:  # an import error in a third-party plugin
                message = f"Flavor plugin {origin} failed to load: {type(exc).__name__}: {exc}"
                self.broken[ep.name] = message
                logger.error("%s", message)

    @property
    def names(self) -> list[str]:
        return sorted(self._flavors)

    def get(self, name: str) -> Flavor:
        try:
            return self._flavors[name]
        except KeyError:
            hint = f" ({self.broken[name]})" if name in self.broken else ""
            raise FlavorError(f"Unknown flavor '{name}'{hint}; registered flavors: {self.names}") from None

    def for_model(self, model: Any) -> Flavor:
        candidates = [f for f in self._flavors.values() if f.can_save(model)]
        if not candidates:
            raise FlavorError(
                f"No flavor can save an object of type {type(model).__module__}.{type(model).__qualname__}; "
                f"registered flavors: {self.names}. Pass flavor=NAME or wrap it in a modelpack.PythonModel."
            )
        return max(candidates, key=lambda f: f.priority)

    def for_loader_module(self, module: str) -> Flavor | None:
        for flavor in self._flavors.values():
            if module == flavor.loader_module or module in flavor.aliases:
                return flavor
        return None


_registry: FlavorRegistry | None = None


def get_registry() -> FlavorRegistry:
    """The process-wide registry, discovered on first use."""
    global _registry
    if _registry is None:
        registry = FlavorRegistry()
        registry.discover()
        _registry = registry
    return _registry
