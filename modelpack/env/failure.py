"""Turn a failed pip or uv run into one short sentence that names the requirement at fault."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_NETWORK_RE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Name or service not known|ProxyError|"
    r"Network is unreachable|Connection refused|ConnectTimeout|ReadTimeout|dns error|failed to lookup address",
    re.IGNORECASE,
)
_NOT_FOUND = "no version of '{0}' was found on the package index"
_MAX = 400


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _conflict(match: re.Match[str], text: str) -> str:
    depends = re.findall(r"^\s+(\S+ \S+ depends on .+)$", text, re.MULTILINE)
    details = f" ({'; '.join(d.strip() for d in depends[:4])})" if depends else ""
    return f"conflicting requirements: {match.group(1)}{details}"


#: (pattern, message) in order of precedence; a message is a template or a function of the match.
_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str], str], str]], ...] = (
    # pip
    (re.compile(r"No matching distribution found for (\S+)"), _NOT_FOUND),
    (re.compile(r"Could not find a version that satisfies the requirement (\S+)"), _NOT_FOUND),
    (re.compile(r"Cannot install (.+?) because these package versions have conflicting dependencies"), _conflict),
    # uv
    (re.compile(r"Because \S+ was not found in the package registry and you require (\S+?),"), _NOT_FOUND),
    (re.compile(r"Because there is no version of (\S+?) and you require"), _NOT_FOUND),
    (re.compile(r"No solution found when resolving dependencies\S*\s+(?:cause:|╰─▶)?\s*(Because .+?)(?:\n\S|\Z)",
                re.DOTALL),
     lambda m, _: f"conflicting requirements: {_one_line(m.group(1))}"),
    # both
    (re.compile(r"Could not open requirements file: (.+)"), "a requirements file cannot be read: {0}"),
    (re.compile(r"Invalid requirement: (.+)"), "invalid requirement {0}"),
    (re.compile(r"Failed building wheel for (\S+)"), "building '{0}' from source failed"),
    (re.compile(r"Failed to build `([^`]+)`"), "building '{0}' from source failed"),
)
_BUILD_FAILED_RE = re.compile(r"did not run successfully|subprocess-exited-with-error|build backend returned an error")
_CULPRIT_RE = re.compile(r"^\s*(?:Collecting|Obtaining|Processing|Building) (\S+)")


def summarize(lines: Sequence[str]) -> str:
    """A short reason for a failed install, naming the failing requirement when the output does."""
    text = "\n".join(lines)
    offline = bool(_NETWORK_RE.search(text))
    for pattern, message in _RULES:
        match = pattern.search(text)
        if match:
            reason = message(match, text) if callable(message) else message.format(*match.groups())
            if offline and message == _NOT_FOUND:
                reason += " (the package index could not be reached: check the network or proxy settings)"
            return reason[:_MAX]
    if _BUILD_FAILED_RE.search(text):
        culprit = next((m.group(1) for line in reversed(lines) if (m := _CULPRIT_RE.match(line))), None)
        if culprit:
            return f"preparing '{culprit}' failed (its build or metadata step raised; see the log)"
    if offline:
        return "the package index could not be reached (check the network or proxy settings)"
    errors = [line.strip() for line in lines if line.lstrip().lower().startswith("error")]
    tail = errors or [line.strip() for line in lines if line.strip()]
    return tail[-1][:_MAX] if tail else "the installer failed without output"
