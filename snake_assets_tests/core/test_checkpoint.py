"""Tests for the checkpoint bundle: exact round trip, and refusal of every bad or mismatched file."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from snake_assets.core import checkpoint as ck
from snake_assets.core.checkpoint import BundleError, HeadBundle, load_bundle, save_bundle
from snake_assets.core.version import code_version
from snake_assets.core.head import HeadConfig, LinearHead, predict_log_probs
from snake_assets.core.labels import LabelMap
from snake_assets.core.preprocess import PreprocessConfig

# Non-contiguous SnakeCLEF-style class ids: label i must come back as class_ids[i].
LABEL_MAP = LabelMap(
    class_ids=(3, 17, 250, 1783),
    binomial_names=("Naja naja", "Vipera berus", "Natrix natrix", "Crotalus atrox"),
    venomous=(True, True, False, True),
)


@pytest.fixture
def bundle() -> HeadBundle:
    torch.manual_seed(0)
    cfg = HeadConfig(in_dim=24, num_classes=LABEL_MAP.num_classes)
    return HeadBundle(
        state_dict=LinearHead(cfg).state_dict(),
        head_config=cfg,
        label_map=LABEL_MAP,
        backbone="facebook/dinov2-base",
        backbone_revision="f9e44c8",
        recipe="cls",
        preprocessing=PreprocessConfig().to_dict(),
        metrics={"val_accuracy": 0.875, "val_loss": 0.41, "epochs": 12, "n_train": 160},
        seed=7,
        code_version=code_version(),
    )


@pytest.fixture
def saved(bundle, tmp_path):
    return save_bundle(bundle, tmp_path / "heads" / "head.safetensors")


def resave(path, edit=None, *, rehash_document=False, rehash_weights=False, tensors_edit=None):
    """Rewrite a bundle file by hand, the way someone editing it outside save_bundle would."""
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    doc = json.loads(metadata[ck._DOC_KEY])
    if tensors_edit:
        tensors = tensors_edit(tensors)
    if rehash_weights:
        doc["weights_sha256"] = ck._weights_sha256(tensors)
    if edit:
        edit(doc)
    text = json.dumps(doc)
    metadata[ck._DOC_KEY] = text
    if rehash_document:
        metadata[ck._DOC_SHA_KEY] = hashlib.sha256(text.encode()).hexdigest()
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_round_trip_keeps_weights_and_all_metadata(bundle, saved):
    loaded = load_bundle(saved, expect_label_map=LABEL_MAP, expect_in_dim=24, expect_recipe="cls")
    assert loaded.state_dict.keys() == bundle.state_dict.keys()
    for name, value in bundle.state_dict.items():
        assert torch.equal(loaded.state_dict[name], value)
    for name in ("head_config", "label_map", "backbone", "backbone_revision", "recipe", "preprocessing",
                 "metrics", "seed", "code_version", "created_at"):
        assert getattr(loaded, name) == getattr(bundle, name), name
    assert PreprocessConfig.from_dict(loaded.preprocessing) == PreprocessConfig()


def test_non_contiguous_class_ids_decode_predictions_after_round_trip(bundle, saved):
    loaded = load_bundle(saved)
    features = np.random.default_rng(0).normal(size=(6, 24)).astype(np.float32)
    labels = predict_log_probs(loaded.build_head(), features).argmax(1)
    np.testing.assert_array_equal(labels, predict_log_probs(bundle.build_head(), features).argmax(1))
    assert set(loaded.label_map.to_class_ids(labels)) <= {3, 17, 250, 1783}
    assert loaded.label_map.to_class_ids(np.arange(4)).tolist() == [3, 17, 250, 1783]


def test_build_head_is_strict_and_in_eval_mode(saved):
    head = load_bundle(saved).build_head()
    assert isinstance(head, LinearHead) and not head.training


def test_save_is_one_file_written_atomically(saved):
    assert [p.name for p in saved.parent.iterdir()] == ["head.safetensors"]


def test_nan_and_numpy_metrics_are_stored(bundle, tmp_path):
    odd = dataclasses.replace(bundle, metrics={"val_loss": float("nan"), "n_val": np.int64(0)})
    loaded = load_bundle(save_bundle(odd, tmp_path / "b.safetensors"))
    assert math.isnan(loaded.metrics["val_loss"]) and loaded.metrics["n_val"] == 0


def test_save_refuses_weights_that_do_not_fit_the_label_map(bundle, tmp_path):
    small = LabelMap(class_ids=(3, 17), binomial_names=("a", "b"), venomous=(False, False))
    with pytest.raises(BundleError, match="4 outputs but the label map has 2"):
        save_bundle(dataclasses.replace(bundle, label_map=small), tmp_path / "b.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_unserialisable_metadata(bundle, tmp_path):
    with pytest.raises(BundleError, match="JSON"):
        save_bundle(dataclasses.replace(bundle, metrics={"x": object()}), tmp_path / "b.safetensors")


@pytest.mark.parametrize("content", [None, b"", b"not a safetensors file at all", b"\xff" * 64])
def test_refuses_missing_or_garbage_file(tmp_path, content):
    path = tmp_path / "b.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BundleError, match="cannot read"):
        load_bundle(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_refuses_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BundleError):
        load_bundle(saved)


def test_refuses_flipped_byte_in_weights(saved):
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0xFF  # tensor data sits after the header
    saved.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights checksum mismatch"):
        load_bundle(saved)


def test_refuses_flipped_byte_in_metadata(saved):
    data = bytearray(saved.read_bytes())
    pos = data.index(b"Vipera berus")
    data[pos] ^= 0x01  # still valid UTF-8 and JSON, just a different name
    saved.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="metadata checksum mismatch"):
        load_bundle(saved)


def test_refuses_plain_safetensors_without_bundle_metadata(bundle, tmp_path):
    path = tmp_path / "b.safetensors"
    save_file(dict(bundle.state_dict), str(path))
    with pytest.raises(BundleError, match="no snake_assets bundle metadata"):
        load_bundle(path)


def test_refuses_metadata_that_is_not_json(saved):
    with safe_open(str(saved), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(saved), metadata={**metadata, ck._DOC_KEY: "{not json"})
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(saved)


def test_refuses_unknown_format_version(saved):
    resave(saved, lambda doc: doc.update(format_version=2), rehash_document=True)
    with pytest.raises(BundleError, match="unknown bundle format version 2"):
        load_bundle(saved)


def test_refuses_label_map_edited_and_resaved_with_same_weights(saved):
    resave(saved, lambda doc: doc["label_map"]["class_ids"].__setitem__(1, 18))
    with pytest.raises(BundleError, match="metadata checksum mismatch"):
        load_bundle(saved)


def test_refuses_label_map_whose_size_disagrees_with_weights_even_if_rehashed(saved):
    def drop_last_class(doc):
        for key in ("class_ids", "binomial_names", "venomous"):
            doc["label_map"][key].pop()

    resave(saved, drop_last_class, rehash_document=True)
    with pytest.raises(BundleError, match="4 outputs but the label map has 3"):
        load_bundle(saved)


def test_refuses_weight_shapes_that_disagree_with_head_config(saved):
    def widen(tensors):
        return {**tensors, "linear.weight": torch.zeros(4, 25)}

    resave(saved, tensors_edit=widen, rehash_weights=True, rehash_document=True)
    with pytest.raises(BundleError, match=r"'linear.weight' is torch.float32\(4, 25\)"):
        load_bundle(saved)


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc.pop("backbone"),
        lambda doc: doc.update(seed="seven"),
        lambda doc: doc.update(head_config={"in_dim": 24}),
        lambda doc: doc["label_map"].pop("venomous"),
        lambda doc: doc.update(metrics=[1, 2]),
    ],
)
def test_refuses_malformed_metadata(saved, edit):
    resave(saved, edit, rehash_document=True)
    with pytest.raises(BundleError, match="malformed bundle metadata"):
        load_bundle(saved)


def test_refuses_other_label_map_naming_the_class_ids(saved):
    other = LabelMap(
        class_ids=(3, 17, 251, 1783),
        binomial_names=("Naja naja", "Vipera aspis", "Natrix tessellata", "Crotalus atrox"),
        venomous=(True, True, False, True),
    )
    expected = r"only in the bundle \(1\): \[250\].*only in the expected map \(1\): \[251\].*differ \(1\): \[17\]"
    with pytest.raises(BundleError, match=expected):
        load_bundle(saved, expect_label_map=other)


def test_refuses_other_feature_width(saved):
    with pytest.raises(BundleError, match="expects 24-wide features but the embeddings are 768-wide"):
        load_bundle(saved, expect_in_dim=768)


def test_refuses_other_recipe(saved):
    with pytest.raises(BundleError, match="trained on recipe 'cls', not 'patch_mean'"):
        load_bundle(saved, expect_recipe="patch_mean")
