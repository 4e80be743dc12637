"""The checkpoint bundle: one safetensors file holding everything inference needs.

Tensors are the head weights; the safetensors ``metadata`` holds one JSON document
with the label map, head config, backbone, feature recipe, preprocessing, metrics,
seed and code version, plus SHA-256 digests of the weights and of the document.
Loading never unpickles anything, and a bundle that does not fit the embeddings
or label map it is used with is refused rather than half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from snake_assets.core.files import as_path, atomic_path, local_copy
from snake_assets.core.head import HeadConfig, LinearHead
from snake_assets.core.labels import LabelMap

logger = logging.getLogger(__name__)

FORMAT = "snake_assets.head_bundle"
FORMAT_VERSION = 1
_DOC_KEY = "snake_assets.bundle"
_DOC_SHA_KEY = "snake_assets.bundle.sha256"
_STR_FIELDS = ("backbone", "backbone_revision", "recipe", "code_version", "created_at")


class BundleError(ValueError):
    """A checkpoint bundle is unreadable, tampered with, or does not fit its use."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, eq=False)
class HeadBundle:
    """A trained head with everything needed to turn embeddings into class ids."""

    state_dict: dict[str, torch.Tensor]
    """:class:`LinearHead` weights."""
    head_config: HeadConfig
    label_map: LabelMap
    """Label -> class_id, binomial name, venomous flag; the only way back to class ids."""
    backbone: str
    """Backbone hub id or local directory name."""
    backbone_revision: str
    """Weights tag / commit of the backbone."""
    recipe: str
    """Feature recipe the head was trained on (``cls``, ``patch_mean``, ``dct8x8``)."""
    preprocessing: dict
    """``PreprocessConfig.to_dict()`` of the images behind the embeddings."""
    metrics: dict
    """Training metrics (``TrainedHead.metrics``)."""
    seed: int
    code_version: str
    """``snake_assets`` version plus git SHA when known (see :func:`snake_assets.core.version.code_version`)."""
    created_at: str = field(default_factory=_utc_now)
    """ISO-8601 UTC time of creation."""

    def build_head(self) -> LinearHead:
        """The head in eval mode, loaded with ``strict=True``."""
        head = LinearHead(self.head_config)
        head.load_state_dict(self.state_dict, strict=True)
        return head.eval()


