"""Submission: the test split's ``observation_id,class_id`` CSV, class ids in the release's id space."""


from pathlib import Path

import dagster as dg
import pandas as pd

from snake_assets.core.country_prior import prior_for_observations
from snake_assets.core.evaluation import predict_observations
from snake_assets.core.files import local_copy
from snake_assets.core.inference import fallback_class_id, shard_paths_for, split_log_probs
from snake_assets.core.scoring import SubmissionError, read_submission, score_files
from snake_assets.core.submission import format_submission, submission_problems, write_submission
from snake_assets.defs import automation
from snake_assets.defs.assets.evaluation import load_checked_bundle
from snake_assets.defs.resources import LakeResource, SnakeReleaseResource

DEMO_GROUND_TRUTH = "test_ground_truth.csv"
"""Only generated demo releases ship test labels; real releases are scored by the organisers."""


def _known_class_ids(lake: LakeResource) -> set[int]:
    with lake.tables() as db:
        return set(db.read("venomous_species")["class_id"].astype(int))


def _test_context(lake: LakeResource) -> tuple[list[str], set[int]]:
    with lake.tables() as db:
        test = db.read("image_manifest", "split = ?", ["test"]).sort_values("row_id")
    return list(dict.fromkeys(test["observation_id"].astype(str))), _known_class_ids(lake)


@dg.asset(
    group_name="submission", kinds={"csv"},
    deps=["species_head", "validation_scores", "image_embeddings", "raw_train_metadata", "raw_test_metadata"],
    automation_condition=automation.SUBMIT,
)
def competition_submission(release: SnakeReleaseResource, lake: LakeResource) -> dg.MaterializeResult:
    """The competition file for the test split, made with the decision rule that won on validation."""
    bundle = load_checked_bundle(lake)
    with lake.tables() as db:
        manifest = db.read("image_manifest")
        chosen = db.read("validation_scores", "chosen").iloc[0]
    test = split_log_probs(bundle, shard_paths_for(lake.embeddings_dir, bundle, manifest), manifest, "test")
    prior = None
    if chosen.get("prior", "none") == "country":  # the winning rule conditions on the observation's country
        with lake.tables() as db:
            train_raw, test_raw = db.read("raw_train_metadata"), db.read("raw_test_metadata")
        prior = prior_for_observations(train_raw, test_raw, bundle.label_map, test.observation_ids)
    preds = predict_observations(
        test.log_probs, test.rows["observation_id"].astype(str).tolist(), test.observation_ids, bundle.label_map,
        aggregation=chosen["aggregation"], decision=chosen["decision"],
        fallback_class_id=fallback_class_id(manifest), prior=prior,
    )
    sub = format_submission(preds)
    problems = submission_problems(sub, test.observation_ids, _known_class_ids(lake))
    if problems:
        raise dg.Failure("submission refused before writing: " + "; ".join(problems))
    path = write_submission(sub, lake.submission_path())
    metadata = {
        "path": dg.MetadataValue.path(str(path)),
        "dagster/row_count": len(sub),
        "decision_rule": str(chosen["rule"]),
        "observations_without_images": int(preds["fallback"].sum()),
        "distinct_class_ids": int(sub["class_id"].nunique()),
        "preview": dg.MetadataValue.md(sub.head(10).to_markdown(index=False)),
    }
    gt = Path(release.root) / DEMO_GROUND_TRUTH
    if gt.is_file():
        with local_copy(path) as local:
            demo = score_files(gt, local, Path(release.root) / "venomous_status_list.csv")
        metadata.update({f"demo_test_{k}": float(demo[k]) for k in ("f1", "accuracy", "track1", "track2")})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=competition_submission, blocking=True)
def submission_passes_official_validation(lake: LakeResource) -> dg.AssetCheckResult:
    """The file on disk has one row per test observation, no missing or extra ids, and known class ids."""
    observations, known = _test_context(lake)
    try:
        with local_copy(lake.submission_path()) as local:
            sub = read_submission(local)
        problems = submission_problems(sub, observations, known)
    except SubmissionError as e:
        sub, problems = pd.DataFrame(), list(e.messages)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"rows": len(sub), "test_observations": len(observations), "problems": "; ".join(problems) or "none"},
    )
