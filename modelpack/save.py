"""SAVE: staging dir -> flavor files -> input example + signature -> env files -> MLmodel -> rename.

Everything is written into a hidden sibling directory that is renamed into place only
when complete, so a failed save leaves nothing and an interrupted one leaves at most a
``.NAME.staging-*`` directory, never a half-written model. The save holds a lock on that
directory while it lives; the next save into the same parent removes the ones no live save
holds. An overwrite swaps the new directory and the old model atomically (Linux), so the
target is always one complete model, the old or the new.
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .descriptor import ASIDE_RE, MLMODEL_FILE, PYFUNC, ModelDescriptor, recover_interrupted_overwrite
from .errors import FlavorError, ModelpackError, ModelSaveError

logger = logging.getLogger(__name__)


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    flavor: str | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    **flavor_options: Any,
) -> ModelDescriptor:
    """Save ``model`` as a model directory at ``path`` and return its descriptor.

    The flavor is chosen from the model's type unless ``flavor`` names one. With only an
    ``input_example``, the signature is inferred from it and the model's prediction on it.
    ``pip_requirements`` replaces the inferred requirements, ``extra_pip_requirements``
    adds to them. Remaining keyword arguments go to the flavor (for example
    ``predict_fn="predict_proba"`` for sklearn, ``artifacts``/``code_paths`` for custom models).
    An existing directory is replaced only with ``overwrite=True``; it is swapped for the new one in a
    single step, so the path always holds a complete model.

    Which formats run code when the model is loaded (pickle and cloudpickle do; skops and the libraries'
    own formats do not), and what a loader checks in a model directory: docs/trust.md.
    """
    from .env.spec import resolve_requirements, write_env_files
    from .flavor_registry import get_registry

    target = Path(path).absolute()
    recover_interrupted_overwrite(target)
    if target.exists() and not overwrite:
        raise ModelSaveError(f"'{target}' already exists; pass overwrite=True to replace it")
    if target.exists() and not _replaceable(target):
        raise ModelSaveError(f"'{target}' exists and is not a model directory; refusing to replace it")
    registry = get_registry()
    chosen = registry.get(flavor) if flavor else registry.for_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target.parent)
    staging, lock = _new_staging(target)
    try:
        saved = chosen.save(model, staging, **flavor_options)
        if saved.loader_module is not None and saved.loader_module not in chosen.aliases:
            raise FlavorError(f"Flavor '{chosen.name}' wrote loader_module '{saved.loader_module}', "
                              f"which is not one of its aliases {list(chosen.aliases)}")
        descriptor = ModelDescriptor(metadata=metadata, modelpack_version=__version__)
        if saved.native is not None:
            descriptor.flavors[chosen.name] = saved.native
        env = write_env_files(
            staging,
            resolve_requirements([*chosen.requirements(model), *saved.requirements], pip_requirements,
                                 extra_pip_requirements),
        )
        descriptor.flavors[PYFUNC] = {
            "loader_module": saved.loader_module or chosen.loader_module,
            "python_version": platform.python_version(),
            "env": env,
            **saved.pyfunc,
        }
        if input_example is not None:
            from .example import save_example

            descriptor.saved_input_example_info = save_example(input_example, staging)
        if signature is None and input_example is not None:
            signature = _infer_from_example(staging, descriptor)
        if signature is not None:
            descriptor.signature = signature.to_dict()
        descriptor.write(staging)
        _publish(staging, target, overwrite)
    except BaseException as exc:
        _remove(staging)
        if isinstance(exc, ModelpackError) or not isinstance(exc, Exception):
            raise
        raise ModelSaveError(f"Saving the model failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if lock is not None:
            os.close(lock)
    logger.info("Saved %s model to %s", chosen.name, target)
    return descriptor


def _infer_from_example(staging: Path, descriptor: ModelDescriptor) -> Any:
    """Signature from the example and the model's own prediction on it (loaded back from disk)."""
    from .example import load_input_example
    from .pyfunc import load_pyfunc_from
    from .signature_inference import infer_signature

    example = load_input_example(staging, descriptor.saved_input_example_info)
    descriptor.write(staging)  # the loader reads MLmodel; rewritten with the signature below
    output = load_pyfunc_from(staging, descriptor).predict(example)
    return infer_signature(example, output)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is racy)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replaceable(target: Path) -> bool:
    return target.is_dir() and ((target / MLMODEL_FILE).is_file() or not any(target.iterdir()))


# -- the staging directory ------------------------------------------------------------------------------------
# A save holds an flock on its staging directory from creation to publication. The kernel drops it when the
# process ends, however it ends (kill -9 included), so a staging directory whose lock can be taken has no live
# save behind it and is removed by the next save into the same parent; one whose lock is held is never touched.

#: What tempfile.mkdtemp names a staging directory: ``.NAME.staging-`` and 8 random characters.
STAGING_RE = re.compile(r"\..+\.staging-[a-z0-9_]{8}")


