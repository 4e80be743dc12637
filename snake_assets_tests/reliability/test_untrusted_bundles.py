"""Checkpoint bundles that were corrupted, hand-edited or do not fit are refused by the graph, never half-loaded.

Each case tampers with the bundle (or with what it must agree with) in a copy of a
finished lake, then re-materializes evaluation and submission: the run must fail with
a clear error and leave the stored predictions, scores and submission untouched.
"""

import pickle
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import torch

from snake_assets.core.checkpoint import HeadBundle, load_bundle, save_bundle
from snake_assets.core.head import HeadConfig, LinearHead
from snake_assets.definitions import defs
from snake_assets_tests.reliability.conftest import failure_messages, read_tables

DOWNSTREAM = [dg.AssetKey(k) for k in ("validation_predictions", "validation_scores", "competition_submission")]
BUNDLE = Path("models") / "species_head.safetensors"


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _flip_last_byte(lake: Path) -> None:
    data = bytearray((lake / BUNDLE).read_bytes())
    data[-1] ^= 0xFF
    (lake / BUNDLE).write_bytes(bytes(data))


def _truncate(lake: Path) -> None:
    data = (lake / BUNDLE).read_bytes()
    (lake / BUNDLE).write_bytes(data[: len(data) // 2])


def _pickle(lake: Path) -> None:
    (lake / BUNDLE).write_bytes(pickle.dumps({"state_dict": _Payload(lake / "PWNED")}))


def _torch_save(lake: Path) -> None:
    torch.save({"state_dict": _Payload(lake / "PWNED")}, lake / BUNDLE)


def _edit_label_map_table(lake: Path) -> None:
    with duckdb.connect(str(lake / "warehouse.duckdb")) as conn:
        conn.execute("UPDATE species_label_map SET binomial_name = ? WHERE label = 0", ["Hand edited"])


def _other_feature_width(lake: Path) -> None:
    # A well-formed bundle (valid checksums) for the same backbone, but 1 feature wider.
    old = load_bundle(lake / BUNDLE)
    cfg = HeadConfig(in_dim=old.head_config.in_dim + 1, num_classes=old.head_config.num_classes)
    fields = {k: getattr(old, k) for k in ("label_map", "backbone", "backbone_revision", "recipe", "preprocessing", "metrics", "seed", "code_version")}
    save_bundle(HeadBundle(state_dict=LinearHead(cfg).state_dict(), head_config=cfg, **fields), lake / BUNDLE)


BUNDLE_ERROR = r"BundleError: .*species_head\.safetensors"
CASES = {
    "flipped byte": (_flip_last_byte, BUNDLE_ERROR + ".*checksum mismatch"),
    "truncated file": (_truncate, BUNDLE_ERROR + ".*cannot read checkpoint bundle|cannot read checkpoint bundle .*species_head"),
    "pickle in its place": (_pickle, "cannot read checkpoint bundle .*species_head"),
    "torch.save in its place": (_torch_save, "cannot read checkpoint bundle .*species_head"),
    "label map changed since training": (_edit_label_map_table, BUNDLE_ERROR + r".*label map differs.*\(1\): \[\d+\]"),
    "feature width differs": (_other_feature_width, "feature width 128 does not match the head's in_dim 129"),
}


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_untrusted_bundle_is_refused_and_nothing_downstream_changes(case, baseline, instance, tmp_path, monkeypatch):
    tamper, match = CASES[case]
    lake = tmp_path / "lake"
    shutil.copytree(baseline.lake, lake)
    tamper(lake)
    submission = (lake / "submissions" / "submission.csv").read_bytes()
    before = read_tables(lake, ["validation_predictions", "validation_scores"])
    for k, v in {"SNAKE_DATA_DIR": str(baseline.release), "SNAKE_HOME": str(lake), "SNAKE_BACKBONE": str(baseline.backbone),
                 "SNAKE_DEVICE": "cpu", "SNAKE_BATCH_SIZE": "16"}.items():
        monkeypatch.setenv(k, v)
    result = defs().resolve_job_def("training_job").execute_in_process(
        instance=instance, raise_on_error=False, asset_selection=DOWNSTREAM
    )
    assert not result.success
    errors = failure_messages(result)
    assert re.search(match, errors), errors[-3000:]
    assert not (lake / "PWNED").exists()
    assert (lake / "submissions" / "submission.csv").read_bytes() == submission
    after = read_tables(lake, ["validation_predictions", "validation_scores"])
    for name in before:
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)
