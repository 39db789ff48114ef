"""Errors of the tracking store, in the one hierarchy of ``modelpack.errors`` (codes as a tracking server
would answer them: a caller's mistake is a 4xx and CLI exit code 2)."""

from __future__ import annotations

from ..errors import ModelpackError


class TrackingError(ModelpackError):
    """The tracking store cannot be used (missing driver, unreachable database, failed migration)."""

    error_code = "TRACKING_ERROR"
    status = 500
    exit_code = 1


class InvalidTrackingRequestError(TrackingError):
    """A bad name, value, status or path given to a tracking call."""

    error_code = "INVALID_PARAMETER_VALUE"
    status = 400
    exit_code = 2


class ParamChangeError(InvalidTrackingRequestError):
    """A param logged again with a different value (params are immutable once logged)."""


class FilterSyntaxError(InvalidTrackingRequestError):
    """A ``search_runs`` filter or order-by clause that does not parse (the message names the position)."""


class RunStateError(InvalidTrackingRequestError):
    """A run call that does not fit the active run (start_run while one is active, end_run with none)."""


class RunNotFoundError(TrackingError):
    """No run with that id in the store."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    status = 404
    exit_code = 2


class ExperimentNotFoundError(TrackingError):
    """No experiment with that name or id in the store."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    status = 404
    exit_code = 2


class StoreVersionError(TrackingError):
    """The database was written by a newer modelpack (its schema revision is unknown to this one)."""


__all__ = [
    "ExperimentNotFoundError",
    "FilterSyntaxError",
    "InvalidTrackingRequestError",
    "ParamChangeError",
    "RunNotFoundError",
    "RunStateError",
    "StoreVersionError",
    "TrackingError",
]
