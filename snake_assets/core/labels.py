"""The species label map: SnakeCLEF ``class_id`` <-> contiguous training label 0..K-1.

The paper's submission scored F1 = 0 because class ids were mapped to contiguous
indices for training and never mapped back at inference. Here the mapping is one
immutable object, built once, saved inside every checkpoint, and the only way to
turn a label back into a ``class_id``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd


class LabelMapError(ValueError):
    """The label map is inconsistent or does not fit the data it is applied to."""


@dataclass(frozen=True)
class LabelMap:
    """Species known to a head; position ``i`` in each tuple is training label ``i``."""

    class_ids: tuple[int, ...]
    """SnakeCLEF class ids, strictly increasing."""
    binomial_names: tuple[str, ...]
    """Species name for each label."""
    venomous: tuple[bool, ...]
    """MIVS == 1 for each label."""

    def __post_init__(self) -> None:
        n = len(self.class_ids)
        if not (len(self.binomial_names) == n == len(self.venomous)):
            raise LabelMapError("class_ids, binomial_names and venomous differ in length")
        if n == 0:
            raise LabelMapError("a label map needs at least one class")
        if any(b <= a for a, b in zip(self.class_ids, self.class_ids[1:])):
            raise LabelMapError("class_ids must be strictly increasing (sorted, no duplicates)")
        if any(c < 0 for c in self.class_ids):
            raise LabelMapError("class_id -1 (unknown species) cannot be a training label")

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def venomous_mask(self) -> np.ndarray:
        """Boolean array indexed by label."""
        return np.asarray(self.venomous, dtype=bool)

    def to_class_ids(self, labels: np.ndarray) -> np.ndarray:
        """Map training labels (0..K-1) back to SnakeCLEF class ids."""
        labels = np.asarray(labels)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise LabelMapError(f"labels outside 0..{self.num_classes - 1}")
        return np.asarray(self.class_ids, dtype=np.int64)[labels.astype(np.int64)]

    def to_labels(self, class_ids: np.ndarray) -> np.ndarray:
        """Map SnakeCLEF class ids to training labels; unknown ids raise ``LabelMapError``."""
        class_ids = np.asarray(class_ids, dtype=np.int64)
        known = np.asarray(self.class_ids, dtype=np.int64)
        pos = np.searchsorted(known, class_ids)
        pos_clipped = np.minimum(pos, len(known) - 1)
        bad = known[pos_clipped] != class_ids
        if bad.any():
            missing = sorted(set(class_ids[bad].tolist()))[:5]
            raise LabelMapError(f"class ids not in the label map: {missing}")
        return pos_clipped

    def fingerprint(self) -> str:
        """Hash of the full mapping (ids, names, venomous flags)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def class_set_fingerprint(self) -> str:
        """Hash of the set of class ids only."""
        return hashlib.sha256(json.dumps(list(self.class_ids)).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "class_ids": list(self.class_ids),
            "binomial_names": list(self.binomial_names),
            "venomous": [bool(v) for v in self.venomous],
        }

    @classmethod
    def from_dict(cls, d: dict) -> LabelMap:
        try:
            return cls(
                class_ids=tuple(int(c) for c in d["class_ids"]),
                binomial_names=tuple(str(n) for n in d["binomial_names"]),
                venomous=tuple(bool(v) for v in d["venomous"]),
            )
        except (KeyError, TypeError) as e:
            raise LabelMapError(f"malformed label map: {e!r}") from e

    def to_frame(self) -> pd.DataFrame:
        """One row per label: ``label, class_id, binomial_name, venomous``."""
        return pd.DataFrame(
            {
                "label": np.arange(self.num_classes, dtype=np.int64),
                "class_id": np.asarray(self.class_ids, dtype=np.int64),
                "binomial_name": list(self.binomial_names),
                "venomous": np.asarray(self.venomous, dtype=bool),
            }
        )

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> LabelMap:
        """Rebuild from :meth:`to_frame` output; rows must be labels 0..K-1 in order."""
        df = df.sort_values("label")
        problems = label_map_problems(df)
        if problems:
            raise LabelMapError("; ".join(problems))
        return cls(
            class_ids=tuple(int(c) for c in df["class_id"]),
            binomial_names=tuple(str(n) for n in df["binomial_name"]),
            venomous=tuple(bool(v) for v in df["venomous"]),
        )


def build_label_map(train: pd.DataFrame, venomous: pd.DataFrame) -> LabelMap:
    """Build the label map from the training metadata.

    Labels are assigned by ascending ``class_id``, so the same class set always
    gives the same mapping.

    Args:
        train: training rows with ``class_id`` and ``binomial_name``.
        venomous: ``class_id, MIVS`` rows (``venomous_status_list.csv``).

    Returns:
        The label map over every class seen in ``train`` (``-1`` excluded).

    Raises:
        LabelMapError: a class id carries several binomial names.
    """
    species = train.loc[train["class_id"] >= 0, ["class_id", "binomial_name"]].drop_duplicates()
    clash = species[species.duplicated("class_id", keep=False)]
    if not clash.empty:
        cid = int(clash["class_id"].iloc[0])
        names = sorted(clash.loc[clash["class_id"] == cid, "binomial_name"].astype(str))
        raise LabelMapError(f"class_id {cid} has several binomial names: {names}")
    species = species.sort_values("class_id")
    mivs = dict(zip(venomous["class_id"].astype(int), venomous["MIVS"].astype(int)))
    return LabelMap(
        class_ids=tuple(int(c) for c in species["class_id"]),
        binomial_names=tuple(str(n) for n in species["binomial_name"]),
        venomous=tuple(mivs.get(int(c), 0) == 1 for c in species["class_id"]),
    )


def label_map_problems(df: pd.DataFrame) -> list[str]:
    """What is wrong with a stored label-map table (empty list when nothing)."""
    problems = []
    labels = df["label"].to_numpy()
    if sorted(labels.tolist()) != list(range(len(df))):
        problems.append(f"labels are not exactly 0..{len(df) - 1}")
    if df["class_id"].duplicated().any():
        dup = sorted(df.loc[df["class_id"].duplicated(), "class_id"].astype(int).tolist())[:5]
        problems.append(f"class ids mapped to several labels: {dup}")
    if df["label"].duplicated().any():
        problems.append("labels mapped to several class ids")
    ordered = df.sort_values("label")["class_id"].to_numpy()
    if len(ordered) > 1 and not (np.diff(ordered) > 0).all():
        problems.append("labels are not assigned in ascending class_id order")
    return problems
