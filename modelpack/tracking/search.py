"""SEARCH: find runs with a filter and an order, compiled to one SQL query; results as Runs or a DataFrame.

The filter language (MLflow's)::

    metrics.rmse < 60 and params.alpha = '0.01' and tags.`data set` LIKE 'diab%'
    attributes.status = 'FINISHED' and start_time > 1700000000000 and run_name IN ('a', 'b')

- ``metrics.<key>`` (the latest value) compares with a number: ``= != < <= > >=``;
- ``params.<key>``, ``tags.<key>`` and the string attributes (``run_id``, ``run_name``, ``status``, ``user_id``)
  compare with a quoted string: ``= !=``, ``LIKE`` / ``ILIKE`` (``%`` any text, ``_`` one character; ``LIKE`` is
  case-sensitive in every database), ``IN (...)`` / ``NOT IN (...)``;
- ``start_time`` / ``end_time`` (ms since the epoch) compare with a number;
- clauses join with ``and`` (any case); a key with characters other than letters, digits, ``_ . - / :`` is
  written in backticks or double quotes; ``attributes.`` is optional before an attribute.

A run without the metric, param or tag a clause names does not match it (``!=`` included). Each clause is an
``EXISTS`` on the table of that kind, so nothing is evaluated in Python over all runs.

``order_by``: ``["metrics.rmse ASC", "start_time DESC", "params.alpha"]``; runs without the value sort last,
and ties fall back to ``start_time DESC``, then ``run_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, exists, false, literal, not_, select
from sqlalchemy.sql.elements import ColumnElement

from ..errors import quote
from .errors import FilterSyntaxError
from .runs import Run, info_from_row, load_data
from .schema import latest_metrics, params, run_tags, runs
from .store import Store

if TYPE_CHECKING:
    import pandas as pd

#: Attribute name -> (runs column, kind): "string" or "number".
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "run_id": ("run_id", "string"),
    "run_name": ("name", "string"),
    "status": ("status", "string"),
    "user_id": ("user_id", "string"),
    "artifact_uri": ("artifact_uri", "string"),
    "start_time": ("start_time", "number"),
    "end_time": ("end_time", "number"),
}
_ENTITIES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
}
_NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<ident>(?P<entity>[A-Za-z_]+)\.(?:`(?P<bq>[^`]*)`|"(?P<dq>[^"]*)"|(?P<key>[\w.\-/:]+)))
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_]\w*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)
#: The default and longest result of a search (MLflow's fluent search_runs returns up to 100,000 runs).
MAX_RESULTS = 100_000


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, number, string, word, op, punct, end
    text: str
    pos: int  # 1-based character position in the filter
    entity: str = ""
    key: str = ""

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class Comparison:
    """One parsed clause: ``entity.key op value`` (value: float, str or a tuple of str for IN)."""

    entity: str  # metrics, params, tags, attributes
    key: str
    op: str
    value: Any


def _tokens(text: str, what: str) -> list[_Token]:
    found: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise FilterSyntaxError(f"Invalid {what} {quote(text, 200)} at character {pos + 1}: "
                                    f"unexpected {quote(text[pos:pos + 20])}")
        kind = match.lastgroup or ""
        if kind == "ident":
            entity = match.group("entity")
            key = next(k for k in (match.group("bq"), match.group("dq"), match.group("key")) if k is not None)
            found.append(_Token("ident", match.group(0), pos + 1, entity, key))
        elif kind != "space":
            found.append(_Token(kind, match.group(0), pos + 1))
        pos = match.end()
    found.append(_Token("end", "", len(text) + 1))
    return found


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text, self.what = text, what
        self.tokens = _tokens(text, what)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, token: _Token, expected: str) -> FilterSyntaxError:
        got = "the end of the text" if token.kind == "end" else quote(token.text)
        return FilterSyntaxError(f"Invalid {self.what} {quote(self.text, 200)} at character {token.pos}: "
                                 f"expected {expected}, got {got}")

    def identifier(self) -> tuple[str, str, str]:
        """(entity, key, kind) of the next token, an ``entity.key`` or a bare attribute name."""
        token = self.take()
        if token.kind == "ident":
            entity = _ENTITIES.get(token.entity.lower())
            if entity is None:
                raise self.fail(token, "metrics.<key>, params.<key>, tags.<key> or attributes.<name>")
            if entity != "attributes":
                if not token.key:
                    raise self.fail(token, f"a key after '{token.entity}.'")
                return entity, token.key, "number" if entity == "metrics" else "string"
            name = token.key
        elif token.kind == "word":
            name = token.text
        else:
            raise self.fail(token, "metrics.<key>, params.<key>, tags.<key> or an attribute")
        if name.lower() not in ATTRIBUTES:
            raise self.fail(token, f"an attribute, one of {sorted(ATTRIBUTES)}")
        return "attributes", name.lower(), ATTRIBUTES[name.lower()][1]

    def comparison(self) -> Comparison:
        entity, key, kind = self.identifier()
        token = self.take()
        op = "!=" if token.text == "<>" else token.upper
        if token.kind == "word" and op == "NOT" and self.peek().upper == "IN":
            self.take()
            op = "NOT IN"
        allowed = _NUMBER_OPS if kind == "number" else _STRING_OPS
        if op not in allowed or token.kind not in ("op", "word"):
            raise self.fail(token, f"an operator for {_label(entity, key)} ({', '.join(allowed)})")
        if op in ("IN", "NOT IN"):
            return Comparison(entity, key, op, self.string_list())
        value = self.take()
        if kind == "number":
            if value.kind != "number":
                raise self.fail(value, f"a number to compare {_label(entity, key)} with")
            return Comparison(entity, key, op, float(value.text))
        if value.kind != "string":
            raise self.fail(value, f"a quoted string to compare {_label(entity, key)} with (e.g. '0.01')")
        return Comparison(entity, key, op, _unquote(value.text))

    def string_list(self) -> tuple[str, ...]:
        token = self.take()
        if token.text != "(":
            raise self.fail(token, "'(' and a list of quoted strings")
        values = []
        while True:
            value = self.take()
            if value.kind != "string":
                raise self.fail(value, "a quoted string")
            values.append(_unquote(value.text))
            sep = self.take()
            if sep.text == ")":
                return tuple(values)
            if sep.text != ",":
                raise self.fail(sep, "',' or ')'")


def parse_filter(text: str | None) -> list[Comparison]:
    """The clauses of a filter string (empty for an empty filter); a clear error naming the position."""
    if not text or not text.strip():
        return []
    parser = _Parser(text, "filter")
    clauses = [parser.comparison()]
    while parser.peek().kind != "end":
        token = parser.take()
        if token.upper != "AND":
            raise parser.fail(token, "'and' between two comparisons" if token.upper != "OR" else
                              "'and' ('or' is not supported: run one search per alternative)")
        clauses.append(parser.comparison())
    return clauses


def parse_order_by(clauses: list[str] | tuple[str, ...] | str | None) -> list[tuple[str, str, bool]]:
    """(entity, key, ascending) of each ``order_by`` clause."""
    if isinstance(clauses, str):
        clauses = [clauses]
    found = []
    for clause in clauses or ():
        parser = _Parser(clause, "order_by clause")
        entity, key, _ = parser.identifier()
        ascending = True
        token = parser.take()
        if token.upper in ("ASC", "DESC"):
            ascending = token.upper == "ASC"
            token = parser.take()
        if token.kind != "end":
            raise parser.fail(token, "ASC, DESC or the end of the clause")
        found.append((entity, key, ascending))
    return found


def search(store: Store, experiment_ids: list[str], filter_string: str | None = None,
           order_by: list[str] | tuple[str, ...] | str | None = None, max_results: int = MAX_RESULTS) -> list[Run]:
    """The active runs of ``experiment_ids`` that match the filter, in order, with their params, metrics, tags."""
    if not isinstance(max_results, int) or isinstance(max_results, bool) or not 0 < max_results <= MAX_RESULTS:
        raise FilterSyntaxError(f"max_results is an integer from 1 to {MAX_RESULTS}, got {quote(max_results)}")
    dialect = store.engine.dialect.name
    conditions: list[ColumnElement[bool]] = [
        runs.c.experiment_id.in_([int(e) for e in experiment_ids]), runs.c.lifecycle_stage == "active"]
    conditions += [_condition(c, dialect) for c in parse_filter(filter_string)]
    query = select(runs).where(and_(*conditions))
    source: Any = runs
    ordering: list[Any] = []
    for n, (entity, key, ascending) in enumerate(parse_order_by(order_by)):
        column, is_nan, source = _order_column(entity, key, source, n)
        ordering.append(case((column.is_(None), 2), else_=0) + (case((is_nan, 1), else_=0) if is_nan is not None
                                                                 else literal(0)))
        ordering.append(column.asc() if ascending else column.desc())
    ordering += [runs.c.start_time.desc(), runs.c.run_id.asc()]
    query = query.select_from(source).order_by(*ordering).limit(max_results)
    with store.reading() as conn:
        infos = [info_from_row(row) for row in conn.execute(query)]
        data = load_data(conn, [info.run_id for info in infos])
    return [Run(info, data[info.run_id]) for info in infos]


def to_frame(found: list[Run]) -> pd.DataFrame:
    """Runs as a DataFrame with MLflow's columns: ``run_id, experiment_id, status, artifact_uri, start_time,
    end_time`` (UTC datetimes), then ``run_name``, ``metrics.<k>``, ``params.<k>``, ``tags.<k>``."""
    import numpy as np
    import pandas as pd

    base = {
        "run_id": [r.info.run_id for r in found],
        "experiment_id": [r.info.experiment_id for r in found],
        "status": [r.info.status for r in found],
        "artifact_uri": [r.info.artifact_uri for r in found],
        "start_time": pd.to_datetime([r.info.start_time for r in found], unit="ms", utc=True),
        "end_time": pd.to_datetime([r.info.end_time if r.info.end_time is not None else np.nan for r in found],
                                   unit="ms", utc=True),
        "run_name": [r.info.run_name for r in found],
    }
    columns: dict[str, Any] = dict(base)
    for prefix, attr, missing in (("metrics", "metrics", np.nan), ("params", "params", None),
                                  ("tags", "tags", None)):
        keys = sorted({k for r in found for k in getattr(r.data, attr)})
        for key in keys:
            values = [getattr(r.data, attr).get(key, missing) for r in found]
            columns[f"{prefix}.{key}"] = np.array(values, dtype=float) if prefix == "metrics" else values
    return pd.DataFrame(columns)


def _condition(clause: Comparison, dialect: str) -> ColumnElement[bool]:
    if clause.entity == "attributes":
        column = runs.c[ATTRIBUTES[clause.key][0]]
        return _compare(column, clause, dialect)
    if clause.entity == "metrics":
        table = latest_metrics.alias()
        return exists().where(table.c.run_id == runs.c.run_id, table.c.key == clause.key,
                              table.c.is_nan == false(), _compare(table.c.value, clause, dialect))
    table = (params if clause.entity == "params" else run_tags).alias()
    return exists().where(table.c.run_id == runs.c.run_id, table.c.key == clause.key,
                          _compare(table.c.value, clause, dialect))


def _compare(column: Any, clause: Comparison, dialect: str) -> ColumnElement[bool]:
    op, value = clause.op, clause.value
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "IN":
        return column.in_(value)
    if op == "NOT IN":
        return not_(column.in_(value))
    if op == "ILIKE":
        return column.ilike(value)
    # LIKE, case-sensitive everywhere: SQLite's LIKE ignores ASCII case, its GLOB does not.
    if dialect == "sqlite":
        return column.op("GLOB")(_like_to_glob(value))
    return column.like(value)


def _like_to_glob(pattern: str) -> str:
    out = []
    for char in pattern:
        if char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        elif char in "*?[":
            out.append(f"[{char}]")
        else:
            out.append(char)
    return "".join(out)


def _order_column(entity: str, key: str, source: Any, n: int) -> tuple[Any, Any, Any]:
    """(value column, its is_nan column or None, the FROM clause joined with what it needs)."""
    if entity == "attributes":
        return runs.c[ATTRIBUTES[key][0]], None, source
    if entity == "metrics":
        table = latest_metrics.alias(f"order_{n}")
        joined = source.outerjoin(table, and_(table.c.run_id == runs.c.run_id, table.c.key == key))
        return table.c.value, table.c.is_nan, joined
    table = (params if entity == "params" else run_tags).alias(f"order_{n}")
    joined = source.outerjoin(table, and_(table.c.run_id == runs.c.run_id, table.c.key == key))
    return table.c.value, None, joined


def _unquote(text: str) -> str:
    quote_char = text[0]
    return text[1:-1].replace(quote_char * 2, quote_char)


def _label(entity: str, key: str) -> str:
    return key if entity == "attributes" else f"{entity}.{key}"
