"""One embedding shard, incrementally: forward only the images the vector cache lacks.

The shard's rows are reduced to distinct content hashes (an image stored under two keys is
embedded once), looked up in the :class:`~snake_assets.core.vector_cache.VectorCache`, and only
the misses go through the engine, whose batches are persisted as they finish (a killed run
loses at most the batch in flight). The shard file is then streamed from the cache in row
chunks, in manifest order, and renamed into place. The backbone is loaded only when something
has to be computed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from snake_assets.core.backbone import Backbone, BackboneSpec, precision_tag
from snake_assets.core.embedding import iter_embeddings
from snake_assets.core.recipes import RECIPES, feature_widths
from snake_assets.core.embedding_store import ShardWriter
from snake_assets.core.files import as_path
from snake_assets.core.preprocess import PreprocessConfig
from snake_assets.core.vector_cache import VectorCache, cache_fingerprint

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1024
"""Rows assembled and written per row group of the shard file (bounds memory)."""
REQUIRED_COLUMNS = ("image_key", "content_hash", "row_id", "resolved_path")

ProgressFn = Callable[[int, int, float], None]
"""``progress(done, total, seconds)``: images through the engine so far, images to compute, elapsed."""


@dataclass(frozen=True)
class EngineSettings:
    """How vectors are computed; ``None`` means the per-device default."""

    recipes: tuple[str, ...] = RECIPES
    cfg: PreprocessConfig = field(default_factory=PreprocessConfig)
    batch_size: int | None = None
    num_workers: int | None = None
    precision: str = "auto"


@dataclass
class ShardReport:
    """What one shard run did."""

    path: Path
    images: int
    """Rows given (readable images of the shard)."""
    stored: int
    """Rows in the shard file."""
    attempted: int
    """Distinct images sent to the engine in this run (0: no forward pass, everything was cached)."""
    computed: int
    """Distinct images forwarded through the backbone in this run (``attempted`` minus unreadable ones)."""
    reused: int
    """Stored rows whose vector came from the cache (computed by an earlier run or another shard)."""
    deduplicated: int
    """Rows whose bytes equal those of an earlier row of the shard (embedded once)."""
    failures: list[dict]
    """``image_key, content_hash, reason`` of every row without a vector."""
    seconds: float
    compute_seconds: float
    widths: dict[str, int]
    finite: dict[str, bool]
    cache_dir: Path

    @property
    def images_per_second(self) -> float:
        """Images forwarded per second of compute (0 when nothing was computed)."""
        return self.computed / self.compute_seconds if self.compute_seconds > 0 else 0.0


def shard_cache(backbone_dir: Path, spec: BackboneSpec, device: torch.device, settings: EngineSettings) -> VectorCache:
    """The cache of ``backbone_dir`` (``embeddings/<slug>``) for these settings on ``device``."""
    fingerprint = cache_fingerprint(settings.cfg, precision_tag(device, settings.precision))
    return VectorCache(as_path(backbone_dir) / "cache" / fingerprint, feature_widths(spec, settings.recipes))


def _compute(
    todo: pd.DataFrame, cache: VectorCache, backbone: Backbone, settings: EngineSettings, progress: ProgressFn | None
) -> tuple[int, dict[str, str]]:
    """Embed ``todo`` (distinct hashes), persisting every batch; returns (computed, uncached failures)."""
    hashes = todo["content_hash"].to_numpy()
    writer = cache.writer()
    computed, done, started = 0, 0, time.monotonic()
    transient: dict[str, str] = {}
    batches = iter_embeddings(
        todo["resolved_path"].tolist(), backbone, recipes=settings.recipes, cfg=settings.cfg,
        batch_size=settings.batch_size, num_workers=settings.num_workers, precision=settings.precision,
        hashes=hashes.tolist(),
    )
    for batch in batches:
        failed = [(hashes[i], reason) for i, reason in batch.failures]
        writer.write(hashes[batch.indices].tolist(), batch.vectors, failed)
        transient.update(failed)
        computed += len(batch.indices)
        done += len(batch.indices) + len(batch.failures)
        if progress is not None:
            progress(done, len(todo), time.monotonic() - started)
    writer.compact()
    return computed, transient


def embed_shard(
    rows: pd.DataFrame,
    *,
    out_path: str | Path,
    cache: VectorCache,
    spec: BackboneSpec,
    load: Callable[[], Backbone],
    settings: EngineSettings = EngineSettings(),
    progress: ProgressFn | None = None,
    metadata: dict[str, str] | None = None,
) -> ShardReport:
    """Bring one shard file up to date, computing only vectors the cache lacks.

    Args:
        rows: The shard's readable manifest rows: ``image_key, content_hash, row_id, resolved_path``.
        out_path: Shard file (replaced atomically).
        cache: From :func:`shard_cache`.
        spec: The backbone's spec (widths, identity); ``load()`` must return the same backbone.
        load: Builds the backbone; called only when some image must be computed.
        settings: Recipes, preprocessing, batch size, workers, precision.
        progress: See :data:`ProgressFn`; called after every batch.
        metadata: Extra key/values for the shard file's schema metadata.

    Raises:
        ValueError: ``rows`` lacks a column or has rows without a content hash.
    """
    started = time.monotonic()
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"shard rows lack column(s) {missing}; have {list(rows.columns)}")
    if (rows["content_hash"].fillna("") == "").any():
        key = rows.loc[rows["content_hash"].fillna("") == "", "image_key"].iloc[0]
        raise ValueError(f"row {key!r} has no content hash; only readable manifest rows can be embedded")
    rows = rows.sort_values("row_id", kind="stable").reset_index(drop=True)
    distinct = rows.drop_duplicates("content_hash")
    recipes = list(settings.recipes)
    hits = cache.lookup(distinct["content_hash"], recipes)
    todo = distinct[~distinct["content_hash"].isin(hits.keys())]
    computed, transient, compute_seconds = 0, {}, 0.0
    if len(todo):
        logger.info("%s: %d of %d distinct images to compute", out_path, len(todo), len(distinct))
        t0 = time.monotonic()
        computed, transient = _compute(todo, cache, load(), settings, progress)
        compute_seconds = time.monotonic() - t0
        hits = cache.lookup(distinct["content_hash"], recipes)
    new = set(todo["content_hash"])

    widths = feature_widths(spec, recipes)
    finite = dict.fromkeys(recipes, True)
    failures: list[dict] = []
    reused = 0
    with ShardWriter(out_path, widths, metadata) as writer:
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows.iloc[start : start + CHUNK_ROWS]
            ok, found = [], []
            for pos, (key, h) in enumerate(zip(chunk["image_key"], chunk["content_hash"])):
                hit = hits.get(h)
                reason = hit.reason if hit is not None else transient.get(h)
                if hit is None and reason is None:
                    raise RuntimeError(f"{out_path}: no vector and no failure recorded for {key!r} ({h[:12]})")
                if reason is not None:
                    failures.append({"image_key": key, "content_hash": h, "reason": reason})
                else:
                    ok.append(pos)
                    found.append(hit)
                    reused += h not in new
            vectors = cache.gather(found, recipes)
            for r in recipes:
                finite[r] = finite[r] and bool(np.isfinite(vectors[r]).all())
            kept = chunk.iloc[ok]
            writer.write(
                image_keys=kept["image_key"].tolist(), content_hashes=kept["content_hash"].tolist(),
                row_ids=kept["row_id"].astype("int64").tolist(), vectors=vectors,
            )
    return ShardReport(
        path=as_path(out_path), images=len(rows), stored=writer.rows, attempted=len(todo), computed=computed, reused=reused,
        deduplicated=len(rows) - len(distinct), failures=failures, seconds=time.monotonic() - started,
        compute_seconds=compute_seconds, widths=widths, finite=finite, cache_dir=cache.root,
    )
