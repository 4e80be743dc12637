"""Species subset, sample cap, separability numbers and the seeded UMAP (one small fit per test session)."""

import numpy as np
import pandas as pd
import pytest

from snake_assets.core.projection import (
    PAPER_SPECIES,
    Separability,
    cap_sample,
    choose_species,
    fit_umap,
    projection_points,
    separability,
    separability_table,
)


def blobs(n_per: int, n_species: int, dim: int = 16, spread: float = 0.05, seed: int = 0):
    """Well separated Gaussian clusters: species i sits around its own random direction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_species, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat([f"s{i}" for i in range(n_species)], n_per)


@pytest.mark.parametrize(
    ("species", "top_n", "expected", "how_contains"),
    [
        (PAPER_SPECIES, 0, ["Micrurus fulvius", "Bitis gabonica"], "configured species (4 not in the release)"),
        (("Bitis gabonica", "Micrurus fulvius"), 0, ["Bitis gabonica", "Micrurus fulvius"], "configured species"),
        (PAPER_SPECIES, 2, ["Natrix natrix", "Bitis gabonica"], "2 most frequent"),
        (("Nope one", "Micrurus fulvius"), 0, ["Natrix natrix", "Bitis gabonica"], "not in the release"),
    ],
)
def test_choose_species(species, top_n, expected, how_contains):
    counts = pd.Series({"Natrix natrix": 50, "Bitis gabonica": 20, "Micrurus fulvius": 20, "Vipera berus": 0})
    names, how = choose_species(counts, species, top_n)
    assert names == expected
    assert how_contains in how


def test_cap_sample_is_balanced_seeded_and_sorted():
    labels = ["a"] * 10 + ["b"] * 500 + ["c"] * 300
    keep = cap_sample(labels, 100, seed=1)
    kept = pd.Series(np.asarray(labels)[keep]).value_counts()
    assert len(keep) == 100 and list(keep) == sorted(keep) and len(set(keep)) == 100
    assert kept.to_dict() == {"a": 10, "b": 45, "c": 45}  # the small species keeps everything
    assert np.array_equal(keep, cap_sample(labels, 100, seed=1))
    assert not np.array_equal(keep, cap_sample(labels, 100, seed=2))
    assert np.array_equal(cap_sample(labels, 10_000, seed=0), np.arange(len(labels)))
    with pytest.raises(ValueError, match="positive"):
        cap_sample(labels, 0, seed=0)


def test_projection_points_keeps_labelled_readable_known_images():
    manifest = pd.DataFrame({
        "row_id": [5, 1, 2, 3, 4, 0],
        "split": ["train", "val", "test", "train", "train", "val"],
        "class_id": [7, 7, -1, 9, 99, 9],
        "readable": [True, True, True, False, True, True],
        "image_key": list("fbcdea"),
    })
    labels = pd.DataFrame({"label": [0, 1], "class_id": [7, 9], "binomial_name": ["Bitis gabonica", "Micrurus fulvius"],
                           "venomous": [True, True]})
    sample = projection_points(manifest, labels)
    # test rows, unreadable images and classes outside the label map are left out; row_id order
    assert sample.points["image_key"].tolist() == ["a", "b", "f"]
    assert sample.points["binomial_name"].tolist() == ["Micrurus fulvius", "Bitis gabonica", "Bitis gabonica"]
    assert sample.species == ["Micrurus fulvius", "Bitis gabonica"]  # the paper's order
    assert len(projection_points(manifest, labels, max_points=2).points) == 2


def test_separable_clusters_score_high_and_noise_scores_chance():
    x, y = blobs(20, 4)
    clear = separability(x, y, k=5, folds=5)
    assert clear.knn_accuracy == 1.0 and clear.silhouette > 0.8
    assert (clear.folds, clear.n_points, clear.n_species, clear.chance) == (5, 80, 4, 0.25)
    noise = separability(np.random.default_rng(1).normal(size=(80, 16)), y, k=5, folds=5)
    assert noise.knn_accuracy < 0.5 and abs(noise.silhouette) < 0.1


def test_grouped_folds_stop_sibling_images_from_voting():
    # Each observation has 3 identical images and a random species: only siblings "know" the label.
    rng = np.random.default_rng(0)
    obs_vectors = rng.normal(size=(40, 8))
    obs_species = rng.choice(["a", "b"], size=40)
    x, y = np.repeat(obs_vectors, 3, axis=0), np.repeat(obs_species, 3)
    groups = np.repeat([f"o{i}" for i in range(40)], 3)
    leaky = separability(x, y, k=1, folds=5)
    honest = separability(x, y, groups, k=1, folds=5)
    assert leaky.knn_accuracy > 0.9
    assert honest.knn_accuracy < 0.7


def test_separability_refuses_what_it_cannot_measure():
    x, _ = blobs(5, 2)
    with pytest.raises(ValueError, match="two species"):
        separability(x, ["a"] * 10)
    with pytest.raises(ValueError, match="'b' has 1 row"):
        separability(x, ["a"] * 9 + ["b"])


def test_separability_table_ranks_recipes():
    row = dict(knn_accuracy_std=0.0, chance=0.5, folds=2, k=1, n_points=4, n_species=2)
    table = separability_table({
        "dct8x8": Separability(knn_accuracy=0.6, silhouette=0.1, **row),
        "cls": Separability(knn_accuracy=0.9, silhouette=0.3, **row),
    })
    assert table["recipe"].tolist() == ["cls", "dct8x8"]
    assert list(table.columns[:4]) == ["recipe", "knn_accuracy", "knn_accuracy_std", "silhouette"]


def test_umap_is_seeded_and_keeps_clusters_apart():
    x, y = blobs(30, 2, dim=32, seed=3)
    a = fit_umap(x, seed=0, n_neighbors=10)
    assert a.shape == (60, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, fit_umap(x, seed=0, n_neighbors=10))
    centre = {s: a[y == s].mean(axis=0) for s in ("s0", "s1")}
    spread = max(np.linalg.norm(a[y == s] - centre[s], axis=1).max() for s in centre)
    assert np.linalg.norm(centre["s0"] - centre["s1"]) > spread
    with pytest.raises(ValueError, match="at least 5"):
        fit_umap(x[:4])
