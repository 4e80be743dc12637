"""Image loading and the one preprocessing function shared by embedding and inference.

The transform reproduces DINOv2's ``BitImageProcessor`` (PIL backend): resize so the
shortest edge is 256 with bicubic resampling, centre crop 224, scale to [0, 1] and
normalise with the ImageNet mean/std. A parity test holds it against transformers.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the image transform; stored in every embedding shard and checkpoint."""

    resize_shortest_edge: int = 256
    """Target length of the shorter image side before cropping."""
    crop_size: int = 224
    """Side of the square centre crop fed to the backbone."""
    resample: str = "bicubic"
    """PIL resampling filter name (one of ``nearest, box, bilinear, hamming, bicubic, lanczos``)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean subtracted after scaling to [0, 1]."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel standard deviation divided out after subtracting the mean."""

    def __post_init__(self) -> None:
        if self.resample not in _RESAMPLING:
            raise ValueError(f"unknown resample {self.resample!r}; expected one of {sorted(_RESAMPLING)}")
        if self.resize_shortest_edge <= 0 or self.crop_size <= 0:
            raise ValueError("resize_shortest_edge and crop_size must be positive")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have three channels")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys raise ``TypeError``."""
        d = dict(data)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded completely.

    Attributes:
        path: The offending file.
        reason: Short machine-friendly cause: ``"missing file"``, ``"not a file"``,
            ``"zero bytes"``, ``"not an image"``, ``"truncated image"``, ``"corrupt image"``,
            ``"image too large"`` or ``"unreadable file"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        msg = f"{self.path}: {reason}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB the way transformers' ``convert_to_rgb`` does.

    Transparency (``RGBA``, ``LA``, ``PA``, palette images with a transparent index) is
    composited onto a white background, so transparent regions are white rather than
    whatever colour the invisible pixels happened to hold. 16/32-bit integer greyscale
    (``I;16*``, ``I``) is mapped to 8 bits by dividing by 257 (65535 -> 255); float
    greyscale (``F``) is clipped to [0, 255]. ``CMYK`` and ``YCbCr`` use PIL's conversion.

    Args:
        img: Image in any mode.

    Returns:
        A new ``RGB`` image of the same size.
    """
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if img.mode != "F":
            arr = arr / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


MAX_IMAGE_PIXELS = 89_478_485
"""Images with more pixels are refused before any pixel is decoded.

The same number as PIL's ``Image.MAX_IMAGE_PIXELS``, but PIL only *warns* between one and
two times that and raises above; here anything over it is refused (a decompression bomb
must not be allocated). The largest real SnakeCLEF photos are far below it (~50 MP).
"""


def _check_file(path: str | os.PathLike) -> None:
    if not os.path.exists(path):
        raise UnreadableImageError(path, "missing file")
    if not os.path.isfile(path):
        raise UnreadableImageError(path, "not a file")
    if os.path.getsize(path) == 0:
        raise UnreadableImageError(path, "zero bytes")


def check_pixel_count(img: Image.Image, path: str | os.PathLike, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an opened (header-only) image whose size exceeds ``limit`` pixels.

    Raises:
        UnreadableImageError: reason ``"image too large"``, before any decoding.
    """
    if img.width * img.height > limit:
        raise UnreadableImageError(
            path, "image too large", f"{img.width}x{img.height} = {img.width * img.height} pixels > {limit}"
        )


def load_rgb(
    path: str | os.PathLike, *, data: bytes | None = None, draft: bool = False, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """Open an image file, decode it fully, apply its EXIF orientation and return RGB.

    Truncated files raise instead of being padded with grey (``LOAD_TRUNCATED_IMAGES`` is
    left off on purpose). Multi-frame files (GIF, TIFF) yield their first frame. See
    :func:`to_rgb` for how alpha, CMYK and 16-bit greyscale are handled. The pixel count
    is checked on the header, before decoding (:data:`MAX_IMAGE_PIXELS`).

    Args:
        path: Image file path (named in errors; read unless ``data`` is given).
        data: The file's bytes, already read (the manifest hashes and checks in one read).
        draft: Let JPEG decode at reduced scale (every byte is still entropy-decoded, so
            truncation and corruption are still detected): for validation, not embedding.
        max_pixels: Refusal threshold.

    Returns:
        An upright ``RGB`` image detached from the file.

    Raises:
        UnreadableImageError: With ``.reason`` saying why the file cannot be used.
    """
    if data is None:
        _check_file(path)
        source = path
    elif not data:
        raise UnreadableImageError(path, "zero bytes")
    else:
        source = io.BytesIO(data)
    try:
        with Image.open(source) as im:
            check_pixel_count(im, path, max_pixels)
            if draft and im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            try:
                im.load()
            except Image.DecompressionBombError as exc:
                raise UnreadableImageError(path, "image too large", str(exc)) from exc
            except (OSError, SyntaxError, ValueError) as exc:
                reason = "truncated image" if "truncated" in str(exc).lower() else "corrupt image"
                raise UnreadableImageError(path, reason, str(exc)) from exc
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception as exc:  # malformed EXIF must not cost us a usable image
                logger.warning("ignoring unusable EXIF orientation in %s: %s", path, exc)
                upright = im
            return to_rgb(upright)
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(path, "image too large", str(exc)) from exc
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise UnreadableImageError(path, "not an image", str(exc)) from exc
    except OSError as exc:
        raise UnreadableImageError(path, "unreadable file", str(exc)) from exc


def resize_output_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """Return ``(new_height, new_width)`` with the short side at ``shortest_edge``.

    Same rounding as transformers' ``get_resize_output_image_size(default_to_square=False)``:
    the long side is ``int(shortest_edge * long / short)`` (truncated, not rounded).
    """
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an (H, W, C) array like transformers' ``center_crop`` (zero-pads if too small)."""
    h, w = arr.shape[:2]
    if h < size or w < size:
        nh, nw = max(h, size), max(w, size)
        top_pad, left_pad = -(-(nh - h) // 2), -(-(nw - w) // 2)
        padded = np.zeros((nh, nw, arr.shape[2]), dtype=arr.dtype)
        padded[top_pad : top_pad + h, left_pad : left_pad + w] = arr
        arr, h, w = padded, nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return arr[top : top + size, left : left + size]


def preprocess_image(img: Image.Image, cfg: PreprocessConfig = PreprocessConfig()) -> torch.Tensor:
    """Turn a PIL image into the normalised tensor the backbone expects.

    Resize (aspect kept, short side ``cfg.resize_shortest_edge``), centre crop
    ``cfg.crop_size`` with offsets ``(size_diff) // 2``, scale by 1/255 and normalise.
    Arithmetic follows the transformers PIL backend (float64 rescale, float32 normalise)
    so the result matches ``BitImageProcessor`` to float32 rounding.

    Args:
        img: Image in any mode; non-RGB images go through :func:`to_rgb`.
        cfg: Transform parameters.

    Returns:
        float32 tensor of shape ``(3, cfg.crop_size, cfg.crop_size)``.
    """
    if img.mode != "RGB":
        img = to_rgb(img)
    new_h, new_w = resize_output_size(img.height, img.width, cfg.resize_shortest_edge)
    resized = img.resize((new_w, new_h), resample=_RESAMPLING[cfg.resample])
    arr = _center_crop(np.asarray(resized), cfg.crop_size)
    scaled = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    normed = (scaled - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normed.transpose(2, 0, 1)))
