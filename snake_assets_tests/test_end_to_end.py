"""`snake-assets run` end to end on a release whose class ids are large, sparse and unordered."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from snake_assets.core.demo import write_demo_release
from snake_assets_tests.conftest import SPARSE_CLASS_IDS

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "snake_assets.cli"]


@pytest.mark.slow
def test_run_produces_a_scored_submission_in_the_original_id_space(tmp_path, tiny_backbone):
    release = tmp_path / "release"
    summary = write_demo_release(release, seed=3, class_ids=SPARSE_CLASS_IDS)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(dagster_home), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [*CLI, "run", "--data-dir", str(release), "--home", str(tmp_path / "lake"),
         "--backbone", str(tiny_backbone), "--device", "cpu", "--num-shards", "3"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    species = pd.read_csv(release / "SnakeCLEF2023-TrainMetadata-iNat.csv")["class_id"].nunique()
    assert result["validation"]["accuracy"] > 3 * 100 / species
    assert result["validation"]["f1"] > 0 and result["validation"]["track1"] > 40
    plain = {"mode_first+argmax", "mode_first+min_expected_cost", "mean_prob+argmax", "mean_prob+min_expected_cost"}
    assert set(result["rules"]) == plain | {f"{r}+country" for r in plain}

    sub = pd.read_csv(result["submission"], dtype={"observation_id": str})
    train_ids = set(pd.read_csv(release / "SnakeCLEF2023-TrainMetadata-iNat.csv")["class_id"])
    assert set(sub["class_id"]) <= train_ids
    assert set(SPARSE_CLASS_IDS.values()) <= train_ids
    assert len(set(sub["class_id"])) > 1
    assert summary  # the generator reported what it wrote

    # The submission is also valid for the standalone official scorer.
    scored = subprocess.run(
        [*CLI, "score", "--ground-truth", str(release / "test_ground_truth.csv"), "--submission", result["submission"],
         "--venomous", str(release / "venomous_status_list.csv")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert scored.returncode == 0, scored.stderr
    scores = json.loads(scored.stdout)
    assert scores["accuracy"] > 3 * 100 / species


def test_score_rejects_an_invalid_submission_with_exit_code_2(tmp_path, demo_release):
    bad = tmp_path / "bad.csv"
    bad.write_text("observation_id,class_id\nnot-an-observation,5\n")
    proc = subprocess.run(
        [*CLI, "score", "--ground-truth", str(demo_release / "test_ground_truth.csv"), "--submission", str(bad),
         "--venomous", str(demo_release / "venomous_status_list.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "records" in proc.stderr and "missing observations" in proc.stderr


def test_run_fails_loudly_on_a_broken_release(tmp_path, demo_release, tiny_backbone):
    release = tmp_path / "release"
    shutil.copytree(demo_release, release)
    val = release / "SnakeCLEF2023-ValMetadata.csv"
    val.write_text(val.read_text().replace("class_id", "klass_id", 1))
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [*CLI, "run", "--data-dir", str(release), "--home", str(tmp_path / "lake"), "--backbone", str(tiny_backbone), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 1
    assert "SnakeCLEF2023-ValMetadata.csv" in proc.stderr and "class_id" in proc.stderr
