"""Ingest: schema-validated copies of the release's metadata tables, and the image manifest."""

import dagster as dg

from snake_assets.core import schemas
from snake_assets.core.manifest import build_image_manifest, reconcile
from snake_assets.core.warehouse import read_table, replace_table
from snake_assets.defs.partitions import image_shards
from snake_assets.defs.resources import LakeResource, SnakeReleaseResource

GROUP = "ingest"


def _load(table: str, df, lake: LakeResource, source: str) -> dg.MaterializeResult:
    with lake.warehouse().get_connection() as conn:
        n = replace_table(conn, table, df)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "source": source,
            "observations": int(df["observation_id"].nunique()) if "observation_id" in df else n,
            "preview": dg.MetadataValue.md(df.head(10).to_markdown(index=False)),
        }
    )


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def raw_train_metadata(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """Training rows (iNaturalist + HerpMapper), one per image, validated column by column."""
    df = schemas.read_train_metadata(release.root)
    result = _load("raw_train_metadata", df, lake, f"{schemas.TRAIN_INAT_FILE} + {schemas.TRAIN_HM_FILE}")
    result.metadata["classes"] = int(df["class_id"].nunique())
    return result


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def raw_val_metadata(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """Validation rows, one per image, with their ground-truth class ids."""
    return _load("raw_val_metadata", schemas.read_val_metadata(release.root), lake, schemas.VAL_FILE)


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def raw_test_metadata(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """Test rows, one per image, without class ids (the split a submission is made for)."""
    df = schemas.read_test_metadata(release.root)
    return _load("raw_test_metadata", df, lake, str(df["source_file"].iloc[0]))


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def venomous_species(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """``class_id, MIVS`` for every species of the release; MIVS = 1 marks a venomous species."""
    df = schemas.read_venomous(release.root)
    with lake.warehouse().get_connection() as conn:
        n = replace_table(conn, "venomous_species", df)
    return dg.MaterializeResult(metadata={"dagster/row_count": n, "venomous": int(df["MIVS"].sum())})


class ImageManifestConfig(dg.Config):
    num_shards: int = 4
    """Hash buckets images are spread over; one bucket is one embedding partition (one worker's job)."""


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=["raw_train_metadata", "raw_val_metadata", "raw_test_metadata"],
)
def image_manifest(
    context: dg.AssetExecutionContext, config: ImageManifestConfig, release: SnakeReleaseResource, lake: LakeResource
) -> dg.MaterializeResult:
    """One row per listed image: split, observation, class, resolved path, bytes, sha256, shard, readable flag."""
    with lake.warehouse().get_connection() as conn:
        tables = {
            split: read_table(conn, f"raw_{split}_metadata").sort_values("source_line", kind="stable")
            for split in ("train", "val", "test")
        }
    manifest = build_image_manifest(
        release.root, tables, num_shards=config.num_shards, test_image_dir=release.test_image_dir
    )
    with lake.warehouse().get_connection() as conn:
        replace_table(conn, "image_manifest", manifest)
    shards = sorted(manifest["shard"].unique())
    new = [s for s in shards if not context.instance.has_dynamic_partition(image_shards.name, s)]
    if new:
        context.instance.add_dynamic_partitions(image_shards.name, new)
    counts = reconcile(manifest)
    by_split = manifest.groupby("split").agg(images=("image_key", "size"), readable=("readable", "sum"))
    unreadable = manifest.loc[~manifest["readable"], ["image_path", "source_file", "source_line", "reason"]]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(manifest),
            **counts,
            "new_partitions": ", ".join(new) or "none",
            "by_split": dg.MetadataValue.md(by_split.reset_index().to_markdown(index=False)),
            "unreadable_images": dg.MetadataValue.md(unreadable.head(50).to_markdown(index=False) if len(unreadable) else "none"),
        }
    )
