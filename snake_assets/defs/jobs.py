"""Asset jobs: the three stages a headless run (and the UI's launchpad) executes in order."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job", selection=dg.AssetSelection.groups("ingest", "labels"),
    description="Load and validate metadata, build the image manifest and the label map.",
)
embedding_job = dg.define_asset_job(
    "embedding_job", selection=dg.AssetSelection.groups("features"),
    description="Embed one image shard (run per partition, or backfill all).",
)
training_job = dg.define_asset_job(
    "training_job", selection=dg.AssetSelection.groups("training", "evaluation", "submission", "diagnostics"),
    description="Train the head, score every decision rule on validation, write the submission; project the embeddings.",
)
