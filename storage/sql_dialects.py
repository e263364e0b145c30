"""Our SQL definitions, written in DuckDB's dialect, in another engine's (sqlglot).

sqlglot writes a few DuckDB functions into names the target lacks, silently; each one a
definition uses is mended here, once for all of them, and the golden tests run the mended
BigQuery SQL back on DuckDB (tests/engine/test_*_sql.py):
- EPOCH(t) (seconds since 1970) became BigQuery's TIME_TO_UNIX, which does not exist:
  it is written UNIX_SECONDS (BigQuery and Spark; whole seconds, as the definitions floor).
- EPOCH_US(t) (microseconds since 1970) is unknown to sqlglot's DuckDB reader and was passed
  through unchanged, a function neither BigQuery nor Spark has: it is written UNIX_MICROS.
"""

from __future__ import annotations

import re

from storage.errors import BadInput

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def table_name(source: str) -> str:
    """`source` when it is a plain (dotted) table or view name; BadInput otherwise (it goes into SQL)."""
    if not _NAME.fullmatch(source):
        raise BadInput(f"{source!r} is not a table name (letters, digits, _ and dots only)")
    return source


def transpile(sql: str, dialect: str) -> str:
    """`sql` (DuckDB's dialect) in `dialect` ("duckdb" returns it as it is; "spark", "bigquery", ...)."""
    if dialect == "duckdb":
        return sql
    import sqlglot
    from sqlglot import exp

    def mend(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.TimeToUnix):
            return exp.UnixSeconds(this=node.this)
        if isinstance(node, exp.Anonymous) and node.name.upper() == "EPOCH_US":
            return exp.UnixMicros(this=node.expressions[0])
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(mend)
    return tree.sql(dialect=dialect, pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)
