"""The vector cache: every computed vector, keyed by image bytes, backbone and preprocessing.

One cache folder per (backbone slug incl. revision, preprocessing fingerprint), at
``<SNAKE_HOME>/embeddings/<slug>/cache/<fingerprint>/``, holds Parquet *parts*: rows of
``content_hash``, ``reason`` (null, or why the bytes are not a usable image) and one float32
fixed-size-list column per recipe. An embedding run writes one part per batch, atomically
(temp file + rename), so a run killed at any instant leaves only whole batches behind and the
next run skips them; at the end of a run its batch parts are merged into one. Lookups read only
the ``content_hash``/``reason`` columns; vectors are fetched row group by row group, so memory
depends on the batch size, never on the size of a shard or of the cache. Pages carry checksums,
verified on read: a damaged part is skipped (its rows are recomputed), never read as vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from snake_assets.core.files import arrow_source, as_path, atomic_path, is_remote
from snake_assets.core.preprocess import PreprocessConfig

logger = logging.getLogger(__name__)

CACHEABLE_FAILURES = frozenset({"zero bytes", "not an image", "truncated image", "corrupt image", "image too large"})
"""Failures that are a property of the bytes (so of the content hash) and are never retried.
Others (missing or unreadable file, unexpected errors) are reported but retried next run."""
_STALE_TMP_S = 24 * 3600


def cache_fingerprint(cfg: PreprocessConfig, precision: str) -> str:
    """Folder name of the vectors computed with ``cfg`` at ``precision`` (``fp32``, ``bf16``, ``fp16``)."""
    blob = json.dumps({"preprocess": cfg.to_dict(), "precision": precision}, sort_keys=True)
    return f"{precision}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def vectors_to_arrow(mat: np.ndarray, width: int) -> pa.FixedSizeListArray:
    """``(n, width)`` float32 matrix -> Arrow fixed-size-list column."""
    flat = np.ascontiguousarray(mat, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)


def arrow_to_vectors(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow fixed-size-list column -> ``(n, width)`` float32 matrix."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    width = arr.type.list_size
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a content hash's vectors (or its failure reason) are stored."""

    part: Any
    """The part file (a ``Path``, or a ``UPath`` in a remote lake)."""
    row: int
    reason: str | None = None


def _open_part(part: Any) -> pq.ParquetFile:
    source, filesystem = arrow_source(part)
    return pq.ParquetFile(source, filesystem=filesystem, page_checksum_verification=True)


class VectorCache:
    """Parts under one cache folder; see the module docstring."""

    def __init__(self, root: str | os.PathLike, widths: dict[str, int]) -> None:
        """
        Args:
            root: ``.../embeddings/<slug>/cache/<fingerprint>``.
            widths: ``recipe -> width`` this backbone produces (schema of new parts).
        """
        self.root = as_path(root)
        self.widths = dict(widths)

    def parts(self) -> list[Path]:
        """Complete part files (temp files of interrupted writes are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))

    def lookup(self, hashes: Iterable[str], recipes: Sequence[str]) -> dict[str, Hit]:
        """Find the stored rows of ``hashes`` that carry every recipe (failures carry none).

        Returns:
            ``content_hash -> Hit`` for the hashes found; the first part (by name) wins.
        """
        needed = pa.array(list(dict.fromkeys(hashes)), pa.string())
        hits: dict[str, Hit] = {}
        if len(needed) == 0:
            return hits
        for part in self.parts():
            try:
                with _open_part(part) as pf:
                    has_recipes = set(recipes) <= set(pf.schema_arrow.names)
                    table = pf.read(columns=["content_hash", "reason"])
            except (OSError, pa.ArrowException) as exc:  # a damaged part costs its rows, never the run
                logger.warning("ignoring unreadable cache part %s: %s", part, exc)
                continue
            rows = np.flatnonzero(pc.is_in(table["content_hash"], value_set=needed).to_numpy(zero_copy_only=False))
            found_hashes = table["content_hash"].take(rows).to_pylist()
            reasons = table["reason"].take(rows).to_pylist()
            for row, h, reason in zip(rows.tolist(), found_hashes, reasons):
                if h not in hits and (reason is not None or has_recipes):
                    hits[h] = Hit(part, row, reason)
        return hits

    def gather(self, hits: Sequence[Hit], recipes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of ``hits`` (none of them failures), in order: ``recipe -> (len(hits), width)``."""
        out = {r: np.empty((len(hits), self.widths[r]), np.float32) for r in recipes}
        by_part: dict[Path, list[int]] = defaultdict(list)
        for i, hit in enumerate(hits):
            by_part[hit.part].append(i)
        for part, positions in by_part.items():
            rows = np.array([hits[i].row for i in positions])
            try:
                with _open_part(part) as pf:
                    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
                    starts = np.cumsum([0, *sizes])
                    group_of_row = np.searchsorted(starts, rows, side="right") - 1
                    groups = np.unique(group_of_row)
                    table = pf.read_row_groups(groups.tolist(), columns=list(recipes))
            except (OSError, pa.ArrowException) as exc:
                raise RuntimeError(f"cache part {part} is damaged ({exc}); delete it and re-run to recompute its rows") from exc
            offset_in_table = dict(zip(groups.tolist(), np.cumsum([0, *(sizes[g] for g in groups[:-1])]).tolist()))
            local = np.array([offset_in_table[g] for g in group_of_row.tolist()]) + rows - starts[group_of_row]
            for r in recipes:
                out[r][positions] = arrow_to_vectors(table[r])[local]
        return out

    def writer(self) -> PartWriter:
        """A writer of this run's batch parts."""
        return PartWriter(self)