def _new_staging(target: Path) -> tuple[Path, int | None]:
    """A fresh, locked staging directory next to ``target`` and the descriptor that holds its lock (None where
    directories cannot be locked: then no save removes it either)."""
    for _ in range(10):
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        try:
            staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a model dir gets normal modes
            fd = os.open(staging, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:  # a cleaner took it before it was locked (it was empty): make another
            continue
        except OSError:  # a directory cannot be opened here (Windows): no lock, and no save removes it
            return staging, None
        locked = _try_lock(fd)
        if locked is False:  # a cleaner holds it right now and is removing it
            os.close(fd)
            continue
        if os.fstat(fd).st_nlink == 0:  # removed by a cleaner before the lock was ours
            os.close(fd)
            continue
        return staging, fd
    raise ModelSaveError(f"Cannot create a staging directory next to '{target}' (another process kept removing it)")


def _try_lock(fd: int) -> bool | None:
    """Take the exclusive flock on ``fd`` without waiting: True, False when another process holds it, None when
    this system or filesystem cannot lock a directory."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # e.g. EBADF/ENOLCK on filesystems that emulate flock with write locks
        logger.debug("Cannot lock a staging directory here (%s); stale ones will not be removed", exc)
        return None
    return True


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging directories in ``parent`` that no live save holds (those of saves that were killed,
    and old models that an overwrite swapped out but did not finish deleting); the ones removed."""
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(parent) if STAGING_RE.fullmatch(e.name)]
    except OSError:
        return removed
    for entry in entries:
        try:
            if not _own_directory(entry):
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            continue
        try:
            if _try_lock(fd) is not True:  # a live save, or a lock this filesystem cannot take: leave it
                continue
            if os.fstat(fd).st_ino != os.stat(entry.path, follow_symlinks=False).st_ino:
                continue  # replaced since it was listed
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
        except OSError:
            continue
        finally:
            os.close(fd)  # releases the lock
    for aside in _asides_of_published(parent):  # no lock: garbage once their model is back in place
        _remove(aside)
        removed.append(aside)
    if removed:
        logger.info("Removed %d stale staging director%s in %s", len(removed), "y" if len(removed) == 1 else "ies",
                    parent)
    return removed


def _own_directory(entry: os.DirEntry[str]) -> bool:
    """A real directory (not a symlink) of this user: the only kind a cleanup removes."""
    if not entry.is_dir(follow_symlinks=False):
        return False
    return not hasattr(os, "getuid") or entry.stat(follow_symlinks=False).st_uid == os.getuid()


def _asides_of_published(parent: Path) -> list[Path]:
    """Old models moved aside by overwrites (the fallback of :func:`_publish`) whose target exists again: garbage.
    One whose target is missing is left for recovery (modelpack.descriptor.recover_interrupted_overwrite)."""
    found = []
    try:
        for entry in os.scandir(parent):
            match = ASIDE_RE.fullmatch(entry.name)
            if match and _own_directory(entry) and os.path.lexists(parent / match["name"]):
                found.append(Path(entry.path))
    except OSError:
        pass
    return found


def _remove(path: Path) -> None:
    """Delete a directory tree (or a symlink or file: what an exchange may have swapped out)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


# -- publication ----------------------------------------------------------------------------------------------
# Linux swaps the finished staging directory and the old model in one renameat2(RENAME_EXCHANGE): at every
# instant the target is a complete model, old or new. Elsewhere the old model is renamed aside first; a crash
# between the two renames leaves it at ``.NAME.old-*``, and the next load or save of the target puts it back.

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_renameat2_fn: Any = None


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """``renameat2(source, target, flags)``: True when done, False when this system or filesystem does not
    support ``flags`` (the caller falls back); other failures raise OSError."""
    global _renameat2_fn
    if _renameat2_fn is None:
        _renameat2_fn = False
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.3
            except (AttributeError, OSError):
                fn = None
            if fn is not None:
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2_fn = fn
    if not _renameat2_fn:
        return False
    import ctypes

    if _renameat2_fn(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(source), None, str(target))


def _publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Put the finished staging directory at ``target``: a new path is never taken over from another save, and
    an overwrite leaves the old or the new model at ``target`` at every instant, never neither."""
    if overwrite and os.path.lexists(target):
        try:
            swapped = _renameat2(staging, target, _RENAME_EXCHANGE)
        except FileNotFoundError:  # the old model went away meanwhile
            swapped = None
        if swapped:
            _remove(staging)  # now the old model (a kill here leaves it to the next save's cleanup)
            return
        if swapped is False:
            _replace_aside(staging, target)
            return
    _rename_new(staging, target)


def _rename_new(staging: Path, target: Path) -> None:
    try:
        if _renameat2(staging, target, _RENAME_NOREPLACE):
            return
    except FileExistsError:
        raise ModelSaveError(f"'{target}' was created by someone else while this model was saved; "
                             "pass overwrite=True to replace it") from None
    if os.path.lexists(target):
        raise ModelSaveError(f"'{target}' was created by someone else while this model was saved; "
                             "pass overwrite=True to replace it")
    os.rename(staging, target)


def _replace_aside(staging: Path, target: Path) -> None:
    """The overwrite where an atomic exchange is unavailable: old model aside, new one in, old one deleted."""
    aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    try:
        os.rename(target, aside)
    except FileNotFoundError:  # the old model went away meanwhile
        _rename_new(staging, target)
        return
    try:
        os.rename(staging, target)
    except BaseException:
        if not os.path.lexists(target):
            os.rename(aside, target)
        else:
            _remove(aside)  # someone restored it meanwhile: that copy is at target already
        raise
    _remove(aside)
