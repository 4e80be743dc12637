"""Resources: the release to read, the lake to write, the backbone to embed with."""


from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from snake_assets.core.embedding import Backbone, load_backbone
from snake_assets.core.embedding_store import backbone_slug


class SnakeReleaseResource(dg.ConfigurableResource):
    """A SnakeCLEF release folder: metadata CSVs plus the image tree they list."""

    data_dir: str
    """Folder holding the metadata CSVs; ``image_path`` values are relative to it."""
    test_image_dir: str = "test"
    """Folder (under ``data_dir``) of test images named by a bare ``filename``."""

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser()


class LakeResource(dg.ConfigurableResource):
    """The lake root (``SNAKE_HOME``): DuckDB warehouse, embedding shards, checkpoints, submissions."""

    home: str

    @property
    def root(self) -> Path:
        return Path(self.home).expanduser()

    def warehouse(self) -> DuckDBResource:
        """dagster-duckdb resource on ``<home>/warehouse.duckdb``."""
        self.root.mkdir(parents=True, exist_ok=True)
        return DuckDBResource(database=str(self.root / "warehouse.duckdb"))

    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    def shard_path(self, slug: str, shard: str) -> Path:
        return self.embeddings_dir / slug / f"{shard}.parquet"

    def head_bundle_path(self) -> Path:
        return self.root / "models" / "species_head.safetensors"

    def submission_path(self) -> Path:
        return self.root / "submissions" / "submission.csv"


class BackboneResource(dg.ConfigurableResource):
    """The frozen feature extractor and where it runs."""

    model: str
    """Hub id (cached locally) or a local folder written by ``save_pretrained``."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    batch_size: int = 32
    num_workers: int = 0
    """DataLoader worker processes for decoding and preprocessing."""

    def load(self) -> Backbone:
        return load_backbone(self.model, device=self.device)

    def slug(self, backbone: Backbone) -> str:
        return backbone_slug(backbone.name, backbone.revision)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "release": SnakeReleaseResource(data_dir=dg.EnvVar("SNAKE_DATA_DIR")),
            "lake": LakeResource(home=dg.EnvVar("SNAKE_HOME")),
            "backbone": BackboneResource(
                model=dg.EnvVar("SNAKE_BACKBONE"),
                device=dg.EnvVar("SNAKE_DEVICE"),
                batch_size=dg.EnvVar.int("SNAKE_BATCH_SIZE"),
            ),
        }
    )
