"""Features: DINOv2 embeddings of every readable image, one Parquet shard per partition."""

import json
import time

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from snake_assets.core.embedding import RECIPES, embed_paths, recipe_width
from snake_assets.core.embedding_store import write_shard
from snake_assets.core.warehouse import read_table
from snake_assets.defs.partitions import image_shards
from snake_assets.defs.resources import BackboneResource, LakeResource

ROWS_MATCH = "rows_match_readable_images"
FINITE = "vectors_are_finite"
WIDTHS = "widths_match_backbone"
NO_FAILURES = "every_readable_image_embedded"


def _progress_logger(context: dg.AssetExecutionContext, every_s: float = 15.0):
    start = last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every_s or done == total:
            last = now
            context.log.info(f"{context.partition_key}: {done}/{total} images, {done / max(now - start, 1e-9):.1f} images/s")

    return progress


@dg.asset(
    group_name="features",
    kinds={"pytorch", "parquet"},
    partitions_def=image_shards,
    deps=["image_manifest"],
    pool="gpu",
    check_specs=[dg.AssetCheckSpec(name, asset="image_embeddings") for name in (ROWS_MATCH, FINITE, WIDTHS, NO_FAILURES)],
)
def image_embeddings(
    context: dg.AssetExecutionContext, lake: LakeResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    """Per-image float32 vectors (``cls``, ``patch_mean``, ``dct8x8``) of one shard, keyed by image key and content hash."""
    shard = context.partition_key
    with lake.warehouse().get_connection() as conn:
        rows = read_table(conn, "image_manifest", "shard = ? AND readable", [shard]).sort_values("row_id")
    bb = backbone.load()
    started = time.monotonic()
    result = embed_paths(
        rows["resolved_path"].tolist(), bb, recipes=RECIPES,
        batch_size=backbone.batch_size, num_workers=backbone.num_workers, progress=_progress_logger(context),
    )
    seconds = time.monotonic() - started
    ok = rows.iloc[result.ok_index]
    failures = [{"image_key": rows.iloc[i]["image_key"], "reason": reason} for i, reason in result.failures]
    slug = backbone.slug(bb)
    path = write_shard(
        lake.shard_path(slug, shard),
        image_keys=ok["image_key"].tolist(),
        content_hashes=ok["content_hash"].tolist(),
        row_ids=ok["row_id"].astype(int).tolist(),
        vectors=result.vectors,
        metadata={"backbone": bb.name, "revision": bb.revision, "failures": json.dumps(failures)},
    )
    stored_rows = pq.read_metadata(path).num_rows
    widths = {r: int(v.shape[1]) for r, v in result.vectors.items()}
    expected = {r: recipe_width(r, bb.hidden_size) for r in RECIPES}
    finite = {r: bool(np.isfinite(v).all()) for r, v in result.vectors.items()}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(ok),
            "partition": shard,
            "backbone": bb.name,
            "backbone_key": slug,
            "device": str(bb.device),
            "path": dg.MetadataValue.path(str(path)),
            "readable_in_manifest": len(rows),
            "decode_failures": len(failures),
            "failures": dg.MetadataValue.json(failures[:50]),
            "seconds": round(seconds, 2),
            "images_per_second": round(len(rows) / max(seconds, 1e-9), 2),
            "widths": dg.MetadataValue.json(widths),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=ROWS_MATCH,
                passed=stored_rows + len(failures) == len(rows),
                metadata={"stored_rows": stored_rows, "readable_images": len(rows), "decode_failures": len(failures)},
            ),
            dg.AssetCheckResult(
                check_name=NO_FAILURES,
                passed=not failures,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"decode_failures": dg.MetadataValue.json(failures[:50])},
            ),
            dg.AssetCheckResult(check_name=FINITE, passed=all(finite.values()), metadata={"finite": dg.MetadataValue.json(finite)}),
            dg.AssetCheckResult(
                check_name=WIDTHS,
                passed=widths == expected,
                metadata={"widths": dg.MetadataValue.json(widths), "expected": dg.MetadataValue.json(expected)},
            ),
        ],
    )
