"""Backbone loading, the four feature recipes and batched extraction, on tiny random DINOv2s."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from snake_assets.core.backbone import describe_backbone, precision_tag
from snake_assets.core.embedding import (  # noqa: I001
    _lagged,
    RECIPES,
    Backbone,
    EmbeddingResult,
    embed_paths,
    feature_widths,
    features_from_hidden,
    iter_embeddings,
    load_backbone,
    recipe_width,
    resolve_device,
)
from snake_assets.core.preprocess import load_rgb, preprocess_image

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=224, patch_size=14)
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
def deep(tmp_path_factory) -> Backbone:
    """Six blocks, so ``cls_last4`` takes four of them (not all)."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("deep_dinov2")
    transformers.Dinov2Model(transformers.Dinov2Config(**{**TINY, "num_hidden_layers": 6})).save_pretrained(path)
    return load_backbone(str(path))


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


def _dct_ref(tokens: torch.Tensor) -> np.ndarray:
    return scipy.fft.dctn(tokens.double().numpy(), type=2, norm="ortho")[:8, :8].ravel()


def test_load_by_path(backbone, tiny_dir):
    assert backbone.name == str(tiny_dir)
    assert (backbone.hidden_size, backbone.num_layers, backbone.num_register_tokens) == (32, 2, 0)
    assert backbone.device == torch.device("cpu")
    assert len(backbone.revision) == 16 and int(backbone.revision, 16) >= 0
    assert load_backbone(str(tiny_dir)).revision == backbone.revision  # content hash is stable
    assert not backbone.model.training
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_describe_reads_the_config_without_weights(tiny_dir, backbone, tmp_path):
    (tmp_path / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    spec = describe_backbone(str(tmp_path))  # no weight file at all
    assert (spec.hidden_size, spec.num_layers, spec.model_type) == (32, 2, "dinov2")
    assert describe_backbone(str(tiny_dir)) == backbone.spec
    vitb = transformers.Dinov2Config(patch_size=14)
    (tmp_path / "config.json").write_text(vitb.to_json_string())
    assert 40 < describe_backbone(str(tmp_path)).forward_gflops() < 50  # ViT-B/14 at 224: ~44 GFLOPs


def test_recipe_widths_come_from_the_config(backbone, deep, images):
    assert [recipe_width(r, 768, 12) for r in RECIPES] == [768, 768, 64, 3072]
    assert feature_widths(backbone.spec) == {"cls": 32, "patch_mean": 32, "dct8x8": 64, "cls_last4": 64}
    assert feature_widths(deep.spec)["cls_last4"] == 128
    with pytest.raises(ValueError, match="recipe"):
        recipe_width("gem", 768)
    result = embed_paths(images[:2], deep)
    for r, width in feature_widths(deep.spec).items():
        assert result.vectors[r].shape == (2, width) and result.vectors[r].dtype == np.float32


def test_recipes_match_the_model_outputs(deep, images):
    """cls/patch_mean/dct8x8 from the last hidden state; cls_last4 from the last four blocks' hidden states."""
    ok = [images[0], images[1], images[3]]
    result = embed_paths(ok, deep, batch_size=8)
    with torch.inference_mode():
        out = deep.model(pixel_values=_pixels(ok), output_hidden_states=True)
    hidden = out.last_hidden_state
    assert hidden.shape == (3, 1 + N_PATCHES, 32) and len(out.hidden_states) == 7  # embeddings + 6 blocks
    np.testing.assert_allclose(result.vectors["cls"], hidden[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.vectors["patch_mean"], hidden[:, 1:].mean(1).numpy(), atol=1e-6)
    for b in range(3):
        ref = _dct_ref(hidden[b, 1:])
        np.testing.assert_allclose(result.vectors["dct8x8"][b], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with torch.inference_mode():  # DINOv2 linear probe: final norm on each of the last 4 blocks' CLS, concatenated
        ref4 = torch.cat([deep.model.layernorm(h[:, 0]) for h in out.hidden_states[-4:]], dim=1).numpy()
    np.testing.assert_allclose(result.vectors["cls_last4"], ref4, atol=1e-5)
    np.testing.assert_allclose(result.vectors["cls_last4"][:, -32:], result.vectors["cls"], atol=1e-5)


def test_blocks_are_hooked_only_for_cls_last4(deep, images):
    """Only ``cls_last4`` attaches hooks (and only on the last four blocks); none are left behind."""

    def hooks() -> list[int]:
        return [len(layer._forward_hooks) for layer in deep.model.encoder.layer]

    baseline = hooks()
    during = {}
    for recipes in (("cls", "dct8x8"), ("cls_last4",)):
        for _ in iter_embeddings(images[:2], deep, recipes=recipes, num_workers=0):
            during[recipes[-1]] = hooks()
    assert during["dct8x8"] == baseline
    assert [d - b for d, b in zip(during["cls_last4"], baseline)] == [0, 0, 1, 1, 1, 1]
    assert hooks() == baseline


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


def test_workers_give_identical_vectors_and_restore_threads(backbone, images):
    threads = torch.get_num_threads()
    serial = embed_paths(images, backbone, batch_size=2, num_workers=0)
    parallel = embed_paths(images, backbone, batch_size=2, num_workers=2)
    assert torch.get_num_threads() == threads
    assert parallel.failures == serial.failures
    np.testing.assert_array_equal(parallel.ok_index, serial.ok_index)
    for r in RECIPES:
        np.testing.assert_allclose(parallel.vectors[r], serial.vectors[r], atol=BATCH_ATOL)


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
    with pytest.raises(ValueError, match="cls_last4"):
        features_from_hidden(hidden, ("cls_last4",))


def test_resolve_device_and_precision():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert precision_tag(torch.device("cpu"), "auto") == precision_tag(torch.device("cpu"), "bf16") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        precision_tag(torch.device("cpu"), "int8")
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
    cfg = transformers.Dinov2WithRegistersConfig(**{**TINY, "num_hidden_layers": 4}, num_register_tokens=4)
    torch.manual_seed(1)
    transformers.Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    assert (backbone.num_register_tokens, feature_widths(backbone.spec)["cls_last4"]) == (4, 128)
    ok = [images[0], images[1]]
    result = embed_paths(ok, backbone)
    with torch.inference_mode():
        out = backbone.model(pixel_values=_pixels(ok), output_hidden_states=True)
        ref4 = torch.cat([backbone.model.layernorm(h[:, 0]) for h in out.hidden_states[-4:]], dim=1).numpy()
    hidden = out.last_hidden_state
    assert hidden.shape[1] == 1 + 4 + N_PATCHES
    np.testing.assert_allclose(result.vectors["cls"], hidden[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.vectors["patch_mean"], hidden[:, 5:].mean(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(result.vectors["cls_last4"], ref4, atol=1e-5)
    ref = _dct_ref(hidden[0, 5:])
    np.testing.assert_allclose(result.vectors["dct8x8"][0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_giant_style_swiglu_blocks_embed_like_the_others(tmp_path, images):
    """ViT-g/14 uses SwiGLU MLPs; widths still come from the config and cls_last4 hooks its blocks."""
    torch.manual_seed(3)
    config = transformers.Dinov2Config(**{**TINY, "hidden_size": 48, "num_hidden_layers": 5}, use_swiglu_ffn=True)
    transformers.Dinov2Model(config).save_pretrained(tmp_path)
    giant_like = load_backbone(str(tmp_path))
    result = embed_paths(images[:2], giant_like, num_workers=0)
    assert {r: v.shape for r, v in result.vectors.items()} == {
        "cls": (2, 48), "patch_mean": (2, 48), "dct8x8": (2, 64), "cls_last4": (2, 192)
    }
    np.testing.assert_allclose(result.vectors["cls_last4"][:, -48:], result.vectors["cls"], atol=1e-5)


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


@pytest.mark.gpu
def test_cuda_engine_matches_the_cpu_engine(tiny_dir, images):
    """uint8 crops normalised on the GPU equal the CPU path; bf16 autocast stays close; storage is float32."""
    reference = embed_paths(images, load_backbone(str(tiny_dir), device="cpu"), batch_size=2)
    gpu = load_backbone(str(tiny_dir), device="cuda")
    fp32 = embed_paths(images, gpu, batch_size=2, num_workers=1, precision="fp32")
    bf16 = embed_paths(images, gpu, batch_size=2, num_workers=1)
    assert fp32.failures == bf16.failures == reference.failures
    for r in RECIPES:
        assert fp32.vectors[r].dtype == bf16.vectors[r].dtype == np.float32
        np.testing.assert_allclose(fp32.vectors[r], reference.vectors[r], rtol=1e-3, atol=1e-3)
        a, b = bf16.vectors[r], reference.vectors[r]
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() > 0.99, (r, cosine)


def test_lagged_hands_out_every_item_in_order_after_the_next_is_produced():
    produced = []

    def items():
        for i in range(4):
            produced.append(i)
            yield i

    seen = [(item, len(produced)) for item in _lagged(items(), 1)]
    assert seen == [(0, 2), (1, 3), (2, 4), (3, 4)]  # item k leaves once k+1 exists (the GPU pipeline)
    produced.clear()
    assert [(item, len(produced)) for item in _lagged(items(), 0)] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert list(_lagged(iter([]), 1)) == []
