"""Bad and unusual images of a messy release, through the whole graph: each is embedded or quarantined, and counted."""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from snake_assets.core.manifest import NO_LABEL
from snake_assets_tests.reliability.conftest import REPO, cls_vector, read_shards, read_tables
from snake_assets_tests.reliability.messy import TRAIN_IMAGES, UNSEEN_CLASS_ID, metadata_rows


def _metadata(baseline, asset: str) -> dict:
    event = baseline.instance.get_latest_materialization_event(dg.AssetKey(asset))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_metadata_rows_equal_embedded_plus_rejected(baseline):
    tables, shards = read_tables(baseline.lake), read_shards(baseline.lake)
    manifest, rejected = tables["image_manifest"], tables["rejected_images"]
    listed = metadata_rows(baseline.release)
    assert listed == len(manifest) == len(shards) + len(rejected)
    assert set(shards["image_key"]).isdisjoint(rejected["image_key"])
    assert set(shards["image_key"]) | set(rejected["image_key"]) == set(manifest["image_key"])
    meta = _metadata(baseline, "image_manifest")
    assert meta["metadata_rows"] == listed and meta["rejected"] == len(rejected) and meta["readable"] == len(shards)
    assert meta["rejected_by_reason"] == rejected["reason"].value_counts().to_dict()


@pytest.mark.parametrize("image_path, reason", TRAIN_IMAGES.items(), ids=list(TRAIN_IMAGES))
def test_each_image_is_embedded_or_rejected_with_its_reason_and_row(baseline, image_path, reason):
    tables, shards = read_tables(baseline.lake), read_shards(baseline.lake)
    key = f"train/{image_path}"
    rejected = tables["rejected_images"].set_index("image_key")
    if not reason:
        assert key in set(shards["image_key"]) and key not in rejected.index
        return
    assert key not in set(shards["image_key"])
    row = rejected.loc[key]
    assert row["reason"] == reason
    # The row names the metadata line that listed the file.
    lines = (baseline.release / row["source_file"]).read_text().splitlines()
    assert image_path in lines[row["source_line"] - 1]


def test_exif_orientation_is_applied_before_embedding(baseline):
    shards = read_shards(baseline.lake)
    rotated, upright, sideways = (cls_vector(shards, f"train/odd/{n}") for n in ("rotated.jpg", "upright.png", "sideways.png"))
    np.testing.assert_allclose(rotated, upright, atol=1e-5)
    assert not np.allclose(rotated, sideways, atol=1e-3)


def test_decompression_bomb_is_refused_before_its_pixels_are_allocated(messy_release):
    # A fresh process measures its peak memory (VmHWM, reset before each measurement) while the
    # manifest inspects the bomb, then while plain PIL decodes it (PIL only warns at this size).
    script = f"""
import json, re, warnings
import pandas as pd
from PIL import Image
from snake_assets.core.manifest import build_image_manifest
root = {str(messy_release)!r}
table = pd.DataFrame({{"observation_id": ["b"], "image_path": ["bad/bomb.png"], "class_id": [1], "source_file": ["f.csv"], "source_line": [2]}})
def growth(fn):
    open("/proc/self/clear_refs", "w").write("5")
    hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    before = hwm()
    out = fn()
    return out, hwm() - before
manifest, ours = growth(lambda: build_image_manifest(root, {{"train": table}}, num_shards=1, max_workers=1))
warnings.simplefilter("ignore")
_, pil = growth(lambda: Image.open(root + "/bad/bomb.png").load())
print(json.dumps({{"reason": manifest["reason"][0], "ours_kb": ours, "pil_kb": pil}}))
"""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak memory")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["reason"] == "image too large"
    assert out["pil_kb"] > 90_000  # the control: decoding allocates ~100 MB
    assert out["ours_kb"] < 20_000


def test_unseen_validation_classes_and_unknown_species_are_counted_and_scored(baseline):
    meta = _metadata(baseline, "image_manifest")
    assert meta["val_classes_unseen_in_train"] == [UNSEEN_CLASS_ID]
    assert (meta["val_images_of_unseen_classes"], meta["val_observations_of_unseen_classes"]) == (2, 1)
    assert meta["val_unknown_species_images"] == 1
    preds = read_tables(baseline.lake)["validation_predictions"]
    per_obs = preds.drop_duplicates("observation_id").set_index("observation_id")
    assert {"unseen-1", "unknown-1", "many-34"} <= set(per_obs.index)
    assert per_obs.loc["many-34", "n_images"] == 34
    label_map = read_tables(baseline.lake)["species_label_map"]
    assert UNSEEN_CLASS_ID not in set(label_map["class_id"])
    assert baseline.summary["validation"]["f1"] > 0


def test_class_id_minus_one_in_train_is_quarantined_counted_and_not_a_label(baseline):
    tables = read_tables(baseline.lake)
    assert _metadata(baseline, "raw_train_metadata")["rows_without_species"] == 1
    assert (tables["rejected_images"]["reason"] == NO_LABEL).sum() == 1
    assert -1 not in set(tables["species_label_map"]["class_id"])
    assert tables["species_label_map"]["label"].tolist() == list(range(len(tables["species_label_map"])))


def test_ids_that_differ_only_in_type_stay_distinct_observations(baseline):
    manifest = read_tables(baseline.lake)["image_manifest"]
    classes = manifest[manifest["split"] == "train"].groupby("observation_id")["class_id"].unique()
    assert {"1954", "HM 1954", "01954"} <= set(classes.index)
    assert classes["01954"].tolist() != classes["1954"].tolist()
    assert manifest["observation_id"].map(type).eq(str).all()


def test_observation_whose_images_are_all_rejected_still_gets_a_submission_row(baseline):
    sub = pd.read_csv(baseline.summary["submission"], dtype={"observation_id": str})
    test_obs = pd.read_csv(baseline.release / "SnakeCLEF2024-TestMetadata.csv", dtype=str)["observation_id"]
    assert sorted(sub["observation_id"]) == sorted(test_obs.unique())
    assert "lost-1" in set(sub["observation_id"])
