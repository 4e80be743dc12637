"""Choosing among decision rules, the broken-mapping signature and the fallback class."""

import pandas as pd
import pytest

from snake_assets.core.evaluation import (
    choose_rule, looks_like_broken_mapping, majority_class_id, mark_chosen_rule, rule_name,
)
from snake_assets.core.inference import fallback_class_id


def _scores(rows):
    return pd.DataFrame(
        [{"aggregation": a, "decision": d, "prior": p, "rule": rule_name(a, d, p), "track1": t1, "track2": t2}
         for a, d, p, t1, t2 in rows]
    )


@pytest.mark.parametrize(
    "rows, chosen",
    [
        ([("mode_first", "argmax", "none", 70.0, 50), ("mean_prob", "argmax", "none", 75.0, 60)], ("mean_prob", "argmax", "none")),
        ([("mode_first", "argmax", "none", 75.0, 50), ("mean_prob", "argmax", "none", 75.0, 40)], ("mean_prob", "argmax", "none")),
        ([("mean_prob", "argmax", "none", 75.0, 40), ("mode_first", "argmax", "none", 75.0, 40)], ("mode_first", "argmax", "none")),
        ([("mean_prob", "argmax", "country", 75.0, 40), ("mean_prob", "argmax", "none", 75.0, 40)], ("mean_prob", "argmax", "none")),
        ([("mean_prob", "argmax", "none", 75.0, 40), ("mode_first", "argmax", "country", 75.1, 45)], ("mode_first", "argmax", "country")),
    ],
)
def test_best_track1_then_lower_track2_then_earlier_rule(rows, chosen):
    scores = _scores(rows)
    assert choose_rule(scores) == chosen
    marked = mark_chosen_rule(scores)
    assert marked["chosen"].sum() == 1
    assert tuple(marked.loc[marked["chosen"], ["aggregation", "decision", "prior"]].iloc[0]) == chosen


@pytest.mark.parametrize(
    "f1, track1, broken",
    [(0.0, 80.0, True), (12.0, 39.69, True), (12.0, 40.0, True), (0.5, 40.5, False), (48.7, 80.65, False)],
)
def test_broken_mapping_signature(f1, track1, broken):
    assert looks_like_broken_mapping(f1, track1) is broken


def test_fallback_is_the_most_frequent_known_training_class():
    assert majority_class_id([5, 1783, 1783, 5]) == 5  # ties go to the smaller id
    manifest = pd.DataFrame({
        "split": ["train"] * 5 + ["val"] * 3,
        "class_id": [-1, -1, -1, 1783, 5] + [9, 9, 9],
    })
    assert fallback_class_id(manifest) == 5  # -1 (no species) and other splits never count
