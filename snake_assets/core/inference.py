"""Applying a checkpoint bundle to one split's stored embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from snake_assets.core.checkpoint import HeadBundle
from snake_assets.core.embedding_store import backbone_slug
from snake_assets.core.evaluation import majority_class_id
from snake_assets.core.features import load_split_features
from snake_assets.core.head import predict_log_probs


@dataclass(frozen=True)
class SplitLogProbs:
    """Per-image log-probabilities of one split, and which observations they cover."""

    rows: pd.DataFrame
    """Embedded manifest rows, in manifest order (first image of an observation first)."""
    log_probs: np.ndarray
    observation_ids: list[str]
    """Every observation of the split, embedded or not, in order of first appearance."""

    listed_images: int
    """Images of the split listed in the manifest (embedded or not)."""

    @property
    def images_without_vector(self) -> int:
        return self.listed_images - len(self.rows)


def shard_paths_for(lake_embeddings_dir: Path, bundle: HeadBundle, manifest: pd.DataFrame) -> list[Path]:
    """Shard files of the bundle's backbone for the manifest's current shard set."""
    slug = backbone_slug(bundle.backbone, bundle.backbone_revision)
    paths = [lake_embeddings_dir / slug / f"{s}.parquet" for s in sorted(manifest["shard"].unique())]
    return [p for p in paths if p.exists()]


def split_log_probs(bundle: HeadBundle, shard_paths: list[Path], manifest: pd.DataFrame, split: str) -> SplitLogProbs:
    """Run the bundle's head over the stored vectors of ``split`` (recipe taken from the bundle)."""
    listed = manifest[manifest["split"] == split].sort_values("row_id")
    rows, features = load_split_features(shard_paths, listed, bundle.recipe)
    head = bundle.build_head()
    log_probs = predict_log_probs(head, features) if len(rows) else np.zeros((0, bundle.head_config.num_classes), np.float32)
    return SplitLogProbs(
        rows=rows,
        log_probs=log_probs,
        observation_ids=list(dict.fromkeys(listed["observation_id"].astype(str))),
        listed_images=len(listed),
    )


def ground_truth(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """``observation_id, class_id`` of a labelled split, one row per image in manifest order."""
    rows = manifest[manifest["split"] == split].sort_values("row_id")
    return rows[["observation_id", "class_id"]].astype({"observation_id": str, "class_id": "int64"}).reset_index(drop=True)


def fallback_class_id(manifest: pd.DataFrame) -> int:
    """Prediction for an observation with no embedded image: the most frequent training class."""
    train = manifest.loc[(manifest["split"] == "train") & (manifest["class_id"] >= 0), "class_id"]
    return majority_class_id(train)
