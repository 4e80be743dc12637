"""Runs SIGKILLed at each stage, then re-run, end in the state of an uninterrupted run.

Every run is a fresh process (forked by ``harness serve``) executing ``snake-assets run``
or a job, killed with SIGKILL: by the test when a log line appears, or by itself at
the most dangerous instant (a DuckDB transaction about to commit, a complete temporary
file about to be renamed into place). The reference is the uninterrupted ``baseline``.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from snake_assets.core.checkpoint import load_bundle
from snake_assets_tests.reliability.conftest import (
    TABLES, cli_args, cli_env, read_shards, read_tables, snake_env,
)

KILLED = -9
BUNDLE = Path("models") / "species_head.safetensors"
SUBMISSION = Path("submissions") / "submission.csv"


def _debris(lake: Path) -> list[Path]:
    """Temporary files of shards, checkpoint and submission (a crash may leave one; a later write removes it)."""
    return sorted(lake.glob("embeddings/*/.shard-*.tmp")) + sorted(lake.glob("models/.*.tmp")) + sorted(lake.glob("submissions/.*.tmp"))


def _assert_same_state(lake: Path, reference: Path) -> None:
    got, want = read_tables(lake), read_tables(reference)
    assert set(got) == set(want) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
    shards, ref_shards = read_shards(lake), read_shards(reference)
    assert shards["image_key"].tolist() == ref_shards["image_key"].tolist()  # no duplicated or missing rows
    np.testing.assert_allclose(np.stack(shards["cls"]), np.stack(ref_shards["cls"]), atol=1e-6)
    bundle, ref_bundle = load_bundle(lake / BUNDLE), load_bundle(reference / BUNDLE)
    assert bundle.label_map == ref_bundle.label_map
    for name, tensor in ref_bundle.state_dict.items():
        assert torch.equal(bundle.state_dict[name], tensor), name
    assert (lake / SUBMISSION).read_bytes() == (reference / SUBMISSION).read_bytes()


def test_killed_in_ingest_embedding_and_shard_write_then_rerun_equals_uninterrupted(baseline, zygote, tmp_path):
    lake, env, log = tmp_path / "lake", cli_env(tmp_path), tmp_path / "runs.log"
    args = cli_args(baseline, lake)

    # 1. Ingest: the transaction replacing image_manifest + rejected_images is about to commit.
    assert zygote.run(["--kill-at", "commit:image_manifest", *args], env, log) == KILLED
    tables = read_tables(lake)
    assert "raw_train_metadata" in tables and not {"image_manifest", "rejected_images"} & set(tables)

    # 2. Embedding: killed from outside as the first embedding step starts (it holds the gpu pool slot).
    assert zygote.run(args, env, log, kill_on='Started execution of step "image_embeddings"') == KILLED

    # 3. Embedding: shard-001's temporary file is complete, the rename has not happened.
    assert zygote.run(["--kill-at", "replace:shard-001.parquet", *args], env, log) == KILLED
    assert [p.name.startswith(".shard-001.parquet.") for p in _debris(lake)] == [True]
    assert not list(lake.glob("embeddings/*/shard-001.parquet"))
    assert len(list(lake.glob("embeddings/*/shard-000.parquet"))) == 1

    # Re-run: the killed runs' pool slot is released, everything completes, debris is cleaned.
    assert zygote.run(args, env, log) == 0, log.read_text()[-5000:]
    assert "marked 1 run(s) of killed snake-assets processes as failed" in log.read_text()
    assert _debris(lake) == []
    _assert_same_state(lake, baseline.lake)


@pytest.mark.parametrize("asset, target", [("species_head", BUNDLE), ("competition_submission", SUBMISSION)])
def test_killed_after_temp_file_written_keeps_the_old_file_and_rerun_restores(asset, target, baseline, zygote, tmp_path):
    lake, log = tmp_path / "lake", tmp_path / "runs.log"
    shutil.copytree(baseline.lake, lake)
    env = snake_env(baseline, lake, tmp_path)
    old = (lake / target).read_bytes()

    assert zygote.run(["--kill-at", f"replace:{target.name}", "job", "training_job", asset], env, log) == KILLED
    assert (lake / target).read_bytes() == old  # never half-written: the previous file is intact
    (debris,) = _debris(lake)
    assert debris.name.startswith(f".{target.name}.") and debris.stat().st_size > 0

    assert zygote.run(["job", "training_job", asset], env, log) == 0, log.read_text()[-5000:]
    assert not debris.exists()
    _assert_same_state(lake, baseline.lake)
