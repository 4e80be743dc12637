"""Tests for backbone loading and batched feature extraction with a tiny random DINOv2."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from snake_assets.core.embedding import (
    RECIPES,
    Backbone,
    EmbeddingResult,
    embed_paths,
    features_from_hidden,
    load_backbone,
    recipe_width,
    resolve_device,
)
from snake_assets.core.preprocess import load_rgb, preprocess_image

transformers = pytest.importorskip("transformers")

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=224, patch_size=14
)
N_PATCHES = (224 // 14) ** 2
BATCH_ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_dinov2")
    transformers.Dinov2Model(transformers.Dinov2Config(**TINY)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def backbone(tiny_dir) -> Backbone:
    return load_backbone(str(tiny_dir), device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list:
    """Five small JPEGs with the third one replaced by a text file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(40, 30), (30, 50), (64, 64), (50, 20), (33, 47)]):
        p = root / f"img{i}.jpg"
        if i == 2:
            p.write_text("not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def _pixels(paths) -> torch.Tensor:
    return torch.stack([preprocess_image(load_rgb(p)) for p in paths])


def test_load_by_path(backbone, tiny_dir):
    assert backbone.name == str(tiny_dir)
    assert (backbone.hidden_size, backbone.num_register_tokens, backbone.device) == (32, 0, torch.device("cpu"))
    assert len(backbone.revision) == 16 and int(backbone.revision, 16) >= 0
    assert load_backbone(str(tiny_dir)).revision == backbone.revision  # content hash is stable
    assert not backbone.model.training
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_recipe_widths(backbone, images):
    assert [recipe_width(r, 768) for r in RECIPES] == [768, 768, 64]
    with pytest.raises(ValueError, match="recipe"):
        recipe_width("gem", 768)
    result = embed_paths(images[:2], backbone)
    for r in RECIPES:
        assert result.vectors[r].shape == (2, recipe_width(r, backbone.hidden_size))
        assert result.vectors[r].dtype == np.float32


def test_features_match_model_output(backbone, images):
    ok = [images[0], images[1], images[3]]
    result = embed_paths(ok, backbone, batch_size=8)
    with torch.inference_mode():
        hidden = backbone.model(pixel_values=_pixels(ok)).last_hidden_state
    assert hidden.shape == (3, 1 + N_PATCHES, 32)
    np.testing.assert_allclose(result.vectors["cls"], hidden[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.vectors["patch_mean"], hidden[:, 1:].mean(1).numpy(), atol=1e-6)
    for b in range(3):
        ref = scipy.fft.dctn(hidden[b, 1:].double().numpy(), type=2, norm="ortho")[:8, :8].ravel()
        np.testing.assert_allclose(result.vectors["dct8x8"][b], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_unreadable_file_is_reported_and_batches_are_independent(backbone, images):
    calls = []
    result = embed_paths(images, backbone, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert isinstance(result, EmbeddingResult)
    assert result.failures == [(2, "not an image")]
    assert result.ok_index.tolist() == [0, 1, 3, 4]
    assert calls == [(2, 5), (4, 5), (5, 5)]
    for row, idx in enumerate(result.ok_index):
        alone = embed_paths([images[idx]], backbone, batch_size=1)
        for r in RECIPES:
            np.testing.assert_allclose(result.vectors[r][row], alone.vectors[r][0], atol=BATCH_ATOL)


def test_workers_give_identical_vectors(backbone, images):
    serial = embed_paths(images, backbone, batch_size=2, num_workers=0)
    parallel = embed_paths(images, backbone, batch_size=2, num_workers=2)
    assert parallel.failures == serial.failures
    np.testing.assert_array_equal(parallel.ok_index, serial.ok_index)
    for r in RECIPES:
        np.testing.assert_array_equal(parallel.vectors[r], serial.vectors[r])


def test_empty_and_all_failed_inputs(backbone, images, tmp_path):
    empty = embed_paths([], backbone)
    assert empty.ok_index.shape == (0,) and empty.vectors["dct8x8"].shape == (0, 64)
    missing = embed_paths([tmp_path / "gone.jpg", images[2]], backbone, recipes=("cls",))
    assert missing.failures == [(0, "missing file"), (1, "not an image")]
    assert list(missing.vectors) == ["cls"] and missing.vectors["cls"].shape == (0, 32)


def test_features_from_hidden_skips_register_tokens():
    hidden = torch.arange(2 * 7 * 8, dtype=torch.float64).reshape(2, 7, 8)  # CLS + 2 registers + 4 patches
    feats = features_from_hidden(hidden, ("cls", "patch_mean"), num_register_tokens=2)
    assert set(feats) == {"cls", "patch_mean"} and feats["cls"].dtype == np.float32
    np.testing.assert_array_equal(feats["cls"], hidden[:, 0].numpy())
    np.testing.assert_allclose(feats["patch_mean"], hidden[:, 3:].mean(1).numpy())
    with pytest.raises(ValueError):
        features_from_hidden(hidden, ("cls", "vlad"))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            load_backbone("facebook/dinov2-base", device="cuda")


def test_missing_backbone_errors_name_the_source(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_backbone(str(missing))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_backbone(str(tmp_path / "empty_dir"))
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-dinov2"):
        load_backbone("no-such-org/no-such-dinov2", local_files_only=True)


def test_falls_back_when_sdpa_is_unsupported(tiny_dir, monkeypatch):
    original = transformers.AutoModel.from_pretrained
    seen = []

    def fake(source, **kwargs):
        seen.append(kwargs.get("attn_implementation"))
        if kwargs.get("attn_implementation") == "sdpa":
            raise ValueError("Dinov2Model does not support an attention implementation through sdpa yet")
        return original(source, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", fake)
    assert load_backbone(str(tiny_dir)).hidden_size == 32
    assert seen == ["sdpa", None]


def test_register_variant_excludes_registers(tmp_path, images):
    if not hasattr(transformers, "Dinov2WithRegistersConfig"):
        pytest.skip("this transformers has no Dinov2WithRegisters")
    cfg = transformers.Dinov2WithRegistersConfig(**TINY, num_register_tokens=4)
    torch.manual_seed(1)
    transformers.Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    assert backbone.num_register_tokens == 4
    ok = [images[0], images[1]]
    result = embed_paths(ok, backbone)
    with torch.inference_mode():
        hidden = backbone.model(pixel_values=_pixels(ok)).last_hidden_state
    assert hidden.shape[1] == 1 + 4 + N_PATCHES
    np.testing.assert_allclose(result.vectors["cls"], hidden[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.vectors["patch_mean"], hidden[:, 5:].mean(1).numpy(), atol=1e-6)
    ref = scipy.fft.dctn(hidden[0, 5:].double().numpy(), type=2, norm="ortho")[:8, :8].ravel()
    np.testing.assert_allclose(result.vectors["dct8x8"][0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_cached_hub_id_reports_the_snapshot_commit(tmp_path, monkeypatch):
    """A hub id served from the local cache (no network) carries its commit hash as revision."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--tiny-org--tiny-dinov2"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    transformers.Dinov2Model(transformers.Dinov2Config(**TINY)).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    backbone = load_backbone("tiny-org/tiny-dinov2", local_files_only=True)
    assert (backbone.name, backbone.revision) == ("tiny-org/tiny-dinov2", commit)