def save_bundle(bundle: HeadBundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` as one safetensors file, atomically.

    Args:
        bundle: the bundle to save; its weights must fit its head config and label map.
        path: target file (parent folders are created).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        BundleError: the bundle is inconsistent or its metadata is not JSON-serialisable.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in bundle.state_dict.items()}
    _check_weights(tensors, bundle.head_config, bundle.label_map)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_sha256": _weights_sha256(tensors),
        "head_config": bundle.head_config.to_dict(),
        "label_map": bundle.label_map.to_dict(),
        "backbone": bundle.backbone,
        "backbone_revision": bundle.backbone_revision,
        "recipe": bundle.recipe,
        "preprocessing": bundle.preprocessing,
        "metrics": bundle.metrics,
        "seed": bundle.seed,
        "code_version": bundle.code_version,
        "created_at": bundle.created_at,
    }
    try:
        text = json.dumps(document, sort_keys=True, default=_numpy_scalar)
    except (TypeError, ValueError) as e:
        raise BundleError(f"bundle metadata is not JSON-serialisable: {e}") from e
    metadata = {_DOC_KEY: text, _DOC_SHA_KEY: hashlib.sha256(text.encode()).hexdigest()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    logger.info("Saved head bundle %s (%s, %d classes)", path, bundle.head_config, bundle.label_map.num_classes)
    return as_path(path)


def load_bundle(
    path: str | os.PathLike,
    *,
    expect_label_map: LabelMap | None = None,
    expect_in_dim: int | None = None,
    expect_recipe: str | None = None,
) -> HeadBundle:
    """Read and verify a bundle written by :func:`save_bundle`.

    Args:
        path: the safetensors file.
        expect_label_map: label map the predictions will be decoded with.
        expect_in_dim: width of the embeddings the head will be applied to.
        expect_recipe: feature recipe of those embeddings.

    Returns:
        The verified bundle.

    Raises:
        BundleError: the file is unreadable or corrupted, its metadata is missing,
            malformed, of an unknown format version or edited, its weights were
            edited or do not fit, or it disagrees with one of the expectations.
    """
    try:
        with local_copy(path) as local, safe_open(os.fspath(local), framework="pt", device="cpu") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
    except (OSError, SafetensorError, ValueError, RuntimeError) as e:
        raise BundleError(f"cannot read checkpoint bundle {path}: {e}") from e
    bundle = _decode(tensors, metadata or {}, path)
    if expect_recipe is not None and bundle.recipe != expect_recipe:
        raise BundleError(f"{path}: head was trained on recipe {bundle.recipe!r}, not {expect_recipe!r}")
    if expect_in_dim is not None and bundle.head_config.in_dim != expect_in_dim:
        raise BundleError(
            f"{path}: head expects {bundle.head_config.in_dim}-wide features but the embeddings are "
            f"{expect_in_dim}-wide (different backbone or recipe)"
        )
    if expect_label_map is not None and bundle.label_map != expect_label_map:
        diff = _diff(bundle.label_map, expect_label_map)
        raise BundleError(f"{path}: label map differs from the expected one: {diff}")
    return bundle


def _decode(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: str | os.PathLike) -> HeadBundle:
    text = metadata.get(_DOC_KEY)
    if text is None or _DOC_SHA_KEY not in metadata:
        raise BundleError(f"{path} has no snake_assets bundle metadata (not a head bundle?)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: bundle metadata is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(f"{path}: metadata is not a {FORMAT} document")
    if doc.get("format_version") != FORMAT_VERSION:
        version = doc.get("format_version")
        raise BundleError(f"{path}: unknown bundle format version {version!r} (this code reads {FORMAT_VERSION})")
    if hashlib.sha256(text.encode()).hexdigest() != metadata[_DOC_SHA_KEY]:
        raise BundleError(f"{path}: metadata checksum mismatch: the metadata was edited after saving")
    if _weights_sha256(tensors) != doc.get("weights_sha256"):
        raise BundleError(f"{path}: weights checksum mismatch: the weights were edited or corrupted")
    try:
        bundle = HeadBundle(
            state_dict=tensors,
            head_config=HeadConfig.from_dict(doc["head_config"]),
            label_map=LabelMap.from_dict(doc["label_map"]),
            **{k: _typed(doc, k, str) for k in _STR_FIELDS},
            preprocessing=_typed(doc, "preprocessing", dict),
            metrics=_typed(doc, "metrics", dict),
            seed=_typed(doc, "seed", int),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{path}: malformed bundle metadata: {e}") from e
    _check_weights(tensors, bundle.head_config, bundle.label_map)
    return bundle


def _typed(doc: dict, key: str, kind: type):
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _check_weights(tensors: dict[str, torch.Tensor], cfg: HeadConfig, label_map: LabelMap) -> None:
    """Refuse weights whose names, shapes or dtypes do not fit ``cfg`` and the label map."""
    if cfg.num_classes != label_map.num_classes:
        raise BundleError(f"head has {cfg.num_classes} outputs but the label map has {label_map.num_classes} classes")
    with torch.device("meta"):  # shapes only, no allocation
        expected = LinearHead(cfg).state_dict()
    if set(tensors) != set(expected):
        raise BundleError(f"weights {sorted(tensors)} are not a LinearHead's {sorted(expected)}")
    for name, ref in expected.items():
        t = tensors[name]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise BundleError(
                f"weight {name!r} is {t.dtype}{tuple(t.shape)} but {cfg} needs {ref.dtype}{tuple(ref.shape)}"
            )


def _weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _diff(saved: LabelMap, expected: LabelMap, limit: int = 10) -> str:
    """Which class ids differ between two label maps, in words."""
    s = dict(zip(saved.class_ids, zip(saved.binomial_names, saved.venomous)))
    e = dict(zip(expected.class_ids, zip(expected.binomial_names, expected.venomous)))
    parts = []
    for what, ids in (
        ("class ids only in the bundle", sorted(s.keys() - e.keys())),
        ("class ids only in the expected map", sorted(e.keys() - s.keys())),
        ("class ids whose name or venomous flag differ", sorted(c for c in s.keys() & e.keys() if s[c] != e[c])),
    ):
        if ids:
            parts.append(f"{what} ({len(ids)}): {ids[:limit]}{' ...' if len(ids) > limit else ''}")
    return "; ".join(parts)


def _numpy_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
