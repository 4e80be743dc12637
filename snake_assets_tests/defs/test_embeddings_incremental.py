"""image_embeddings on a real instance: re-runs reuse every vector, progress and failures are reported."""

import shutil

import dagster as dg
import duckdb
import pytest

from snake_assets.definitions import defs

PROGRESS = {"ops": {"image_embeddings": {"config": {"progress_every_s": 0.0}}}}


def _run(job: str, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return defs().resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def _meta(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("image_embeddings")[0].metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def env(tmp_path, demo_release, tiny_backbone, monkeypatch):
    """A private copy of the demo release (the test damages files) and an empty lake."""
    release = tmp_path / "release"
    shutil.copytree(demo_release, release)
    for k, v in {"SNAKE_DATA_DIR": str(release), "SNAKE_HOME": str(tmp_path / "lake"), "SNAKE_BACKBONE": str(tiny_backbone),
                 "SNAKE_DEVICE": "cpu", "SNAKE_BATCH_SIZE": "8"}.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def test_failures_reported_then_retried_and_reruns_compute_nothing(env):
    with dg.instance_for_test() as instance:
        assert _run("ingest_job", instance).success
        shard = sorted(instance.get_dynamic_partitions("image_shards"))[0]
        with duckdb.connect(str(env / "lake" / "warehouse.duckdb"), read_only=True) as conn:
            paths = [p for (p,) in conn.execute(
                "SELECT resolved_path FROM image_manifest WHERE shard = ? AND readable ORDER BY row_id LIMIT 2", [shard]
            ).fetchall()]
        original = open(paths[0], "rb").read()
        open(paths[0], "wb").write(original[: len(original) // 2])  # replaced after ingest: not the hashed bytes
        (env / "aside").mkdir()
        shutil.move(paths[1], env / "aside")  # gone after ingest

        first = _run("embedding_job", instance, partition_key=shard, run_config=PROGRESS)
        meta = _meta(first)
        assert first.success
        assert meta["failure_reasons"] == {"changed since manifest": 1, "missing file": 1}
        assert {f["image_key"].rsplit("/", 1)[-1] for f in meta["failures"]} == {p.rsplit("/", 1)[-1] for p in paths}
        assert meta["forward_pass"] and meta["computed"] == meta["readable_in_manifest"] - meta["deduplicated"] - 2 > 8
        assert (meta["reused"], meta["batch_size"], meta["precision"]) == (0, 8, "fp32")
        assert _checks(first) == {"rows_match_readable_images": True, "vectors_are_finite": True,
                                  "widths_match_backbone": True, "every_readable_image_embedded": False}
        logs = [e.user_message for e in instance.all_logs(first.run_id)]
        progress = [m for m in logs if f"{shard}: " in m and "images computed" in m and "images/s" in m]
        assert len(progress) >= 2  # a line per batch at progress_every_s=0, the last at done == total
        total = meta["computed"] + 2
        assert f"{total}/{total} images computed" in progress[-1]

        open(paths[0], "wb").write(original)
        shutil.move(env / "aside" / paths[1].rsplit("/", 1)[-1], paths[1])
        second = _run("embedding_job", instance, partition_key=shard)
        fixed = _meta(second)
        assert second.success and all(_checks(second).values())
        assert (fixed["computed"], fixed["reused"], fixed["decode_failures"]) == (2, meta["dagster/row_count"], 0)

        third = _run("embedding_job", instance, partition_key=shard)
        again = _meta(third)
        assert third.success and all(_checks(third).values())
        assert (again["forward_pass"], again["computed"], again["reused"]) == (False, 0, fixed["dagster/row_count"])


def test_backbone_resource_defaults_follow_the_device(tiny_backbone, monkeypatch):
    import torch

    from snake_assets.core.backbone import available_cpus
    from snake_assets.defs.resources import BackboneResource

    auto = BackboneResource(model=str(tiny_backbone), device="cpu")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (auto.effective_batch_size(cpu), auto.effective_batch_size(cuda)) == (32, 64)
    assert auto.effective_num_workers(cpu) == min(16, available_cpus())
    assert auto.effective_num_workers(cuda) == max(1, min(16, available_cpus() - 1))
    fixed = BackboneResource(model=str(tiny_backbone), device="cpu", batch_size=8, num_workers=0)
    assert (fixed.effective_batch_size(cpu), fixed.effective_num_workers(cpu)) == (8, 0)
    spec = auto.describe()  # config only, no weights
    assert auto.slug(spec) == auto.slug(auto.load(spec)) and auto.slug(spec).startswith(tiny_backbone.name)
