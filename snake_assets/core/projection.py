"""How well each feature recipe separates species: a 2D UMAP to look at, kNN and silhouette to measure.

The paper's exploratory notebooks claimed that DINOv2 CLS tokens cluster species
better than DCT coefficients of the patch tokens, from UMAP pictures of six chosen
species. Here the same comparison is reproducible: a fixed species subset, a
capped, seeded, species-balanced sample, a seeded UMAP for the picture, and two
numbers on the full-dimensional vectors for the measurement: cross-validated
k-nearest-neighbour accuracy (folds grouped by observation, so images of one
observation never vote for each other) and the silhouette score.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from snake_assets.core.features import load_split_features

logger = logging.getLogger(__name__)

PAPER_SPECIES: tuple[str, ...] = (
    "Micrurus fulvius",
    "Lampropeltis triangulum",
    "Morelia spilota",
    "Bitis gabonica",
    "Agkistrodon contortrix",
    "Agkistrodon piscivorus",
)
"""The six species of the paper's UMAP figures (with the coral snake / milk snake mimicry pair)."""

MIN_POINTS = 5
"""UMAP and a cross-validated kNN need at least this many points."""


def choose_species(
    counts: pd.Series, species: Sequence[str] = PAPER_SPECIES, top_n: int = 0, *, min_species: int = 2
) -> tuple[list[str], str]:
    """Pick the species subset to project.

    Args:
        counts: number of labelled images per binomial name.
        species: names to use (those absent from ``counts`` are skipped).
        top_n: when > 0, ignore ``species`` and take the ``top_n`` most frequent
            species (ties broken by name).
        min_species: when fewer named species are present, fall back to the most
            frequent ``max(len(species), min_species)`` species.

    Returns:
        ``(names, how)``: the chosen names (in the order given, or by frequency)
        and a short description of how they were chosen.
    """
    counts = counts[counts > 0]
    by_frequency = sorted(counts.index, key=lambda name: (-int(counts[name]), str(name)))
    if top_n > 0:
        return [str(n) for n in by_frequency[:top_n]], f"the {top_n} most frequent species"
    present = [s for s in dict.fromkeys(species) if s in counts.index]
    if len(present) >= min_species:
        missing = len(set(species)) - len(present)
        return present, "the configured species" + (f" ({missing} not in the release)" if missing else "")
    n = max(len(set(species)), min_species)
    logger.warning("only %d of the configured species are in the release; using the %d most frequent", len(present), n)
    return [str(s) for s in by_frequency[:n]], f"the {n} most frequent species (configured species not in the release)"


@dataclass(frozen=True)
class ProjectionSample:
    """The images to project and how their species were chosen."""

    points: pd.DataFrame
    """Manifest rows (train and val) with ``binomial_name`` and ``venomous`` added, in ``row_id`` order."""
    species: list[str]
    """The chosen species, in the configured order (or by frequency)."""
    how: str
    """How the species were chosen, in words."""


def projection_points(
    manifest: pd.DataFrame,
    label_frame: pd.DataFrame,
    *,
    species: Sequence[str] = PAPER_SPECIES,
    top_n: int = 0,
    max_points: int = 1200,
    seed: int = 0,
) -> ProjectionSample:
    """The labelled, readable images of the chosen species, capped by :func:`cap_sample`.

    Args:
        manifest: ``image_manifest`` rows (every split).
        label_frame: ``species_label_map`` rows (``class_id, binomial_name, venomous``).
        species, top_n: see :func:`choose_species`.
        max_points, seed: see :func:`cap_sample`.

    Returns:
        The sample: labelled, readable images whose class is in the label map.
    """
    labelled = manifest[(manifest["split"] != "test") & (manifest["class_id"] >= 0) & manifest["readable"].astype(bool)]
    labelled = labelled.merge(label_frame[["class_id", "binomial_name", "venomous"]], on="class_id", how="inner")
    names, how = choose_species(labelled["binomial_name"].value_counts(), species, top_n)
    subset = labelled[labelled["binomial_name"].isin(names)].sort_values("row_id", ignore_index=True)
    keep = cap_sample(subset["binomial_name"], max_points, seed) if len(subset) else np.arange(0)
    return ProjectionSample(subset.iloc[keep].reset_index(drop=True), names, how)


def load_projection_vectors(
    shard_paths: Sequence, points: pd.DataFrame, recipes: Sequence[str], species: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, np.ndarray], list[str]]:
    """Vectors of every recipe for the sampled points, aligned row for row.

    A species with fewer than 2 embedded images cannot be cross-validated, so it is
    left out and returned by name (the caller reports it).

    Returns:
        ``(points, vectors, left_out)``: embedded points in manifest order,
        ``recipe -> (n, width)`` matrices, and the species left out.

    Raises:
        ValueError: recipes cover different images (shards of mixed generations), or
            fewer than ``MIN_POINTS`` images of 2+ species remain.
    """
    rows, vectors = None, {}
    for recipe in recipes:
        got, matrix = load_split_features(list(shard_paths), points, recipe)
        if rows is not None and got["image_key"].tolist() != rows["image_key"].tolist():
            raise ValueError(f"recipe {recipe!r} covers different images than {recipes[0]!r}: re-materialize image_embeddings")
        rows, vectors[recipe] = got, matrix
    counts = rows["binomial_name"].value_counts()
    left_out = [s for s in species if counts.get(s, 0) < 2]
    if left_out:
        keep = ~rows["binomial_name"].isin(left_out).to_numpy()
        rows, vectors = rows[keep].reset_index(drop=True), {r: v[keep] for r, v in vectors.items()}
        logger.warning("left out species with fewer than 2 embedded images: %s", left_out)
    if len(rows) < MIN_POINTS or rows["binomial_name"].nunique() < 2:
        raise ValueError(f"{len(rows)} embedded images of {rows['binomial_name'].nunique()} species: need {MIN_POINTS}+ images of 2+ species")
    return rows, vectors, left_out


