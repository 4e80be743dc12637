"""The official SnakeCLEF 2023/2024 scorer, reproduced number for number.

Mirrors the organisers' ``evaluate.py`` (BohemianVRA/FGVC-Competitions, SnakeCLEF2023):
the ground truth is reduced to its first row per observation, joined one-to-one with
the submission, and F1, accuracy, the venomous/harmless confusion (``PSC``) and the
two track metrics are computed with the same rounding. Differences, all deliberate:
observation ids are strings (HerpMapper ids such as ``"HM 1954"``), duplicated
submission ids and non-integer class ids are rejected with a message instead of a
pandas error, every applicable problem is reported at once, and an empty
denominator gives a percentage of ``0.0`` instead of a ``ZeroDivisionError``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, f1_score

COLUMNS = ("observation_id", "class_id")
TRACK1_WEIGHTS = {"f1": 1, "00": 1, "01": 2, "10": 5, "11": 2}
"""Track 1 weights of F1 and of ``100 - P`` for each confusion cell."""
TRACK2_WEIGHTS = {"00": 1, "01": 2, "10": 5, "11": 2}
"""Track 2 cost of each confusion cell (0 = harmless, 1 = venomous; truth first)."""
CELLS = ("00", "01", "10", "11")


class SubmissionError(ValueError):
    """A submission (or ground truth) the official scorer would refuse.

    Attributes:
        messages: one human-readable line per problem found.
    """

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


def _read_table(path: str | os.PathLike, what: str) -> pd.DataFrame:
    sep = "\t" if str(path).endswith(".tsv") else ","
    try:
        # keep_default_na=False: an id such as "NA" stays a string, not NaN.
        return pd.read_csv(path, sep=sep, dtype={"observation_id": str}, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - any reader failure means "unreadable"
        raise SubmissionError(f"Could not read {what} file '{path}': {e}") from e


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    """Read a submission: CSV, or TSV when the name ends in ``.tsv``.

    Args:
        path: the submission file.

    Returns:
        The table as written; ``observation_id`` is always read as a string.

    Raises:
        SubmissionError: the file cannot be read or parsed.
    """
    return _read_table(path, "submission")


def read_ground_truth(path: str | os.PathLike) -> pd.DataFrame:
    """Read ground truth (one row per image is fine) with ``observation_id`` as str.

    Raises:
        SubmissionError: the file is unreadable, lacks a column, or has non-integer class ids.
    """
    gt = _read_table(path, "ground-truth")
    missing = [c for c in COLUMNS if c not in gt.columns]
    if missing:
        raise SubmissionError(f"Ground-truth file '{path}' is missing column(s) '{', '.join(missing)}'.")
    class_ids = _as_int(gt["class_id"])
    if class_ids is None:
        raise SubmissionError(f"Ground-truth file '{path}' has non-integer class_id values.")
    return gt.assign(class_id=class_ids)


def read_venomous(path: str | os.PathLike) -> set[int]:
    """Class ids with ``MIVS == 1`` in ``venomous_status_list.csv``."""
    df = _read_table(path, "venomous-status")
    if not {"class_id", "MIVS"} <= set(df.columns):
        raise SubmissionError(f"Venomous-status file '{path}' needs columns 'class_id' and 'MIVS'.")
    mivs = pd.to_numeric(df["MIVS"], errors="coerce")
    return {int(c) for c in df.loc[mivs == 1, "class_id"]}


def _as_int(values: pd.Series) -> pd.Series | None:
    """Values as int64, or ``None`` when any is missing or not a whole number."""
    num = pd.to_numeric(values, errors="coerce")
    if num.isna().any() or not np.all(np.mod(num.to_numpy(dtype=float), 1) == 0):
        return None
    return num.astype(np.int64)


def _observations(gt: pd.DataFrame) -> pd.DataFrame:
    """Ground truth reduced to its first row per observation, ids as str."""
    gt = gt.assign(observation_id=gt["observation_id"].astype(str))
    return gt.drop_duplicates("observation_id", keep="first")


def validate_submission(gt: pd.DataFrame, sub: pd.DataFrame) -> None:
    """Apply the official scorer's checks (plus duplicate and class-id checks).

    Args:
        gt: ground truth, one or more rows per observation.
        sub: the submission table.

    Raises:
        SubmissionError: with one message per problem. A missing column stops the
            checks; otherwise row count, duplicated ids, non-integer class ids and
            missing observations (up to three named, then ``...``) are all reported.
    """
    missing_cols = [c for c in COLUMNS if c not in sub.columns]
    if missing_cols:
        raise SubmissionError(
            f"File submitted by the user is missing column(s) '{', '.join(missing_cols)}'."
        )
    obs = _observations(gt)["observation_id"]
    sub_ids = sub["observation_id"].astype(str)
    problems = []
    if len(sub) != len(obs):
        problems.append(f"File submitted by the user should have {len(obs)} records.")
    dup = sub_ids[sub_ids.duplicated()].unique()
    if len(dup):
        shown = ", ".join(dup[:3]) + (", ..." if len(dup) > 3 else "")
        problems.append(f"File submitted by the user has duplicated observations: {shown}")
    if _as_int(sub["class_id"]) is None:
        problems.append("File submitted by the user has missing or non-integer class_id values.")
    missing_obs = obs[~obs.isin(sub_ids)]
    if len(missing_obs):
        shown = ", ".join(missing_obs.iloc[:3]) + (", ..." if len(missing_obs) > 3 else "")
        problems.append(f"File submitted by the user is missing observations: {shown}")
    if problems:
        raise SubmissionError(problems)


def _pct(n: int, d: int) -> float:
    return float(np.round(n / d * 100, 2)) if d else 0.0


def score_submission(gt: pd.DataFrame, sub: pd.DataFrame, venomous_class_ids: set[int]) -> dict:
    """Score a submission exactly as the organisers do.

    Args:
        gt: ground truth with ``observation_id`` and ``class_id`` (``-1`` = unknown species).
        sub: submission with ``observation_id`` and ``class_id``.
        venomous_class_ids: class ids with ``MIVS == 1``; every other id is harmless.

    Returns:
        A JSON-able dict. ``f1`` and ``accuracy`` are percentages rounded to 2
        decimals. ``n00..n11`` count WRONG predictions by (truth, prediction)
        venomousness; ``p00``/``p01`` divide by gt rows harmless and not ``-1``,
        ``p10``/``p11`` by venomous gt rows, times 100 rounded to 2. As in the
        official script, ``psc`` holds the percentages (``{"P00": ..}``) and
        ``psc_total`` the counts (``{"N00": ..}``). ``track1`` is the weighted mean
        of the already-rounded F1 and ``100 - P`` values, rounded to 2; ``track2`` is
        the weighted count ``N00 + 2 N01 + 5 N10 + 2 N11``.

    Raises:
        SubmissionError: the submission fails :func:`validate_submission`.
    """
    obs = _observations(gt)
    validate_submission(obs, sub)
    sub = sub.assign(observation_id=sub["observation_id"].astype(str), class_id=_as_int(sub["class_id"]))
    merged = obs[list(COLUMNS)].assign(class_id=obs["class_id"].astype(np.int64)).merge(
        sub[list(COLUMNS)], on="observation_id", how="left", validate="one_to_one", suffixes=("_gt", "_pred")
    )
    y_true, y_pred = merged["class_id_gt"].to_numpy(), merged["class_id_pred"].to_numpy()
    with warnings.catch_warnings():  # the default zero_division ("warn") scores 0, as officially
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        f1 = float(np.round(f1_score(y_true, y_pred, average="macro") * 100, 2))
    accuracy = float(np.round(accuracy_score(y_true, y_pred) * 100, 2))

    venom = list(venomous_class_ids)
    true_v, pred_v = np.isin(y_true, venom), np.isin(y_pred, venom)
    wrong = y_true != y_pred
    n = {f"{t:d}{p:d}": int(np.sum(wrong & (true_v == t) & (pred_v == p))) for t in (0, 1) for p in (0, 1)}
    n_harmless, n_venomous = int(np.sum(~true_v & (y_true != -1))), int(np.sum(true_v))
    pct = {c: _pct(n[c], n_venomous if c[0] == "1" else n_harmless) for c in CELLS}

    track1 = TRACK1_WEIGHTS["f1"] * f1
    for c in CELLS:  # left-to-right, as the official expression, so float rounding agrees
        track1 += TRACK1_WEIGHTS[c] * (100 - pct[c])
    return {
        "f1": f1,
        "accuracy": accuracy,
        "psc": {f"P{c}": pct[c] for c in CELLS},
        "psc_total": {f"N{c}": n[c] for c in CELLS},
        "track1": float(np.round(track1 / sum(TRACK1_WEIGHTS.values()), 2)),
        "track2": int(sum(TRACK2_WEIGHTS[c] * n[c] for c in CELLS)),
        **{f"n{c}": n[c] for c in CELLS},
        **{f"p{c}": pct[c] for c in CELLS},
        "n_observations": len(merged),
    }


def score_files(
    ground_truth: str | os.PathLike, submission: str | os.PathLike, venomous: str | os.PathLike
) -> dict:
    """Read the three files and :func:`score_submission` them (the ``score`` CLI)."""
    return score_submission(read_ground_truth(ground_truth), read_submission(submission), read_venomous(venomous))
