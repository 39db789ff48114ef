"""``modelpack.spark_udf``: a model as a Spark pandas UDF (docs/spark.md).

The UDF is the iterator form of ``pandas_udf``: each Python worker gets an iterator over a task's Arrow
batches, takes its scorer from :mod:`modelpack.spark.cache` once (loading the model on the worker's first
batch ever, not on every batch), feeds the model each batch as a DataFrame with the signature's column names,
and turns each output into the result type with :mod:`modelpack.spark.results`. Inputs go through the same
schema enforcement as ``load_model().predict`` and the server, so a column that does not fit fails the task
with the server's message.

How the arguments name the model's columns:

- ``predict()``: the signature's input columns, by name;
- ``predict("age", "sex", ...)`` (column names): by those names, so order does not matter and columns the
  signature does not list are ignored; a missing required column is refused on the driver, before any job;
- ``predict(col_a, col_b, ...)`` (Column expressions): by position, in the signature's order, as MLflow does
  (Spark does not tell a UDF the names of its argument columns);
- ``predict(struct(...))``: by the struct's field names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pandas as pd

from ..errors import InvalidInputError, quote, quote_names
from .cache import scorer_for
from .results import ResultPlan, empty_result, plan_of, to_spark
from .ship import ShippedModel, ship_model

if TYPE_CHECKING:
    from ..descriptor import ModelDescriptor

logger = logging.getLogger(__name__)

ENV_MANAGERS = ("local", "virtualenv", "uv")


def spark_udf(spark: Any, model_uri: str | os.PathLike[str], result_type: Any = "double",
              env_manager: str = "local", params: dict[str, Any] | None = None) -> ModelUDF:
    """A Spark UDF that scores ``model_uri`` (any URI ``modelpack.load_model`` accepts) on Spark columns.

    ``result_type`` is a pyspark ``DataType`` or a DDL string: ``double`` (default), ``float``, ``long``,
    ``int``, ``short``, ``byte``, ``boolean``, ``string``, ``array<...>`` of one of those, or a struct of them
    (``"label string, score double"``) for models that return several columns. ``env_manager="local"`` runs
    the model in the executors' own Python; ``"virtualenv"`` or ``"uv"`` rebuilds the model's environment once
    per executor machine (the environment cache, as ``modelpack serve`` does) and runs the model there.
    ``params`` go to every ``predict`` call, checked against the signature's params now.
    """
    from ..descriptor import ModelDescriptor
    from ..enforce import SchemaEnforcer
    from ..model_uri import resolve_model_uri

    if env_manager not in ENV_MANAGERS:
        raise InvalidInputError(f"env_manager must be one of {list(ENV_MANAGERS)}, got {quote(env_manager)}")
    spark_context = _spark_context(spark)
    data_type = _data_type(result_type)
    plan = plan_of(data_type)
    model_dir = resolve_model_uri(model_uri)
    descriptor = ModelDescriptor.read(model_dir)
    descriptor.check_paths(model_dir)
    params = SchemaEnforcer(descriptor.get_signature()).params(params)
    if env_manager != "local" and str(spark_context.master).startswith("local"):
        # Executors share this machine: build (or find) the environment here, with progress in the driver's log.
        from ..env.build import ensure_environment

        ensure_environment(model_dir, env_manager)
    shipped = ship_model(spark_context, model_dir, descriptor)
    return ModelUDF(shipped, descriptor, model_dir, data_type, plan, env_manager, params)


def _spark_context(spark: Any) -> Any:
    try:
        return spark.sparkContext
    except Exception as exc:  # Spark Connect sessions have none
        raise InvalidInputError(
            "spark_udf needs a classic SparkSession (it ships the model with SparkContext.addFile); "
            f"this session has no SparkContext ({type(exc).__name__}), as with Spark Connect") from None


def _data_type(result_type: Any) -> Any:
    from pyspark.sql.types import DataType, _parse_datatype_string

    if isinstance(result_type, DataType):
        return result_type
    if not isinstance(result_type, str):
        raise InvalidInputError(f"result_type must be a pyspark DataType or a DDL string such as 'double' or "
                                f"'array<double>', got {type(result_type).__name__}")
    try:
        return _parse_datatype_string(result_type)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"result_type {quote(result_type)} is not a Spark type: {quote(first, 300)}") from None


class ModelUDF:
    """What :func:`spark_udf` returns: call it on columns to get a prediction Column.

    ``udf`` is the underlying pandas UDF, with the signature's columns taken by position, for
    ``spark.udf.register("predict", predict.udf)`` and SQL.
    """

    def __init__(self, shipped: ShippedModel, descriptor: ModelDescriptor, model_dir: Path, result_type: Any,
                 plan: ResultPlan, env_manager: str, params: dict[str, Any] | None) -> None:
        self.shipped = shipped
        self.metadata = descriptor
        self.model_dir = model_dir
        self.result_type = result_type
        self.plan = plan
        self.env_manager = env_manager
        self.params = params
        signature = descriptor.get_signature()
        schema = signature.inputs if signature is not None else None
        self._signature = signature
        #: the signature's input column names, in order (None: no signature, or unnamed columns / tensors)
        self.input_names: list[str] | None = (
            [str(n) for n in schema.input_names] if schema is not None and schema.has_input_names
            and not schema.is_tensor else None)
        self._required = ([str(n) for n in schema.required_input_names] if self.input_names is not None
                          and schema is not None else [])
        self.udf = self._pandas_udf(self.input_names)

    def __repr__(self) -> str:
        return f"ModelUDF(model='{self.model_dir}', result_type={self.plan.describe()}, env_manager={self.env_manager})"

    def __call__(self, *columns: Any) -> Any:
        from pyspark.sql.functions import col

        if not columns:
            if self.input_names is None:
                raise InvalidInputError(
                    "predict() without columns takes the model signature's input column names, and this model's "
                    "signature names none" + ("" if self._signature is not None else " (it has no signature)")
                    + "; pass the columns: predict(*df.columns) or predict(struct(...))")
            return self.udf(*[col(_quoted(n)) for n in self.input_names])
        if all(isinstance(c, str) for c in columns):
            names = list(columns)
            if len(names) > 1:
                self._check_names(names)
            return self._pandas_udf(names)(*names)
        if self.input_names is not None and len(columns) > 1:
            if len(columns) > len(self.input_names):
                raise InvalidInputError(
                    f"The model's signature has {len(self.input_names)} input column(s) "
                    f"{quote_names(self.input_names)}; the UDF got {len(columns)} columns, which Column arguments "
                    "match by position. Pass column names (matched by name, extra ones ignored) or a struct")
        return self.udf(*columns)

    def _check_names(self, names: list[str]) -> None:
        """Refuse, on the driver, column names that cannot fit the signature, with the server's message."""
        if self._signature is None or self.input_names is None:
            return
        missing = [n for n in self._required if n not in names]
        if not missing and len(set(names)) == len(names):
            return
        from ..enforce import SchemaEnforcer

        # Columns are checked by name before any value is: an empty frame gets the same message as a request.
        SchemaEnforcer(self._signature).inputs(pd.DataFrame(columns=names))

    def _pandas_udf(self, names: list[str] | None) -> Any:
        """The pandas UDF whose positional arguments are the columns ``names`` (None: named by position)."""
        from pyspark.sql.functions import pandas_udf

        shipped, plan, env_manager, params = self.shipped, self.plan, self.env_manager, self.params
        expected = list(self.input_names or [])

        def predict_batches(batches: Any) -> Any:
            scorer = None
            for batch in batches:
                frame = batch_frame(batch, names, expected)
                if len(frame) == 0:
                    yield empty_result(plan)
                    continue
                if scorer is None:
                    scorer = scorer_for(shipped, env_manager)
                try:
                    result = to_spark(scorer.predict(frame, params), len(frame), plan)
                except InvalidInputError as exc:  # the input's fault: its message is all the task error needs
                    raise exc.with_traceback(None) from None
                yield result

        # pandas_udf reads the UDF's kind from these hints (typing.Union: it does not read X | Y)
        predict_batches.__annotations__ = {
            "batches": Iterator[tuple[Union[pd.Series, pd.DataFrame], ...]],  # noqa: UP007
            "return": Iterator[pd.DataFrame] if plan.kind == "struct" else Iterator[pd.Series],
        }
        make: Any = pandas_udf  # its overloads do not cover a function typed at run time
        return make(predict_batches, returnType=self.result_type)


