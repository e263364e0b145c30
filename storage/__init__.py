"""The only package that imports duckdb."""

from storage.store import BatchResult, CursorPosition, Store  # noqa: F401