def cap_sample(labels: Sequence, max_points: int, seed: int) -> np.ndarray:
    """Positions of a species-balanced random sample of at most ``max_points`` rows.

    Each species keeps ``min(its count, quota)`` rows, the quota being the largest
    that fits ``max_points`` (small species keep everything, large ones share the
    rest equally). The result is sorted, and the same for the same seed.
    """
    labels = pd.Series(list(labels))
    if max_points <= 0:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if len(labels) <= max_points:
        return np.arange(len(labels))
    sizes = labels.value_counts().sort_values()
    quota, budget, remaining = {}, max_points, len(sizes)
    for name, size in sizes.items():  # smallest first: leftovers flow to larger species
        quota[name] = min(int(size), budget // remaining)
        budget -= quota[name]
        remaining -= 1
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(labels.to_numpy() == name), quota[name], replace=False) for name in sizes.index
    ]
    return np.sort(np.concatenate(keep))


def fit_umap(vectors: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine") -> np.ndarray:
    """2D UMAP coordinates (float32, one row per vector), reproducible for a seed.

    ``n_neighbors`` is clamped below the number of points so small subsets work.

    Raises:
        ValueError: fewer than :data:`MIN_POINTS` vectors.
    """
    import umap  # deferred: importing umap compiles numba functions (seconds)

    n = len(vectors)
    if n < MIN_POINTS:
        raise ValueError(f"UMAP needs at least {MIN_POINTS} points, got {n}")
    reducer = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(n_neighbors, n - 1)), min_dist=min_dist,
        metric=metric, random_state=seed, n_jobs=1, init="spectral" if n > 10 else "random",
    )
    with warnings.catch_warnings():  # "n_jobs overridden by random_state" and small-graph notices
        warnings.simplefilter("ignore", UserWarning)
        coords = reducer.fit_transform(np.asarray(vectors, dtype=np.float32))
    return np.asarray(coords, dtype=np.float32)


@dataclass(frozen=True)
class Separability:
    """How well one recipe's full-dimensional vectors separate the species subset."""

    knn_accuracy: float
    """Mean cross-validated k-NN accuracy (0..1)."""
    knn_accuracy_std: float
    """Standard deviation of the accuracy over folds."""
    silhouette: float
    """Silhouette score of the species labels (-1..1; higher = tighter, better separated clusters)."""
    chance: float
    """Accuracy of always predicting the most frequent species in the sample."""
    folds: int
    k: int
    n_points: int
    n_species: int

    def as_row(self) -> dict:
        return {
            "knn_accuracy": round(self.knn_accuracy, 4), "knn_accuracy_std": round(self.knn_accuracy_std, 4),
            "silhouette": round(self.silhouette, 4), "chance": round(self.chance, 4), "folds": self.folds,
            "k": self.k, "points": self.n_points, "species": self.n_species,
        }


def separability(
    vectors: np.ndarray,
    labels: Sequence,
    groups: Sequence | None = None,
    *,
    k: int = 5,
    folds: int = 5,
    metric: str = "cosine",
    seed: int = 0,
) -> Separability:
    """Cross-validated k-NN accuracy and silhouette score of ``labels`` in ``vectors``.

    Args:
        vectors: (n, d) full-dimensional features.
        labels: species of each row.
        groups: observation of each row; when given, folds never split an
            observation (``StratifiedGroupKFold``), so sibling images cannot vote.
        k: neighbours (clamped to the smallest training fold).
        folds: folds (clamped to the smallest species and the number of groups).
        metric: distance for both k-NN and silhouette.
        seed: fold shuffling seed.

    Raises:
        ValueError: fewer than two species, or a species with a single row.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x = np.asarray(vectors, dtype=np.float32)
    y = pd.Series(list(labels)).astype(str).to_numpy()
    counts = pd.Series(y).value_counts()
    if len(counts) < 2:
        raise ValueError(f"separability needs at least two species, got {list(counts.index)}")
    n_folds = min(folds, int(counts.min()))
    if groups is not None:
        n_folds = min(n_folds, pd.Series(list(groups)).nunique())
    if n_folds < 2:
        raise ValueError(f"species {counts.idxmin()!r} has {int(counts.min())} row(s); cross-validation needs 2")
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    k_eff = max(1, min(k, len(x) - len(x) // n_folds - 1))
    knn = KNeighborsClassifier(n_neighbors=k_eff, metric=metric)
    with warnings.catch_warnings():  # a grouped fold may miss a rare species: sklearn warns, the score stands
        warnings.simplefilter("ignore", UserWarning)
        scores = cross_val_score(knn, x, y, cv=splitter, groups=None if groups is None else list(groups))
    return Separability(
        knn_accuracy=float(np.mean(scores)),
        knn_accuracy_std=float(np.std(scores)),
        silhouette=float(silhouette_score(x, y, metric=metric)),
        chance=float(counts.max() / len(y)),
        folds=n_folds,
        k=k_eff,
        n_points=len(y),
        n_species=len(counts),
    )


def separability_table(rows: dict[str, Separability]) -> pd.DataFrame:
    """One row per recipe, best k-NN accuracy first."""
    frame = pd.DataFrame([{"recipe": recipe, **s.as_row()} for recipe, s in rows.items()])
    if frame.empty:
        return frame
    return frame.sort_values(["knn_accuracy", "silhouette"], ascending=False, ignore_index=True)
