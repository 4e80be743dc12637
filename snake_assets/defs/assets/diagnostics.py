"""Diagnostics: how well each feature recipe separates species, as pictures and as numbers."""

import time

import dagster as dg
import numpy as np

from snake_assets.core.embedding_store import recipe_widths
from snake_assets.core.figures import png_markdown, projection_html, scatter_png, thumbnail_data_uri
from snake_assets.core.files import atomic_write_bytes
from snake_assets.core.projection import (
    PAPER_SPECIES, fit_umap, load_projection_vectors, projection_points, separability, separability_table,
)
from snake_assets.defs.resources import BackboneResource, LakeResource

COVERS_SUBSET = "projection_covers_species_subset"


class ProjectionConfig(dg.Config):
    """Which species to project, how many points, and the seeds that make the pictures reproducible."""

    species: list[str] = list(PAPER_SPECIES)
    """Binomial names to project (default: the paper's six species)."""
    top_n: int = 0
    """When > 0, project the ``top_n`` most frequent species instead of ``species``."""
    max_points: int = 1200
    """Cap on projected images (species-balanced), so the asset stays fast on the full release."""
    seed: int = 0
    n_neighbors: int = 15
    knn_k: int = 5
    cv_folds: int = 5
    metric: str = "cosine"
    """Distance for UMAP, k-NN and silhouette."""
    thumbnail_px: int = 72
    """Edge of the hover thumbnails in the interactive page (0 = no thumbnails)."""


def _recipes(paths) -> list[str]:
    """Recipe columns stored in every shard, in the first shard's column order."""
    per_file = [recipe_widths(p) for p in paths]
    return [r for r in per_file[0] if all(r in w for w in per_file[1:])]


@dg.asset(
    group_name="diagnostics",
    kinds={"umap", "plotly"},
    deps=["image_embeddings", "species_label_map"],
    check_specs=[
        dg.AssetCheckSpec(
            COVERS_SUBSET, asset="embedding_projection",
            description="Every chosen species has 2+ embedded images (else it is left out) and every UMAP coordinate is finite.",
        )
    ],
)
def embedding_projection(
    context: dg.AssetExecutionContext, config: ProjectionConfig, lake: LakeResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    """Per feature recipe: a 2D UMAP of a species subset (PNG + hover page) and its kNN / silhouette separability."""
    started = time.monotonic()
    with lake.tables() as db:
        manifest = db.read("image_manifest")
        label_frame = db.read("species_label_map")
    slug = backbone.slug(backbone.describe())  # identity from the config: no weights loaded
    shard_keys = sorted(manifest["shard"].unique())
    paths = [p for p in (lake.shard_path(slug, s) for s in shard_keys) if p.exists()]
    if not paths:
        raise dg.Failure(f"no embedding shards under {lake.embeddings_dir / slug}: materialize image_embeddings first")
    recipes = _recipes(paths)
    if not recipes:
        raise dg.Failure(f"the shard files under {lake.embeddings_dir / slug} hold no feature recipe column")
    sample = projection_points(
        manifest, label_frame, species=config.species, top_n=config.top_n, max_points=config.max_points, seed=config.seed
    )
    how = sample.how
    try:
        points, vectors, thin = load_projection_vectors(paths, sample.points, recipes, sample.species)
    except ValueError as e:
        raise dg.Failure(f"{how} ({config.species if config.top_n <= 0 else config.top_n}): {e}") from e
    venomous = dict(zip(points["binomial_name"], points["venomous"].astype(bool)))
    context.log.info(f"projecting {len(points)} images of {points['binomial_name'].nunique()} species ({how}); recipes {recipes}")

    out_dir = lake.root / "diagnostics" / slug
    coords, scores, images, seconds, pictures = {}, {}, {}, {}, {}
    for recipe, x in vectors.items():
        t = time.monotonic()
        coords[recipe] = fit_umap(x, seed=config.seed, n_neighbors=config.n_neighbors, metric=config.metric)
        scores[recipe] = separability(
            x, points["binomial_name"], points["observation_id"], k=config.knn_k, folds=config.cv_folds,
            metric=config.metric, seed=config.seed,
        )
        title = (f"{recipe} ({x.shape[1]}-d) of {slug}: {len(points)} images, seed {config.seed}; "
                 f"kNN acc {scores[recipe].knn_accuracy:.3f}, silhouette {scores[recipe].silhouette:.3f}")
        png = scatter_png(coords[recipe], points["binomial_name"], venomous, title=title, order=sample.species)
        images[recipe] = atomic_write_bytes(out_dir / f"umap_{recipe}.png", png)
        pictures[f"umap_{recipe}"] = dg.MetadataValue.md(png_markdown(png, f"UMAP of {recipe}"))
        seconds[recipe] = round(time.monotonic() - t, 2)

    table = separability_table(scores)
    page_points = points.assign(
        thumbnail=[thumbnail_data_uri(p, config.thumbnail_px) if config.thumbnail_px > 0 else "" for p in points["resolved_path"]]
    )
    page = projection_html(
        coords, page_points, venomous, title=f"UMAP of {slug} embeddings ({how})", order=sample.species,
        subtitle="; ".join(f"{r.recipe}: kNN {r.knn_accuracy:.3f}, silhouette {r.silhouette:.3f}" for r in table.itertuples()),
    )
    html_path = atomic_write_bytes(out_dir / "projection.html", page.encode("utf-8"))
    atomic_write_bytes(out_dir / "separability.csv", table.to_csv(index=False).encode("utf-8"))

    per_species = points["binomial_name"].value_counts()
    finite = {r: bool(np.isfinite(c).all()) for r, c in coords.items()}
    chosen = table["recipe"].tolist()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(points),
            "species": int(per_species.size),
            "species_counts": dg.MetadataValue.json({s: int(n) for s, n in per_species.items()}),
            "subset": how,
            "backbone_key": slug,
            "recipes": dg.MetadataValue.json(recipes),
            "partitions": dg.MetadataValue.json(shard_keys),
            "sample_cap": config.max_points,
            "seed": config.seed,
            "separability": dg.MetadataValue.md(table.to_markdown(index=False)),
            "best_recipe": chosen[0],
            **pictures,
            **{f"knn_accuracy_{r}": float(s.knn_accuracy) for r, s in scores.items()},
            **{f"silhouette_{r}": float(s.silhouette) for r, s in scores.items()},
            "interactive_projection": dg.MetadataValue.path(str(html_path)),
            "interactive_projection_url": dg.MetadataValue.url(html_path.resolve().as_uri()),
            "pngs": dg.MetadataValue.json({r: str(p) for r, p in images.items()}),
            "seconds_per_recipe": dg.MetadataValue.json(seconds),
            "seconds": round(time.monotonic() - started, 2),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=COVERS_SUBSET,
                passed=bool(not thin and all(finite.values())),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "min_points_per_species": int(per_species.min()),
                    "species_left_out": dg.MetadataValue.json(thin),
                    "points_per_species": dg.MetadataValue.json({s: int(n) for s, n in per_species.items()}),
                    "coordinates_finite": dg.MetadataValue.json(finite),
                    "subset": how,
                },
            )
        ],
    )
