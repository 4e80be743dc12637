"""Speed of the truncated 8x8 DCT vs scipy's full 2D DCT on one (256, 768) patch-token matrix.

Run: ``python benchmarks/dct_speed.py``. Prints median per-matrix times and their ratio,
for a single matrix and per matrix inside a batch of 32 (how embedding uses it). Both sides
run on one CPU thread by default so the ratio compares algorithms, not thread counts.
"""

from __future__ import annotations

import argparse
import logging
import timeit

import numpy as np
import scipy.fft
import torch

from snake_assets.core.dct import dct2_topleft

logger = logging.getLogger(__name__)


def _median_seconds(fn, repeat: int, number: int) -> float:
    return float(np.median(timeit.repeat(fn, repeat=repeat, number=number))) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256, help="patch tokens")
    parser.add_argument("--d", type=int, default=768, help="hidden size")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (scipy.fft is single-threaded)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.n, args.d)).astype(np.float32)
    xt = torch.from_numpy(x)
    dct2_topleft(xt[:1], args.k)  # build and cache the bases before timing

    full_one = _median_seconds(lambda: scipy.fft.dctn(x[0], type=2, norm="ortho")[: args.k, : args.k], args.repeat, 20)
    trunc_one = _median_seconds(lambda: dct2_topleft(xt[:1], args.k), args.repeat, 20)
    full_batch = _median_seconds(
        lambda: scipy.fft.dctn(x, type=2, norm="ortho", axes=(1, 2))[:, : args.k, : args.k], args.repeat, 2
    ) / args.batch
    trunc_batch = _median_seconds(lambda: dct2_topleft(xt, args.k), args.repeat, 2) / args.batch

    shape = f"({args.n}, {args.d}) float32, k={args.k}, torch threads={torch.get_num_threads()}"
    logger.info("matrix %s", shape)
    logger.info(
        "single : scipy full %.1f us, truncated %.1f us -> %.1fx", full_one * 1e6, trunc_one * 1e6, full_one / trunc_one
    )
    logger.info(
        "batch %d: scipy full %.1f us/matrix, truncated %.1f us/matrix -> %.1fx",
        args.batch, full_batch * 1e6, trunc_batch * 1e6, full_batch / trunc_batch,
    )


if __name__ == "__main__":
    main()