class PartWriter:
    """Writes one atomic part per batch, then merges the run's parts into one (:meth:`compact`)."""

    def __init__(self, cache: VectorCache) -> None:
        self.cache = cache
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.written: list[Path] = []
        cache.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writes killed long ago (a live writer's temp file is seconds old)."""
        if is_remote(self.cache.root):  # object uploads leave no temp files behind
            return
        for p in self.cache.root.glob(".*.tmp"):
            try:
                if time.time() - p.stat().st_mtime > _STALE_TMP_S:
                    p.unlink()
            except OSError:
                pass

    def _table(self, hashes: Sequence[str], vectors: dict[str, np.ndarray], failed: Sequence[tuple[str, str]]) -> pa.Table:
        keep = [(h, r) for h, r in failed if r in CACHEABLE_FAILURES]
        n_ok, n = len(hashes), len(hashes) + len(keep)
        columns = {
            "content_hash": pa.array([*hashes, *(h for h, _ in keep)], pa.string()),
            "reason": pa.array([None] * n_ok + [r for _, r in keep], pa.string()),
        }
        for recipe, width in self.cache.widths.items():
            given = np.asarray(vectors[recipe], dtype=np.float32).reshape(-1, width) if n_ok else np.zeros((0, width))
            if given.shape != (n_ok, width):
                raise ValueError(f"{self.cache.root}: recipe {recipe!r} has {given.shape[0]} rows for {n_ok} hashes")
            mat = np.zeros((n, width), np.float32)
            mat[:n_ok] = given
            columns[recipe] = vectors_to_arrow(mat, width)
        return pa.table(columns)

    def write(self, hashes: Sequence[str], vectors: dict[str, np.ndarray], failed: Sequence[tuple[str, str]] = ()) -> None:
        """Persist one batch: vectors of ``hashes`` (rows aligned) and ``(hash, reason)`` failures.

        ``vectors`` must hold every recipe of the cache's widths.
        """
        table = self._table(hashes, vectors, failed)
        if table.num_rows == 0:
            return
        path = self.cache.root / f"b-{self.run}-{len(self.written):06d}.parquet"
        # No fsync: atomic against a killed process; after a power cut a part that did not reach
        # the disk fails its footer or page checksums and is recomputed (merged parts are fsynced).
        with atomic_path(path, durable=False) as tmp:
            pq.write_table(table, tmp, compression="none", write_page_checksum=True)
        self.written.append(path)

    def compact(self) -> Path | None:
        """Merge this run's batch parts into one part (row group per batch) and delete them."""
        if not self.written:
            return None
        if len(self.written) == 1:
            if not is_remote(self.written[0]):
                with open(self.written[0], "rb+") as fh:  # make it as durable as a merged part
                    os.fsync(fh.fileno())
            return self.written[0]
        target = self.cache.root / f"c-{self.run}.parquet"
        with atomic_path(target) as tmp:
            with _open_part(self.written[0]) as first:
                schema = first.schema_arrow
            with pq.ParquetWriter(tmp, schema, compression="none", write_page_checksum=True) as out:
                for part in self.written:
                    with _open_part(part) as pf:
                        out.write_table(pf.read())
        for part in self.written:
            part.unlink(missing_ok=True)
        self.written = [target]
        return target
