"""PATCHING: the one way autolog wraps a library's functions and methods, and the way it undoes that.

A patch replaces ``owner.name`` (a class's method or a module's function) with a wrapper that runs a *hook*
``hook(original, *args, **kwargs)`` around the original. It keeps the exact object that was in ``owner.__dict__``
(or notes that there was none, for an inherited method) so that :func:`unpatch` puts back the very same object.

The rules every wrapper follows, whatever the hook does:

- **Training never breaks because of autolog.** An exception raised by the original propagates unchanged. Any
  other exception raised by the hook is logged as a warning; the caller then gets the original's result if it
  had already run, or the original is run now without logging.
- **Only the outermost call logs.** A hook runs inside a *session*; while a session is open (in any thread of
  the process), every other patched call just runs its original. So the estimators a meta-estimator fits, the
  ``predict`` a ``score`` makes and the metric functions autolog itself calls are not logged again. A patch
  may name an ``inner`` hook, run instead when the call happens inside a session of its own integration in the
  same thread (how a scikit-learn-API ``fit`` gets per-iteration metrics from the ``train`` it calls).
- **A disabled integration passes straight through**, even from wrappers a caller kept a reference to.

Libraries are patched when they are imported, not before: :func:`when_imported` runs a callback for the
modules of a package that are already imported and, through a finder at the head of ``sys.meta_path``, for
each one imported later, right after it has executed. So enabling autolog imports nothing.
"""

from __future__ import annotations

import copy
import functools
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any

logger = logging.getLogger("modelpack.autolog")

#: The attribute a wrapper carries: (integration, the original function).
MARK = "__modelpack_autolog__"
_MISSING: Any = object()


@dataclass
class Session:
    """The outermost patched call in progress: which integration, in which thread, and what its hook shares
    with inner hooks (``data``). ``logging`` turns off when the hook failed and the original runs bare."""

    integration: str
    thread: int
    logging: bool = True
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Patch:
    owner: Any
    name: str
    saved: Any  # what owner.__dict__[name] held, or _MISSING (an inherited attribute)
    installed: Any


_lock = threading.RLock()
_session: Session | None = None
_enabled: dict[str, bool] = {}
_patches: dict[str, list[_Patch]] = {}
_watchers: list[tuple[str, str, Callable[[ModuleType], None]]] = []  # (integration, package, callback)


# -- state ------------------------------------------------------------------------------------------------------


def current_session() -> Session | None:
    """The session of the outermost patched call in progress, if any."""
    return _session


def is_enabled(integration: str) -> bool:
    return _enabled.get(integration, False)


def set_enabled(integration: str, enabled: bool) -> None:
    _enabled[integration] = enabled


def warn(integration: str, what: str, exc: BaseException) -> None:
    """The warning autolog gives when its own logging fails (training is not affected)."""
    logger.warning("modelpack autolog (%s): could not %s, training is unaffected: %s: %s",
                   integration, what, type(exc).__name__, exc)


def original_of(value: Any) -> Any:
    """The function a wrapper wraps (``value`` itself when it is not one of autolog's wrappers)."""
    mark = getattr(value, MARK, None)
    return mark[1] if isinstance(mark, tuple) else value


# -- running a hook ---------------------------------------------------------------------------------------------


class _Original:
    """The original function as a hook sees it: records whether it ran, its result, and whether it raised."""

    __slots__ = ("called", "fn", "raised", "result")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.called = False
        self.raised = False
        self.result: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.called = True
        try:
            result = self.fn(*args, **kwargs)
        except BaseException:
            self.raised = True
            raise
        self.result = result
        return result


