"""The release sensor on a real instance: first look, adoption of an ingested release, and a data drop."""

import dagster as dg
import pytest

from snake_assets.definitions import defs
from snake_assets.defs.sensors import release_sensor
from snake_assets_tests.drops import add_drop, copy_release

INGEST_ASSETS = {"raw_train_metadata", "raw_val_metadata", "raw_test_metadata", "venomous_species", "image_manifest"}
ALL_SHARDS = ["shard-000", "shard-001", "shard-002", "shard-003"]


@pytest.fixture
def release(tmp_path, demo_release, snake_env, monkeypatch):
    root = copy_release(demo_release, tmp_path / "release")
    monkeypatch.setenv("SNAKE_DATA_DIR", str(root))
    return root


def _tick(instance, cursor=None) -> dg.SensorResult:
    d = defs()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=d, resources=dict(d.resources))
    return d.resolve_sensor_def("release_sensor")(context)


def _requested(result: dg.SensorResult) -> tuple[set[str], list[str]]:
    (request,) = result.run_requests
    subset = request.asset_graph_subset
    partitions = subset.partitions_subsets_by_asset_key.get(dg.AssetKey("image_embeddings"))
    return (
        {k.to_user_string() for k in subset.non_partitioned_asset_keys},
        sorted(partitions.get_partition_keys()) if partitions else [],
    )


def _added(result: dg.SensorResult) -> list[str]:
    return sorted(k for r in result.dynamic_partitions_requests for k in r.partition_keys)


def test_sensor_is_running_by_default_and_targets_ingest_and_embeddings():
    d = defs()
    sensor = d.resolve_sensor_def("release_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.name == release_sensor.name
    targets = sensor.asset_selection.resolve(d.resolve_asset_graph())
    assert {k.to_user_string() for k in targets} == INGEST_ASSETS | {"image_embeddings"}


def test_first_look_requests_ingest_and_every_shard(release):
    with dg.instance_for_test() as instance:
        result = _tick(instance)
        assert _requested(result) == (INGEST_ASSETS, ALL_SHARDS)
        assert _added(result) == ALL_SHARDS  # the partitions exist before the backfill is created
        assert result.cursor and not result.skip_reason
        again = _tick(instance, cursor=result.cursor)
        assert not again.run_requests and again.skip_reason.skip_message == "release unchanged"


def test_drop_requests_exactly_its_shard_after_adopting_the_ingested_release(release):
    with dg.instance_for_test() as instance:
        assert defs().resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        adopted = _tick(instance)
        assert not adopted.run_requests and adopted.skip_reason.skip_message.startswith("baseline adopted")
        drop = add_drop(release, shard="shard-002", train_images=2, test_images=1)
        result = _tick(instance, cursor=adopted.cursor)
        assert _requested(result) == (INGEST_ASSETS, ["shard-002"])
        assert _added(result) == []  # ingest already created every shard partition
        (request,) = result.run_requests
        assert request.tags["snake_assets/shards"] == "shard-002"
        assert len(drop.image_keys) == 3


def test_sensor_without_cursor_rebuilds_when_the_ingested_release_differs(release):
    with dg.instance_for_test() as instance:
        assert defs().resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        add_drop(release, shard="shard-000", train_images=1, test_images=0)
        result = _tick(instance)
        assert _requested(result) == (INGEST_ASSETS, ALL_SHARDS)


def test_a_drop_whose_backfill_failed_is_embedded_with_the_next_change(release):
    with dg.instance_for_test() as instance:
        assert defs().resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        adopted = _tick(instance)
        add_drop(release, shard="shard-003", train_images=1, test_images=0)
        first = _tick(instance, cursor=adopted.cursor)
        assert _requested(first)[1] == ["shard-003"]  # ... and say its backfill fails: nothing is embedded
        add_drop(release, shard="shard-000", train_images=1, test_images=0)
        second = _tick(instance, cursor=first.cursor)
        assert _requested(second)[1] == ["shard-000", "shard-003"]
        job = defs().resolve_job_def("embedding_job")
        for shard in ("shard-000", "shard-003"):
            assert job.execute_in_process(instance=instance, partition_key=shard).success
        add_drop(release, shard="shard-001", train_images=1, test_images=0)
        third = _tick(instance, cursor=second.cursor)
        assert _requested(third)[1] == ["shard-001"]  # embedded shards are no longer carried
