"""Truncated 2D DCT-II of ViT patch-token matrices (the paper's ``dct8x8`` feature).

Only the top-left ``k x k`` coefficients of the orthonormal 2D DCT-II are needed, so
instead of a full transform we compute ``C_N[:k] @ X @ C_D[:k].T`` with cached basis
rows: two small matmuls that batch on any device.
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=64)
def _cached_basis(n: int, k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    rows = torch.arange(k, dtype=torch.float64).unsqueeze(1)
    cols = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    basis = torch.cos(math.pi * (2 * cols + 1) * rows / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype=dtype, device=device)


def dct_basis(
    n: int, k: int, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Return the first ``k`` rows of the orthonormal DCT-II matrix of size ``n``.

    Row ``u`` is ``s_u * cos(pi * (2 j + 1) * u / (2 n))`` for ``j = 0..n-1`` with
    ``s_0 = sqrt(1/n)`` and ``s_u = sqrt(2/n)`` otherwise, i.e. scipy's ``norm="ortho"``.
    Built in float64 and cached per ``(n, k, dtype, device)``; treat the result as read-only.

    Args:
        n: Transform length.
        k: Number of leading coefficients kept, ``1 <= k <= n``.
        dtype: Output dtype.
        device: Output device.

    Returns:
        Tensor of shape ``(k, n)``.
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return _cached_basis(int(n), int(k), dtype, torch.device(device))


def dct2_topleft(tokens: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Top-left ``k x k`` coefficients of the orthonormal 2D DCT-II of each token matrix.

    Equals ``scipy.fft.dctn(x, type=2, norm="ortho")[:k, :k].ravel()`` per matrix.

    Args:
        tokens: ``(B, N, D)`` batch of patch-token matrices (N patches by D channels),
            or a single ``(N, D)`` matrix. Computed in the input's dtype and device.
        k: Coefficients kept along each axis; needs ``k <= N`` and ``k <= D``.

    Returns:
        ``(B, k * k)`` (or ``(k * k,)`` for a 2D input), flattened row-major.
    """
    squeeze = tokens.ndim == 2
    x = tokens.unsqueeze(0) if squeeze else tokens
    if x.ndim != 3:
        raise ValueError(f"expected (B, N, D) or (N, D) tokens, got shape {tuple(tokens.shape)}")
    _, n, d = x.shape
    c_n = dct_basis(n, k, dtype=x.dtype, device=x.device)
    c_d = dct_basis(d, k, dtype=x.dtype, device=x.device)
    coeffs = torch.matmul(torch.matmul(c_n, x), c_d.T).reshape(x.shape[0], k * k)
    return coeffs[0] if squeeze else coeffs
