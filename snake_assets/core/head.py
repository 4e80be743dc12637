"""The one classification head: a linear layer over frozen backbone embeddings.

Training, validation scoring, asset checks and the submission all build this
class, so the model that is scored is the model that was trained. Its input
width always comes from the embeddings (the backbone), never from a literal.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """Shape of a :class:`LinearHead`."""

    in_dim: int
    """Embedding width, taken from the feature matrix / backbone config."""
    num_classes: int
    """Number of labels, taken from the label map (``LabelMap.num_classes``)."""

    def __post_init__(self) -> None:
        for name in ("in_dim", "num_classes"):
            value = getattr(self, name)
            try:
                as_int = operator.index(value)  # accepts numpy ints, refuses floats and strings
            except TypeError:
                as_int = 0
            if isinstance(value, bool) or as_int < 1:
                raise ValueError(f"HeadConfig.{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, as_int)

    def to_dict(self) -> dict[str, int]:
        """Plain-JSON form, stored in the checkpoint bundle."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HeadConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: a key is missing or a value is not a positive int.
        """
        try:
            return cls(in_dim=d["in_dim"], num_classes=d["num_classes"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed head config: {e!r}") from e


class LinearHead(nn.Module):
    """Linear classifier whose output is log-probabilities over the label-map labels."""

    def __init__(self, cfg: HeadConfig) -> None:
        """Build an untrained head.

        Args:
            cfg: input width and number of classes.
        """
        super().__init__()
        self.cfg = cfg
        self.linear = nn.Linear(cfg.in_dim, cfg.num_classes)

    @property
    def in_dim(self) -> int:
        return self.cfg.in_dim

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(n, in_dim)`` embeddings to ``(n, num_classes)`` log-probabilities."""
        return torch.log_softmax(self.linear(x), dim=-1)


def predict_log_probs(head: LinearHead, features: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """Per-row log-probabilities of ``head`` on an embedding matrix.

    Args:
        head: a trained head (switched to eval mode here).
        features: ``(n, in_dim)`` embedding matrix.
        batch_size: rows per forward pass.

    Returns:
        ``(n, num_classes)`` float32 log-probabilities; column ``i`` is label ``i``.

    Raises:
        ValueError: ``features`` is not 2-D or its width is not the head's ``in_dim``.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D (n, dim) matrix, got shape {features.shape}")
    if features.shape[1] != head.in_dim:
        raise ValueError(
            f"feature width {features.shape[1]} does not match the head's in_dim {head.in_dim}: "
            "the embeddings come from a different backbone or feature recipe"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    head.eval()
    param = next(head.parameters())
    out = np.empty((features.shape[0], head.num_classes), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, features.shape[0], batch_size):
            chunk = torch.as_tensor(features[start : start + batch_size], dtype=param.dtype, device=param.device)
            out[start : start + len(chunk)] = head(chunk).float().cpu().numpy()
    return out
