"""Errors meant for a person: what went wrong, with the bad value and the next step.

They live in the bottom layer so that storage, engine, models and reports raise the
same hierarchy; pages catch `UserFacingError` and show it, anything else is a bug.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message a user can act on."""


class BadInput(UserFacingError):
    """Input that cannot be used as given (file, record, field, argument)."""


class NotFound(UserFacingError):
    """Something asked for does not exist (wallet, pair, model, report)."""


class SourceUnavailable(UserFacingError):
    """A data source (Horizon, data lake) could not be reached or kept failing."""


class StoreBusy(UserFacingError):
    """The DuckDB file is locked by another process's writer."""


class ModelIntegrityError(UserFacingError):
    """A stored model failed its hash, signature or schema checks; nothing was loaded."""


class StoreWriteError(UserFacingError):
    """A write to the store failed (disk full, I/O error); the batch was rolled back."""
