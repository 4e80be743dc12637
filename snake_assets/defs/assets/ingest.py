"""Ingest: schema-validated copies of the release's metadata tables, and the image manifest.

A metadata file that cannot be trusted (bad column, bad cell, unsafe path) fails its
asset before anything is written; an image that cannot be used is quarantined in
``rejected_images`` with its reason, and counted.
"""

import dagster as dg

from snake_assets.core import schemas
from snake_assets.core.manifest import (
    build_image_manifest, check_image_paths, reconcile, rejected_images, rejection_counts,
)
from snake_assets.defs.partitions import image_shards
from snake_assets.defs.resources import LakeResource, SnakeReleaseResource

GROUP = "ingest"


def _load(table: str, df, lake: LakeResource, source: str) -> dg.MaterializeResult:
    with lake.tables() as db:
        n = db.replace({table: df})[table]
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
    check_image_paths(release.root, df, split="train")
    result = _load("raw_train_metadata", df, lake, f"{schemas.TRAIN_INAT_FILE} + {schemas.TRAIN_HM_FILE}")
    result.metadata["classes"] = int(df.loc[df["class_id"] >= 0, "class_id"].nunique())
    result.metadata["rows_without_species"] = int((df["class_id"] < 0).sum())
    return result


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def raw_val_metadata(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """Validation rows, one per image, with their ground-truth class ids."""
    df = schemas.read_val_metadata(release.root)
    check_image_paths(release.root, df, split="val")
    result = _load("raw_val_metadata", df, lake, schemas.VAL_FILE)
    result.metadata["unknown_species_rows"] = int((df["class_id"] < 0).sum())
    return result


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def raw_test_metadata(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """Test rows, one per image, without class ids (the split a submission is made for)."""
    df = schemas.read_test_metadata(release.root)
    check_image_paths(release.root, df, split="test", test_image_dir=release.test_image_dir)
    return _load("raw_test_metadata", df, lake, str(df["source_file"].iloc[0]))


@dg.asset(group_name=GROUP, kinds={"duckdb"})
def venomous_species(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """``class_id, MIVS`` for every species of the release; MIVS = 1 marks a venomous species."""
    df = schemas.read_venomous(release.root)
    with lake.tables() as db:
        n = db.replace({"venomous_species": df})["venomous_species"]
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
    """One row per listed image: split, observation, class, path, bytes, sha256, shard, readable flag and reason.

    Also writes ``rejected_images`` (the rows that will not be embedded, with file, line
    and reason) in the same transaction, so the two tables always agree.
    """
    with lake.tables() as db:
        tables = {
            split: db.read(f"raw_{split}_metadata").sort_values("source_line", kind="stable")
            for split in ("train", "val", "test")
        }
    manifest = build_image_manifest(
        release.root, tables, num_shards=config.num_shards, test_image_dir=release.test_image_dir
    )
    rejected = rejected_images(manifest)
    with lake.tables() as db:
        db.replace({"image_manifest": manifest, "rejected_images": rejected})
    shards = sorted(manifest["shard"].unique())
    new = [s for s in shards if not context.instance.has_dynamic_partition(image_shards.name, s)]
    if new:
        context.instance.add_dynamic_partitions(image_shards.name, new)
    counts = reconcile(manifest)
    coverage = schemas.class_coverage(tables["train"], tables["val"])
    by_split = manifest.groupby("split").agg(images=("image_key", "size"), readable=("readable", "sum"))
    if len(rejected):
        context.log.warning(f"{len(rejected)} of {len(manifest)} images rejected: {rejection_counts(manifest)}")
    if coverage["classes_unseen_in_train"]:
        context.log.warning(f"validation has classes the head cannot predict (unseen in train): {coverage}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(manifest),
            **counts,
            "rejected_by_reason": dg.MetadataValue.json(rejection_counts(manifest)),
            "val_classes_unseen_in_train": dg.MetadataValue.json(coverage["classes_unseen_in_train"]),
            "val_images_of_unseen_classes": coverage["rows_of_unseen_classes"],
            "val_observations_of_unseen_classes": coverage["observations_of_unseen_classes"],
            "val_unknown_species_images": coverage["unknown_species_rows"],
            "new_partitions": ", ".join(new) or "none",
            "by_split": dg.MetadataValue.md(by_split.reset_index().to_markdown(index=False)),
            "rejected_images": dg.MetadataValue.md(
                rejected[["image_path", "source_file", "source_line", "reason"]].head(50).to_markdown(index=False)
                if len(rejected) else "none"
            ),
        }
    )
