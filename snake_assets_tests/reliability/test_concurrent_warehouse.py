"""Two processes on one ``warehouse.duckdb``: the second waits, or fails clearly; a retry succeeds; nothing is corrupted.

DuckDB lets one process write a database file at a time. Steps hold the file only for
short reads and writes, so the lake's warehouse resource waits for the lock (with
back-off) and gives up after ``lock_timeout_s`` with an error naming the file and the
PID holding it.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from snake_assets.defs.assets.ingest import raw_val_metadata
from snake_assets.defs.resources import LakeResource, SnakeReleaseResource
from snake_assets_tests.reliability.conftest import NUM_SHARDS, read_tables, snake_env


@pytest.fixture
def lake(baseline, tmp_path) -> Path:
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(baseline.lake / "warehouse.duckdb", lake / "warehouse.duckdb")
    return lake


def _hold_lock(database: Path, seconds: float) -> subprocess.Popen:
    """Another process with the warehouse open read-write (a run mid-write, or a DuckDB shell)."""
    script = f"import duckdb, time; c = duckdb.connect({str(database)!r}); print('locked', flush=True); time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_briefly_held_lock_is_waited_for(lake):
    holder = _hold_lock(lake / "warehouse.duckdb", 2.0)
    started = time.monotonic()
    with LakeResource(home=str(lake), lock_timeout_s=60).warehouse().get_connection() as conn:
        waited = time.monotonic() - started
        assert conn.execute("SELECT count(*) FROM raw_val_metadata").fetchone()[0] > 0
    holder.wait(timeout=30)
    assert waited > 1.0


def test_a_lock_that_is_not_released_fails_clearly_and_a_retry_succeeds(baseline, lake):
    before = read_tables(lake)
    holder = _hold_lock(lake / "warehouse.duckdb", 120)
    resources = {"release": SnakeReleaseResource(data_dir=str(baseline.release)), "lake": LakeResource(home=str(lake), lock_timeout_s=1.5)}
    try:
        result = dg.materialize([raw_val_metadata], resources=resources, raise_on_error=False)
    finally:
        holder.kill()
        holder.wait()
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    err = failure.step_failure_data.error
    message = "\n".join(e.message for e in (err, err.cause) if e is not None)
    assert "WarehouseLockedError" in message and str(lake / "warehouse.duckdb") in message
    assert f"PID {holder.pid}" in message and "stayed locked" in message

    assert dg.materialize([raw_val_metadata], resources=resources).success
    after = read_tables(lake)
    for name in before:
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)


def test_two_ingest_runs_at_once_both_finish_and_leave_one_consistent_warehouse(baseline, lake, zygote, tmp_path):
    env = snake_env(baseline, lake, tmp_path)
    # Create the fresh instance's SQLite schema once first: two processes creating it at the
    # same instant race inside Dagster ("table alembic_version already exists").
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.get_runs(limit=1)
    args = ["job", "--shards", str(NUM_SHARDS), "ingest_job"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    pids = [zygote.spawn(args, env, log) for log in logs]
    statuses = [zygote.wait(pid, timeout=300) for pid in pids]
    assert statuses == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    before, after = read_tables(baseline.lake), read_tables(lake)
    for name in ("raw_train_metadata", "raw_val_metadata", "raw_test_metadata", "venomous_species",
                 "image_manifest", "rejected_images", "species_label_map"):
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)
