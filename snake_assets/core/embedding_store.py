"""Embedding shards on disk: one Parquet file per (backbone, shard), streamed in row groups.

A shard file holds one row per embedded image: ``image_key``, ``content_hash``,
``row_id`` (the image's row in the manifest) and one fixed-width float32 list
column per feature recipe. A shard is always rewritten whole, atomically, so a
re-run replaces it and never appends duplicates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from snake_assets.core.files import arrow_source, as_path, atomic_path
from snake_assets.core.vector_cache import vectors_to_arrow

KEY_COLUMNS = ("image_key", "content_hash", "row_id")


def backbone_slug(name: str, revision: str) -> str:
    """Folder-safe key of a backbone: its last path part plus a short revision."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name.rstrip("/")).name or name).strip("-") or "backbone"
    return f"{base}-{revision[:10]}" if revision else base


def shard_schema(widths: dict[str, int], metadata: dict[str, str] | None = None) -> pa.Schema:
    """Arrow schema of a shard file with the given ``recipe -> width`` columns."""
    fields = [pa.field("image_key", pa.string()), pa.field("content_hash", pa.string()), pa.field("row_id", pa.int64())]
    fields += [pa.field(r, pa.list_(pa.float32(), w)) for r, w in widths.items()]
    return pa.schema(fields, metadata=metadata or None)


class ShardWriter:
    """Streams a shard file in row chunks to a temp file, renamed over the target on success.

    Use as a context manager; an exception (or a crash) leaves the previous shard file intact.
    """

    def __init__(self, path: Any, widths: dict[str, int], metadata: dict[str, str] | None = None) -> None:
        self.path = as_path(path)
        self.schema = shard_schema(widths, metadata)
        self.widths = dict(widths)
        self.rows = 0

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(tmp, self.schema)
        return self

    def write(self, *, image_keys: list[str], content_hashes: list[str], row_ids: list[int], vectors: dict[str, np.ndarray]) -> None:
        """Append rows (one row group).

        Raises:
            ValueError: a recipe is missing or its row count differs from the number of keys.
        """
        n = len(image_keys)
        columns = [pa.array(image_keys, pa.string()), pa.array(content_hashes, pa.string()), pa.array(row_ids, pa.int64())]
        for recipe, width in self.widths.items():
            if recipe not in vectors:
                raise ValueError(f"{self.path}: recipe {recipe!r} missing from the rows written")
            mat = np.ascontiguousarray(vectors[recipe], dtype=np.float32)
            if mat.shape[0] != n or (n and mat.shape[1] != width):
                raise ValueError(f"{self.path}: recipe {recipe!r} has shape {mat.shape} for {n} images of width {width}")
            columns.append(vectors_to_arrow(mat, width))
        if n:
            self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
            self.rows += n

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._writer.close()
        return self._atomic.__exit__(exc_type, exc, tb)


def write_shard(
    path: str | Path,
    *,
    image_keys: list[str],
    content_hashes: list[str],
    row_ids: list[int],
    vectors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write one whole shard atomically (temp file + rename).

    Raises:
        ValueError: vector row counts differ from the number of keys.
    """
    widths = {r: (m.shape[1] if np.ndim(m) == 2 else 0) for r, m in vectors.items()}
    with ShardWriter(path, widths, metadata) as writer:
        writer.write(image_keys=image_keys, content_hashes=content_hashes, row_ids=row_ids, vectors=vectors)
    return as_path(path)


def read_shards(paths: list[Any], recipe: str) -> tuple[pd.DataFrame, np.ndarray]:
    """``image_key, content_hash`` rows and the aligned (n, width) float32 matrix of one recipe.

    ``paths`` are local paths or remote ``UPath`` objects (only the needed columns are fetched).
    """
    frames, mats = [], []
    for p in paths:
        source, filesystem = arrow_source(p)
        t = pq.read_table(source, columns=["image_key", "content_hash", recipe], filesystem=filesystem)
        frames.append(t.select(["image_key", "content_hash"]).to_pandas())
        col = t.column(recipe).combine_chunks()
        mats.append(col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size))
    if not mats:
        return pd.DataFrame({"image_key": [], "content_hash": []}), np.zeros((0, 0), np.float32)
    return pd.concat(frames, ignore_index=True), np.concatenate(mats).astype(np.float32, copy=False)


def recipe_widths(path: Any) -> dict[str, int]:
    """Width of each recipe column stored in a shard file (local or remote)."""
    source, filesystem = arrow_source(path)
    schema = pq.read_schema(source, filesystem=filesystem)
    return {f.name: f.type.list_size for f in schema if f.name not in KEY_COLUMNS}
