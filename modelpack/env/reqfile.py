"""Reading pip requirement files: comments, line continuations, ``-r`` / ``-c`` includes.

Used at save time (a user's ``-r other.txt`` is inlined and ``-c constraints.txt`` copied
into the model) and at serve time (the cache key covers every line an install will read).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_FLAGS = {"-r": "r", "--requirement": "r", "-c": "c", "--constraint": "c"}


def read_lines(path: Path) -> list[str]:
    """The logical lines of a requirement file: continuations joined, comments and blanks dropped."""
    text = path.read_text(encoding="utf-8")
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = _COMMENT_RE.sub("", pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(_COMMENT_RE.sub("", pending).strip())
    return lines


def include(line: str) -> tuple[str, str] | None:
    """``("r", target)`` for ``-r target``, ``("c", target)`` for ``-c target``, else None."""
    line = line.strip()
    for flag, kind in _FLAGS.items():
        if not line.startswith(flag):
            continue
        rest = line[len(flag):]
        if flag.startswith("--") and rest[:1] not in ("=", " ", "\t"):
            continue  # e.g. --require-hashes
        target = rest.lstrip("= \t")
        if target:
            return kind, target
    return None


def is_url(target: str) -> bool:
    return "://" in target


def expand(lines: Iterable[str], base: Path, _seen: frozenset[Path] = frozenset()) -> list[str]:
    """Inline local ``-r`` files (recursively) and make local ``-c`` paths absolute.

    Relative paths are resolved against ``base`` for the given lines and against the
    including file's directory inside files, as pip does. URLs are kept as written.
    Raises ``OSError`` (with ``filename`` set) when a referenced file cannot be read.
    """
    out: list[str] = []
    for line in lines:
        found = include(line)
        if found is None or is_url(found[1]):
            out.append(line)
            continue
        kind, target = found
        path = (base / target).resolve()
        if kind == "c":
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            out.append(f"-c {path}")
            continue
        if path in _seen:
            continue  # a file including itself, directly or not: pip would loop too
        out.extend(expand(read_lines(path), path.parent, _seen | {path}))
    return out


def local_constraint(line: str) -> Path | None:
    """The file of a local ``-c /abs/path`` line (after :func:`expand`), else None."""
    found = include(line)
    if found and found[0] == "c" and not is_url(found[1]):
        return Path(found[1])
    return None


def constraint_lines(path: Path, _seen: frozenset[Path] = frozenset()) -> list[str]:
    """Every line a constraint file contributes, its own includes inlined."""
    out: list[str] = []
    for line in expand(read_lines(path), path.parent):
        nested = local_constraint(line)
        if nested is None:
            out.append(line)
        elif nested not in _seen:
            out.extend(constraint_lines(nested, _seen | {path}))
    return out
