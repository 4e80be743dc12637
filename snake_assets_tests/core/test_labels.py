"""The label map: contiguous labels, the only road back to class ids."""

import numpy as np
import pandas as pd
import pytest

from snake_assets.core.labels import LabelMap, LabelMapError, build_label_map, label_map_problems


def _train(class_ids, names=None):
    names = names or [f"Species {c}" for c in class_ids]
    return pd.DataFrame({"class_id": class_ids, "binomial_name": names})


VENOMOUS = pd.DataFrame({"class_id": [1783, 17, 901, 5], "MIVS": [1, 0, 1, 0]})


def test_labels_follow_ascending_class_id_not_row_order():
    lm = build_label_map(_train([1783, 17, 901, 17, 1783]), VENOMOUS)
    assert lm.class_ids == (17, 901, 1783)
    assert lm.venomous == (False, True, True)
    assert lm.num_classes == 3


def test_unknown_minus_one_is_not_a_label():
    lm = build_label_map(_train([-1, 5, 17]), VENOMOUS)
    assert lm.class_ids == (5, 17)


@pytest.mark.parametrize(
    "labels, class_ids",
    [([0, 1, 2], [17, 901, 1783]), ([2, 2, 0], [1783, 1783, 17]), ([], [])],
)
def test_round_trip_between_labels_and_class_ids(labels, class_ids):
    lm = build_label_map(_train([1783, 17, 901]), VENOMOUS)
    assert lm.to_class_ids(np.array(labels, dtype=int)).tolist() == class_ids
    assert lm.to_labels(np.array(class_ids, dtype=int)).tolist() == labels


def test_out_of_range_label_and_unknown_class_id_raise():
    lm = build_label_map(_train([1783, 17, 901]), VENOMOUS)
    with pytest.raises(LabelMapError):
        lm.to_class_ids(np.array([3]))
    with pytest.raises(LabelMapError, match="902"):
        lm.to_labels(np.array([17, 902]))


def test_class_id_with_two_names_is_refused():
    with pytest.raises(LabelMapError, match="class_id 17"):
        build_label_map(_train([17, 17], ["Natrix natrix", "Vipera berus"]), VENOMOUS)


@pytest.mark.parametrize(
    "frame, problem",
    [
        (pd.DataFrame({"label": [0, 2], "class_id": [5, 9]}), "0..1"),
        (pd.DataFrame({"label": [0, 1], "class_id": [5, 5]}), "several labels"),
        (pd.DataFrame({"label": [0, 1], "class_id": [9, 5]}), "ascending"),
        (pd.DataFrame({"label": [0, 0], "class_id": [5, 9]}), "several class ids"),
    ],
)
def test_problems_of_a_stored_table(frame, problem):
    assert any(problem in p for p in label_map_problems(frame))


def test_frame_and_dict_round_trips_and_fingerprints():
    lm = build_label_map(_train([1783, 17, 901]), VENOMOUS)
    assert LabelMap.from_frame(lm.to_frame()) == lm
    assert LabelMap.from_dict(lm.to_dict()) == lm
    other = build_label_map(_train([1783, 17, 902]), VENOMOUS)
    assert other.class_set_fingerprint() != lm.class_set_fingerprint()
    renamed = LabelMap(lm.class_ids, ("a", "b", "c"), lm.venomous)
    assert renamed.class_set_fingerprint() == lm.class_set_fingerprint()
    assert renamed.fingerprint() != lm.fingerprint()


def test_unsorted_or_duplicate_class_ids_cannot_be_constructed():
    with pytest.raises(LabelMapError):
        LabelMap((5, 3), ("a", "b"), (False, False))
    with pytest.raises(LabelMapError):
        LabelMap((5, 5), ("a", "b"), (False, False))