def _quoted(name: str) -> str:
    """A column name as Spark reads it literally (dots and spaces included)."""
    return "`" + name.replace("`", "``") + "`"


def batch_frame(batch: Any, names: list[str] | None, expected: list[str]) -> pd.DataFrame:
    """One Arrow batch of the UDF's arguments as the DataFrame the model gets (executor side).

    A single struct argument arrives as a DataFrame and keeps its field names; otherwise the arguments are
    Series named by ``names``, or by the signature's names (``expected``) in order, or by position."""
    items = batch if isinstance(batch, tuple) else (batch,)
    if len(items) == 1 and isinstance(items[0], pd.DataFrame):
        return items[0]
    labels = names if names is not None else (expected or [str(i) for i in range(len(items))])
    if len(items) > len(labels):
        raise InvalidInputError(
            f"The model's signature has {len(labels)} input column(s) {quote_names(labels)}; the UDF got "
            f"{len(items)} columns")
    data = {}
    for label, item in zip(labels, items, strict=False):
        # a struct among several arguments: one dict per row, as a request's JSON object would be
        data[label] = pd.Series(item.to_dict("records"), index=item.index) if isinstance(item, pd.DataFrame) \
            else item
    return pd.DataFrame(data)


__all__ = ["ModelUDF", "spark_udf"]
