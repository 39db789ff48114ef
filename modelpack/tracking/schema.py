"""SCHEMA: the tables of the tracking and registry store (SQLAlchemy Core), the one definition of them.

Migrations (``migrations/versions``) create and change these tables; a new column or table is a change here
*and* a new migration (tests/test_tracking_migrations.py checks the two agree). Times are integers in
milliseconds since the epoch (UTC), as MLflow stores them, so they sort and compare the same in every database.

The store is designed for a web UI or a server to sit on top later: every read is a query on these tables, and
nothing lives only in a Python process.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

#: Longest name of an experiment, run, registered model, param/metric/tag key or alias.
NAME_LENGTH = 250
#: Longest param value (MLflow allows 6,000 characters; longer is a clear error at log time).
PARAM_VALUE_LENGTH = 6000

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(32), nullable=False, server_default="active"),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("experiment_id", "key"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),  # uuid4 hex
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),  # RUNNING, FINISHED, FAILED, KILLED
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("user_id", String(NAME_LENGTH), nullable=False),
    Column("source_name", Text, nullable=True),  # the script or command that ran
    Column("source_git_commit", String(64), nullable=True),
    Column("artifact_uri", Text, nullable=False),  # the run's artifact directory
    Column("lifecycle_stage", String(32), nullable=False, server_default="active"),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", String(PARAM_VALUE_LENGTH), nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
)

#: Every logged value: the history of each metric key of a run.
metrics = Table(
    "metrics",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", Float(precision=53), nullable=False),  # +-inf kept; NaN is stored as 0 with is_nan
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False, server_default="0"),
    # SQLite stores a NaN REAL as NULL, so NaN (a diverged loss is worth logging) is a flag, in every database.
    Column("is_nan", Boolean, nullable=False, server_default=false()),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

#: The latest value of each metric key of a run (highest step, then latest timestamp), kept by an upsert
#: in the same transaction as the ``metrics`` insert: what search and ``runs list`` filter and order on.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", Float(precision=53), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("is_nan", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("run_id", "key"),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
)

#: Models saved into a run's artifacts by ``log_model`` (a row only once the model directory is complete).
logged_models = Table(
    "logged_models",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("artifact_path", String(NAME_LENGTH), nullable=False),  # e.g. "model": runs:/<run_id>/model
    Column("model_uuid", String(32), nullable=False),
    Column("flavors", Text, nullable=False),  # comma-separated flavor names
    Column("creation_time", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "artifact_path"),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("description", Text, nullable=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("name", String(NAME_LENGTH), ForeignKey("registered_models.name", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("name", "key"),
)

#: Versions numbered from 1 per name. ``storage_location`` is the version's own immutable copy of the model
#: files; the row is inserted only after that copy is complete, so a version never points at a partial model.
model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(NAME_LENGTH), ForeignKey("registered_models.name", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", Text, nullable=False),  # the URI or path it was registered from
    Column("run_id", String(32), nullable=True),  # the source run, when it came from one
    Column("storage_location", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "version"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("name", "version", "key"),
    ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"],
                         ondelete="CASCADE"),
)

#: One version per alias of a name; moving an alias is one UPDATE (atomic).
registered_model_aliases = Table(
    "registered_model_aliases",
    metadata,
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("alias", String(NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("name", "alias"),
    ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"],
                         ondelete="CASCADE"),
)
