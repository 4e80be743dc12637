"""Declarative automation on a real instance: what a drop sets in motion, and what a broken label map stops.

The daemon is replaced by ``dg.evaluate_automation_conditions`` (one call = one tick) and
runs by in-process executions of exactly what the sensor or the tick requested.
"""

import dagster as dg
import pytest

from snake_assets.core.release_watch import fingerprint_release, plan_tick
from snake_assets.definitions import defs
from snake_assets_tests.drops import add_drop, copy_release, rename_species

CHAIN = {"species_label_map", "species_head", "validation_predictions", "validation_scores", "competition_submission"}
INGEST = ["raw_train_metadata", "raw_val_metadata", "raw_test_metadata", "venomous_species", "image_manifest"]


class World:
    """A release copy, an instance holding its ingest and embeddings (no head yet), and the automation cursor."""

    def __init__(self, root, instance):
        self.root, self.instance, self.cursor = root, instance, None
        self.defs = defs()
        self.fingerprint = fingerprint_release(root, num_shards=4)

    def run(self, keys, partition_key=None) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance, asset_selection=[dg.AssetKey(k) for k in keys], partition_key=partition_key, raise_on_error=False
        )

    def tick(self) -> dict[str, int]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {r.key.to_user_string(): r.true_subset.size for r in result.results if r.true_subset.size}

    def release_sensor_runs(self):
        """What the release sensor would request, executed in order: ingest, then the changed shards."""
        current = fingerprint_release(self.root, num_shards=4)
        plan = plan_tick(self.fingerprint, current, None)
        self.fingerprint = current
        assert self.run(INGEST).success
        for shard in plan.shards:
            assert self.run(["image_embeddings"], partition_key=shard).success
        return plan


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_release, tiny_backbone):
    mp = pytest.MonkeyPatch()
    root = copy_release(demo_release, tmp_path_factory.mktemp("auto") / "release")
    for k, v in {
        "SNAKE_DATA_DIR": str(root), "SNAKE_HOME": str(tmp_path_factory.mktemp("lake")),
        "SNAKE_BACKBONE": str(tiny_backbone), "SNAKE_DEVICE": "cpu", "SNAKE_BATCH_SIZE": "16",
    }.items():
        mp.setenv(k, v)
    with dg.instance_for_test() as instance:
        w = World(root, instance)
        assert w.defs.resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        for shard in instance.get_dynamic_partitions("image_shards"):
            assert w.run(["image_embeddings"], partition_key=shard).success
        assert w.tick() == {}  # the first evaluation only records where things stand
        yield w
    mp.undo()


def test_a_drop_sets_the_whole_chain_in_motion_once(world):
    add_drop(world.root, shard="shard-001", train_images=2, test_images=1)
    plan = world.release_sensor_runs()
    assert plan.shards == ("shard-001",)
    assert world.tick() == dict.fromkeys(CHAIN, 1)  # label map, then the head and everything after it, in one run
    assert world.tick() == {}  # requested once, not again on the next tick


def test_a_broken_label_map_stops_everything_downstream_and_says_why(world):
    originals = {p: p.read_bytes() for p in world.root.glob("*.csv")}
    class_id = rename_species(world.root)  # same class ids, one species renamed: the mapping changed silently
    plan = world.release_sensor_runs()
    assert plan.shards == ()  # no image changed: nothing to re-embed
    requested = world.tick()
    assert set(requested) == CHAIN  # one run: the label map's blocking checks guard the rest
    result = world.run(requested)
    assert not result.success
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events() if m.asset_key}
    assert materialized == {"species_label_map"}
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {"labels_stable_unless_classes_changed"}
    why = {k: v.value for k, v in failed["labels_stable_unless_classes_changed"].metadata.items()}
    assert why["class_set_changed"] is False and why["mapping_changed"] is True, why
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert started.isdisjoint({"species_head", "validation_predictions", "validation_scores", "competition_submission"})
    assert world.tick() == {}  # and the next tick does not retry on the bad label map
    assert class_id == 1137

    # Fixing the data makes the map match the trained head again: the rejected map is no reference.
    for path, data in originals.items():
        path.write_bytes(data)
    world.release_sensor_runs()
    fixed = world.run(world.tick())
    checks = {e.check_name: e.passed for e in fixed.get_asset_check_evaluations()}
    why = {e.check_name: {k: v.value for k, v in e.metadata.items()} for e in fixed.get_asset_check_evaluations()}
    assert checks["labels_stable_unless_classes_changed"], why
