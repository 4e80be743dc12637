"""Tests for image loading and the shared preprocessing transform (parity with transformers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from snake_assets.core.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessConfig,
    UnreadableImageError,
    load_rgb,
    preprocess_image,
    resize_output_size,
)

transformers = pytest.importorskip("transformers")

# Measured: 0.0 (bit-identical) against the PIL backend; the bound leaves room for float32 reordering.
PARITY_ATOL = 1e-5
SIZES = [(500, 375), (375, 500), (300, 300), (257, 1000), (1000, 257), (97, 61), (224, 224), (256, 341)]


def _photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: realistic enough that resampling and JPEG both matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, (xx + yy) / (width + height)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def _processor_kwargs() -> dict:
    return dict(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=3,  # PIL bicubic
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )


def _pil_processor():
    cls = getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor
    return cls(**_processor_kwargs())


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("jpegs")
    paths = []
    for i, (w, h) in enumerate(SIZES):
        p = root / f"img_{w}x{h}.jpg"
        Image.fromarray(_photo_like(w, h, seed=i)).save(p, quality=90)
        paths.append(p)
    return paths


def test_parity_with_bit_image_processor_pil_backend(jpegs):
    processor = _pil_processor()
    for path in jpegs:
        img = load_rgb(path)
        ours = preprocess_image(img)
        ref = torch.as_tensor(processor(images=img, return_tensors="pt")["pixel_values"][0])
        assert ours.dtype == torch.float32 and ours.shape == (3, 224, 224)
        assert ref.shape == ours.shape, path.name
        diff = (ours - ref).abs().max().item()
        assert diff < PARITY_ATOL, f"{path.name}: max abs diff {diff}"


def test_parity_with_default_bit_image_processor(jpegs):
    processor = transformers.BitImageProcessor(**_processor_kwargs())
    if getattr(processor, "backend", "pil") != "pil":
        pytest.skip("torchvision backend resamples differently; parity is held against the PIL backend")
    img = load_rgb(jpegs[0])
    ref = torch.as_tensor(processor(images=img, return_tensors="pt")["pixel_values"][0])
    assert (preprocess_image(img) - ref).abs().max().item() < PARITY_ATOL


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [(375, 500, (256, 341)), (500, 375, (341, 256)), (300, 300, (256, 256)), (1000, 257, (996, 256))],
)
def test_resize_output_size_truncates_long_side(h, w, expected):
    assert resize_output_size(h, w, 256) == expected


def test_non_default_config_and_small_crop_padding():
    img = Image.fromarray(_photo_like(40, 30))
    cfg = PreprocessConfig(resize_shortest_edge=20, crop_size=32)
    out = preprocess_image(img, cfg)
    assert out.shape == (3, 32, 32)
    # Zero padding (pixel value 0) normalises to -mean/std, as in transformers' center_crop.
    expected = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0], expected.float())


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(resize_shortest_edge=288, crop_size=252, resample="bilinear")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()) == PreprocessConfig()
    with pytest.raises(ValueError, match="resample"):
        PreprocessConfig(resample="cubic")


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    stored = np.zeros((40, 60, 3), dtype=np.uint8)  # wide as stored on disk
    stored[:, :30] = (255, 0, 0)  # left half red, right half blue
    stored[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)

    img = load_rgb(path)
    assert img.size == (40, 60)  # upright: tall
    arr = np.asarray(img).astype(int)
    assert arr[:25, :, 0].mean() > 200 and arr[:25, :, 2].mean() < 60  # top is red
    assert arr[35:, :, 2].mean() > 200 and arr[35:, :, 0].mean() < 60  # bottom is blue


def _save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_png_with_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:4] = (255, 0, 0, 255)  # opaque red
    rgba[4:] = (0, 255, 0, 0)  # fully transparent green
    img = load_rgb(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert img.mode == "RGB"
    arr = np.asarray(img)
    assert (arr[0, 0] == (255, 0, 0)).all() and (arr[7, 7] == (255, 255, 255)).all()


@pytest.mark.parametrize(
    ("name", "make", "pixel"),
    [
        ("grey.png", lambda: Image.new("L", (9, 7), 128), (128, 128, 128)),
        ("grey_alpha.png", lambda: Image.new("LA", (9, 7), (0, 0)), (255, 255, 255)),
        ("grey16.png", lambda: Image.fromarray(np.full((7, 9), 65535, np.uint16)), (255, 255, 255)),
        ("palette.png", lambda: Image.new("RGB", (9, 7), (0, 0, 255)).convert("P"), (0, 0, 255)),
        ("grey.jpg", lambda: Image.new("L", (9, 7), 200), (200, 200, 200)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (16, 16), (0, 255, 255, 0)), (255, 0, 0)),
    ],
)
def test_modes_load_as_rgb(tmp_path, name, make, pixel):
    kw = {"quality": 100} if name.endswith(".jpg") else {}
    img = load_rgb(_save(tmp_path, name, make(), **kw))
    assert img.mode == "RGB" and img.size in ((9, 7), (16, 16))
    np.testing.assert_allclose(np.asarray(img)[3, 3], pixel, atol=3)
    assert preprocess_image(img).shape == (3, 224, 224)


def test_truncated_jpeg_raises(tmp_path):
    full = _save(tmp_path, "full.jpg", Image.fromarray(_photo_like(200, 150)), quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UnreadableImageError) as err:
        load_rgb(cut)
    assert err.value.reason == "truncated image"
    assert str(cut) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("notes.jpg", b"this is not a jpeg\n", "not an image"), ("empty.jpg", b"", "zero bytes")],
)
def test_unreadable_files_raise_with_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError) as err:
        load_rgb(path)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UnreadableImageError) as err:
        load_rgb(tmp_path / "nope.jpg")
    assert err.value.reason == "missing file"
    with pytest.raises(UnreadableImageError) as err:
        load_rgb(tmp_path)
    assert err.value.reason == "not a file"
