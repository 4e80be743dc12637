"""Frozen DINOv2 backbones: what identifies them, how they load, and per-device run defaults.

:func:`describe_backbone` reads only the config (no weights), so a run whose vectors are all
cached knows the backbone's identity and feature widths without ever building the model;
:func:`load_backbone` builds it (SDPA attention, float32 weights, eval mode, no gradients).
Any DINOv2 size (small, base, large, giant) and the register variants load the same way,
by hub id (from a local cache) or from a ``save_pretrained`` folder.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class BackboneSpec:
    """What identifies a backbone and shapes its features, read from its config alone."""

    name: str
    """Hub id or local path exactly as given."""
    revision: str
    """Hub commit hash when known, else a 16-hex sha256 of config + weight files, else ``"unknown"``."""
    hidden_size: int
    """Token width (768 for ViT-B/14)."""
    num_layers: int
    """Transformer blocks (12 for ViT-B/14)."""
    num_register_tokens: int
    """Register tokens between CLS and the patch tokens (0 for plain DINOv2)."""
    model_type: str
    """``config.model_type`` (``dinov2``, ``dinov2_with_registers``, ...)."""
    patch_size: int = 14
    mlp_ratio: float = 4.0

    def forward_gflops(self, crop_size: int = 224) -> float:
        """Approximate GFLOPs of one image's forward pass (patch embedding, attention, MLP)."""
        patches = (crop_size // self.patch_size) ** 2
        tokens, d = 1 + self.num_register_tokens + patches, self.hidden_size
        per_block = 2 * tokens * (4 * d * d + 2 * d * int(d * self.mlp_ratio)) + 4 * tokens * tokens * d
        return (2 * patches * 3 * self.patch_size**2 * d + self.num_layers * per_block) / 1e9


@dataclass
class Backbone:
    """A frozen ViT backbone on its device, with the spec it was loaded from."""

    model: torch.nn.Module
    """The transformers model, in eval mode with gradients off, already on ``device``."""
    spec: BackboneSpec
    device: torch.device

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def revision(self) -> str:
        return self.spec.revision

    @property
    def hidden_size(self) -> int:
        return self.spec.hidden_size

    @property
    def num_layers(self) -> int:
        return self.spec.num_layers

    @property
    def num_register_tokens(self) -> int:
        return self.spec.num_register_tokens


def resolve_device(requested: str | torch.device) -> torch.device:
    """Turn ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda[:N]"`` into a device.

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


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, so container limits count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: 64 on a GPU (data-path bound), 32 on a CPU (model bound)."""
    return 64 if device.type == "cuda" else 32


def default_num_workers(device: torch.device, cpus: int | None = None) -> int:
    """Decode/preprocess worker processes: one per CPU, leaving one to feed a GPU; at most 16."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(16, cpus - 1 if device.type == "cuda" else cpus))


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Autocast dtype: bf16 (fp16 where bf16 is unsupported) on CUDA for ``auto``, never on CPU.

    Raises:
        ValueError: unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _AMP[precision]


def precision_tag(device: torch.device, precision: str = "auto") -> str:
    """``fp32``, ``bf16`` or ``fp16``: how vectors computed with these settings were computed."""
    dtype = amp_dtype(device, precision)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


@functools.lru_cache(maxsize=16)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _hash_model_dir(folder: Path) -> str:
    """Short sha256 over config.json and weight files (names and bytes), memoised by size and mtime."""
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.name.endswith(_WEIGHT_SUFFIXES))
    return _hash_files(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def _resolve_revision(name: str, config: object, local_dir: Path | None) -> str:
    if local_dir is not None:
        return _hash_model_dir(local_dir)
    commit = getattr(config, "_commit_hash", None)  # transformers < 5
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


def _source(name_or_path: str, local_files_only: bool | None) -> tuple[str, dict, Path | None]:
    local_dir = _local_dir(name_or_path)
    kwargs = {} if local_files_only is None else {"local_files_only": local_files_only}
    return (str(local_dir) if local_dir is not None else name_or_path), kwargs, local_dir


def describe_backbone(name_or_path: str, *, local_files_only: bool | None = None) -> BackboneSpec:
    """Read a backbone's identity and shapes from its config, without loading weights.

    Args:
        name_or_path: Hub id (``"facebook/dinov2-base"``) or a local ``save_pretrained`` folder.
        local_files_only: Passed to ``from_pretrained`` when not ``None``.

    Raises:
        FileNotFoundError: The path does not exist, or the id cannot be found locally/offline.
        ValueError: The config is not a ViT with integer ``hidden_size``.
    """
    from transformers import AutoConfig  # deferred: importing transformers costs seconds

    source, kwargs, local_dir = _source(name_or_path, local_files_only)
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load backbone {name_or_path!r} (no network here: pass a local folder or a cached hub id): {exc}"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"cannot load backbone {name_or_path!r}: {exc}") from exc
    hidden_size = getattr(config, "hidden_size", None)
    if not isinstance(hidden_size, int):
        raise ValueError(f"backbone {name_or_path!r} ({type(config).__name__}) has no integer hidden_size")
    model_type = str(getattr(config, "model_type", ""))
    if not model_type.startswith("dinov2"):
        logger.warning("backbone %s is model_type %r, not DINOv2; assuming CLS, registers, then patches", name_or_path, model_type)
    return BackboneSpec(
        name=name_or_path,
        revision=_resolve_revision(name_or_path, config, local_dir),
        hidden_size=hidden_size,
        num_layers=int(getattr(config, "num_hidden_layers", 0) or 0),
        num_register_tokens=int(getattr(config, "num_register_tokens", 0) or 0),
        model_type=model_type,
        patch_size=int(getattr(config, "patch_size", 14) or 14),
        mlp_ratio=float(getattr(config, "mlp_ratio", 4.0) or 4.0),
    )


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
    spec: BackboneSpec | None = None,
) -> Backbone:
    """Load a DINOv2-family backbone (any size, with or without registers), frozen, for inference.

    Weights are float32; mixed precision, if any, is applied at inference time on CUDA only.

    Args:
        name_or_path: Hub id or a local folder from ``save_pretrained``.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or a ``torch.device``.
        local_files_only: Passed to ``from_pretrained`` when not ``None``; ``None`` keeps the
            library default (which honours ``HF_HUB_OFFLINE``).
        spec: From :func:`describe_backbone`, when already known (skips re-hashing).

    Raises:
        FileNotFoundError: The path does not exist, or the id cannot be found locally/offline.
        ValueError: The checkpoint loads but is not a ViT with ``hidden_size``.
    """
    from transformers import AutoModel  # deferred: importing transformers costs seconds

    dev = resolve_device(device)
    spec = spec or describe_backbone(name_or_path, local_files_only=local_files_only)
    source, kwargs, _ = _source(name_or_path, local_files_only)
    try:
        model = _from_pretrained(AutoModel, source, kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load backbone {name_or_path!r} (no network here): {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"cannot load backbone {name_or_path!r}: {exc}") from exc
    model = model.to(device=dev, dtype=torch.float32).eval().requires_grad_(False)
    backbone = Backbone(model=model, spec=spec, device=dev)
    logger.info(
        "loaded backbone %s rev %s (%s, hidden %d, %d blocks, %d registers) on %s",
        spec.name, spec.revision, type(model).__name__, spec.hidden_size, spec.num_layers, spec.num_register_tokens, dev,
    )
    return backbone
