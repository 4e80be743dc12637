"""The official scorer against hand-computed truth tables.

Species used throughout: harmless 1, 2, 3; venomous 10, 11; -1 = unknown species.
"""

from __future__ import annotations

import pandas as pd
import pytest

from snake_assets.core.scoring import (
    SubmissionError,
    read_ground_truth,
    read_submission,
    read_venomous,
    score_files,
    score_submission,
    validate_submission,
)

VENOMOUS = {10, 11}


def frame(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["observation_id", "class_id"])


# One row per image: o1 and o4 have two images. o4's second row carries a different
# class on purpose: keeping any row but the first would change every number below.
MIXED_GT = frame(
    [("o1", 1), ("o1", 1), ("o2", 1), ("o3", 2), ("o4", 10), ("o4", 1),
     ("o5", 10), ("o6", 11), ("o7", -1), ("o8", 3)]
)
MIXED_SUB = frame(
    [("o8", 3), ("o7", 3), ("o6", 11), ("o5", 11), ("o4", 1), ("o3", 10), ("o2", 2), ("o1", 1)]
)


def test_mixed_case_matches_hand_computation():
    # wrong: o2 H->H, o7 unknown->H (both N00), o3 H->V, o4 V->H, o5 V->V.
    # harmless non-unknown gt: o1 o2 o3 o8 (4); venomous gt: o4 o5 o6 (3).
    # per-label F1 over {-1,1,2,3,10,11}: 0, 1/2, 0, 2/3, 0, 2/3 -> mean 0.30556.
    # track1 = (30.56 + 50 + 2*75 + 5*66.67 + 2*66.67) / 11 = 697.25 / 11.
    r = score_submission(MIXED_GT, MIXED_SUB, VENOMOUS)
    assert r["n_observations"] == 8
    assert (r["n00"], r["n01"], r["n10"], r["n11"]) == (2, 1, 1, 1)
    assert (r["p00"], r["p01"], r["p10"], r["p11"]) == (50.0, 25.0, 33.33, 33.33)
    assert r["psc"] == {"P00": 50.0, "P01": 25.0, "P10": 33.33, "P11": 33.33}
    assert r["psc_total"] == {"N00": 2, "N01": 1, "N10": 1, "N11": 1}
    assert r["accuracy"] == 37.5
    assert r["f1"] == 30.56
    assert r["track1"] == 63.39
    assert r["track2"] == 2 + 2 * 1 + 5 * 1 + 2 * 1


@pytest.mark.parametrize(
    ("gt", "sub", "expected"),
    [
        pytest.param(  # all correct, unknown predicted as unknown too
            [("a", 1), ("b", 10), ("c", -1)], [("a", 1), ("b", 10), ("c", -1)],
            {"f1": 100.0, "accuracy": 100.0, "track1": 100.0, "track2": 0,
             "p00": 0.0, "p01": 0.0, "p10": 0.0, "p11": 0.0},
            id="all-correct",
        ),
        pytest.param(  # (0 + 100 + 2*0 + 5*0 + 2*100) / 11 = 27.2727
            [("a", 1), ("b", 10)], [("a", 10), ("b", 1)],
            {"f1": 0.0, "accuracy": 0.0, "track1": 27.27, "track2": 2 + 5,
             "n00": 0, "n01": 1, "n10": 1, "n11": 0, "p01": 100.0, "p10": 100.0},
            id="all-wrong-crossed",
        ),
        pytest.param(  # no venomous gt: P10/P11 have no denominator and are 0.0
            [("a", 1), ("b", 2)], [("a", 2), ("b", 1)],
            {"f1": 0.0, "track1": 81.82, "track2": 2, "n00": 2, "p00": 100.0,
             "p10": 0.0, "p11": 0.0},
            id="harmless-only",
        ),
        pytest.param(  # only unknown gt: its errors count, but P00 has no denominator
            [("a", -1), ("b", -1)], [("a", 1), ("b", 10)],
            {"n00": 1, "n01": 1, "p00": 0.0, "p01": 0.0, "track2": 3, "accuracy": 0.0},
            id="unknown-only",
        ),
        pytest.param(  # 1 of 3 right: accuracy 33.33; F1 labels {1,2,3}: 1, 0, 0
            [("a", 1), ("b", 2), ("c", 3)], [("a", 1), ("b", 3), ("c", 2)],
            {"accuracy": 33.33, "f1": 33.33, "n00": 2, "p00": 66.67},
            id="rounding",
        ),
    ],
)
def test_truth_table(gt, sub, expected):
    r = score_submission(frame(gt), frame(sub), VENOMOUS)
    assert {k: r[k] for k in expected} == expected


def test_herpmapper_ids_do_not_collide_with_numeric_ids():
    gt = frame([("HM 1954", 1), ("1954", 10)])
    r = score_submission(gt, frame([("1954", 10), ("HM 1954", 1)]), VENOMOUS)
    assert (r["accuracy"], r["n_observations"]) == (100.0, 2)
    swapped = score_submission(gt, frame([("1954", 1), ("HM 1954", 10)]), VENOMOUS)
    assert (swapped["n01"], swapped["n10"]) == (1, 1)


