"""Frozen DINOv2 backbone loading and batched feature extraction from image files.

Three feature recipes are computed from one forward pass over the last hidden state:
``cls`` (token 0), ``patch_mean`` (mean of the patch tokens) and ``dct8x8`` (top-left 8x8
2D DCT-II coefficients of the patch-token matrix). Register tokens, when the backbone has
them, are excluded from the patch tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from snake_assets.core.dct import dct2_topleft
from snake_assets.core.preprocess import PreprocessConfig, UnreadableImageError, load_rgb, preprocess_image

logger = logging.getLogger(__name__)

RECIPES: tuple[str, ...] = ("cls", "patch_mean", "dct8x8")
DCT_K = 8
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def recipe_width(recipe: str, hidden_size: int) -> int:
    """Return the vector width a recipe produces for a backbone of ``hidden_size``."""
    if recipe in ("cls", "patch_mean"):
        return hidden_size
    if recipe == "dct8x8":
        return DCT_K * DCT_K
    raise ValueError(f"unknown feature recipe {recipe!r}; expected one of {RECIPES}")


@dataclass
class Backbone:
    """A frozen ViT backbone ready for inference, with what identifies its weights."""

    model: torch.nn.Module
    """The transformers model, in eval mode with gradients off, already on ``device``."""
    name: str
    """Hub id or local path exactly as given to :func:`load_backbone`."""
    revision: str
    """Hub commit hash when known, else a 16-hex sha256 of config + weight files, else ``"unknown"``."""
    hidden_size: int
    """Token width (768 for ViT-B/14)."""
    num_register_tokens: int
    """Register tokens between CLS and the patch tokens (0 for plain DINOv2)."""
    device: torch.device
    """Device the model lives on."""


def resolve_device(requested: str | torch.device) -> torch.device:
    """Turn a device request into a ``torch.device``.

    Args:
        requested: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            or any other string ``torch.device`` accepts.

    Returns:
        The device to use.

    Raises:
        RuntimeError: CUDA was requested but is not available (or the index is out of range).
    """
    if isinstance(requested, str) and requested.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {str(requested)!r} requested but CUDA is not available in this torch build/machine; "
                "use 'cpu' or 'auto'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise RuntimeError(f"device {str(requested)!r} requested but only {count} GPU(s) exist")
    return device


def _hash_model_dir(folder: Path) -> str:
    """Short sha256 over config.json and weight files (names and bytes) of a model folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.name.endswith(_WEIGHT_SUFFIXES))
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _resolve_revision(name: str, model: torch.nn.Module, local_dir: Path | None) -> str:
    if local_dir is not None:
        return _hash_model_dir(local_dir)
    commit = getattr(model.config, "_commit_hash", None)  # transformers < 5
    if commit:
        return str(commit)
    try:  # transformers >= 5: the cache path of the resolved snapshot holds the commit
        from transformers.utils.hub import cached_file, extract_commit_hash

        config_path = cached_file(name, "config.json", local_files_only=True)
        commit = extract_commit_hash(config_path, None)
        if commit:
            return commit
        if config_path:
            return _hash_model_dir(Path(config_path).parent)
    except Exception as exc:  # revision is provenance, never a reason to fail the load
        logger.warning("could not resolve the revision of %s: %s", name, exc)
    return "unknown"


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else path-shaped is treated as a path."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\"))
        or name in (".", "..")
        or name.count("/") > 1
        or "\\" in name
        or Path(name).is_absolute()
    )


