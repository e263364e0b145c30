"""LedgerLens engine: the domain, as pure functions over frames and records."""

__version__ = "0.1.0"