def _run_hook(integration: str, original: Callable[..., Any], hook: Callable[..., Any],
              args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    global _session
    with _lock:
        if _session is not None:  # another thread opened one since the wrapper looked
            busy = True
        else:
            busy = False
            _session = Session(integration, threading.get_ident())
    if busy:
        return original(*args, **kwargs)
    session = _session
    try:
        call = _Original(original)
        try:
            return hook(call, *args, **kwargs)
        except Exception as exc:
            if call.raised:
                raise
            warn(integration, f"log {getattr(original, '__qualname__', original)}", exc)
            if call.called:
                return call.result
        session.logging = False
        return original(*args, **kwargs)
    finally:
        with _lock:
            _session = None


def _run_inner(integration: str, original: Callable[..., Any], inner: Callable[..., Any], session: Session,
               args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _Original(original)
    try:
        return inner(call, session, *args, **kwargs)
    except Exception as exc:
        if call.raised:
            raise
        warn(integration, f"log {getattr(original, '__qualname__', original)}", exc)
        if call.called:
            return call.result
    return original(*args, **kwargs)


def _wrap(integration: str, original: Callable[..., Any], hook: Callable[..., Any],
          inner: Callable[..., Any] | None, precheck: Callable[[tuple[Any, ...], dict[str, Any]], bool] | None
          ) -> Callable[..., Any]:
    @functools.wraps(original)  # keeps the signature: scikit-learn inspects fit's parameters
    def autologged(*args: Any, **kwargs: Any) -> Any:
        session = _session
        if session is not None:
            if (inner is not None and session.logging and session.integration == integration
                    and session.thread == threading.get_ident()):
                return _run_inner(integration, original, inner, session, args, kwargs)
            return original(*args, **kwargs)
        if not _enabled.get(integration, False):
            return original(*args, **kwargs)
        if precheck is not None:
            try:
                wanted = precheck(args, kwargs)
            except Exception:
                wanted = False
            if not wanted:
                return original(*args, **kwargs)
        return _run_hook(integration, original, hook, args, kwargs)

    setattr(autologged, MARK, (integration, original))
    return autologged


# -- installing and removing patches ----------------------------------------------------------------------------


def _lookup(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return _MISSING


def patch_method(integration: str, cls: type, name: str, hook: Callable[..., Any], *,
                 inner: Callable[..., Any] | None = None,
                 precheck: Callable[[tuple[Any, ...], dict[str, Any]], bool] | None = None) -> bool:
    """Wrap ``cls.name`` (defined on ``cls`` or inherited) with ``hook``; the wrapper is set on ``cls`` itself.

    A plain function is wrapped; scikit-learn's ``available_if`` descriptor is copied with its ``fn`` wrapped,
    so ``hasattr(estimator, "predict_proba")`` still answers as before. Anything else (a property, a builtin) is
    left alone. Returns whether a patch was installed (False too when ``cls.name`` is already wrapped)."""
    found = _lookup(cls, name)
    if found is _MISSING:
        return False
    saved = vars(cls).get(name, _MISSING)
    if saved is not _MISSING and (hasattr(saved, MARK) or hasattr(getattr(saved, "fn", None), MARK)):
        return False  # already wrapped (by this integration or another)
    if isinstance(found, FunctionType):
        installed: Any = _wrap(integration, original_of(found), hook, inner, precheck)
    elif isinstance(getattr(found, "fn", None), FunctionType) and hasattr(found, "check"):
        installed = copy.copy(found)
        installed.fn = _wrap(integration, original_of(found.fn), hook, inner, precheck)
        if hasattr(installed, "__wrapped__"):
            installed.__wrapped__ = installed.fn
    else:
        return False
    try:
        setattr(cls, name, installed)
    except (TypeError, AttributeError) as exc:  # an immutable (extension) type
        logger.debug("autolog (%s): cannot patch %s.%s: %s", integration, cls.__qualname__, name, exc)
        return False
    with _lock:
        _patches.setdefault(integration, []).append(_Patch(cls, name, saved, installed))
    return True


def patch_function(integration: str, module: ModuleType, name: str, hook: Callable[..., Any], *,
                   inner: Callable[..., Any] | None = None,
                   precheck: Callable[[tuple[Any, ...], dict[str, Any]], bool] | None = None) -> bool:
    """Wrap the function ``module.name`` with ``hook``; returns whether a patch was installed."""
    saved = vars(module).get(name, _MISSING)
    if not isinstance(saved, FunctionType) or hasattr(saved, MARK):
        return False
    installed = _wrap(integration, saved, hook, inner, precheck)
    setattr(module, name, installed)
    with _lock:
        _patches.setdefault(integration, []).append(_Patch(module, name, saved, installed))
    return True


def unpatch(integration: str) -> int:
    """Remove every patch and import watcher of ``integration``, putting back exactly what each replaced (in the
    reverse order of patching). A patch someone replaced since is left as it is. Returns how many were undone."""
    set_enabled(integration, False)
    with _lock:
        patches = _patches.pop(integration, [])
        _watchers[:] = [w for w in _watchers if w[0] != integration]
        if not _watchers:
            _remove_finder()
    undone = 0
    for patch in reversed(patches):
        current = vars(patch.owner).get(patch.name, _MISSING)
        if current is not patch.installed:
            logger.debug("autolog (%s): %r.%s was replaced since it was patched; left as it is",
                         integration, patch.owner, patch.name)
            continue
        if patch.saved is _MISSING:
            delattr(patch.owner, patch.name)
        else:
            setattr(patch.owner, patch.name, patch.saved)
        undone += 1
    return undone


def patched(integration: str) -> list[tuple[Any, str]]:
    """(owner, name) of each patch ``integration`` has installed, in the order installed."""
    with _lock:
        return [(p.owner, p.name) for p in _patches.get(integration, [])]


# -- patching modules as they are imported ----------------------------------------------------------------------


def when_imported(integration: str, package: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` for each module of ``package`` (the package itself and its submodules): now for
    those already imported, and later for each one imported, right after it has executed. Once per integration
    and package; a failing callback is a warning."""
    with _lock:
        if any(w[0] == integration and w[1] == package for w in _watchers):
            return
        _watchers.append((integration, package, callback))
        _install_finder()
    for name in sorted(n for n in list(sys.modules) if _in_package(n, package)):
        module = sys.modules.get(name)
        if isinstance(module, ModuleType):
            _call(integration, callback, module)


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _call(integration: str, callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    if not is_enabled(integration):
        return
    try:
        callback(module)
    except Exception as exc:
        warn(integration, f"patch module {module.__name__}", exc)


def _notify(module: ModuleType) -> None:
    name = getattr(module, "__name__", "")
    for integration, package, callback in list(_watchers):
        if _in_package(name, package):
            _call(integration, callback, module)


#: Loaders made per module: an instance attribute on one affects that module only.
_PER_MODULE_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader,
                       importlib.machinery.ExtensionFileLoader)


class _ImportWatcher:
    """A meta path finder that finds nothing itself: for a watched module it asks the other finders for the
    spec and makes that spec's loader notify the watchers once the module has executed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not any(_in_package(fullname, w[1]) for w in _watchers):
            return None
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if spec is None or not isinstance(loader, _PER_MODULE_LOADERS):
            return spec
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            try:
                execute(module)
            finally:
                vars(loader).pop("exec_module", None)
            _notify(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec

    def invalidate_caches(self) -> None:
        pass


_finder: _ImportWatcher | None = None


def _install_finder() -> None:
    global _finder
    if _finder is None:
        _finder = _ImportWatcher()
        sys.meta_path.insert(0, _finder)


def _remove_finder() -> None:
    global _finder
    if _finder is not None:
        try:
            sys.meta_path.remove(_finder)
        except ValueError:
            pass
        _finder = None


def finder_installed() -> bool:
    """Whether the import watcher is in ``sys.meta_path`` (tests check that disabling removes it)."""
    return _finder is not None and _finder in sys.meta_path
