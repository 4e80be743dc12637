"""The country prior: counts per observation, shrinkage, unknown countries, and its effect on decisions."""

import numpy as np
import pandas as pd
import pytest

from snake_assets.core.country_prior import country_prior, observation_countries, prior_for_observations
from snake_assets.core.evaluation import predict_observations
from snake_assets.core.labels import LabelMap

LABELS = LabelMap(class_ids=(5, 77, 1783), binomial_names=("a", "b", "c"), venomous=(False, False, True))


def _train(rows):
    return pd.DataFrame(rows, columns=["observation_id", "class_id", "code"])


def test_observation_country_is_the_first_non_empty_code():
    raw = pd.DataFrame({"observation_id": ["1", "1", "HM 1", "2"], "code": [None, "MX", "US", ""]})
    assert observation_countries(raw).to_dict() == {"1": "MX", "HM 1": "US", "2": ""}
    assert observation_countries(raw.drop(columns="code")).to_dict() == {"1": "", "HM 1": "", "2": ""}


def test_prior_is_the_shrunk_country_frequency_over_the_global_one():
    # 4 observations of class 5 in MX (one of them with 3 images: still one sighting), 4 of 77 in US
    rows = [(f"m{i}", 5, "MX") for i in range(4)] + [("m0", 5, "MX")] * 2 + [(f"u{i}", 77, "US") for i in range(4)]
    prior = country_prior(_train(rows), LABELS, ["MX", "US", "FR", ""], strength=2.0)
    p_global = (np.array([4, 4, 0]) + 1) / (8 + 3)
    expected_mx = (np.array([4, 0, 0]) + 2.0 * p_global) / (4 + 2.0) / p_global
    np.testing.assert_allclose(prior[0], expected_mx)
    np.testing.assert_allclose(prior[1], expected_mx[[1, 0, 2]])
    np.testing.assert_array_equal(prior[2:], np.ones((2, 3)))  # unseen country, unknown country
    assert (prior > 0).all()  # down-weighted, never ruled out
    assert prior[0, 0] > 1 > prior[0, 1]


def test_training_rows_outside_the_label_map_are_ignored_and_strength_must_be_positive():
    rows = [("a", 5, "MX"), ("b", -1, "MX"), ("c", -1, "MX")]
    np.testing.assert_allclose(country_prior(_train(rows), LABELS, ["MX"]), country_prior(_train(rows[:1]), LABELS, ["MX"]))
    with pytest.raises(ValueError, match="strength"):
        country_prior(_train(rows), LABELS, ["MX"], strength=0)


def test_no_country_in_training_metadata_offers_no_prior():
    train = _train([("a", 5, ""), ("b", 77, None)])
    assert prior_for_observations(train, train, LABELS, ["a"]) is None


def test_the_prior_flips_an_ambiguous_observation_to_the_species_of_its_country():
    train = _train([(f"m{i}", 77, "MX") for i in range(20)] + [(f"u{i}", 5, "US") for i in range(20)])
    split = pd.DataFrame({"observation_id": ["q", "r"], "code": ["MX", "US"]})
    log_probs = np.log(np.array([[0.55, 0.45, 1e-6], [0.45, 0.55, 1e-6]]))
    prior = prior_for_observations(train, split, LABELS, ["q", "r"])
    kwargs = dict(aggregation="mean_prob", decision="argmax", fallback_class_id=5)
    plain = predict_observations(log_probs, ["q", "r"], ["q", "r"], LABELS, **kwargs)
    with_prior = predict_observations(log_probs, ["q", "r"], ["q", "r"], LABELS, prior=prior, **kwargs)
    assert plain["class_id"].tolist() == [5, 77]
    assert with_prior["class_id"].tolist() == [77, 5]
