"""Features: DINOv2 embeddings of every readable image, one Parquet shard per partition."""

import collections
import time

import dagster as dg

from snake_assets.core.backbone import precision_tag
from snake_assets.core.recipes import RECIPES, feature_widths
from snake_assets.core.embedding_store import recipe_widths
from snake_assets.core.shard_embedding import EngineSettings, ShardReport, embed_shard, shard_cache
from snake_assets.defs.deployment import GPU_STEP_K8S_CONFIG
from snake_assets.defs.partitions import image_shards
from snake_assets.defs.resources import BackboneResource, LakeResource

ROWS_MATCH = "rows_match_readable_images"
FINITE = "vectors_are_finite"
WIDTHS = "widths_match_backbone"
NO_FAILURES = "every_readable_image_embedded"


class ImageEmbeddingsConfig(dg.Config):
    """Which vectors a shard stores, and how often a long shard reports its progress."""

    recipes: list[str] = list(RECIPES)
    """Feature recipes stored as columns (``cls``, ``patch_mean``, ``dct8x8``, ``cls_last4``)."""
    progress_every_s: float = 30.0
    """Seconds between progress lines in the run log while images are being computed."""


def _progress_logger(context: dg.AssetExecutionContext, every_s: float):
    last = -float("inf")

    def progress(done: int, total: int, seconds: float) -> None:
        nonlocal last
        if seconds - last >= every_s or done == total:
            last = seconds
            rate = done / max(seconds, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("nan")
            context.log.info(
                f"{context.partition_key}: {done}/{total} images computed, {rate:.2f} images/s, ~{eta:.0f}s left"
            )

    return progress


def _checks(report: ShardReport, expected: dict[str, int]) -> list[dg.AssetCheckResult]:
    stored_widths = recipe_widths(report.path)
    failures = dg.MetadataValue.json(report.failures[:50])
    return [
        dg.AssetCheckResult(
            check_name=ROWS_MATCH,
            passed=report.stored + len(report.failures) == report.images,
            metadata={"stored_rows": report.stored, "readable_images": report.images, "decode_failures": len(report.failures)},
        ),
        dg.AssetCheckResult(
            check_name=NO_FAILURES, passed=not report.failures, severity=dg.AssetCheckSeverity.WARN,
            metadata={"decode_failures": failures},
        ),
        dg.AssetCheckResult(check_name=FINITE, passed=all(report.finite.values()), metadata={"finite": dg.MetadataValue.json(report.finite)}),
        dg.AssetCheckResult(
            check_name=WIDTHS, passed=stored_widths == expected,
            metadata={"widths": dg.MetadataValue.json(stored_widths), "expected": dg.MetadataValue.json(expected)},
        ),
    ]


@dg.asset(
    group_name="features",
    kinds={"pytorch", "parquet"},
    partitions_def=image_shards,
    deps=["image_manifest"],
    pool="gpu",
    op_tags={"dagster-k8s/config": GPU_STEP_K8S_CONFIG},
    check_specs=[dg.AssetCheckSpec(name, asset="image_embeddings") for name in (ROWS_MATCH, FINITE, WIDTHS, NO_FAILURES)],
)
def image_embeddings(
    context: dg.AssetExecutionContext, config: ImageEmbeddingsConfig, lake: LakeResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    """Per-image float32 vectors (``cls``, ``patch_mean``, ``dct8x8``, ``cls_last4``) of one shard, keyed by image key and content hash; only images whose bytes were never embedded are computed."""
    shard = context.partition_key
    with lake.tables() as db:
        rows = db.read("image_manifest", "shard = ? AND readable", [shard])
    spec = backbone.describe()
    device = backbone.resolved_device()
    settings = EngineSettings(
        recipes=tuple(config.recipes), batch_size=backbone.effective_batch_size(device),
        num_workers=backbone.effective_num_workers(device), precision=backbone.precision,
    )
    slug = backbone.slug(spec)
    cache = shard_cache(lake.backbone_dir(slug), spec, device, settings)
    started = time.monotonic()
    report = embed_shard(
        rows, out_path=lake.shard_path(slug, shard), cache=cache, spec=spec, load=lambda: backbone.load(spec),
        settings=settings, progress=_progress_logger(context, config.progress_every_s),
        metadata={"backbone": spec.name, "revision": spec.revision, "cache": cache.root.name},
    )
    context.log.info(
        f"{shard}: {report.stored} rows stored, {report.computed} computed, {report.reused} reused from the cache, "
        f"{len(report.failures)} unreadable, {time.monotonic() - started:.1f}s"
    )
    expected = feature_widths(spec, settings.recipes)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.stored,
            "partition": shard,
            "backbone": spec.name,
            "backbone_key": slug,
            "device": str(device),
            "precision": precision_tag(device, backbone.precision),
            "batch_size": settings.batch_size,
            "num_workers": settings.num_workers,
            "path": dg.MetadataValue.path(str(report.path)),
            "cache": dg.MetadataValue.path(str(report.cache_dir)),
            "readable_in_manifest": report.images,
            "computed": report.computed,
            "reused": report.reused,
            "deduplicated": report.deduplicated,
            "forward_pass": report.attempted > 0,
            "decode_failures": len(report.failures),
            "failure_reasons": dg.MetadataValue.json(dict(collections.Counter(f["reason"] for f in report.failures))),
            "failures": dg.MetadataValue.json(report.failures[:50]),
            "seconds": round(report.seconds, 2),
            "images_per_second": round(report.images_per_second, 2),
            "widths": dg.MetadataValue.json(expected),
        },
        check_results=_checks(report, expected),
    )
