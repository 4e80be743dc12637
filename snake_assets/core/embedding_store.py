"""Embedding shards on disk: one Parquet file per (backbone, shard).

A shard file holds one row per embedded image: ``image_key``, ``content_hash``,
``row_id`` (the image's row in the manifest) and one fixed-width float32 list
column per feature recipe. A shard is always rewritten whole, atomically, so a
re-run replaces it and never appends duplicates.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from snake_assets.core.files import atomic_path

KEY_COLUMNS = ("image_key", "content_hash", "row_id")


def backbone_slug(name: str, revision: str) -> str:
    """Folder-safe key of a backbone: its last path part plus a short revision."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name.rstrip("/")).name or name).strip("-") or "backbone"
    return f"{base}-{revision[:10]}" if revision else base


def write_shard(
    path: str | Path,
    *,
    image_keys: list[str],
    content_hashes: list[str],
    row_ids: list[int],
    vectors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write one shard atomically (temp file + rename).

    Raises:
        ValueError: vector row counts differ from the number of keys.
    """
    n = len(image_keys)
    columns = {
        "image_key": pa.array(image_keys, pa.string()),
        "content_hash": pa.array(content_hashes, pa.string()),
        "row_id": pa.array(row_ids, pa.int64()),
    }
    for recipe, mat in vectors.items():
        mat = np.ascontiguousarray(mat, dtype=np.float32)
        if mat.shape[0] != n:
            raise ValueError(f"recipe {recipe!r} has {mat.shape[0]} rows for {n} images")
        width = mat.shape[1] if mat.ndim == 2 else 0
        flat = pa.array(mat.reshape(-1), pa.float32())
        columns[recipe] = pa.FixedSizeListArray.from_arrays(flat, width) if n else pa.array([], pa.list_(pa.float32(), width))
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_shards(paths: list[str | Path], recipe: str) -> tuple[pd.DataFrame, np.ndarray]:
    """``image_key, content_hash`` rows and the aligned (n, width) float32 matrix of one recipe."""
    frames, mats = [], []
    for p in paths:
        t = pq.read_table(p, columns=["image_key", "content_hash", recipe])
        frames.append(t.select(["image_key", "content_hash"]).to_pandas())
        col = t.column(recipe).combine_chunks()
        mats.append(col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size))
    if not mats:
        return pd.DataFrame({"image_key": [], "content_hash": []}), np.zeros((0, 0), np.float32)
    return pd.concat(frames, ignore_index=True), np.concatenate(mats).astype(np.float32, copy=False)


def recipe_widths(path: str | Path) -> dict[str, int]:
    """Width of each recipe column stored in a shard file."""
    schema = pq.read_schema(path)
    return {f.name: f.type.list_size for f in schema if f.name not in KEY_COLUMNS}
