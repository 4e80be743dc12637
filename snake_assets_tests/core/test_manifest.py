"""The image manifest: every listed image accounted for, nothing outside the data root."""

import os

import pandas as pd
import pytest
from PIL import Image

from snake_assets.core.manifest import UnsafePathError, build_image_manifest, reconcile, resolve_image_path, shard_of


def _table(paths, split="train"):
    return pd.DataFrame({
        "observation_id": [f"o{i // 2}" for i in range(len(paths))],
        "image_path": paths,
        "class_id": [17] * len(paths),
        "source_file": f"{split}.csv",
        "source_line": range(2, len(paths) + 2),
    })


@pytest.fixture
def release(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (20, 10), "red").save(tmp_path / "a" / "ok.jpg")
    Image.new("RGBA", (20, 10)).save(tmp_path / "a" / "alpha.PNG")
    (tmp_path / "a" / "empty.jpeg").write_bytes(b"")
    (tmp_path / "a" / "text.JPG").write_text("not an image")
    (tmp_path / "test").mkdir()
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "test" / "t1.jpg")
    return tmp_path


def test_every_listed_image_has_a_row_and_counts_reconcile(release):
    paths = ["a/ok.jpg", "a/alpha.PNG", "a/empty.jpeg", "a/text.JPG", "a/missing.jpg"]
    m = build_image_manifest(release, {"train": _table(paths), "test": _table(["t1.jpg"], "test")}, num_shards=3)
    assert len(m) == 6
    by_path = m.set_index("image_path")
    assert by_path.loc["a/ok.jpg", "readable"] and by_path.loc["a/alpha.PNG", "readable"]
    assert by_path.loc["a/empty.jpeg", "reason"] == "zero bytes"
    assert by_path.loc["a/text.JPG", "reason"].startswith("not an image")
    assert by_path.loc["a/missing.jpg", "reason"] == "missing file"
    assert by_path.loc["test/t1.jpg", "split"] == "test"
    assert by_path.loc["test/t1.jpg", "class_id"] == -1
    assert by_path.loc["a/ok.jpg", "bytes"] == (release / "a" / "ok.jpg").stat().st_size
    assert len(by_path.loc["a/ok.jpg", "content_hash"]) == 64
    c = reconcile(m)
    assert c["metadata_rows"] == c["files_found"] + c["missing_files"] == 6
    assert c["files_found"] == c["readable"] + c["unreadable"]
    assert (c["readable"], c["unreadable"], c["missing_files"]) == (3, 2, 1)
    assert m["row_id"].tolist() == list(range(6))


@pytest.mark.parametrize("bad", ["../outside.jpg", "a/../../outside.jpg", "/etc/passwd"])
def test_paths_escaping_the_root_are_refused(release, bad):
    with pytest.raises(UnsafePathError, match="line 2, column 'image_path'"):
        build_image_manifest(release, {"train": _table([bad])}, num_shards=2)


def test_symlink_leading_outside_is_refused(release, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "x.jpg"
    Image.new("RGB", (4, 4)).save(outside)
    os.symlink(outside, release / "a" / "link.jpg")
    with pytest.raises(UnsafePathError, match="outside the data root"):
        resolve_image_path(release, "a/link.jpg", file="f.csv", line=2)


def test_shards_are_stable_and_spread():
    keys = [f"train/{i}.jpg" for i in range(400)]
    shards = [shard_of(k, 4) for k in keys]
    assert shards == [shard_of(k, 4) for k in keys]
    assert set(shards) == {"shard-000", "shard-001", "shard-002", "shard-003"}
    assert min(pd.Series(shards).value_counts()) > 60
