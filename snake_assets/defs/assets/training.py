"""Training: the linear species head on frozen embeddings, saved as a self-contained bundle."""

import datetime as dt
from dataclasses import asdict

import dagster as dg

from snake_assets.core.checkpoint import HeadBundle, save_bundle
from snake_assets.core.features import load_split_features
from snake_assets.core.preprocess import PreprocessConfig
from snake_assets.core.training import TrainConfig, fit_linear_head
from snake_assets.core.version import code_version
from snake_assets.defs import automation
from snake_assets.defs.assets.labels import load_label_map
from snake_assets.defs.resources import BackboneResource, LakeResource


class SpeciesHeadConfig(dg.Config):
    """Operator knobs of head training; defaults live in ``core.training.TrainConfig``."""

    recipe: str = TrainConfig.recipe
    max_epochs: int = TrainConfig.max_epochs
    learning_rate: float = TrainConfig.learning_rate
    lr_find: bool = TrainConfig.lr_find
    val_fraction: float = TrainConfig.val_fraction
    seed: int = TrainConfig.seed

    def to_core(self) -> TrainConfig:
        return TrainConfig(
            recipe=self.recipe, max_epochs=self.max_epochs, learning_rate=self.learning_rate,
            lr_find=self.lr_find, val_fraction=self.val_fraction, seed=self.seed,
        )


@dg.asset(
    group_name="training", kinds={"pytorch", "safetensors"}, deps=["species_label_map", "image_embeddings"],
    automation_condition=automation.RETRAIN,
)
def species_head(
    context: dg.AssetExecutionContext, config: SpeciesHeadConfig, lake: LakeResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    """Checkpoint bundle of the linear head: weights, label map, backbone, recipe, preprocessing, metrics."""
    cfg = config.to_core()
    label_map = load_label_map(lake)
    bb = backbone.describe()  # identity from the config: the head never runs the backbone
    with lake.tables() as db:
        manifest = db.read("image_manifest")
    train_rows = manifest[manifest["split"] == "train"]
    shards = [lake.shard_path(backbone.slug(bb), s) for s in sorted(manifest["shard"].unique())]
    rows, features = load_split_features([p for p in shards if p.exists()], train_rows, cfg.recipe)
    if len(rows) == 0:
        raise dg.Failure("no embedded training images: materialize image_embeddings first")
    labels = label_map.to_labels(rows["class_id"].to_numpy())
    context.log.info(f"training on {len(rows)} images, {label_map.num_classes} classes, recipe {cfg.recipe}")
    trained = fit_linear_head(features, labels, rows["observation_id"].tolist(), num_classes=label_map.num_classes, cfg=cfg)
    bundle = HeadBundle(
        state_dict=trained.head.state_dict(),
        head_config=trained.head_config,
        label_map=label_map,
        backbone=bb.name,
        backbone_revision=bb.revision,
        recipe=cfg.recipe,
        preprocessing=PreprocessConfig().to_dict(),
        metrics=trained.metrics,
        seed=cfg.seed,
        code_version=code_version(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    path = save_bundle(bundle, lake.head_bundle_path())
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "train_images": len(rows),
            "train_images_without_vector": int(len(train_rows) - len(rows)),
            "num_classes": label_map.num_classes,
            "in_dim": trained.head_config.in_dim,
            "label_map_fingerprint": label_map.fingerprint(),
            "config": dg.MetadataValue.json(asdict(cfg)),
            **{k: float(v) for k, v in trained.metrics.items() if isinstance(v, (int, float))},
        }
    )
