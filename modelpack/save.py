"""SAVE: staging dir -> flavor files -> input example + signature -> env files -> MLmodel -> rename.

Everything is written into a hidden sibling directory that is renamed into place only
when complete, so a failed save leaves nothing and an interrupted one leaves at most a
``.NAME.staging-*`` directory, never a half-written model.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .descriptor import MLMODEL_FILE, PYFUNC, ModelDescriptor
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
    An existing directory is replaced only with ``overwrite=True``.
    """
    from .env.spec import resolve_requirements, write_env_files
    from .flavor_registry import get_registry

    target = Path(path).absolute()
    if target.exists() and not overwrite:
        raise ModelSaveError(f"'{target}' already exists; pass overwrite=True to replace it")
    if target.exists() and not _replaceable(target):
        raise ModelSaveError(f"'{target}' exists and is not a model directory; refusing to replace it")
    registry = get_registry()
    chosen = registry.get(flavor) if flavor else registry.for_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a model dir gets normal modes
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
        _publish(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ModelpackError) or not isinstance(exc, Exception):
            raise
        raise ModelSaveError(f"Saving the model failed: {type(exc).__name__}: {exc}") from exc
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


def _publish(staging: Path, target: Path) -> None:
    """Rename the finished staging directory into place (replacing an old model last)."""
    if not target.exists():
        os.rename(staging, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, trash / "model")
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(trash / "model", target)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
