"""Per-observation decisions: tie-breaks, Track 2 costs and the label -> class_id step."""

from __future__ import annotations

import numpy as np
import pytest

from snake_assets.core.decisions import cost_matrix, decide_labels, decide_observations
from snake_assets.core.labels import LabelMap

# Labels 0..3 -> class ids far from the labels, so label == class_id can never pass by luck.
LABEL_MAP = LabelMap(
    class_ids=(17, 901, 1783, 2004),
    binomial_names=("Natrix natrix", "Vipera berus", "Coronella austriaca", "Naja naja"),
    venomous=(False, True, False, True),
)


def peaked(labels: list[int], k: int = 4, top: float = 0.7) -> np.ndarray:
    """Log-probabilities, one row per image, each peaked on the given label."""
    p = np.full((len(labels), k), (1 - top) / (k - 1))
    p[np.arange(len(labels)), labels] = top
    return np.log(p)


@pytest.mark.parametrize(
    ("t", "c", "cost"),
    [(0, 0, 0), (1, 1, 0), (0, 2, 1), (2, 0, 1), (0, 1, 2), (2, 3, 2),
     (1, 0, 5), (3, 2, 5), (1, 3, 2), (3, 1, 2)],
)
def test_cost_matrix_truth_table(t, c, cost):
    assert cost_matrix(np.array(LABEL_MAP.venomous))[t, c] == cost


@pytest.mark.parametrize(
    ("image_labels", "expected"),
    [
        ([2], 2),
        ([1, 2, 2], 2),  # clear mode beats the first image
        ([3, 3, 1, 1, 1], 1),
        ([1, 2], 1),  # tie: first image wins
        ([2, 1], 2),
        ([1, 2, 2, 1], 1),
        ([0, 1, 2, 2, 1], 1),  # tie between 1 and 2, first image (0) not tied: 1 seen first
        ([0, 2, 1, 1, 2], 2),
    ],
)
def test_mode_first_tie_break(image_labels, expected):
    out = decide_observations(
        peaked(image_labels), ["obs"] * len(image_labels), LABEL_MAP,
        aggregation="mode_first", decision="argmax",
    )
    assert out["label"].tolist() == [expected]
    assert out["class_id"].tolist() == [LABEL_MAP.class_ids[expected]]
    assert out["n_images"].tolist() == [len(image_labels)]


@pytest.mark.parametrize(
    ("probs", "argmax", "min_cost"),
    [
        # harmless 0.45 vs venomous 0.40: costs c0 = 5*.40 + .15 = 2.15, c1 = 2*.45 + 2*.15 = 1.2
        ([0.45, 0.40, 0.15, 0.0], 0, 1),
        # clear harmless top-1: c0 = 5*.1 + .1 = 0.6 < c1 = 2*.8 + 2*.1 = 1.8
        ([0.80, 0.10, 0.10, 0.0], 0, 0),
        # harmless mass split: venomous third-ranked wins, c1 = 2*.4 + 2*.35 = 1.5 < c0 = 5*.25 + .35 = 1.6
        ([0.40, 0.25, 0.35, 0.0], 0, 1),
        # two venomous: c1 = 2*.1 + 2*.42 = 1.04 < c3 = 2*.1 + 2*.48 = 1.16
        ([0.10, 0.48, 0.0, 0.42], 1, 1),
        # venomous top-1 is kept: c1 = 2*.3 + 2*.25 = 1.1 < c0 = 5*.45 + .25 = 2.5
        ([0.30, 0.45, 0.25, 0.0], 1, 1),
    ],
)
def test_decide_labels(probs, argmax, min_cost):
    p = np.array([probs])
    venomous = np.array(LABEL_MAP.venomous)
    assert decide_labels(p, "argmax").tolist() == [argmax]
    assert decide_labels(p, "min_expected_cost", venomous).tolist() == [min_cost]


def test_min_expected_cost_through_observations_maps_to_venomous_class_id():
    log_probs = np.log(np.array([[0.45, 0.40, 0.15, 1e-12]]))
    kwargs = dict(observation_ids=["HM 1"], label_map=LABEL_MAP, aggregation="mean_prob")
    assert decide_observations(log_probs, decision="argmax", **kwargs)["class_id"].tolist() == [17]
    assert decide_observations(log_probs, decision="min_expected_cost", **kwargs)["class_id"].tolist() == [901]


def test_mode_and_mean_disagree_and_order_is_first_appearance():
    # obs "b": one confident image for 0, two mild images for 1 -> mode 1, mean 0.
    p = np.array(
        [[0.90, 0.04, 0.03, 0.03], [0.05, 0.90, 0.03, 0.02], [0.40, 0.50, 0.05, 0.05],
         [0.40, 0.50, 0.05, 0.05], [0.01, 0.01, 0.01, 0.97]]
    )
    ids = ["b", "a", "b", "b", 7]
    mode = decide_observations(np.log(p), ids, LABEL_MAP, aggregation="mode_first", decision="argmax")
    mean = decide_observations(np.log(p), ids, LABEL_MAP, aggregation="mean_prob", decision="argmax")
    assert mode["observation_id"].tolist() == ["b", "a", "7"]
    assert mode["n_images"].tolist() == [3, 1, 1]
    assert mode["label"].tolist() == [1, 1, 3]
    assert mean["label"].tolist() == [0, 1, 3]
    assert mean["class_id"].tolist() == [17, 901, 2004]
    assert (mean["label"] != mean["class_id"]).all()


def test_prior_is_applied_and_renormalised():
    log_probs = np.log(np.array([[0.6, 0.3, 0.1, 0.0], [0.6, 0.3, 0.1, 0.0]]) + 1e-12)
    prior = np.array([[0.0, 1.0, 1.0, 1.0]])  # species 17 absent where this was seen
    for aggregation in ("mode_first", "mean_prob"):
        out = decide_observations(
            log_probs, ["o", "o"], LABEL_MAP, aggregation=aggregation, decision="argmax", prior=prior
        )
        assert out["class_id"].tolist() == [901]
    # renormalised before costing: 0.3/0.4 venomous vs 0.1/0.4 harmless -> stays venomous
    out = decide_observations(
        log_probs, ["o", "o"], LABEL_MAP, aggregation="mean_prob", decision="min_expected_cost", prior=prior
    )
    assert out["label"].tolist() == [1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(aggregation="vote"), "allowed: mode_first, mean_prob"),
        (dict(decision="bayes"), "allowed: argmax, min_expected_cost"),
        (dict(log_probs=peaked([0, 1], k=3)), r"shape \(N, 4\)"),
        (dict(observation_ids=["a"]), "1 observation ids for 2 images"),
        (dict(prior=np.ones((2, 4))), r"prior must have shape \(1, 4\)"),
        (dict(prior=-np.ones((1, 4))), "non-negative"),
        (dict(prior=np.array([[0.0, 0.0, 0.0, 0.0]])), "no probability mass for observation 'a'"),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = dict(log_probs=peaked([0, 1]), observation_ids=["a", "a"], label_map=LABEL_MAP,
                aggregation="mean_prob", decision="argmax")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        decide_observations(**args)


def test_min_expected_cost_needs_a_matching_mask():
    with pytest.raises(ValueError, match="venomous mask of length 4"):
        decide_labels(np.full((1, 4), 0.25), "min_expected_cost")
