"""Score a model inside Spark: :func:`spark_udf` turns a model URI into a pandas UDF (docs/spark.md).

The steps, one module each:

- ``ship``: on the driver, archive the model directory and hand it to ``SparkContext.addFile``; on an
  executor, unpack it once into a directory under ``SparkFiles.getRootDirectory()`` (no shared filesystem).
- ``cache``: the executor-side scorers, one per model and Python worker process, loaded on first use and kept.
- ``results``: a model's output as the values of the UDF's Spark result type.
- ``wire`` and ``worker``: with ``env_manager="virtualenv"|"uv"`` the model runs in its rebuilt environment,
  in a long-lived child process fed batches over a pipe.
- ``udf``: :func:`spark_udf` itself and the callable it returns.

pyspark is imported only when :func:`spark_udf` is called (and on executors, where Spark runs the UDF).
"""

from __future__ import annotations

from .udf import ModelUDF, spark_udf

__all__ = ["ModelUDF", "spark_udf"]
