"""Incremental shard embedding: nothing computed twice, duplicates embedded once, bad files reported."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from snake_assets.core import shard_embedding
from snake_assets.core.backbone import describe_backbone, load_backbone
from snake_assets.core.embedding_store import read_shards
from snake_assets.core.shard_embedding import EngineSettings, embed_shard, shard_cache

transformers = pytest.importorskip("transformers")

SETTINGS = EngineSettings(batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny")
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=14)
    transformers.Dinov2Model(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_backbone(str(model_dir))


def write_images(folder: Path, n: int, start: int = 0) -> pd.DataFrame:
    """``n`` small distinct JPEGs as readable manifest rows (``row_id`` from ``start``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n):
        path = folder / f"{i}.jpg"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=90)
        rows.append({"image_key": f"train/{i}.jpg", "row_id": i, "resolved_path": str(path),
                     "content_hash": hashlib.sha256(path.read_bytes()).hexdigest()})
    return pd.DataFrame(rows)


def run(rows, lake: Path, model_dir, load, settings=SETTINGS, shard="shard-000"):
    spec = describe_backbone(str(model_dir))
    cache = shard_cache(lake / "bb", spec, torch.device("cpu"), settings)
    return embed_shard(rows, out_path=lake / "bb" / f"{shard}.parquet", cache=cache, spec=spec, load=load, settings=settings)


def never():
    raise AssertionError("the backbone was loaded although every vector was cached")


def stored(path: Path, recipe: str = "cls") -> tuple[pd.DataFrame, np.ndarray]:
    return read_shards([path], recipe)


def test_unchanged_shard_runs_no_forward_pass(tmp_path, model_dir, loaded):
    rows = write_images(tmp_path / "img", 10)
    first = run(rows, tmp_path / "lake", model_dir, lambda: loaded)
    assert (first.attempted, first.computed, first.reused, first.stored) == (10, 10, 0, 10)
    keys, before = stored(first.path)
    again = run(rows.sample(frac=1, random_state=0), tmp_path / "lake", model_dir, never)  # any row order
    assert (again.attempted, again.computed, again.reused, again.stored) == (0, 0, 10, 10)
    keys2, after = stored(again.path)
    assert keys2["image_key"].tolist() == keys["image_key"].tolist() == rows["image_key"].tolist()
    np.testing.assert_array_equal(after, before)


def test_ten_percent_new_images_compute_only_those(tmp_path, model_dir, loaded):
    rows = write_images(tmp_path / "img", 18)
    first = run(rows, tmp_path / "lake", model_dir, lambda: loaded)
    _, before = stored(first.path, "cls_last4")
    grown = pd.concat([rows, write_images(tmp_path / "img", 2, start=18)], ignore_index=True)
    second = run(grown, tmp_path / "lake", model_dir, lambda: loaded)
    assert (second.computed, second.reused, second.stored) == (2, 18, 20)
    keys, after = stored(second.path, "cls_last4")
    assert keys["image_key"].tolist() == grown["image_key"].tolist()
    np.testing.assert_array_equal(after[:18], before)


def test_same_bytes_under_two_keys_are_embedded_once(tmp_path, model_dir, loaded):
    rows = write_images(tmp_path / "img", 5)
    copy = tmp_path / "img" / "copy.jpg"
    shutil.copy(rows.loc[2, "resolved_path"], copy)
    dup = rows.iloc[[2]].assign(image_key="val/copy.jpg", row_id=99, resolved_path=str(copy))
    report = run(pd.concat([rows, dup]), tmp_path / "lake", model_dir, lambda: loaded)
    assert (report.computed, report.deduplicated, report.stored) == (5, 1, 6)
    keys, mat = stored(report.path)
    pos = {k: i for i, k in enumerate(keys["image_key"])}
    np.testing.assert_array_equal(mat[pos["val/copy.jpg"]], mat[pos["train/2.jpg"]])
    # another shard holding the same bytes reuses the vector too
    other = run(dup.assign(image_key="test/again.jpg"), tmp_path / "lake", model_dir, never, shard="shard-001")
    assert (other.computed, other.reused) == (0, 1)


def test_unreadable_images_are_reported_skipped_and_not_retried(tmp_path, model_dir, loaded):
    rows = write_images(tmp_path / "img", 6)
    good = Path(rows.loc[0, "resolved_path"]).read_bytes()
    bad = {"truncated image": good[: len(good) // 2], "zero bytes": b"", "not an image": b"plain text, no pixels"}
    for i, (reason, data) in enumerate(bad.items(), start=1):
        Path(rows.loc[i, "resolved_path"]).write_bytes(data)
        rows.loc[i, "content_hash"] = hashlib.sha256(data).hexdigest()
    gone = rows.iloc[[0]].assign(image_key="train/gone.jpg", row_id=50, resolved_path=str(tmp_path / "gone.jpg"), content_hash="ab" * 32)
    rows = pd.concat([rows, gone], ignore_index=True)
    report = run(rows, tmp_path / "lake", model_dir, lambda: loaded)
    assert report.stored == 3 and report.stored + len(report.failures) == len(rows)
    assert {f["image_key"]: f["reason"] for f in report.failures} == {
        "train/1.jpg": "truncated image", "train/2.jpg": "zero bytes", "train/3.jpg": "not an image", "train/gone.jpg": "missing file",
    }
    keys, _ = stored(report.path)
    assert keys["image_key"].tolist() == ["train/0.jpg", "train/4.jpg", "train/5.jpg"]
    again = run(rows, tmp_path / "lake", model_dir, lambda: loaded)  # bytes-bound failures are cached, a missing file is retried
    assert (again.attempted, again.computed, len(again.failures)) == (1, 0, 4)


def test_shard_file_is_streamed_in_row_chunks(tmp_path, model_dir, loaded, monkeypatch):
    monkeypatch.setattr(shard_embedding, "CHUNK_ROWS", 3)
    rows = write_images(tmp_path / "img", 8)
    report = run(rows.iloc[::-1], tmp_path / "lake", model_dir, lambda: loaded)
    assert pq.ParquetFile(report.path).num_row_groups == 3
    table = pq.read_table(report.path)
    assert table.column("row_id").to_pylist() == list(range(8))
    assert table.schema.field("cls_last4").type.list_size == 64


def test_rows_must_carry_keys_paths_and_hashes(tmp_path, model_dir, loaded):
    rows = write_images(tmp_path / "img", 2)
    with pytest.raises(ValueError, match="resolved_path"):
        run(rows.drop(columns="resolved_path"), tmp_path / "lake", model_dir, never)
    with pytest.raises(ValueError, match="train/1.jpg"):
        run(rows.assign(content_hash=["ab", ""]), tmp_path / "lake", model_dir, never)


def test_a_file_changed_since_the_manifest_is_refused_not_cached(tmp_path, model_dir, loaded):
    """Vectors are keyed by content hash, so they must come from exactly the hashed bytes."""
    rows = write_images(tmp_path / "img", 3)
    path = Path(rows.loc[1, "resolved_path"])
    original = path.read_bytes()
    path.write_bytes(Path(rows.loc[0, "resolved_path"]).read_bytes())  # valid JPEG, other bytes
    report = run(rows, tmp_path / "lake", model_dir, lambda: loaded)
    assert report.failures == [{"image_key": "train/1.jpg", "content_hash": rows.loc[1, "content_hash"], "reason": "changed since manifest"}]
    path.write_bytes(original)
    again = run(rows, tmp_path / "lake", model_dir, lambda: loaded)
    assert (again.attempted, again.computed, again.stored, again.failures) == (1, 1, 3, [])
