"""Evaluation: validation predictions under every decision rule, and their official scores."""

import dagster as dg

from snake_assets.core.checkpoint import load_bundle
from snake_assets.core.country_prior import prior_for_observations
from snake_assets.core.evaluation import (
    TRACK1_FLOOR, looks_like_broken_mapping, mark_chosen_rule, predict_all_rules, score_all_rules,
)
from snake_assets.core.figures import confusion_png, png_markdown, venom_outcomes
from snake_assets.core.inference import fallback_class_id, ground_truth, shard_paths_for, split_log_probs
from snake_assets.defs import automation
from snake_assets.defs.assets.labels import load_label_map
from snake_assets.defs.resources import LakeResource

GROUP = "evaluation"
BROKEN_MAPPING = "scores_above_broken_mapping_regime"


def load_checked_bundle(lake: LakeResource):
    """The head bundle, refused unless its label map equals the current ``species_label_map``."""
    return load_bundle(lake.head_bundle_path(), expect_label_map=load_label_map(lake))


@dg.asset(
    group_name=GROUP, kinds={"duckdb"}, deps=["species_head", "image_embeddings", "raw_train_metadata", "raw_val_metadata"],
    automation_condition=automation.PREDICT,
)
def validation_predictions(lake: LakeResource) -> dg.MaterializeResult:
    """One predicted ``class_id`` per validation observation for each aggregation x decision x prior rule."""
    bundle = load_checked_bundle(lake)
    with lake.tables() as db:
        manifest = db.read("image_manifest")
        train_raw, val_raw = db.read("raw_train_metadata"), db.read("raw_val_metadata")
    val = split_log_probs(bundle, shard_paths_for(lake.embeddings_dir, bundle, manifest), manifest, "val")
    prior = prior_for_observations(train_raw, val_raw, bundle.label_map, val.observation_ids)
    preds = predict_all_rules(
        val.log_probs, val.rows["observation_id"].astype(str).tolist(), val.observation_ids,
        bundle.label_map, fallback_class_id=fallback_class_id(manifest), country_prior=prior,
    )
    with lake.tables() as db:
        db.replace({"validation_predictions": preds})
    n_obs = len(val.observation_ids)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(preds),
            "observations": n_obs,
            "images_scored": len(val.rows),
            "images_without_vector": val.images_without_vector,
            "observations_without_images": int(preds.groupby(["aggregation", "decision", "prior"])["fallback"].sum().iloc[0]),
            "recipe": bundle.recipe,
            "country_prior": prior is not None,
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    deps=["validation_predictions", "venomous_species"],
    automation_condition=automation.SCORE,
    check_specs=[dg.AssetCheckSpec(BROKEN_MAPPING, asset="validation_scores", blocking=True)],
)
def validation_scores(lake: LakeResource) -> dg.MaterializeResult:
    """Official Track 1 / Track 2 / F1 / accuracy of every decision rule on validation; the best is chosen."""
    with lake.tables() as db:
        preds = db.read("validation_predictions")
        manifest = db.read("image_manifest")
        venomous = db.read("venomous_species")
    venomous_ids = set(venomous.loc[venomous["MIVS"] == 1, "class_id"].astype(int))
    truth = ground_truth(manifest, "val")
    scores = mark_chosen_rule(score_all_rules(preds, truth, venomous_ids))
    with lake.tables() as db:
        db.replace({"validation_scores": scores})
    best = scores[scores["chosen"]].iloc[0]
    passed = not looks_like_broken_mapping(best["f1"], best["track1"])
    table = scores[["rule", "f1", "accuracy", "track1", "track2", "n00", "n01", "n10", "n11", "chosen"]]
    observations = truth.drop_duplicates("observation_id")
    n_venomous = int(observations["class_id"].isin(venomous_ids).sum())
    outcomes = venom_outcomes(
        n_harmless=len(observations) - n_venomous, n_venomous=n_venomous, **{c: int(best[c]) for c in ("n00", "n01", "n10", "n11")}
    )
    confusion = confusion_png(outcomes, title=f"Validation, {best['rule']}: venomous/harmless outcomes of {len(observations)} observations")
    return dg.MaterializeResult(
        metadata={
            "chosen_rule": str(best["rule"]),
            **{k: float(best[k]) for k in ("f1", "accuracy", "track1", "track2")},
            "dagster/row_count": len(scores),
            "observations": len(observations),
            "scores": dg.MetadataValue.md(table.to_markdown(index=False)),
            "venom_confusion": dg.MetadataValue.md(png_markdown(confusion, "venomous/harmless confusion")),
            "venom_outcomes": dg.MetadataValue.md(outcomes.to_markdown()),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=BROKEN_MAPPING,
                passed=passed,
                metadata={
                    "f1": float(best["f1"]), "track1": float(best["track1"]), "track1_floor": TRACK1_FLOOR,
                    "why": "F1 = 0 or Track 1 in the all-wrong regime is the signature of labels never mapped back to class ids",
                },
            )
        ],
    )
