"""The asset graph materialized on a real Dagster instance, DuckDB file and tiny DINOv2."""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from snake_assets.core.checkpoint import load_bundle
from snake_assets.core.labels import LabelMap
from snake_assets.definitions import defs
from snake_assets_tests.conftest import set_snake_env


def _run(job: str, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return defs().resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _table(lake: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(lake / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM {name}").df()


@pytest.fixture(scope="module")
def materialized(tmp_path_factory, demo_release, tiny_backbone):
    """The whole graph, once, on a temporary instance: (instance, lake path, results by stage)."""
    mp = pytest.MonkeyPatch()
    lake = tmp_path_factory.mktemp("lake")
    set_snake_env(mp, demo_release, tiny_backbone, lake)
    with dg.instance_for_test() as instance:
        results = {"ingest": _run("ingest_job", instance)}
        shards = instance.get_dynamic_partitions("image_shards")
        results["embeddings"] = [_run("embedding_job", instance, partition_key=s) for s in shards]
        results["training"] = _run("training_job", instance)
        yield instance, lake, results
    mp.undo()


def test_every_stage_succeeds_with_all_checks_passing(materialized):
    _, _, results = materialized
    assert results["ingest"].success
    assert all(r.success for r in results["embeddings"]) and len(results["embeddings"]) == 4
    assert results["training"].success
    checks = _checks(results["ingest"]) | _checks(results["training"])
    assert checks == {
        "labels_are_contiguous": True, "labels_are_one_to_one": True, "every_train_class_has_label": True,
        "labels_stable_unless_classes_changed": True, "scores_above_broken_mapping_regime": True,
        "projection_covers_species_subset": True,
        "submission_passes_official_validation": True,
    }
    for r in results["embeddings"]:
        assert all(_checks(r).values()), _checks(r)


def test_manifest_reconciles_with_metadata(materialized, demo_release):
    _, lake, results = materialized
    manifest = _table(lake, "image_manifest")
    listed = sum(len(pd.read_csv(p)) for p in demo_release.glob("SnakeCLEF*Metadata*.csv"))
    assert len(manifest) == listed
    meta = results["ingest"].asset_materializations_for_node("image_manifest")[0].metadata
    assert meta["metadata_rows"].value == listed == meta["readable"].value + meta["unreadable"].value + meta["missing_files"].value
    assert manifest["observation_id"].map(type).eq(str).all()
    assert manifest.loc[manifest["observation_id"].str.startswith("HM "), "split"].eq("train").all()


def test_embedding_shards_hold_every_readable_image_once(materialized):
    _, lake, _ = materialized
    manifest = _table(lake, "image_manifest")
    files = sorted((lake / "embeddings").glob("*/shard-*.parquet"))
    keys = pd.concat([pq.read_table(f, columns=["image_key"]).to_pandas() for f in files])["image_key"]
    assert keys.is_unique
    assert set(keys) == set(manifest.loc[manifest["readable"], "image_key"])


def test_rematerializing_a_shard_overwrites_it(materialized):
    instance, lake, _ = materialized
    shard = instance.get_dynamic_partitions("image_shards")[0]
    (path,) = (lake / "embeddings").glob(f"*/{shard}.parquet")
    before = pq.read_table(path)
    assert _run("embedding_job", instance, partition_key=shard).success
    after = pq.read_table(path)
    assert after.num_rows == before.num_rows
    assert after.column("image_key").to_pylist() == before.column("image_key").to_pylist()


def test_bundle_carries_the_label_map_and_submission_uses_class_ids(materialized, demo_release):
    _, lake, _ = materialized
    label_map = LabelMap.from_frame(_table(lake, "species_label_map"))
    bundle = load_bundle(lake / "models" / "species_head.safetensors", expect_label_map=label_map)
    assert bundle.head_config.num_classes == label_map.num_classes
    sub = pd.read_csv(lake / "submissions" / "submission.csv", dtype={"observation_id": str})
    test_obs = pd.read_csv(demo_release / "SnakeCLEF2024-TestMetadata.csv", dtype=str)["observation_id"].unique()
    assert sorted(sub["observation_id"]) == sorted(test_obs)
    assert set(sub["class_id"]) <= set(label_map.class_ids)


def test_scores_cover_every_rule_and_beat_chance(materialized):
    _, lake, _ = materialized
    scores = _table(lake, "validation_scores")
    plain = ["mode_first+argmax", "mode_first+min_expected_cost", "mean_prob+argmax", "mean_prob+min_expected_cost"]
    assert sorted(scores["rule"]) == sorted(plain + [f"{r}+country" for r in plain])  # the demo has country codes
    assert scores["chosen"].sum() == 1
    chosen = scores[scores["chosen"]].iloc[0]
    assert chosen["track1"] == scores["track1"].max()
    num_classes = len(_table(lake, "species_label_map"))
    assert chosen["accuracy"] > 2 * 100 / num_classes


def test_label_map_check_is_stable_across_rematerialization(materialized):
    instance, _, _ = materialized
    again = _run("ingest_job", instance)
    assert again.success and _checks(again)["labels_stable_unless_classes_changed"]
