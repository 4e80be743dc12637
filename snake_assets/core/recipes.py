"""Feature recipes: what is kept of one DINOv2 forward pass, per image.

``cls`` (token 0 of the last hidden state), ``patch_mean`` (mean of the patch tokens), ``dct8x8``
(top-left 8x8 2D DCT-II coefficients of the patch-token matrix) and ``cls_last4`` (the CLS tokens
of the last four blocks, each through the final layer norm, concatenated: DINOv2's linear-probe
input, ``create_linear_input`` in dinov2/eval/linear.py). Register tokens are excluded from the
patch tokens. Widths come from the backbone's config.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from snake_assets.core.backbone import BackboneSpec
from snake_assets.core.dct import dct2_topleft

RECIPES: tuple[str, ...] = ("cls", "patch_mean", "dct8x8", "cls_last4")
DCT_K = 8
LAST_BLOCKS = 4


def recipe_width(recipe: str, hidden_size: int, num_layers: int = LAST_BLOCKS) -> int:
    """Vector width of a recipe for a backbone of ``hidden_size`` and ``num_layers`` blocks.

    ``cls_last4`` concatenates ``min(4, num_layers)`` CLS tokens (tiny test models have 2 blocks).
    """
    if recipe in ("cls", "patch_mean"):
        return hidden_size
    if recipe == "dct8x8":
        return DCT_K * DCT_K
    if recipe == "cls_last4":
        return min(LAST_BLOCKS, max(num_layers, 1)) * hidden_size
    raise ValueError(f"unknown feature recipe {recipe!r}; expected one of {RECIPES}")


def feature_widths(spec: BackboneSpec, recipes: Sequence[str] = RECIPES) -> dict[str, int]:
    """``recipe -> width`` for a backbone, from its config alone."""
    return {r: recipe_width(r, spec.hidden_size, spec.num_layers) for r in recipes}


def _feature_parts(
    last_hidden_state: torch.Tensor, recipes: Sequence[str], num_register_tokens: int, block_cls: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    for recipe in recipes:
        recipe_width(recipe, 1)  # validates the name
    tokens = last_hidden_state.float()
    patches = tokens[:, 1 + num_register_tokens :]
    if patches.shape[1] == 0:
        raise ValueError(f"no patch tokens in a hidden state of shape {tuple(tokens.shape)}")
    if "cls_last4" in recipes and not block_cls:
        raise ValueError("cls_last4 needs the CLS tokens of the last blocks")
    make = {
        "cls": lambda: tokens[:, 0],
        "patch_mean": lambda: patches.mean(dim=1),
        "dct8x8": lambda: dct2_topleft(patches, DCT_K),
        "cls_last4": lambda: torch.cat([t.float() for t in block_cls], dim=1),
    }
    return [make[r]() for r in recipes]


def feature_tensor(
    last_hidden_state: torch.Tensor,
    recipes: Sequence[str] = ("cls", "patch_mean", "dct8x8"),
    num_register_tokens: int = 0,
    block_cls: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """The recipes of a batch side by side, ``(B, sum of widths)`` float32 on the model's device.

    Args:
        last_hidden_state: ``(B, 1 + R + P, D)`` normalised tokens: CLS, ``R`` registers, ``P`` patches.
        recipes: Subset of :data:`RECIPES`, in column order.
        num_register_tokens: ``R``; register tokens are excluded from the patch tokens.
        block_cls: ``(B, D)`` layer-normed CLS tokens of the last blocks, oldest first
            (needed for ``cls_last4`` only).
    """
    return torch.cat(_feature_parts(last_hidden_state, recipes, num_register_tokens, block_cls), dim=1)


def split_features(flat: np.ndarray | None, widths: dict[str, int]) -> dict[str, np.ndarray]:
    """Cut a :func:`feature_tensor` matrix (on the CPU) back into ``recipe -> (B, width)`` views."""
    if flat is None:
        return {r: np.zeros((0, w), np.float32) for r, w in widths.items()}
    bounds = np.cumsum([0, *widths.values()])
    return {r: flat[:, bounds[i] : bounds[i + 1]] for i, r in enumerate(widths)}


def features_from_hidden(
    last_hidden_state: torch.Tensor,
    recipes: Sequence[str] = ("cls", "patch_mean", "dct8x8"),
    num_register_tokens: int = 0,
    block_cls: Sequence[torch.Tensor] = (),
) -> dict[str, np.ndarray]:
    """:func:`feature_tensor` as ``recipe -> (B, width)`` float32 arrays on the CPU."""
    parts = _feature_parts(last_hidden_state, recipes, num_register_tokens, block_cls)
    return {r: part.cpu().numpy() for r, part in zip(recipes, parts)}


class BlockCLSHooks:
    """Forward hooks keeping only the CLS token of the last blocks (not every hidden state)."""

    def __init__(self, model: torch.nn.Module, n: int) -> None:
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if not isinstance(layers, torch.nn.ModuleList) or not hasattr(model, "layernorm"):
            raise ValueError(f"cls_last4 needs a DINOv2-style model (encoder.layer, layernorm); got {type(model).__name__}")
        self.norm = model.layernorm
        self.tokens: list[torch.Tensor] = []
        self.handles = [layer.register_forward_hook(self._keep) for layer in layers[-n:]]

    def _keep(self, _module, _inputs, output) -> None:
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        self.tokens.append(hidden[:, 0].clone())  # a view would keep the whole hidden state alive

    def take(self) -> list[torch.Tensor]:
        tokens, self.tokens = self.tokens, []
        return [self.norm(t.float()) for t in tokens]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
