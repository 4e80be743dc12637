"""The lake's tables behind one interface, wherever the lake lives.

Local lake: tables inside the DuckDB warehouse file (:class:`WarehouseTables`), replaced in
one transaction. Lake in object storage (``gs://...``): one Parquet object per table under
``<lake>/tables/`` (:class:`ParquetTables`), queried by an in-memory DuckDB that reads the
bucket through the lake's own fsspec filesystem (``register_filesystem``: no DuckDB extension
is downloaded, and the credentials are the lake's). Every pod reads and writes the same
objects; a table is replaced by one object upload, so readers see the old table or the new one.

Both keep the warehouse rules: table names come from code (checked), values are bound
parameters, never interpolated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pandas as pd

from snake_assets.core.files import atomic_path
from snake_assets.core.warehouse import (
    _check_ident, read_parquet, read_table, replace_tables, table_exists, write_parquet,
)

log = logging.getLogger(__name__)


class WarehouseTables:
    """Tables in a DuckDB warehouse file, through an open connection."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def read(self, name: str, where: str = "", params: list | None = None) -> pd.DataFrame:
        """``SELECT * FROM name [WHERE where]`` with ``params`` bound."""
        return read_table(self.conn, name, where, params)

    def replace(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Replace the tables in one transaction; returns each row count."""
        return replace_tables(self.conn, tables)

    def exists(self, name: str) -> bool:
        return table_exists(self.conn, name)


class ParquetTables:
    """Tables as Parquet objects ``<root>/<name>.parquet`` in object storage.

    Several tables replaced together are uploaded one after the other: each is atomic, the
    set is not (a run killed between two uploads leaves the earlier ones new; its step did
    not succeed, so nothing downstream runs until a re-run, which rewrites them all).
    """

    def __init__(self, root: Any, conn: duckdb.DuckDBPyConnection) -> None:
        self.root = root
        self.conn = conn

    @classmethod
    @contextlib.contextmanager
    def open(cls, root: Any) -> Iterator[ParquetTables]:
        """An in-memory DuckDB connection that reads ``root``'s bucket through its fsspec filesystem."""
        conn = duckdb.connect()
        try:
            conn.register_filesystem(root.fs)
            yield cls(root, conn)
        finally:
            conn.close()

    def _object(self, name: str) -> Any:
        return self.root / f"{_check_ident(name)}.parquet"

    def read(self, name: str, where: str = "", params: list | None = None) -> pd.DataFrame:
        """``SELECT * FROM name [WHERE where]`` with ``params`` bound.

        Raises:
            duckdb.CatalogException: the table was never written (names the object).
        """
        obj = self._object(name)
        if not obj.exists():
            raise duckdb.CatalogException(
                f"Table {name} does not exist: {obj} not found (materialize the asset that writes it first)"
            )
        return read_parquet(self.conn, str(obj), where, params)

    def replace(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Write each table to a local Parquet file with DuckDB, then upload it as one object."""
        counts = {}
        for name, df in tables.items():
            obj = self._object(name)
            with atomic_path(obj) as tmp:
                counts[name] = write_parquet(self.conn, df, tmp)
            log.info("replaced table %s (%d rows) at %s", name, len(df), obj)
        return counts

    def exists(self, name: str) -> bool:
        return self._object(name).exists()
