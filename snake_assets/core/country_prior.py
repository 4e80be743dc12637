"""A country prior from training counts: which species are seen where.

Snake species are strongly regional, and every SnakeCLEF observation carries the
country (``code``) it was made in. The head's posterior ``p(c | x)`` already carries
the training frequency ``p(c)``; conditioning on the country multiplies it by

    ``p(c | k) / p(c)``  (images and country independent given the species),

with ``p(c | k)`` shrunk towards ``p(c)`` by ``strength`` pseudo-observations, so a
species never seen in a country is down-weighted, never ruled out, and a country
with no training observations (or an empty code) leaves the posterior unchanged.
Counts are per observation, not per image: a 30-image observation is one sighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from snake_assets.core.labels import LabelMap

DEFAULT_STRENGTH = 10.0
"""Pseudo-observations of the global species mix added to every country's counts."""


def observation_countries(raw: pd.DataFrame) -> pd.Series:
    """``observation_id -> code`` (first non-empty code of the observation's rows; ``""`` when none).

    Args:
        raw: metadata rows with ``observation_id`` and an optional ``code`` column.
    """
    ids = raw["observation_id"].astype(str)
    codes = raw["code"].fillna("").astype(str).str.strip() if "code" in raw else pd.Series("", index=raw.index)
    frame = pd.DataFrame({"observation_id": ids, "code": codes})
    known = frame[frame["code"] != ""].drop_duplicates("observation_id")
    out = pd.Series("", index=pd.Index(ids.drop_duplicates(), name="observation_id"), name="code")
    out.loc[known["observation_id"].to_numpy()] = known["code"].to_numpy()
    return out


def has_countries(raw: pd.DataFrame) -> bool:
    """Whether any row of ``raw`` names a country."""
    return "code" in raw and bool((raw["code"].fillna("").astype(str).str.strip() != "").any())


def country_prior(
    train: pd.DataFrame,
    label_map: LabelMap,
    countries: Sequence[str],
    *,
    strength: float = DEFAULT_STRENGTH,
) -> np.ndarray:
    """Multiplicative prior ``p(c | k) / p(c)`` for each given country, over labels ``0..K-1``.

    Args:
        train: training metadata rows (``observation_id``, ``class_id``, ``code``); rows whose
            class is not in the label map (``class_id`` -1) are ignored.
        label_map: gives ``K`` and the label of each class id.
        countries: one country code per observation to weight (``""`` = unknown).
        strength: pseudo-observations of the global mix in every country (> 0).

    Returns:
        float64 array ``(len(countries), K)``, all entries > 0; rows of unknown countries are 1.
    """
    if strength <= 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    known = train[train["class_id"].astype("int64").isin(label_map.class_ids)]
    obs = known.drop_duplicates("observation_id")
    where = observation_countries(known).reindex(obs["observation_id"].astype(str)).to_numpy()
    labels = label_map.to_labels(obs["class_id"].to_numpy())
    k = label_map.num_classes
    global_counts = np.bincount(labels, minlength=k).astype(float)
    p_global = (global_counts + 1.0) / (global_counts.sum() + k)  # every label > 0
    by_country = pd.DataFrame({"code": where, "label": labels})
    by_country = by_country[by_country["code"] != ""]
    counts = {
        code: np.bincount(group["label"].to_numpy(), minlength=k).astype(float)
        for code, group in by_country.groupby("code", sort=False)
    }
    out = np.ones((len(countries), k))
    for i, code in enumerate(countries):
        n = counts.get(str(code).strip())
        if n is not None:
            out[i] = (n + strength * p_global) / (n.sum() + strength) / p_global
    return out


def prior_for_observations(
    train: pd.DataFrame,
    split_raw: pd.DataFrame,
    label_map: LabelMap,
    observation_ids: Sequence[str],
    *,
    strength: float = DEFAULT_STRENGTH,
) -> np.ndarray | None:
    """The country prior of ``observation_ids`` (countries read from ``split_raw``), rows aligned.

    Returns:
        ``(len(observation_ids), K)``, or None when the training metadata names no country
        (then there is nothing to condition on and the ``country`` rules are not offered).
    """
    if not has_countries(train):
        return None
    where = observation_countries(split_raw).reindex([str(o) for o in observation_ids]).fillna("")
    return country_prior(train, label_map, where.tolist(), strength=strength)
