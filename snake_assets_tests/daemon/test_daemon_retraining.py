"""End to end with the real ``dagster-daemon``: a data drop is embedded, retrained on and submitted.

The baseline (demo release ingested, embedded, head trained, submission written) is
materialized in-process on a temporary ``DAGSTER_HOME`` holding the repository's
``dagster.yaml``; then ``dagster-daemon run`` starts on it (its code server on loopback),
the release sensor adopts the baseline, the test adds a drop and waits (bounded) until
the sensor's backfill has embedded the drop's shard, automation has retrained the head
and a new submission lists the drop's test observations. The daemon is stopped by its pid.
Timings and the runs after the drop are printed (``pytest -s``).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from snake_assets.definitions import defs
from snake_assets_tests.drops import add_drop, copy_release

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ADOPT_TIMEOUT_S = 150
CHAIN_TIMEOUT_S = 360
CHAIN = ("species_head", "validation_predictions", "validation_scores", "competition_submission")


def _materializations(instance, key: str, after: float) -> list:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), after_timestamp=after), limit=1000)
    return records.records


def _failed_runs(instance) -> list[str]:
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    return [f"{r.run_id} {sorted(k.to_user_string() for k in r.asset_selection or [])}" for r in runs]


def _timeline(instance, since: float) -> list[str]:
    """One line per run created after ``since``: seconds from ``since`` to its start and end, and what it ran."""
    lines = []
    for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp.timestamp()):
        if record.create_timestamp.timestamp() < since:
            continue
        run = record.dagster_run
        created = record.create_timestamp.timestamp() - since
        start, end = (f"{t - since:6.1f}" if t else "     -" for t in (record.start_time, record.end_time))
        what = sorted(k.to_user_string() for k in run.asset_selection or [])
        lines.append(f"created {created:6.1f} start {start} end {end} {run.status.value} {run.tags.get('dagster/partition', '')} {what}")
    return lines


def _release_sensor_cursor(instance) -> str | None:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == "release_sensor"]
    return states[0].instigator_data.cursor if states and states[0].instigator_data else None


@contextlib.contextmanager
def _daemon(tmp_path: Path, env: dict):
    """``dagster-daemon run`` on the instance in ``env["DAGSTER_HOME"]``; stopped by its pid on exit."""
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: snake_assets.definitions\n"
        f"      attribute: defs\n      location_name: snake_assets\n      working_directory: {REPO}\n"
    )
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=tmp_path, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the daemon and the processes it started
                proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # a code server the daemon left behind, if any


def _wait(what: str, predicate, timeout_s: float, proc: subprocess.Popen, log: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        if proc.poll() is not None:
            pytest.fail(f"dagster-daemon exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(2)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}; daemon log tail:\n{log.read_text()[-4000:]}")


@pytest.fixture
def env(tmp_path, demo_release, tiny_backbone, monkeypatch) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    values = {
        "DAGSTER_HOME": str(home),
        "SNAKE_DATA_DIR": str(copy_release(demo_release, tmp_path / "release")),
        "SNAKE_HOME": str(tmp_path / "lake"),
        "SNAKE_BACKBONE": str(tiny_backbone),
        "SNAKE_DEVICE": "cpu",
        "SNAKE_BATCH_SIZE": "16",
        "SNAKE_DEPLOYMENT": "local",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def _baseline(instance) -> None:
    d = defs()
    assert d.resolve_job_def("ingest_job").execute_in_process(instance=instance).success
    for shard in instance.get_dynamic_partitions("image_shards"):
        assert d.resolve_job_def("embedding_job").execute_in_process(instance=instance, partition_key=shard).success
    job = d.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(k) for k in CHAIN]).success


def test_a_drop_is_embedded_retrained_and_submitted_by_the_daemon(tmp_path, env):
    timings, started = {}, time.monotonic()
    with dg.DagsterInstance.get() as instance:
        _baseline(instance)
        timings["baseline_in_process_s"] = time.monotonic() - started
        with _daemon(tmp_path, env) as (proc, log):
            adopt = lambda: _release_sensor_cursor(instance) is not None  # noqa: E731
            timings["daemon_start_to_adoption_s"] = _wait("the sensor to adopt the baseline", adopt, ADOPT_TIMEOUT_S, proc, log)
            t0 = time.time()
            drop = add_drop(Path(env["SNAKE_DATA_DIR"]), shard="shard-001", train_images=3, test_images=1)
            submission = Path(env["SNAKE_HOME"]) / "submissions" / "submission.csv"

            def backfills():
                return [b for b in instance.get_backfills() if b.tags.get("snake_assets/trigger") == "release_sensor"]

            def submitted():
                if _failed_runs(instance):
                    return True  # fail fast below, with the run ids
                return bool(_materializations(instance, "competition_submission", t0)) and set(drop.test_observations) <= set(
                    pd.read_csv(submission, dtype=str)["observation_id"]
                )

            timings["drop_to_backfill_s"] = _wait("the sensor's backfill", lambda: bool(backfills()), CHAIN_TIMEOUT_S, proc, log)
            timings["backfill_to_new_submission_s"] = _wait("a new submission", submitted, CHAIN_TIMEOUT_S, proc, log)
        timings["drop_to_new_submission_s"] = time.time() - t0
        timings["total_s"] = time.monotonic() - started
        print("\ndaemon test timings:", {k: round(v, 1) for k, v in timings.items()})
        print("runs after the drop (s after the drop):", *_timeline(instance, t0), sep="\n  ")

        assert not _failed_runs(instance), f"{_failed_runs(instance)}\n{log.read_text()[-4000:]}"
        (backfill,) = backfills()
        print("sensor requested:", sorted(k.to_user_string() for k in backfill.asset_selection), backfill.tags["snake_assets/shards"])
        assert backfill.tags["snake_assets/shards"] == "shard-001"
        assert sorted(r.partition_key for r in _materializations(instance, "image_embeddings", t0)) == ["shard-001"]
        assert len(_materializations(instance, "species_label_map", t0)) == 1
        (head,) = _materializations(instance, "species_head", t0)  # retrained once, after the new embeddings
        assert head.timestamp > _materializations(instance, "image_embeddings", t0)[0].timestamp
        assert len(_materializations(instance, "competition_submission", t0)) == 1
