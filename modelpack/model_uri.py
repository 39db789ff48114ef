"""MODEL URIS: the one place a model's name becomes its directory.

``runs:/<run_id>/<path>`` (a model logged in a run: the run's artifact directory + path),
``models:/<name>/<version>``, ``models:/<name>/latest`` (the highest version), ``models:/<name>@<alias>``
(the registry's immutable copy of that version), ``file://`` URIs and plain paths. Paths resolve without opening
the tracking store, so loading a model directory stays as light as it was; ``runs:/`` and ``models:/`` read the
store ``MODELPACK_TRACKING_URI`` / ``set_tracking_uri`` names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .errors import InvalidInputError, quote, quote_names

#: A URI scheme of at least two characters (``C:/models`` stays a path), followed by ``:/``.
if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/")
_MODELS_FORMS = "models:/<name>/<version>, models:/<name>/latest or models:/<name>@<alias>"


@dataclass(frozen=True)
class ModelUri:
    """A parsed model URI: ``kind`` is ``path``, ``runs`` or ``models``."""

    kind: str
    path: str = ""  # the directory (path), or the artifact path inside the run (runs)
    run_id: str = ""
    name: str = ""
    version: int | None = None  # models:/<name>/<version>
    alias: str | None = None  # models:/<name>@<alias>; neither: models:/<name>/latest


@dataclass(frozen=True)
class ModelLocation:
    """Where a model URI leads: its directory, and the run it came from when one is known."""

    path: Path
    run_id: str | None = None


def parse_model_uri(uri: str | os.PathLike[str]) -> ModelUri:
    """Split a model URI into its parts (no file or store is read); InvalidInputError when malformed."""
    text = os.fspath(uri)
    if not isinstance(text, str):
        raise InvalidInputError(f"A model URI is a string or a path, got {quote(uri)}")
    if text.startswith("runs:"):
        return _parse_runs(text)
    if text.startswith("models:"):
        return _parse_models(text)
    if text.startswith("file:"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise InvalidInputError(f"Cannot read model URI {quote(text)}: a file URI names a local path, "
                                    "such as file:///srv/models/diabetes")
        return ModelUri("path", path=unquote(parts.path))
    scheme = _SCHEME.match(text)
    if scheme:
        raise InvalidInputError(f"Cannot read model URI {quote(text)}: modelpack reads runs:/, models:/ and "
                                f"file:// URIs and paths, not {scheme.group(1)!r} URIs")
    return ModelUri("path", path=text)


def _parse_runs(text: str) -> ModelUri:
    rest = text[len("runs:"):].lstrip("/")
    run_id, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not run_id or ".." in parts:
        raise InvalidInputError(f"Cannot read model URI {quote(text)}: expected runs:/<run_id>/<path> with a "
                                "path inside the run's artifacts, such as runs:/<run_id>/model")
    return ModelUri("runs", run_id=run_id, path="/".join(parts))


def _parse_models(text: str) -> ModelUri:
    rest = text[len("models:"):].lstrip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if not name or not alias or "/" in name or "/" in alias:
            raise InvalidInputError(f"Cannot read model URI {quote(text)}: expected {_MODELS_FORMS}")
        return ModelUri("models", name=name, alias=alias)
    name, _, version = rest.partition("/")
    if not name or not version or "/" in version:
        raise InvalidInputError(f"Cannot read model URI {quote(text)}: expected {_MODELS_FORMS}")
    if version.lower() == "latest":
        return ModelUri("models", name=name)
    if not version.isdigit() or int(version) < 1:
        raise InvalidInputError(f"Cannot read model URI {quote(text)}: {quote(version)} is neither a version "
                                "number nor 'latest' (stages are not supported: name the version with an alias, "
                                f"models:/{name}@<alias>)")
    return ModelUri("models", name=name, version=int(version))


def resolve_model_uri(uri: str | os.PathLike[str]) -> Path:
    """The absolute model directory ``uri`` names (see the module docstring).

    A path is returned as it is (loading it says what is wrong with it); an unknown run, registered model,
    version or alias is a ModelNotFoundError (a ModelLoadError) naming the ones that exist."""
    return locate_model(uri).path


def locate_model(uri: str | os.PathLike[str]) -> ModelLocation:
    """:func:`resolve_model_uri`, with the run the model came from (``runs:/``, or a registered version's run)."""
    parsed = parse_model_uri(uri)
    if parsed.kind == "path":
        return ModelLocation(Path(parsed.path).expanduser().absolute())
    from .tracking.store import Store

    store = Store.open()
    with store.reading() as conn:
        if parsed.kind == "runs":
            return ModelLocation(_run_model_dir(conn, store.artifact_root, parsed), parsed.run_id)
        from .registry.aliases import read_alias
        from .registry.versions import read_latest, read_version

        if parsed.alias is not None:
            version = read_alias(conn, parsed.name, parsed.alias)
        elif parsed.version is not None:
            version = read_version(conn, parsed.name, parsed.version)
        else:
            version = read_latest(conn, parsed.name)
        return ModelLocation(version.path, version.run_id)


def _run_model_dir(conn: Connection, artifact_root: Path, parsed: ModelUri) -> Path:
    """The run's artifact directory + the URI's path; ModelNotFoundError for an unknown run or path."""
    from sqlalchemy import select

    from .registry.models import ModelNotFoundError
    from .tracking import schema
    from .tracking.artifacts import artifact_dir

    runs, logged = schema.runs, schema.logged_models
    artifact_uri = conn.execute(select(runs.c.artifact_uri).where(runs.c.run_id == parsed.run_id)).scalar()
    if artifact_uri is None:
        raise ModelNotFoundError(f"No run with id {quote(parsed.run_id)} in the tracking store "
                                 "(`modelpack runs list` shows the runs)")
    base = artifact_dir(artifact_uri)
    if not base.is_absolute():
        base = artifact_root / base
    target = base.joinpath(*PurePosixPath(parsed.path).parts) if parsed.path else base
    if not target.exists():
        models = list(conn.execute(select(logged.c.artifact_path).where(logged.c.run_id == parsed.run_id)
                                   .order_by(logged.c.artifact_path)).scalars())
        listed = f"its logged models: {quote_names(models)}" if models else "it has logged no model"
        raise ModelNotFoundError(f"Run {parsed.run_id} has no artifact {quote(parsed.path)}; {listed}")
    return target

