"""Small DuckDB helpers: whole-table replace in one transaction, typed reads."""

from __future__ import annotations

import re

import duckdb
import pandas as pd

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _check_ident(name: str) -> str:
    # Table names come from code, never from metadata; refuse anything else.
    if not _IDENT.match(name):
        raise ValueError(f"not a plain table name: {name!r}")
    return name


def replace_table(conn: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> int:
    """Replace table ``name`` with ``df`` atomically; returns the row count.

    Readers see the old table or the new one; a failure rolls back and leaves
    the old table as it was.
    """
    name = _check_ident(name)
    view = f"_incoming_{name}"
    conn.register(view, df)
    try:
        conn.execute("BEGIN TRANSACTION")
        conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {view}")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.unregister(view)
    return len(df)


def read_table(conn: duckdb.DuckDBPyConnection, name: str, where: str = "", params: list | None = None) -> pd.DataFrame:
    """``SELECT * FROM name [WHERE ...]`` with parameters bound, never interpolated."""
    sql = f"SELECT * FROM {_check_ident(name)}"
    if where:
        sql += f" WHERE {where}"
    return conn.execute(sql, params or []).df()


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [_check_ident(name)]
        ).fetchone()[0]
    )