GT5 = frame([(f"o{i}", 1) for i in range(1, 6)])


@pytest.mark.parametrize(
    ("sub", "messages"),
    [
        pytest.param(
            pd.DataFrame({"observation_id": ["o1"]}),
            ["File submitted by the user is missing column(s) 'class_id'."],
            id="missing-class-id",
        ),
        pytest.param(
            pd.DataFrame({"obs": ["o1"], "cls": [1]}),
            ["File submitted by the user is missing column(s) 'observation_id, class_id'."],
            id="missing-both",
        ),
        pytest.param(
            frame([("o1", 1), ("o2", 1), ("o3", 1), ("o4", 1), ("o5", 1), ("o6", 1)]),
            ["File submitted by the user should have 5 records."],
            id="too-many-rows",
        ),
        pytest.param(
            frame([("o1", 1), ("x2", 1), ("x3", 1), ("x4", 1), ("x5", 1)]),
            ["File submitted by the user is missing observations: o2, o3, o4, ..."],
            id="missing-four-names-three",
        ),
        pytest.param(
            frame([("o1", 1), ("o2", 1), ("o3", 1), ("x4", 1)]),
            ["File submitted by the user should have 5 records.",
             "File submitted by the user is missing observations: o4, o5"],
            id="short-and-missing-two",
        ),
        pytest.param(
            frame([("o1", 1), ("o1", 2), ("o3", 1), ("o4", 1), ("o5", 1)]),
            ["File submitted by the user has duplicated observations: o1",
             "File submitted by the user is missing observations: o2"],
            id="duplicated-id",
        ),
        pytest.param(
            pd.DataFrame({"observation_id": [f"o{i}" for i in range(1, 6)],
                          "class_id": ["1", "2", "", "x", "3.5"]}),
            ["File submitted by the user has missing or non-integer class_id values."],
            id="bad-class-ids",
        ),
    ],
)
def test_invalid_submissions(sub, messages):
    with pytest.raises(SubmissionError) as err:
        validate_submission(GT5, sub)
    assert err.value.messages == messages
    assert str(err.value) == "; ".join(messages)
    with pytest.raises(SubmissionError):
        score_submission(GT5, sub, VENOMOUS)


def test_validation_counts_observations_not_image_rows():
    gt = frame([("o1", 1), ("o1", 1), ("o2", 2)])
    validate_submission(gt, frame([("o1", 1), ("o2", 2)]))  # two observations: fine
    with pytest.raises(SubmissionError, match="should have 2 records"):
        validate_submission(gt, frame([("o1", 1), ("o1", 1), ("o2", 2)]))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "gt.csv").write_text(
        "observation_id,class_id,image\nHM 1954,1,a.jpg\nHM 1954,1,b.jpg\n1954,10,c.jpg\n01954,2,d.jpg\n"
    )
    (tmp_path / "venomous.csv").write_text("class_id,MIVS\n1,0\n2,0\n10,1\n11,1\n")
    rows = [("01954", 2), ("1954", 1), ("HM 1954", 1)]
    (tmp_path / "sub.csv").write_text("observation_id,class_id\n" + "".join(f"{o},{c}\n" for o, c in rows))
    (tmp_path / "sub.tsv").write_text("observation_id\tclass_id\n" + "".join(f"{o}\t{c}\n" for o, c in rows))
    return tmp_path


def test_readers_keep_ids_as_strings(files):
    assert read_submission(files / "sub.csv")["observation_id"].tolist() == ["01954", "1954", "HM 1954"]
    gt = read_ground_truth(files / "gt.csv")
    assert gt["observation_id"].tolist() == ["HM 1954", "HM 1954", "1954", "01954"]
    assert gt["class_id"].tolist() == [1, 1, 10, 2]
    assert read_venomous(files / "venomous.csv") == {10, 11}


@pytest.mark.parametrize("name", ["sub.csv", "sub.tsv"])
def test_score_files_csv_and_tsv(files, name):
    r = score_files(files / "gt.csv", files / name, files / "venomous.csv")
    # "1954" is venomous 10 predicted harmless 1; the other two are right.
    assert (r["n_observations"], r["accuracy"], r["n10"], r["p10"], r["track2"]) == (3, 66.67, 1, 100.0, 5)


def test_tab_separated_file_named_csv_is_not_sniffed(files):
    (files / "tabs.csv").write_text((files / "sub.tsv").read_text())
    with pytest.raises(SubmissionError, match="missing column"):
        score_files(files / "gt.csv", files / "tabs.csv", files / "venomous.csv")


@pytest.mark.parametrize("content", [None, "", "a,b\n1,2,3,4\n\"unterminated\n"])
def test_unreadable_submission_names_the_file(tmp_path, content):
    path = tmp_path / "broken.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SubmissionError, match="broken.csv"):
        read_submission(path)


def test_numeric_looking_ids_are_not_parsed(tmp_path):
    path = tmp_path / "numeric.csv"
    path.write_text("observation_id,class_id\n01954,1\n1954,2\n")
    assert read_submission(path)["observation_id"].tolist() == ["01954", "1954"]
    path.write_text("observation_id,class_id\nNA,1\n")
    assert read_submission(path)["observation_id"].tolist() == ["NA"]
