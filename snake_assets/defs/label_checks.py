"""Blocking checks on ``species_label_map``: the guard against the paper's F1 = 0 bug."""

import dagster as dg

from snake_assets.core.checkpoint import BundleError, load_bundle
from snake_assets.core.labels import label_map_problems
from snake_assets.defs.resources import LakeResource

ASSET = "species_label_map"


def _tables(lake: LakeResource, *names: str):
    with lake.tables() as db:
        return [db.read(n) for n in names]


@dg.asset_check(asset=ASSET, blocking=True)
def labels_are_contiguous(lake: LakeResource) -> dg.AssetCheckResult:
    """Labels are exactly 0..K-1, assigned in ascending class_id order."""
    (df,) = _tables(lake, ASSET)
    problems = [p for p in label_map_problems(df) if "0.." in p or "order" in p]
    return dg.AssetCheckResult(passed=not problems, metadata={"num_classes": len(df), "problems": "; ".join(problems) or "none"})


@dg.asset_check(asset=ASSET, blocking=True)
def labels_are_one_to_one(lake: LakeResource) -> dg.AssetCheckResult:
    """Each class id has one label and each label one class id."""
    (df,) = _tables(lake, ASSET)
    dup_ids = sorted(df.loc[df["class_id"].duplicated(keep=False), "class_id"].astype(int).unique().tolist())
    dup_labels = sorted(df.loc[df["label"].duplicated(keep=False), "label"].astype(int).unique().tolist())
    return dg.AssetCheckResult(
        passed=not dup_ids and not dup_labels,
        metadata={"class_ids_with_several_labels": str(dup_ids[:20]), "labels_with_several_ids": str(dup_labels[:20])},
    )


@dg.asset_check(asset=ASSET, blocking=True, additional_deps=["raw_train_metadata"])
def every_train_class_has_label(lake: LakeResource) -> dg.AssetCheckResult:
    """Every class id in the training metadata (except -1, unknown) has a label."""
    df, train = _tables(lake, ASSET, "raw_train_metadata")
    train_ids = set(train.loc[train["class_id"] >= 0, "class_id"].astype(int))
    missing = sorted(train_ids - set(df["class_id"].astype(int)))
    extra = sorted(set(df["class_id"].astype(int)) - train_ids)
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"train_classes": len(train_ids), "missing_class_ids": str(missing[:20]), "labels_without_train_rows": str(extra[:20])},
    )


@dg.asset_check(asset=ASSET, blocking=True)
def labels_stable_unless_classes_changed(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """The mapping equals the one the current head was trained with (else the last accepted
    materialization's) unless the class set itself changed.

    Comparing with the head bundle rather than only the last materialization means a
    rejected bad drop does not become the reference: once the data is fixed, the map
    matches the model again and the chain resumes.
    """
    records = context.instance.fetch_materializations(dg.AssetKey(ASSET), limit=20).records
    current = {k: records[0].asset_materialization.metadata[k].value for k in ("fingerprint", "class_set_fingerprint")}
    try:
        trained = load_bundle(lake.head_bundle_path()).label_map
        reference = {"fingerprint": trained.fingerprint(), "class_set_fingerprint": trained.class_set_fingerprint()}
        compared_with = f"the label map inside {lake.head_bundle_path().name}"
    except BundleError:
        # No usable head yet: the newest earlier map whose run succeeded (a run stopped by
        # a failed blocking check must not become the reference).
        accepted = [
            r for r in records[1:]
            if (run := context.instance.get_run_by_id(r.run_id)) is not None and run.status == dg.DagsterRunStatus.SUCCESS
        ]
        if not accepted:
            return dg.AssetCheckResult(passed=True, metadata={"compared_with": "nothing (no accepted earlier map, no head yet)"})
        reference = {k: accepted[0].asset_materialization.metadata[k].value for k in current}
        compared_with = f"the last accepted materialization (run {accepted[0].run_id})"
    same_classes = current["class_set_fingerprint"] == reference["class_set_fingerprint"]
    mapping_changed = current["fingerprint"] != reference["fingerprint"]
    return dg.AssetCheckResult(
        passed=not same_classes or not mapping_changed,
        metadata={"class_set_changed": not same_classes, "mapping_changed": mapping_changed, "compared_with": compared_with},
    )
