"""The engine's two-half preprocessing reproduces ``preprocess_image`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from snake_assets.core.pixels import crop_uint8, lut_normalize, normalize_uint8
from snake_assets.core.preprocess import PreprocessConfig, load_rgb, preprocess_image

CONFIGS = [
    PreprocessConfig(),
    PreprocessConfig(resize_shortest_edge=100, crop_size=112, resample="bilinear", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.1)),
    PreprocessConfig(resize_shortest_edge=200, crop_size=256, resample="lanczos"),  # crop larger than the image: padding
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["dinov2", "custom", "padded"])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_lut_and_device_paths_equal_preprocess_image(cfg, mode):
    rng = np.random.default_rng(0)
    for width, height in [(500, 375), (375, 500), (224, 224), (61, 97), (1000, 257)]:
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
        expected = preprocess_image(img, cfg)
        crop = crop_uint8(img, cfg)
        assert crop.dtype == np.uint8 and crop.shape == (cfg.crop_size, cfg.crop_size, 3) and crop.flags.c_contiguous
        assert torch.equal(lut_normalize(crop, cfg), expected)
        assert torch.equal(normalize_uint8(torch.from_numpy(crop)[None], cfg)[0], expected)


def test_jpeg_files_through_the_worker_path(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (300 + i, 400 - i, 3), dtype=np.uint8)).save(path, quality=90)
        img = load_rgb(path)
        assert torch.equal(lut_normalize(crop_uint8(img)), preprocess_image(img))
