"""The embedding engine: image files in, feature vectors (see :mod:`~snake_assets.core.recipes`) out.

Decoding and the resize/crop run in DataLoader worker processes, overlapped with the forward
pass. Workers hand over uint8 crops on CUDA (4x fewer bytes to pin and copy; the rescale and
normalisation run on the GPU) and finished float32 tensors on the CPU (normalised through a
lookup table). Both give exactly :func:`snake_assets.core.preprocess.preprocess_image`'s values.
On CUDA: pinned memory, non-blocking copies, bf16/fp16 autocast, and the features of batch k copied
back while batch k+1 runs. Everywhere: ``inference_mode``, SDPA attention, float32 output.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader

from snake_assets.core.backbone import (  # noqa: F401  (re-exported: the public embedding API)
    Backbone,
    BackboneSpec,
    amp_dtype,
    available_cpus,
    default_batch_size,
    default_num_workers,
    load_backbone,
    resolve_device,
)
from snake_assets.core.pixels import CHANGED, ImageFileDataset, collate_images, normalize_uint8  # noqa: F401
from snake_assets.core.preprocess import PreprocessConfig
from snake_assets.core.recipes import (  # noqa: F401  (re-exported)
    LAST_BLOCKS,
    RECIPES,
    BlockCLSHooks,
    feature_tensor,
    feature_widths,
    features_from_hidden,
    recipe_width,
    split_features,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
LIGHT_MODEL_GFLOPS = 2.0
"""Below this per-image cost (test-sized models) a CPU forward pass is cheaper than decoding, so the
decode workers, not the model, should get the cores (every real DINOv2 is 10-600 GFLOPs)."""


@contextlib.contextmanager
def _cpu_threads(backbone: Backbone, num_workers: int, crop_size: int) -> Iterator[None]:
    """Intra-op threads for the run: all cores for a real model (workers idle behind it); for a
    light model with busy workers, only the cores the workers leave (oversubscribed OpenMP
    threads spin and take CPU from decoding). Restored afterwards."""
    before = torch.get_num_threads()
    light = backbone.spec.forward_gflops(crop_size) < LIGHT_MODEL_GFLOPS
    if backbone.device.type == "cpu" and num_workers > 0 and light:
        torch.set_num_threads(max(1, min(before, available_cpus() - num_workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class EmbeddedBatch:
    """Vectors of one batch of readable images, and the failures met in it."""

    indices: np.ndarray
    """int64 positions in the input path list of the rows of ``vectors``."""
    vectors: dict[str, np.ndarray]
    """``recipe -> (len(indices), width)`` float32."""
    failures: list[tuple[int, str]] = field(default_factory=list)
    """``(position, reason)`` of the unreadable images of the batch."""


def iter_embeddings(
    paths: Sequence[str | os.PathLike],
    backbone: Backbone,
    *,
    recipes: Sequence[str] = RECIPES,
    cfg: PreprocessConfig = PreprocessConfig(),
    batch_size: int | None = None,
    num_workers: int | None = None,
    precision: str = "auto",
    hashes: Sequence[str] | None = None,
) -> Iterator[EmbeddedBatch]:
    """Embed image files batch by batch, in input order, holding one batch of pixels at a time.

    Args:
        paths: Image files.
        backbone: From :func:`load_backbone`; its device is used.
        recipes: Feature recipes (subset of :data:`RECIPES`); only ``cls_last4`` hooks the blocks.
        cfg: Preprocessing parameters.
        batch_size: Images per forward pass (``None``: :func:`default_batch_size`).
        num_workers: Decode worker processes (``None``: :func:`default_num_workers`; 0: in-process).
        precision: ``auto`` (bf16/fp16 autocast on CUDA, fp32 on CPU), ``fp32``, ``bf16``, ``fp16``.
        hashes: Expected sha256 of each file; a mismatch is a failure (see :class:`ImageFileDataset`).

    Yields:
        One :class:`EmbeddedBatch` per batch of inputs (failures included).
    """
    widths = {r: recipe_width(r, backbone.hidden_size, backbone.num_layers) for r in recipes}
    device = backbone.device
    cuda = device.type == "cuda"
    batch_size = batch_size or default_batch_size(device)
    num_workers = default_num_workers(device) if num_workers is None or num_workers < 0 else num_workers
    num_workers = min(num_workers, -(-len(paths) // batch_size))  # no idle workers on tiny inputs
    dtype = amp_dtype(device, precision)
    loader = DataLoader(
        ImageFileDataset(paths, cfg, uint8=cuda, hashes=hashes),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=cuda,
    )
    hooks = BlockCLSHooks(backbone.model, LAST_BLOCKS) if "cls_last4" in recipes else None

    def launch() -> Iterator[tuple]:
        """Per batch: (indices, features on the host or on their way there, copy event, failures)."""
        for batch in loader:
            indices = np.asarray(batch.indices, dtype=np.int64)
            if batch.pixels is None:
                yield indices, None, None, batch.failures
                continue
            pixels = batch.pixels.to(device, non_blocking=True)
            if cuda:
                pixels = normalize_uint8(pixels, cfg)
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                hidden = backbone.model(pixel_values=pixels).last_hidden_state
            flat = feature_tensor(hidden, recipes, backbone.num_register_tokens, hooks.take() if hooks else ())
            event = None
            if cuda:  # copy to pinned memory without waiting; it is read once the next batch is launched
                flat, event = flat.to("cpu", non_blocking=True), torch.cuda.Event()
                event.record()
            yield indices, flat, event, batch.failures

    try:
        with torch.inference_mode(), _cpu_threads(backbone, num_workers, cfg.crop_size):
            # On CUDA, batch k is handed out while batch k+1 runs; on the CPU at once, so the caller
            # persists it before the next forward pass (a kill then loses one batch at most).
            for indices, flat, event, failures in _lagged(launch(), 1 if cuda else 0):
                if event is not None:
                    event.synchronize()
                yield EmbeddedBatch(indices, split_features(None if flat is None else flat.numpy(), widths), failures)
    finally:
        if hooks:
            hooks.close()


def _lagged(items: Iterable[T], lag: int) -> Iterator[T]:
    """Yield ``items`` in order, each one only once ``lag`` later items have been produced."""
    queue: collections.deque[T] = collections.deque()
    for item in items:
        queue.append(item)
        if len(queue) > lag:
            yield queue.popleft()
    yield from queue


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
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "auto",
) -> EmbeddingResult:
    """Embed a (small) list of image files in memory; shards go through ``embed_shard`` instead.

    Arguments as :func:`iter_embeddings`; ``progress(done, total)`` is called after each batch.
    """
    widths = {r: recipe_width(r, backbone.hidden_size, backbone.num_layers) for r in recipes}
    chunks: dict[str, list[np.ndarray]] = {r: [] for r in recipes}
    ok: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    done = 0
    batches = iter_embeddings(
        paths, backbone, recipes=recipes, cfg=cfg, batch_size=batch_size, num_workers=num_workers, precision=precision
    )
    for batch in batches:
        failures.extend(batch.failures)
        if len(batch.indices):
            ok.append(batch.indices)
            for r in recipes:
                chunks[r].append(batch.vectors[r])
        done += len(batch.indices) + len(batch.failures)
        if progress is not None:
            progress(done, len(paths))
    if failures:
        logger.warning("%d of %d images could not be embedded", len(failures), len(paths))
    vectors = {r: np.concatenate(chunks[r]) if chunks[r] else np.zeros((0, widths[r]), np.float32) for r in recipes}
    return EmbeddingResult(vectors, np.concatenate(ok) if ok else np.zeros(0, np.int64), failures)
