"""The ``gpu`` pool of the repository's ``dagster.yaml`` caps embedding steps across concurrent runs.

Two embedding partitions are launched at once as two runs on one instance (the
repository's ``dagster.yaml`` in a temporary ``DAGSTER_HOME``), each run in its own
process with the multiprocess executor (each step in a process of its own), as runs of a
backfill are when nothing queues them. The test first holds the pool's only slot, so both
runs are seen waiting for it at the same time; once it is released the event log must show
the two embedding steps executing one after the other, never together.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from snake_assets.definitions import defs

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = ["shard-000", "shard-001"]
HOLDER = ("test-holds-the-gpu", "holder")
TIMEOUT_S = 240


def probe_job() -> dg.JobDefinition:
    """The embedding asset in a job with the multiprocess executor (reconstructable by step processes)."""
    job = dg.define_asset_job(
        "gpu_backfill_probe", selection=dg.AssetSelection.assets("image_embeddings"), executor_def=dg.multiprocess_executor
    )
    return dg.Definitions.merge(defs(), dg.Definitions(jobs=[job])).resolve_job_def("gpu_backfill_probe")


def run_partition(partition: str) -> None:
    """One run of one partition on the instance in ``DAGSTER_HOME``."""
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(dg.reconstructable(probe_job), instance=instance, tags={"dagster/partition": partition}) as result:
            print(result.run_id, result.success)


def _launch(partition: str) -> subprocess.Popen:
    code = f"from snake_assets_tests.defs.test_concurrency import run_partition; run_partition({partition!r})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, text=True)


def _events(instance, run_id: str, kind: str) -> list:
    return [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type_value == kind]


def _blocked(instance, run_id: str) -> bool:
    return any("blocked by limit for pool gpu" in (e.dagster_event.message or "") for e in _events(instance, run_id, "ENGINE_EVENT"))


@pytest.mark.slow
def test_gpu_pool_runs_one_embedding_step_at_a_time(tmp_path, snake_env, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert defs().resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("gpu")
        assert storage.get_concurrency_info("gpu").slot_count == 1  # pools.default_limit of dagster.yaml
        assert storage.claim_concurrency_slot("gpu", *HOLDER).is_claimed
        procs = [_launch(p) for p in PARTITIONS]
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name="gpu_backfill_probe"))
                if len(runs) == len(PARTITIONS) and all(_blocked(instance, r.run_id) for r in runs):
                    break  # both runs wait for the one slot at the same time
                assert time.monotonic() < deadline, "the runs never both waited for the gpu pool"
                assert all(p.poll() is None for p in procs), "a run ended while the gpu slot was held"
                time.sleep(1)
        finally:
            storage.free_concurrency_slot_for_step(*HOLDER)
        outputs = [p.communicate(timeout=TIMEOUT_S)[0].split() for p in procs]
        assert [out[-1] for out in outputs] == ["True"] * len(PARTITIONS), outputs
        windows = sorted(
            (_events(instance, r.run_id, "STEP_START")[0].timestamp, _events(instance, r.run_id, "STEP_SUCCESS")[0].timestamp)
            for r in runs
        )
        assert windows[1][0] >= windows[0][1], f"embedding steps overlapped: {windows}"
        assert instance.get_materialized_partitions(dg.AssetKey("image_embeddings")) == set(PARTITIONS)


def test_only_the_gpu_assets_use_the_pool():
    graph = defs().resolve_asset_graph()
    pooled = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys() if graph.get(k).pools}
    assert pooled == {"image_embeddings": {"gpu"}}
