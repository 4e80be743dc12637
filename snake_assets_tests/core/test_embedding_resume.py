"""A shard run killed with SIGKILL mid-shard resumes where it stopped and ends as if never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from snake_assets.core.embedding import RECIPES
from snake_assets.core.embedding_store import read_shards
from snake_assets_tests.core.embed_shard_child import SETTINGS
from snake_assets_tests.core.test_shard_embedding import model_dir, write_images  # noqa: F401  (fixture)

N_IMAGES = 40
CHILD = [sys.executable, "-m", "snake_assets_tests.core.embed_shard_child"]


def _cached_rows(lake: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in (lake / "bb" / "cache").glob("*/*.parquet"))


@pytest.fixture(scope="module")
def rows_json(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    path = folder / "rows.json"
    write_images(folder / "img", N_IMAGES).to_json(path, orient="records")
    return path


def _complete(rows_json: Path, lake: Path, model: Path) -> dict:
    out = subprocess.run([*CHILD, str(rows_json), str(lake), str(model)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sigkill_mid_shard_then_rerun_equals_an_uninterrupted_run(rows_json, model_dir, tmp_path):  # noqa: F811
    batch = SETTINGS.batch_size
    reference = _complete(rows_json, tmp_path / "reference", model_dir)
    assert reference == {"computed": N_IMAGES, "reused": 0, "stored": N_IMAGES}

    lake = tmp_path / "killed"
    proc = subprocess.Popen([*CHILD, str(rows_json), str(lake), str(model_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("done") and int(line.split()[1]) >= 3 * batch:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group: it and its decode worker
    finally:
        proc.wait(timeout=60)
    reported = int(line.split()[1])
    assert proc.returncode == -signal.SIGKILL
    cached = _cached_rows(lake)
    assert cached in (reported, reported + batch) and cached < N_IMAGES  # whole batches only, none lost but the one in flight
    assert not (lake / "bb" / "shard-000.parquet").exists()

    resumed = _complete(rows_json, lake, model_dir)
    assert resumed == {"computed": N_IMAGES - cached, "reused": cached, "stored": N_IMAGES}
    for recipe in RECIPES:
        keys, vectors = read_shards([lake / "bb" / "shard-000.parquet"], recipe)
        ref_keys, ref_vectors = read_shards([tmp_path / "reference" / "bb" / "shard-000.parquet"], recipe)
        assert keys["image_key"].is_unique and len(keys) == N_IMAGES
        assert keys.equals(ref_keys)
        np.testing.assert_array_equal(vectors, ref_vectors)
