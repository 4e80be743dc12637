"""Fixtures of the reliability suite: the messy release and one uninterrupted run of it.

The uninterrupted run goes through the same runner as ``snake-assets run`` (in this
process, on a temporary Dagster instance); it is both the subject of the bad-input
tests and the reference the killed-and-rerun lakes are compared with.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from snake_assets.runner import RunSettings, run_pipeline
from snake_assets_tests.reliability.messy import write_messy_release

REPO = Path(__file__).resolve().parents[2]
NUM_SHARDS = 2
TABLES = (
    "raw_train_metadata", "raw_val_metadata", "raw_test_metadata", "venomous_species", "image_manifest",
    "rejected_images", "species_label_map", "validation_predictions", "validation_scores",
)


@dataclass(frozen=True)
class Baseline:
    release: Path
    backbone: Path
    lake: Path
    summary: dict
    instance: dg.DagsterInstance


def read_tables(lake: Path, names=TABLES) -> dict[str, pd.DataFrame]:
    """Whole tables of a lake's warehouse, opened read-only."""
    with duckdb.connect(str(lake / "warehouse.duckdb"), read_only=True) as conn:
        present = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {n: conn.execute(f"SELECT * FROM {n}").df() for n in names if n in present}


def read_shards(lake: Path) -> pd.DataFrame:
    """Every embedded row of every shard file: image key, row id, cls vector."""
    files = sorted((lake / "embeddings").glob("*/shard-*.parquet"))
    frames = [pq.read_table(f, columns=["image_key", "row_id", "cls"]).to_pandas() for f in files]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image_key", "row_id", "cls"])
    return df.sort_values("row_id").reset_index(drop=True)


def cls_vector(shards: pd.DataFrame, image_key: str) -> np.ndarray:
    return np.asarray(shards.loc[shards["image_key"] == image_key, "cls"].iloc[0], dtype=np.float32)


def settings_for(release: Path, backbone: Path, lake: Path) -> RunSettings:
    return RunSettings(data_dir=str(release), home=str(lake), backbone=str(backbone), device="cpu", batch_size=16, num_shards=NUM_SHARDS)


def cli_env(tmp: Path) -> dict[str, str]:
    """Environment of a ``snake-assets`` subprocess: its own DAGSTER_HOME, nothing inherited that matters."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, "DAGSTER_HOME": str(home), "HOME": str(tmp), "PYTHONPATH": str(REPO), "DAGSTER_DISABLE_TELEMETRY": "1"}


@pytest.fixture(scope="session")
def messy_release(tmp_path_factory) -> Path:
    return write_messy_release(tmp_path_factory.mktemp("messy") / "release")


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, messy_release, tiny_backbone) -> Baseline:
    """The whole graph, uninterrupted, on the messy release."""
    lake = tmp_path_factory.mktemp("baseline") / "lake"
    mp = pytest.MonkeyPatch()
    for k in ("SNAKE_DATA_DIR", "SNAKE_HOME", "SNAKE_BACKBONE", "SNAKE_DEVICE", "SNAKE_BATCH_SIZE"):
        mp.setenv(k, "")  # RunSettings.export overwrites them; restored after the session
    with dg.instance_for_test() as instance:
        summary = run_pipeline(settings_for(messy_release, tiny_backbone, lake), instance=instance)
        yield Baseline(messy_release, tiny_backbone, lake, summary, instance)
    mp.undo()


class Zygote:
    """Client of ``harness serve``: forks a fresh process per command, kills it where asked."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def _ask(self, request: dict, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer to {request} within {timeout}s")
        return json.loads(self.proc.stdout.readline())

    def spawn(self, args: list[str], env: dict, log: Path) -> int:
        return self._ask({"spawn": args, "env": env, "log": str(log)}, 60)["pid"]

    def wait(self, pid: int, timeout: float = 300) -> int:
        try:
            return self._ask({"wait": pid}, timeout)["status"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)  # a hung child: end it, then report the hang
            self.proc.stdout.readline()
            raise

    def run(self, args: list[str], env: dict, log: Path, *, kill_on: str | None = None, timeout: float = 300) -> int:
        """Run ``harness ARGS`` in a fresh child; SIGKILL it when ``kill_on`` appears in its log."""
        start = log.stat().st_size if log.exists() else 0
        pid = self.spawn(args, env, log)
        if kill_on:
            deadline = time.monotonic() + timeout
            while kill_on not in log.read_text(errors="replace")[start:]:
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    raise TimeoutError(f"{kill_on!r} never appeared in {log}")
                time.sleep(0.02)
            os.kill(pid, signal.SIGKILL)
        return self.wait(pid, timeout)


@pytest.fixture(scope="session")
def zygote():
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_DISABLE_TELEMETRY": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "snake_assets_tests.reliability.harness", "serve"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )
    yield Zygote(proc)
    proc.stdin.close()
    proc.wait(timeout=60)


def snake_env(baseline: Baseline, lake: Path, tmp: Path) -> dict[str, str]:
    """Environment of a child running a job directly (what ``snake-assets run`` would export)."""
    return {**cli_env(tmp), "SNAKE_DATA_DIR": str(baseline.release), "SNAKE_HOME": str(lake),
            "SNAKE_BACKBONE": str(baseline.backbone), "SNAKE_DEVICE": "cpu", "SNAKE_BATCH_SIZE": "16"}


def cli_args(baseline: Baseline, lake: Path) -> list[str]:
    return ["cli", "run", "--data-dir", str(baseline.release), "--home", str(lake), "--backbone", str(baseline.backbone),
            "--device", "cpu", "--batch-size", "16", "--num-shards", str(NUM_SHARDS)]


def failure_messages(result) -> str:
    """Every step failure message of a run, with chained causes (what a user reads in the UI)."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            while err is not None:
                messages.append(err.message)
                err = err.cause
    return "\n".join(messages)
