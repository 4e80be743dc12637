"""Tests for the truncated 2D DCT-II against scipy's full transform."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from snake_assets.core.dct import dct2_topleft, dct_basis

RTOL = 1e-6


def _reference(x: np.ndarray, k: int) -> np.ndarray:
    return scipy.fft.dctn(x, type=2, norm="ortho")[:k, :k].ravel()


@pytest.mark.parametrize(
    ("n", "d", "k"),
    [(256, 768, 8), (256, 32, 8), (8, 8, 8), (37, 11, 8), (11, 37, 3), (5, 9, 1), (1024, 384, 8), (16, 1536, 4)],
)
def test_matches_scipy_dctn_float64(n, d, k):
    rng = np.random.default_rng(n * 1000 + d)
    x = rng.normal(size=(3, n, d))
    got = dct2_topleft(torch.from_numpy(x), k).numpy()
    assert got.shape == (3, k * k)
    for b in range(3):
        ref = _reference(x[b], k)
        np.testing.assert_allclose(got[b], ref, rtol=RTOL, atol=RTOL * np.abs(ref).max())


def test_basis_is_orthonormal_rows_of_scipy_matrix():
    n = 20
    full = scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)  # columns are transforms of unit vectors
    basis = dct_basis(n, 6, dtype=torch.float64, device="cpu").numpy()
    np.testing.assert_allclose(basis, full[:6], atol=1e-12)
    np.testing.assert_allclose(basis @ basis.T, np.eye(6), atol=1e-12)


def test_basis_is_cached_per_dtype_and_device():
    a = dct_basis(64, 8, dtype=torch.float32, device="cpu")
    assert dct_basis(64, 8, dtype=torch.float32, device=torch.device("cpu")) is a
    assert dct_basis(64, 8, dtype=torch.float64, device="cpu").dtype == torch.float64


def test_float32_single_matrix_and_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 768)).astype(np.float32)
    got = dct2_topleft(torch.from_numpy(x)).numpy()
    ref = _reference(x.astype(np.float64), 8)
    assert got.shape == (64,)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(ValueError):
        dct2_topleft(torch.zeros(2, 4, 16), k=8)
    with pytest.raises(ValueError):
        dct2_topleft(torch.zeros(16))
