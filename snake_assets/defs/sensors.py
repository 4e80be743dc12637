"""The release sensor: a new or changed release becomes ingest plus exactly the embedding partitions it touches.

Each tick fingerprints the data root (``core.release_watch``), compares it with the cursor
(the fingerprint of the last tick) and, when something changed, launches one backfill:
the ingest assets, then the new or changed ``image_embeddings`` partitions (plus any an
earlier request named that were never embedded, e.g. after a failed ingest). A backfill (not
separate runs) because the embedding runs read the manifest that ingest writes: the
backfill daemon orders them, and while it runs the partitions count as in progress, so the
head's automation condition waits for all of them. Declarative automation
(``defs/automation.py``) then carries the change to the label map, head, scores and
submission.
"""

import time

import dagster as dg

# A sensor launches a backfill through a RunRequest holding an AssetGraphSubset: the path
# Dagster's own automation sensor uses, with no public constructor yet (dagster#22681).
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset

from snake_assets.core.release_watch import LastIngest, TickPlan, WatchState, fingerprint_release, plan_tick
from snake_assets.defs.assets.ingest import ImageManifestConfig
from snake_assets.defs.partitions import image_shards
from snake_assets.defs.resources import SnakeReleaseResource

INGEST = dg.AssetSelection.groups("ingest")
EMBEDDINGS = dg.AssetKey("image_embeddings")
MANIFEST = dg.AssetKey("image_manifest")
RELEASE_INTERVAL_S = 30


def _last_ingest(instance: dg.DagsterInstance) -> LastIngest | None:
    event = instance.get_latest_materialization_event(MANIFEST)
    if event is None or event.asset_materialization is None:
        return None
    rows = event.asset_materialization.metadata.get("metadata_rows")
    return LastIngest(timestamp=event.timestamp, listed_images=int(rows.value) if rows is not None else None)


def _embedded_since(instance: dg.DagsterInstance, shard: str, requested_at: float) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EMBEDDINGS, asset_partitions=[shard], after_timestamp=requested_at), limit=1
    )
    return bool(records.records)


def _backfill_request(context: dg.SensorEvaluationContext, plan: TickPlan) -> dg.RunRequest:
    shards = plan.shards
    subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={EMBEDDINGS: image_shards.empty_subset().with_partition_keys(shards)} if shards else {},
        non_partitioned_asset_keys=set(INGEST.resolve(context.repository_def.asset_graph)),
    )
    tags = {"snake_assets/trigger": "release_sensor", "snake_assets/shards": ",".join(shards)[:200] or "none"}
    return dg.RunRequest.for_asset_graph_subset(subset, tags=tags)


@dg.sensor(
    asset_selection=INGEST | dg.AssetSelection.assets(EMBEDDINGS),
    minimum_interval_seconds=RELEASE_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def release_sensor(context: dg.SensorEvaluationContext, release: SnakeReleaseResource) -> dg.SensorResult:
    """Watches the release folder; requests ingest and the new or changed embedding partitions."""
    current = fingerprint_release(
        release.root, num_shards=ImageManifestConfig().num_shards, test_image_dir=release.test_image_dir
    )
    state = WatchState.from_json(context.cursor)
    pending = {s: t for s, t in state.pending.items() if not _embedded_since(context.instance, s, t)}
    plan = plan_tick(state.fingerprint, current, _last_ingest(context.instance), tuple(pending))
    context.log.info(f"{plan.action}: {plan.reason}")
    if plan.action != "run":
        return dg.SensorResult(skip_reason=plan.reason, cursor=WatchState(current, pending).to_json())
    pending.update(dict.fromkeys(plan.shards, time.time()))
    new = [s for s in plan.shards if not context.instance.has_dynamic_partition(image_shards.name, s)]
    return dg.SensorResult(
        run_requests=[_backfill_request(context, plan)],
        dynamic_partitions_requests=[image_shards.build_add_request(new)] if new else [],
        cursor=WatchState(current, pending).to_json(),
    )
