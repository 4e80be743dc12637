"""Turn per-image log-probabilities into one SnakeCLEF prediction per observation.

Two choices are made here: how an observation's images are combined
(:data:`AGGREGATIONS`) and how a posterior becomes a label (:data:`DECISIONS`).
Labels become ``class_id`` only through :meth:`LabelMap.to_class_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import softmax

from snake_assets.core.labels import LabelMap

AGGREGATIONS = ("mode_first", "mean_prob")
DECISIONS = ("argmax", "min_expected_cost")

# Track 2 costs by (truth venomous, prediction venomous) for a wrong prediction.
_COST = {(False, False): 1.0, (False, True): 2.0, (True, False): 5.0, (True, True): 2.0}


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def cost_matrix(venomous: np.ndarray) -> np.ndarray:
    """Track 2 cost of predicting label ``c`` when the truth is label ``t``.

    Args:
        venomous: boolean mask indexed by label, shape ``(K,)``.

    Returns:
        ``cost[t, c]`` of shape ``(K, K)``: 0 on the diagonal, else 1 (harmless ->
        harmless), 2 (harmless -> venomous), 5 (venomous -> harmless) or 2
        (venomous -> another venomous).
    """
    v = np.asarray(venomous, dtype=bool)
    if v.ndim != 1:
        raise ValueError(f"venomous must be a 1-D mask, got shape {v.shape}")
    t, c = v[:, None], v[None, :]
    cost = np.select(
        [~t & ~c, ~t & c, t & ~c, t & c],
        [_COST[False, False], _COST[False, True], _COST[True, False], _COST[True, True]],
    ).astype(float)
    np.fill_diagonal(cost, 0.0)
    return cost


def decide_labels(probs: np.ndarray, decision: str, venomous: np.ndarray | None = None) -> np.ndarray:
    """One label per row of a posterior.

    Args:
        probs: posteriors, shape ``(n, K)``, rows summing to 1.
        decision: ``"argmax"``, or ``"min_expected_cost"``: argmin over ``c`` of
            ``sum_t p(t) cost[t, c]`` (:func:`cost_matrix`). Ties go to the lowest label.
        venomous: boolean mask by label; required for ``"min_expected_cost"``.

    Returns:
        int64 labels, shape ``(n,)``.
    """
    _check_choice(decision, DECISIONS, "decision")
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (n, K), got shape {probs.shape}")
    if decision == "argmax":
        return probs.argmax(axis=1).astype(np.int64)
    if venomous is None or len(venomous) != probs.shape[1]:
        raise ValueError(f"min_expected_cost needs a venomous mask of length {probs.shape[1]}")
    return (probs @ cost_matrix(venomous)).argmin(axis=1).astype(np.int64)


def _apply_prior(probs: np.ndarray, prior: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Multiply rows by the prior and renormalise; a row left without mass is an error."""
    post = probs * prior
    total = post.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        bad = ids[np.flatnonzero(total[:, 0] <= 0)[0]]
        raise ValueError(f"prior leaves no probability mass for observation {bad!r}")
    return post / total


def _mode_first(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per observation, the most frequent label; ties go to the earliest-seen tied label.

    When the first image's label is among the tied modes it wins (it is seen first);
    otherwise the tied label whose first image comes earliest wins.
    """
    df = pd.DataFrame({"obs": codes, "label": labels, "pos": np.arange(len(labels))})
    per = df.groupby(["obs", "label"], sort=False).agg(n=("pos", "size"), first=("pos", "min")).reset_index()
    per = per.sort_values(["obs", "n", "first"], ascending=[True, False, True])
    return per.drop_duplicates("obs")["label"].to_numpy(dtype=np.int64)


def decide_observations(
    log_probs: np.ndarray,
    observation_ids: Sequence[str],
    label_map: LabelMap,
    *,
    aggregation: str,
    decision: str,
    prior: np.ndarray | None = None,
) -> pd.DataFrame:
    """One prediction per observation from per-image log-probabilities.

    Args:
        log_probs: per-image log-probabilities over labels ``0..K-1``, shape ``(N, K)``;
            each row is softmax-normalised again, so unnormalised logits also work.
        observation_ids: observation of each image, length ``N`` (compared as str).
        label_map: the head's label map; gives ``K``, venomousness and class ids.
        aggregation: ``"mode_first"`` (decide per image, take the mode, ties broken by
            the earliest-seen tied label, i.e. the first image's label when tied) or
            ``"mean_prob"`` (average the images' probabilities, then decide once).
        decision: ``"argmax"`` or ``"min_expected_cost"`` (see :func:`decide_labels`).
        prior: optional multiplicative prior, shape ``(n_obs, K)``, rows in order of
            first appearance; applied per image for ``mode_first`` and to the
            averaged posterior for ``mean_prob``, then renormalised.

    Returns:
        Columns ``observation_id`` (str), ``label``, ``class_id``, ``n_images``;
        one row per observation in order of first appearance.

    Raises:
        ValueError: unknown aggregation/decision, or inputs of mismatched shape.
    """
    _check_choice(aggregation, AGGREGATIONS, "aggregation")
    _check_choice(decision, DECISIONS, "decision")
    log_probs = np.asarray(log_probs, dtype=float)
    if log_probs.ndim != 2 or log_probs.shape[1] != label_map.num_classes:
        raise ValueError(f"log_probs must have shape (N, {label_map.num_classes}), got {log_probs.shape}")
    if np.isnan(log_probs).any():
        raise ValueError("log_probs contain NaN")
    ids = np.asarray([str(o) for o in observation_ids], dtype=object)
    if len(ids) != len(log_probs):
        raise ValueError(f"{len(ids)} observation ids for {len(log_probs)} images")
    codes, uniques = pd.factorize(ids)
    n_obs = len(uniques)
    if prior is not None:
        prior = np.asarray(prior, dtype=float)
        if prior.shape != (n_obs, label_map.num_classes):
            raise ValueError(f"prior must have shape ({n_obs}, {label_map.num_classes}), got {prior.shape}")
        if not np.isfinite(prior).all() or (prior < 0).any():
            raise ValueError("prior must be finite and non-negative")

    venomous = label_map.venomous_mask()
    probs = softmax(log_probs, axis=1)
    n_images = np.bincount(codes, minlength=n_obs)
    if aggregation == "mode_first":
        if prior is not None:
            probs = _apply_prior(probs, prior[codes], ids)
        labels = _mode_first(decide_labels(probs, decision, venomous), codes)
    else:
        member = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n_obs, len(codes)))
        mean = np.asarray(member @ probs) / n_images[:, None]
        if prior is not None:
            mean = _apply_prior(mean, prior, np.asarray(uniques, dtype=object))
        labels = decide_labels(mean, decision, venomous)
    return pd.DataFrame(
        {
            "observation_id": pd.Series(uniques, dtype=object).astype(str),
            "label": labels,
            "class_id": label_map.to_class_ids(labels),
            "n_images": n_images.astype(np.int64),
        }
    )
