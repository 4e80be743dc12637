"""Image files to pixel tensors, for the engine's decode workers.

The preprocessing of :func:`snake_assets.core.preprocess.preprocess_image` is split in two halves.

The geometry (resize shortest edge, centre crop) yields a uint8 crop; the arithmetic (rescale
by 1/255 in float64, float32 mean/std normalisation) then runs either through a 3x256 lookup
table on the CPU (every output value depends on one channel and one byte only, so the table is
exact and ~5x faster than the array arithmetic), or as tensor ops on the GPU. Both halves
reproduce ``preprocess_image`` bit for bit; a test holds them to it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from snake_assets.core.preprocess import PreprocessConfig, UnreadableImageError, load_rgb, resize_output_size, to_rgb

# The geometry must stay the one of preprocess_image: reuse its crop and filter table.
from snake_assets.core.preprocess import _RESAMPLING, _center_crop  # noqa: E402  (shared internals)

logger = logging.getLogger(__name__)


def crop_uint8(img: Image.Image, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Resize (short side ``cfg.resize_shortest_edge``) and centre-crop; ``(S, S, 3)`` uint8, C-contiguous."""
    if img.mode != "RGB":
        img = to_rgb(img)
    new_h, new_w = resize_output_size(img.height, img.width, cfg.resize_shortest_edge)
    resized = img.resize((new_w, new_h), resample=_RESAMPLING[cfg.resample])
    return np.array(_center_crop(np.asarray(resized), cfg.crop_size), order="C")


def normalize_uint8(pixels: torch.Tensor, cfg: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 crops -> ``(B, 3, S, S)`` float32, normalised on the tensors' device.

    Same operations, in the same precisions, as ``preprocess_image`` (float64 rescale, float32
    normalise), so the values are identical on any IEEE device.
    """
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    scaled = (pixels.permute(0, 3, 1, 2).double() * (1 / 255)).float()
    return ((scaled - mean) / std).contiguous()


@functools.lru_cache(maxsize=8)
def _lookup_table(cfg: PreprocessConfig) -> np.ndarray:
    """``(3, 256)`` float32: the normalised value of every byte in every channel."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1).repeat(1, 1, 1, 3)  # (B=1, H=1, W=256, C=3)
    return normalize_uint8(levels, cfg)[0, :, 0, :].numpy().copy()


def lut_normalize(crop: np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """``(S, S, 3)`` uint8 crop -> ``(3, S, S)`` float32 normalised tensor, through the lookup table."""
    lut = _lookup_table(cfg)
    out = np.empty((3, *crop.shape[:2]), dtype=np.float32)
    for c in range(3):
        np.take(lut[c], crop[:, :, c], out=out[c])
    return torch.from_numpy(out)


CHANGED = "changed since manifest"
"""Failure reason of a file whose bytes no longer match the content hash it is embedded under."""


class ImageFileDataset(Dataset):
    """Image files -> ``(index, pixels | None, failure reason | None)``.

    ``pixels`` is a float32 ``(3, S, S)`` normalised tensor, or with ``uint8=True`` the
    ``(S, S, 3)`` uint8 crop to be normalised on the device by :func:`normalize_uint8`.
    With ``hashes``, a file whose sha256 differs from its expected hash is refused (:data:`CHANGED`):
    vectors are keyed by content hash, so they must come from exactly those bytes.
    """

    def __init__(
        self, paths: Sequence[str | os.PathLike], cfg: PreprocessConfig, *, uint8: bool = False,
        hashes: Sequence[str] | None = None,
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.cfg = cfg
        self.uint8 = uint8
        self.hashes = None if hashes is None else list(hashes)
        if self.hashes is not None and len(self.hashes) != len(self.paths):
            raise ValueError(f"{len(self.hashes)} hashes for {len(self.paths)} paths")

    def _read_checked(self, index: int) -> bytes | None:
        """The file's bytes if they hash to the expected value; ``None`` when unreadable (load_rgb says why).

        Raises:
            LookupError: the bytes differ from the hashed ones.
        """
        try:
            data = Path(self.paths[index]).read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != self.hashes[index]:
            raise LookupError(CHANGED)
        return data

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.paths[index]
        try:
            data = self._read_checked(index) if self.hashes is not None else None
        except LookupError:
            logger.warning("skipping %s: its bytes no longer match the manifest's content hash", path)
            return index, None, CHANGED
        try:  # one read: the hashed bytes are the decoded bytes
            crop = crop_uint8(load_rgb(path, data=data), self.cfg)
            return index, torch.from_numpy(crop) if self.uint8 else lut_normalize(crop, self.cfg), None
        except UnreadableImageError as exc:
            logger.warning("skipping unreadable image %s", exc)
            return index, None, exc.reason
        except Exception as exc:  # one odd file must not stop a 182k-image run; it is reported, not hidden
            logger.warning("skipping image %s: %s: %s", path, type(exc).__name__, exc)
            return index, None, f"error: {type(exc).__name__}"


class _Batch(NamedTuple):
    indices: list[int]
    pixels: torch.Tensor | None
    failures: list[tuple[int, str]]


def collate_images(items: list[tuple[int, torch.Tensor | None, str | None]]) -> _Batch:
    """Stack readable items; keep ``(index, reason)`` for the others.

    ``default_collate`` stacks straight into shared memory inside a worker (no extra copy on the way
    to the main process).
    """
    good = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, reason) for i, t, reason in items if t is None]
    pixels = default_collate([t for _, t in good]) if good else None
    return _Batch([i for i, _ in good], pixels, failures)