def _local_dir(name_or_path: str) -> Path | None:
    """Return the folder for a local path, ``None`` for a hub id; raise for a missing path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"backbone folder {name_or_path!r} has no config.json")
        return path
    if path.exists():
        raise FileNotFoundError(f"backbone path {name_or_path!r} is a file, not a model folder")
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(f"backbone path {name_or_path!r} does not exist")
    return None


def _from_pretrained(auto_model: type, source: str, kwargs: dict) -> torch.nn.Module:
    """``from_pretrained`` with SDPA attention, or the class default where SDPA is unsupported."""
    try:
        return auto_model.from_pretrained(source, attn_implementation="sdpa", **kwargs)
    except ValueError as exc:
        if "attention" not in str(exc).lower() and "sdpa" not in str(exc).lower():
            raise
        logger.info("%s does not support SDPA attention (%s); using the default", source, exc)
        return auto_model.from_pretrained(source, **kwargs)


def load_backbone(
    name_or_path: str,
    *,
    device: str | torch.device = "cpu",
    local_files_only: bool | None = None,
) -> Backbone:
    """Load a DINOv2-family backbone (any size, with or without registers), frozen, for inference.

    Uses ``AutoModel.from_pretrained(..., attn_implementation="sdpa")`` and falls back to the
    default attention when the class does not support SDPA. Weights are cast to float32; mixed
    precision, if any, is applied at inference time by :func:`embed_paths`.

    Args:
        name_or_path: Hub id (``"facebook/dinov2-base"``) or a local folder from ``save_pretrained``.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or a ``torch.device``.
        local_files_only: Passed to ``from_pretrained`` when not ``None``; ``None`` keeps the
            library default (which honours ``HF_HUB_OFFLINE``).

    Returns:
        The loaded :class:`Backbone`.

    Raises:
        FileNotFoundError: The path does not exist, or the id cannot be found locally/offline.
        ValueError: The checkpoint loads but is not a ViT with ``hidden_size``.
    """
    from transformers import AutoModel  # deferred: importing transformers costs seconds

    dev = resolve_device(device)
    local_dir = _local_dir(name_or_path)
    kwargs = {} if local_files_only is None else {"local_files_only": local_files_only}
    source = str(local_dir) if local_dir is not None else name_or_path
    try:
        model = _from_pretrained(AutoModel, source, kwargs)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load backbone {name_or_path!r} (no network here: pass a local folder or a cached hub id): {exc}"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"cannot load backbone {name_or_path!r}: {exc}") from exc
    hidden_size = getattr(model.config, "hidden_size", None)
    if not isinstance(hidden_size, int):
        raise ValueError(f"backbone {name_or_path!r} ({type(model).__name__}) has no integer hidden_size")
    model_type = getattr(model.config, "model_type", "")
    if not str(model_type).startswith("dinov2"):
        logger.warning(
            "backbone %s is model_type %r, not DINOv2; assuming CLS, registers, then patch tokens",
            name_or_path,
            model_type,
        )
    model = model.to(device=dev, dtype=torch.float32).eval().requires_grad_(False)
    backbone = Backbone(
        model=model,
        name=name_or_path,
        revision=_resolve_revision(name_or_path, model, local_dir),
        hidden_size=hidden_size,
        num_register_tokens=int(getattr(model.config, "num_register_tokens", 0) or 0),
        device=dev,
    )
    logger.info(
        "loaded backbone %s rev %s (%s, hidden %d, registers %d) on %s",
        backbone.name,
        backbone.revision,
        type(model).__name__,
        hidden_size,
        backbone.num_register_tokens,
        dev,
    )
    return backbone


def features_from_hidden(
    last_hidden_state: torch.Tensor,
    recipes: Sequence[str] = RECIPES,
    num_register_tokens: int = 0,
) -> dict[str, np.ndarray]:
    """Compute feature vectors from a ViT's last hidden state.

    Args:
        last_hidden_state: ``(B, 1 + R + P, D)`` tokens: CLS, ``R`` registers, ``P`` patches.
        recipes: Subset of :data:`RECIPES`.
        num_register_tokens: ``R``; register tokens are excluded from the patch tokens.

    Returns:
        ``recipe -> (B, width)`` float32 arrays on the CPU.
    """
    for recipe in recipes:
        recipe_width(recipe, 1)  # validates the name
    tokens = last_hidden_state.float()
    patches = tokens[:, 1 + num_register_tokens :]
    if patches.shape[1] == 0:
        raise ValueError(f"no patch tokens in a hidden state of shape {tuple(tokens.shape)}")
    out: dict[str, torch.Tensor] = {}
    if "cls" in recipes:
        out["cls"] = tokens[:, 0]
    if "patch_mean" in recipes:
        out["patch_mean"] = patches.mean(dim=1)
    if "dct8x8" in recipes:
        out["dct8x8"] = dct2_topleft(patches, DCT_K)
    return {name: out[name].cpu().numpy().astype(np.float32, copy=False) for name in recipes}


class _Batch(NamedTuple):
    indices: list[int]
    pixel_values: torch.Tensor | None
    failures: list[tuple[int, str]]


class ImageFileDataset(Dataset):
    """Image files -> ``(index, tensor | None, failure reason | None)`` through :func:`preprocess_image`."""

    def __init__(self, paths: Sequence[str | os.PathLike], cfg: PreprocessConfig) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.paths[index]
        try:
            return index, preprocess_image(load_rgb(path), self.cfg), None
        except UnreadableImageError as exc:
            logger.warning("skipping unreadable image %s", exc)
            return index, None, exc.reason
        except Exception as exc:  # one odd file must not stop a 182k-image run; it is reported, not hidden
            logger.warning("skipping image %s: %s: %s", path, type(exc).__name__, exc)
            return index, None, f"error: {type(exc).__name__}"


def collate_images(items: list[tuple[int, torch.Tensor | None, str | None]]) -> _Batch:
    """Stack readable items; keep ``(index, reason)`` for the others."""
    good = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, reason) for i, t, reason in items if t is None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return _Batch([i for i, _ in good], pixels, failures)


@dataclass
class EmbeddingResult:
    """Vectors for the readable images of a path list, and why the others were skipped."""

    vectors: dict[str, np.ndarray]
    """``recipe -> (n_ok, width)`` float32, rows in input order of the embedded paths."""
    ok_index: np.ndarray
    """int64 indices into the input paths of the rows of ``vectors``."""
    failures: list[tuple[int, str]] = field(default_factory=list)
    """``(index, reason)`` for every path that could not be embedded."""


def embed_paths(
    paths: Sequence[str | os.PathLike],
    backbone: Backbone,
    *,
    recipes: Sequence[str] = RECIPES,
    cfg: PreprocessConfig = PreprocessConfig(),
    batch_size: int = 32,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    amp_dtype: torch.dtype | None = torch.bfloat16,
) -> EmbeddingResult:
    """Embed image files with a frozen backbone, skipping (and reporting) unreadable ones.

    Args:
        paths: Image files.
        backbone: From :func:`load_backbone`; its ``device`` is used.
        recipes: Feature recipes to compute (subset of :data:`RECIPES`).
        cfg: Preprocessing parameters.
        batch_size: Images per forward pass.
        num_workers: DataLoader worker processes for decoding (0 = in this process).
        progress: Called as ``progress(done, total)`` after each batch.
        amp_dtype: Autocast dtype on CUDA (``None`` disables it); ignored on CPU.

    Returns:
        :class:`EmbeddingResult` with float32 vectors.
    """
    widths = {r: recipe_width(r, backbone.hidden_size) for r in recipes}
    device = backbone.device
    loader = DataLoader(
        ImageFileDataset(paths, cfg),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=device.type == "cuda",
    )
    use_amp = device.type == "cuda" and amp_dtype is not None
    chunks: dict[str, list[np.ndarray]] = {r: [] for r in recipes}
    ok: list[int] = []
    failures: list[tuple[int, str]] = []
    total, done = len(paths), 0
    with torch.inference_mode():
        for batch in loader:
            failures.extend(batch.failures)
            if batch.pixel_values is not None:
                pixels = batch.pixel_values.to(device, non_blocking=True)
                amp = torch.autocast(device.type, dtype=amp_dtype) if use_amp else contextlib.nullcontext()
                with amp:
                    hidden = backbone.model(pixel_values=pixels).last_hidden_state
                feats = features_from_hidden(hidden, recipes, backbone.num_register_tokens)
                for r in recipes:
                    chunks[r].append(feats[r])
                ok.extend(batch.indices)
            done += len(batch.indices) + len(batch.failures)
            if progress is not None:
                progress(done, total)
    if failures:
        logger.warning("%d of %d images could not be embedded", len(failures), total)
    vectors = {
        r: np.concatenate(chunks[r]) if chunks[r] else np.zeros((0, widths[r]), dtype=np.float32) for r in recipes
    }
    return EmbeddingResult(vectors=vectors, ok_index=np.asarray(ok, dtype=np.int64), failures=failures)
