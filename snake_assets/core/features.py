"""Joining stored embedding vectors back to the manifest rows they belong to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from snake_assets.core.embedding_store import read_shards


def load_split_features(
    shard_paths: list[Path], manifest_rows: pd.DataFrame, recipe: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Vectors of ``recipe`` for the manifest rows that were embedded.

    Args:
        shard_paths: every shard file of one backbone.
        manifest_rows: manifest rows of one split (any order).
        recipe: feature recipe column to read.

    Returns:
        ``(rows, matrix)``: the embedded rows in manifest order (``row_id``, so an
        observation's first image comes first) and their vectors, aligned.
        Rows without a vector (unreadable images) are left out; the caller counts them.
    """
    stored, matrix = read_shards(shard_paths, recipe)
    if stored["image_key"].duplicated().any():
        dup = stored.loc[stored["image_key"].duplicated(), "image_key"].iloc[0]
        raise ValueError(f"image {dup!r} is stored in more than one shard")
    stored["_pos"] = np.arange(len(stored))
    rows = manifest_rows.merge(stored, on="image_key", how="inner", suffixes=("", "_stored"))
    stale = rows[rows["content_hash"] != rows["content_hash_stored"]]
    if len(stale):
        raise ValueError(
            f"{len(stale)} stored vectors were computed from different image bytes "
            f"(e.g. {stale['image_key'].iloc[0]!r}); re-materialize shards {sorted(stale['shard'].unique())[:5]}"
        )
    rows = rows.sort_values("row_id").reset_index(drop=True)
    return rows.drop(columns=["_pos", "content_hash_stored"]), matrix[rows["_pos"].to_numpy()]
