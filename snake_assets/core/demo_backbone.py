"""A tiny, randomly initialised DINOv2 saved like a hub model, for tests and the demo.

The model hub is unreachable on the machines this project is built on; the demo and the
tests load this folder through the same ``from_pretrained`` code path as a hub id.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

TINY_BACKBONE_HIDDEN_SIZE = 128


def write_tiny_backbone(directory: Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny DINOv2 and DINOv2's image processor to ``directory``.

    The folder loads offline through ``AutoModel.from_pretrained`` and
    ``AutoImageProcessor.from_pretrained``, the same code path as a hub id. The processor
    matches facebook/dinov2-base (shortest edge 256 bicubic, centre crop 224, ImageNet
    mean/std).

    Args:
        directory: Output folder (created if missing).
        seed: Seeds the initialisation (the global ``torch`` RNG is left as it was); same seed, same weights.

    Returns:
        ``directory``.
    """
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    directory = Path(directory)
    config = Dinov2Config(
        hidden_size=TINY_BACKBONE_HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        patch_size=14,
        image_size=224,
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = Dinov2Model(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=3,
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    ).save_pretrained(directory)
    logger.info("wrote tiny DINOv2 (hidden %d, seed %d) to %s", config.hidden_size, seed, directory)
    return directory
