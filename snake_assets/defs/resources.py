"""Resources: the release to read, the lake to write, the backbone to embed with."""


import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import torch
from dagster_duckdb import DuckDBResource

from snake_assets.core.backbone import (
    Backbone,
    BackboneSpec,
    default_batch_size,
    default_num_workers,
    describe_backbone,
    load_backbone,
    resolve_device,
)
from snake_assets.core.embedding_store import backbone_slug
from snake_assets.core.files import is_remote
from snake_assets.core.lake_location import lake_root
from snake_assets.core.lake_tables import ParquetTables, WarehouseTables
from snake_assets.core.warehouse import DEFAULT_LOCK_TIMEOUT_S, connection


class SnakeReleaseResource(dg.ConfigurableResource):
    """A SnakeCLEF release folder: metadata CSVs plus the image tree they list."""

    data_dir: str
    """Folder holding the metadata CSVs; ``image_path`` values are relative to it."""
    test_image_dir: str = "test"
    """Folder (under ``data_dir``) of test images named by a bare ``filename``."""

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser()


class WarehouseResource(DuckDBResource):
    """dagster-duckdb's resource, waiting for a warehouse file locked by another process and
    failing with a clear ``WarehouseLockedError`` (file, holder PID, what to do) when it stays locked."""

    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    @contextmanager
    def get_connection(self):
        config = {"custom_user_agent": "dagster", **self.connection_config}
        with connection(self.database, timeout_s=self.lock_timeout_s, config=config) as conn:
            yield conn


class LakeResource(dg.ConfigurableResource):
    """The lake root (``SNAKE_HOME``): tables, embedding shards, checkpoints, submissions.

    A local folder keeps the tables in a DuckDB warehouse file; ``gs://bucket/prefix`` keeps
    them as Parquet objects under ``tables/`` (every pod sees the same lake) and writes all
    files as object uploads.
    """

    home: str
    """A local folder or ``gs://bucket/prefix``."""
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    """Seconds a step waits for ``warehouse.duckdb`` while another process holds it (local lake)."""
    gcs_token: str = ""
    """gcsfs token for a bucket lake: ``anon`` (emulator, public bucket), a service-account JSON
    file, or empty for Google application-default credentials."""

    @property
    def root(self) -> Any:
        """``Path`` of a local lake, ``upath.UPath`` of a bucket lake."""
        return lake_root(self.home, gcs_token=self.gcs_token or None)

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def warehouse(self) -> DuckDBResource:
        """dagster-duckdb resource on ``<home>/warehouse.duckdb`` (local lake only).

        Raises:
            ValueError: the lake is in a bucket, where tables are Parquet objects (use :meth:`tables`).
        """
        if self.remote:
            raise ValueError(f"the lake {self.home} is in object storage: its tables are Parquet objects, use tables()")
        self.root.mkdir(parents=True, exist_ok=True)
        return WarehouseResource(database=str(self.root / "warehouse.duckdb"), lock_timeout_s=self.lock_timeout_s)

    @contextmanager
    def tables(self) -> Iterator[WarehouseTables | ParquetTables]:
        """The lake's tables (read, replace, exists), wherever the lake lives."""
        if self.remote:
            with ParquetTables.open(self.root / "tables") as tables:
                yield tables
        else:
            with self.warehouse().get_connection() as conn:
                yield WarehouseTables(conn)

    @property
    def embeddings_dir(self) -> Any:
        return self.root / "embeddings"

    def shard_path(self, slug: str, shard: str) -> Any:
        return self.embeddings_dir / slug / f"{shard}.parquet"

    def backbone_dir(self, slug: str) -> Any:
        """``embeddings/<slug>``: the backbone's shard files and its vector cache (``cache/``)."""
        return self.embeddings_dir / slug

    def head_bundle_path(self) -> Any:
        return self.root / "models" / "species_head.safetensors"

    def submission_path(self) -> Any:
        return self.root / "submissions" / "submission.csv"


def gcs_token_from_env() -> dict[str, str]:
    """``{"gcs_token": $SNAKE_GCS_TOKEN}`` when the variable is set, else ``{}``.

    The token is optional and ``dg.EnvVar`` requires its variable, so it is read when the
    definitions (or ``snake-assets run``) build the lake resource.
    """
    token = os.environ.get("SNAKE_GCS_TOKEN")
    return {"gcs_token": token} if token else {}


class BackboneResource(dg.ConfigurableResource):
    """The frozen feature extractor, where it runs, and how the embedding engine feeds it."""

    model: str
    """Hub id (cached locally) or a local folder written by ``save_pretrained``."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    batch_size: int = 0
    """Images per forward pass; 0 picks the device default (64 on a GPU, 32 on a CPU)."""
    num_workers: int = -1
    """Decode/preprocess worker processes; -1 picks one per CPU (one fewer on a GPU, at most 16)."""
    precision: str = "auto"
    """``auto`` (bf16 autocast on CUDA, fp16 where bf16 is unsupported; fp32 on CPU), ``fp32``, ``bf16``, ``fp16``."""

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def effective_batch_size(self, device: torch.device) -> int:
        return self.batch_size if self.batch_size > 0 else default_batch_size(device)

    def effective_num_workers(self, device: torch.device) -> int:
        return self.num_workers if self.num_workers >= 0 else default_num_workers(device)

    def describe(self) -> BackboneSpec:
        """Identity and feature widths from the config alone (no weights loaded)."""
        return describe_backbone(self.model)

    def load(self, spec: BackboneSpec | None = None) -> Backbone:
        return load_backbone(self.model, device=self.device, spec=spec)

    def slug(self, backbone: Backbone | BackboneSpec) -> str:
        return backbone_slug(backbone.name, backbone.revision)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "release": SnakeReleaseResource(data_dir=dg.EnvVar("SNAKE_DATA_DIR")),
            "lake": LakeResource(home=dg.EnvVar("SNAKE_HOME"), **gcs_token_from_env()),
            "backbone": BackboneResource(
                model=dg.EnvVar("SNAKE_BACKBONE"),
                device=dg.EnvVar("SNAKE_DEVICE"),
                batch_size=dg.EnvVar.int("SNAKE_BATCH_SIZE"),
            ),
        }
    )
