"""Observation-level predictions for every decision rule, and their official scores."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from snake_assets.core.decisions import AGGREGATIONS, DECISIONS, decide_observations
from snake_assets.core.labels import LabelMap
from snake_assets.core.scoring import score_submission

log = logging.getLogger(__name__)

PRIORS = ("none", "country")
"""``none``: the head's posterior as it is; ``country``: times the country prior (core.country_prior)."""
RULES: tuple[tuple[str, str, str], ...] = tuple(
    (a, d, p) for p in PRIORS for a, d in itertools.product(AGGREGATIONS, DECISIONS)
)
"""Every (aggregation, decision, prior); rules without a prior come first (they win ties)."""


def rule_name(aggregation: str, decision: str, prior: str = "none") -> str:
    return f"{aggregation}+{decision}" + ("" if prior == "none" else f"+{prior}")


def predict_observations(
    log_probs: np.ndarray,
    image_observation_ids: Sequence[str],
    all_observation_ids: Sequence[str],
    label_map: LabelMap,
    *,
    aggregation: str,
    decision: str,
    fallback_class_id: int,
    prior: np.ndarray | None = None,
) -> pd.DataFrame:
    """One prediction per observation in ``all_observation_ids``.

    ``prior`` (optional, shape ``(len(all_observation_ids), K)``, rows aligned with
    ``all_observation_ids``) multiplies each observation's posterior before deciding.

    Observations none of whose images could be embedded get ``fallback_class_id``
    (the most frequent training species) and ``n_images = 0``, so a submission
    still covers every observation and the gap is counted, not hidden.

    Returns:
        ``observation_id, class_id, label, n_images, fallback`` in the order of
        ``all_observation_ids``.
    """
    if len(image_observation_ids):
        if prior is not None:
            row_of = {str(o): i for i, o in enumerate(all_observation_ids)}
            if len(prior) != len(all_observation_ids):
                raise ValueError(f"prior has {len(prior)} rows for {len(all_observation_ids)} observations")
            prior = np.asarray(prior)[[row_of[str(o)] for o in dict.fromkeys(str(o) for o in image_observation_ids)]]
        decided = decide_observations(
            log_probs, list(image_observation_ids), label_map, aggregation=aggregation, decision=decision, prior=prior
        )
    else:
        decided = pd.DataFrame({"observation_id": [], "label": [], "class_id": [], "n_images": []})
    out = pd.DataFrame({"observation_id": [str(o) for o in dict.fromkeys(all_observation_ids)]})
    out = out.merge(decided, on="observation_id", how="left", validate="one_to_one")
    out["fallback"] = out["class_id"].isna()
    fallback_label = int(label_map.to_labels(np.array([fallback_class_id]))[0])
    out["class_id"] = out["class_id"].fillna(fallback_class_id).astype("int64")
    out["label"] = out["label"].fillna(fallback_label).astype("int64")
    out["n_images"] = out["n_images"].fillna(0).astype("int64")
    return out[["observation_id", "class_id", "label", "n_images", "fallback"]]


def predict_all_rules(
    log_probs: np.ndarray,
    image_observation_ids: Sequence[str],
    all_observation_ids: Sequence[str],
    label_map: LabelMap,
    *,
    fallback_class_id: int,
    country_prior: np.ndarray | None = None,
) -> pd.DataFrame:
    """:func:`predict_observations` for every rule, stacked long.

    Without ``country_prior`` (a release without country codes) the ``country`` rules are left out.
    """
    frames = []
    for aggregation, decision, prior in RULES:
        if prior == "country" and country_prior is None:
            continue
        df = predict_observations(
            log_probs, image_observation_ids, all_observation_ids, label_map,
            aggregation=aggregation, decision=decision, fallback_class_id=fallback_class_id,
            prior=country_prior if prior == "country" else None,
        )
        df.insert(0, "prior", prior)
        df.insert(0, "decision", decision)
        df.insert(0, "aggregation", aggregation)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def score_all_rules(predictions: pd.DataFrame, ground_truth: pd.DataFrame, venomous_class_ids: set[int]) -> pd.DataFrame:
    """Official scores of each rule in ``predictions`` (output of :func:`predict_all_rules`)."""
    rows = []
    predictions = predictions if "prior" in predictions else predictions.assign(prior="none")
    for (aggregation, decision, prior), sub in predictions.groupby(["aggregation", "decision", "prior"], sort=False):
        scores = score_submission(ground_truth, sub[["observation_id", "class_id"]], venomous_class_ids)
        flat = {k: v for k, v in scores.items() if not isinstance(v, dict)}
        rows.append({
            "aggregation": aggregation, "decision": decision, "prior": prior,
            "rule": rule_name(aggregation, decision, prior), **flat,
        })
    return pd.DataFrame(rows)


TRACK1_FLOOR = 40.0
"""An all-wrong submission scores Track 1 between ~36 and ~55 with F1 = 0 (the paper's 39.69)."""


def looks_like_broken_mapping(f1: float, track1: float) -> bool:
    """F1 = 0 or Track 1 in the all-wrong regime: the signature of labels never mapped back to class ids."""
    return not (f1 > 0 and track1 > TRACK1_FLOOR)


def mark_chosen_rule(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with a boolean ``chosen`` column set on the rule :func:`choose_rule` picks."""
    return scores.assign(chosen=scores["rule"] == rule_name(*choose_rule(scores)))


def choose_rule(scores: pd.DataFrame) -> tuple[str, str, str]:
    """``(aggregation, decision, prior)`` of the rule with the best Track 1; ties go to the
    lower Track 2, then to the earlier rule of :data:`RULES` (no prior before a prior)."""
    order = {rule_name(*r): i for i, r in enumerate(RULES)}
    ranked = scores.assign(_order=scores["rule"].map(order)).sort_values(
        ["track1", "track2", "_order"], ascending=[False, True, True]
    )
    best = ranked.iloc[0]
    return str(best["aggregation"]), str(best["decision"]), str(best.get("prior", "none"))


def majority_class_id(train_class_ids: Sequence[int]) -> int:
    """Most frequent training class id (smallest id on ties): the fallback prediction."""
    counts = pd.Series(list(train_class_ids)).value_counts()
    return int(counts[counts == counts.max()].index.min())
