"""Headless materialization of the whole graph on the instance in ``DAGSTER_HOME``.

The same jobs the UI launches run here in order: ingest (tables, manifest, label
map), one embedding run per shard partition, then training, evaluation and the
submission. Every run is recorded in the instance, so ``dagster dev`` on the same
``DAGSTER_HOME`` shows the materializations, their metadata and check results.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from snake_assets.core.files import is_remote
from snake_assets.core.lake_location import lake_root
from snake_assets.defs.resources import LakeResource, gcs_token_from_env
from snake_assets.run_recovery import release_abandoned_runs, run_tags

log = logging.getLogger(__name__)


class PipelineFailed(RuntimeError):
    """A run failed or a blocking check stopped it; the message says which step and why."""


@dataclass(frozen=True)
class RunSettings:
    data_dir: str
    home: str
    backbone: str
    device: str = "auto"
    batch_size: int = 0
    """0 = the per-device default of the embedding engine."""
    num_shards: int = 4

    def export(self) -> None:
        """Set the env vars the code location's resources read (``dg.EnvVar``)."""
        os.environ.update({
            "SNAKE_DATA_DIR": str(Path(self.data_dir).resolve()),
            "SNAKE_HOME": self.home if is_remote(lake_root(self.home)) else str(Path(self.home).resolve()),
            "SNAKE_BACKBONE": self.backbone if not Path(self.backbone).exists() else str(Path(self.backbone).resolve()),
            "SNAKE_DEVICE": self.device,
            "SNAKE_BATCH_SIZE": str(self.batch_size),
        })


def _failure_summary(result: dg.ExecuteInProcessResult) -> str:
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            while err is not None and err.cause is not None:  # the user error, not Dagster's wrapper of it
                err = err.cause
            lines.append(f"step {event.step_key} failed: {err.message.strip() if err else 'unknown error'}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed:
                lines.append(f"check {ev.asset_check_key.name} on {ev.asset_key.to_user_string()} failed: {dict(ev.metadata)}")
    return "\n".join(lines) or "run failed"


def _execute(job: dg.JobDefinition, instance: dg.DagsterInstance, **kwargs) -> None:
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=run_tags(), **kwargs)
    if not result.success:
        raise PipelineFailed(f"{job.name} (run {result.run_id}) failed:\n{_failure_summary(result)}")


def run_pipeline(settings: RunSettings, instance: dg.DagsterInstance | None = None) -> dict:
    """Materialize every asset and partition; return the summary printed by ``snake-assets run``.

    Raises:
        PipelineFailed: a step or a blocking check failed (later stages are not run).
    """
    from snake_assets.definitions import defs as load_definitions

    settings.export()
    definitions = load_definitions()
    instance = instance or dg.DagsterInstance.get()
    release_abandoned_runs(instance)  # a killed earlier run must not hold the gpu pool slot forever
    run_config = {"ops": {"image_manifest": {"config": {"num_shards": settings.num_shards}}}}
    _execute(definitions.resolve_job_def("ingest_job"), instance, run_config=run_config)

    lake = LakeResource(home=os.environ["SNAKE_HOME"], **gcs_token_from_env())
    with lake.tables() as db:
        shards = sorted(db.read("image_manifest")["shard"].unique())
    embedding_job = definitions.resolve_job_def("embedding_job")
    for i, shard in enumerate(shards, 1):
        log.info("embedding partition %s (%d/%d)", shard, i, len(shards))
        _execute(embedding_job, instance, partition_key=shard)
    _execute(definitions.resolve_job_def("training_job"), instance)

    with lake.tables() as db:
        scores = db.read("validation_scores")
    best = scores[scores["chosen"]].iloc[0]
    metrics = ("f1", "accuracy", "track1", "track2")
    return {
        "validation": {**{k: float(best[k]) for k in metrics}, "decision_rule": str(best["rule"])},
        "rules": {r["rule"]: {k: float(r[k]) for k in metrics} for _, r in scores.iterrows()},
        "submission": str(lake.submission_path()),
        "partitions": len(shards),
        "dagster_home": instance.root_directory,
    }
