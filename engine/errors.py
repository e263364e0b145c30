"""Re-export of the user-facing error hierarchy (defined in `storage.errors`)."""

from storage.errors import (  # noqa: F401
    BadInput,
    ModelIntegrityError,
    NotFound,
    SourceUnavailable,
    StoreBusy,
    StoreWriteError,
    UserFacingError,
)
