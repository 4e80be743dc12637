"""Small DuckDB helpers: table replaces in one transaction, typed reads, lock-aware connects.

SQL here never contains a value from metadata: values travel as bound parameters or
as registered DataFrames, and the only names interpolated are table names from code,
checked against a plain-identifier pattern.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import pandas as pd

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULT_LOCK_TIMEOUT_S = 120.0
"""How long a connect waits for another process to release the warehouse file."""


class WarehouseLockedError(RuntimeError):
    """The warehouse file stayed locked by another process for longer than the timeout."""


def _check_ident(name: str) -> str:
    # Table names come from code, never from metadata; refuse anything else.
    if not _IDENT.match(name):
        raise ValueError(f"not a plain table name: {name!r}")
    return name


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower()


def connect(
    database: str | Path, *, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, config: Mapping[str, object] | None = None
) -> duckdb.DuckDBPyConnection:
    """Open ``database`` read-write, waiting while another process holds its lock.

    DuckDB lets one process write a database file at a time; a second process gets
    a lock error. Runs hold the file only for short reads and writes, so waiting
    (exponential back-off with jitter, capped at 2 s per try) resolves contention
    between concurrent runs; a holder that never lets go ends in a clear error.

    Args:
        database: the ``.duckdb`` file.
        timeout_s: give up after this many seconds of waiting.
        config: DuckDB connection options.

    Raises:
        WarehouseLockedError: still locked after ``timeout_s``; names the file and
            DuckDB's account of the holder (its PID), and says what to do.
    """
    deadline = time.monotonic() + timeout_s
    delay, attempts = 0.05, 0
    while True:
        attempts += 1
        try:
            return duckdb.connect(str(database), read_only=False, config=dict(config or {}))
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"warehouse {database} is locked by another process and stayed locked for "
                    f"{timeout_s:.0f}s ({attempts} attempts). Another snake-assets run, a Dagster "
                    "run or an open DuckDB client holds it; wait for it to finish or close it, then "
                    f"re-run (tables are replaced in whole transactions, so retrying is safe). DuckDB said: {exc}"
                ) from exc
            if attempts == 1:
                log.info("warehouse %s is locked by another process; waiting up to %.0fs", database, timeout_s)
            time.sleep(min(delay * (1 + random.random()), max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 2.0)


@contextlib.contextmanager
def connection(database: str | Path, *, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, config=None) -> Iterator[duckdb.DuckDBPyConnection]:
    """:func:`connect` as a context manager that closes the connection (releasing the file lock)."""
    conn = connect(database, timeout_s=timeout_s, config=config)
    try:
        yield conn
    finally:
        conn.close()


def replace_tables(conn: duckdb.DuckDBPyConnection, tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """Replace several tables in one transaction; returns each row count.

    Readers (and a run killed half-way) see all the old tables or all the new ones;
    a failure rolls back and leaves every old table as it was.
    """
    names = {_check_ident(name): df for name, df in tables.items()}
    views = {name: f"_incoming_{name}" for name in names}
    for name, df in names.items():
        conn.register(views[name], df)
    try:
        conn.execute("BEGIN TRANSACTION")
        for name in names:
            conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {views[name]}")
        conn.execute("COMMIT")
    except Exception:
        with contextlib.suppress(duckdb.Error):
            conn.execute("ROLLBACK")
        raise
    finally:
        for view in views.values():
            conn.unregister(view)
    return {name: len(df) for name, df in names.items()}


def replace_table(conn: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> int:
    """Replace table ``name`` with ``df`` atomically; returns the row count.

    Readers see the old table or the new one; a failure rolls back and leaves
    the old table as it was.
    """
    return replace_tables(conn, {name: df})[name]


def read_table(conn: duckdb.DuckDBPyConnection, name: str, where: str = "", params: list | None = None) -> pd.DataFrame:
    """``SELECT * FROM name [WHERE ...]`` with parameters bound, never interpolated.

    ``where`` is SQL written in code (e.g. ``"shard = ?"``); values go in ``params``.
    """
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


def read_parquet(conn: duckdb.DuckDBPyConnection, uri: str, where: str = "", params: list | None = None) -> pd.DataFrame:
    """``SELECT * FROM read_parquet(uri) [WHERE ...]``; the URI and values are bound parameters.

    ``uri`` may name any filesystem registered on ``conn`` (``gs://...`` through gcsfs).
    """
    sql = "SELECT * FROM read_parquet(?)" + (f" WHERE {where}" if where else "")
    return conn.execute(sql, [uri, *(params or [])]).df()


def write_parquet(conn: duckdb.DuckDBPyConnection, df: pd.DataFrame, path: str | Path) -> int:
    """Write ``df`` to the local Parquet file ``path`` with DuckDB (the column types a warehouse
    table would get); returns the row count.

    ``path`` is a temporary file the caller created, never text from metadata; quotes are escaped.
    """
    conn.register("_incoming", df)
    try:
        escaped = str(path).replace("'", "''")
        conn.execute(f"COPY (SELECT * FROM _incoming) TO '{escaped}' (FORMAT parquet)")
    finally:
        conn.unregister("_incoming")
    return len(df)
