"""Competition submission files: formatting, official-style validation, atomic writes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from snake_assets.core.files import as_path, atomic_path


def format_submission(predictions: pd.DataFrame) -> pd.DataFrame:
    """The two official columns, ``observation_id`` (string) and ``class_id`` (int)."""
    return pd.DataFrame({
        "observation_id": predictions["observation_id"].astype(str),
        "class_id": predictions["class_id"].astype("int64"),
    })


def submission_problems(sub: pd.DataFrame, observation_ids: Sequence[str], known_class_ids: Iterable[int]) -> list[str]:
    """What the official validation would reject (empty when the file is acceptable).

    Args:
        sub: the submission frame.
        observation_ids: every observation of the split (one row each expected).
        known_class_ids: class ids that exist in the release.
    """
    problems = []
    missing_cols = [c for c in ("observation_id", "class_id") if c not in sub.columns]
    if missing_cols:
        return [f"missing column(s): {missing_cols}"]
    expected = set(map(str, observation_ids))
    got = sub["observation_id"].astype(str)
    if len(sub) != len(expected):
        problems.append(f"{len(sub)} rows for {len(expected)} observations")
    dup = got[got.duplicated()].unique().tolist()
    if dup:
        problems.append(f"duplicated observation ids: {dup[:3]}")
    missing = sorted(expected - set(got))
    if missing:
        problems.append(f"{len(missing)} observations missing, e.g. {missing[:3]}")
    extra = sorted(set(got) - expected)
    if extra:
        problems.append(f"{len(extra)} unknown observations, e.g. {extra[:3]}")
    unknown = sorted(set(sub["class_id"].astype(int)) - set(int(c) for c in known_class_ids))
    if unknown:
        problems.append(f"class ids unknown to the release: {unknown[:5]}")
    return problems


def write_submission(sub: pd.DataFrame, path: str | Path) -> Path:
    """Write the CSV atomically: readers see the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        sub.to_csv(tmp, index=False)
    return as_path(path)
