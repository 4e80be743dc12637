"""The whole graph with ``SNAKE_HOME=gs://...`` against a GCS emulator, compared with a local lake.

The emulator (``gcp-storage-emulator`` on 127.0.0.1, see the ``gcs_emulator`` fixture) speaks the
JSON API gcsfs and google-cloud-storage use; nothing but loopback is contacted.
"""

import dagster as dg
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from snake_assets.core.checkpoint import load_bundle
from snake_assets.core.lake_location import lake_root
from snake_assets.core.lake_tables import ParquetTables
from snake_assets.definitions import defs as load_definitions
from snake_assets.runner import RunSettings, run_pipeline

BUCKET_HOME = "gs://snake-lake/demo-lake"
ENV_KEYS = ("SNAKE_DATA_DIR", "SNAKE_HOME", "SNAKE_BACKBONE", "SNAKE_DEVICE", "SNAKE_BATCH_SIZE")


def _run(home: str, demo_release, tiny_backbone) -> dict:
    settings = RunSettings(data_dir=str(demo_release), home=home, backbone=str(tiny_backbone), device="cpu", batch_size=16)
    with dg.instance_for_test() as instance:
        return run_pipeline(settings, instance)


@pytest.fixture(scope="module")
def two_lakes(tmp_path_factory, gcs_emulator, demo_release, tiny_backbone):
    """The demo graph materialized into the emulated bucket and into a local folder."""
    mp = pytest.MonkeyPatch()
    for key in ENV_KEYS:
        mp.setenv(key, "")  # run_pipeline exports them; undone after the module
    cwd = tmp_path_factory.mktemp("cwd")
    mp.chdir(cwd)  # a lake path mistaken for a local folder would appear here
    local_home = tmp_path_factory.mktemp("local") / "lake"
    remote = _run(BUCKET_HOME, demo_release, tiny_backbone)
    local = _run(str(local_home), demo_release, tiny_backbone)
    yield {"remote": remote, "local": local, "local_home": local_home, "cwd": cwd}
    mp.undo()


def _objects(prefix: str) -> list[str]:
    client = storage.Client(project="snake-test", credentials=AnonymousCredentials())
    return sorted(b.name for b in client.list_blobs("snake-lake", prefix=prefix))


def test_bucket_lake_writes_the_same_submission_as_a_local_lake(two_lakes):
    remote, local = two_lakes["remote"], two_lakes["local"]
    assert remote["submission"] == f"{BUCKET_HOME}/submissions/submission.csv"
    root = lake_root(BUCKET_HOME, gcs_token="anon")
    remote_bytes = (root / "submissions" / "submission.csv").read_bytes()
    local_bytes = (two_lakes["local_home"] / "submissions" / "submission.csv").read_bytes()
    assert remote_bytes == local_bytes
    assert remote_bytes.count(b"\n") > 10
    assert remote["validation"] == local["validation"]
    assert remote["rules"] == local["rules"]


def test_bucket_holds_tables_shards_cache_and_bundle_and_nothing_lands_locally(two_lakes):
    names = _objects("demo-lake/")
    tables = {n.split("/")[-1] for n in names if n.startswith("demo-lake/tables/")}
    assert {"raw_train_metadata.parquet", "image_manifest.parquet", "rejected_images.parquet",
            "species_label_map.parquet", "validation_scores.parquet"} <= tables
    shards = [n for n in names if "/embeddings/" in n and "/cache/" not in n and n.endswith(".parquet")]
    assert len(shards) == two_lakes["remote"]["partitions"]
    assert any("/cache/" in n for n in names), "the vector cache lives in the bucket too"
    assert "demo-lake/models/species_head.safetensors" in names
    assert "demo-lake/submissions/submission.csv" in names
    assert any(n.endswith("/projection.html") for n in names) and any(n.endswith("/umap_cls.png") for n in names)
    assert not any(n.endswith(".tmp") for n in names)
    assert list(two_lakes["cwd"].iterdir()) == []  # no folder named "gs:" or similar
    assert not any(n.endswith("warehouse.duckdb") for n in names)


def test_tables_are_read_by_duckdb_through_the_bucket_filesystem(two_lakes):
    root = lake_root(BUCKET_HOME, gcs_token="anon")
    with ParquetTables.open(root / "tables") as db:
        manifest = db.read("image_manifest")
        test_rows = db.read("image_manifest", "split = ?", ["test"])
        label_map = db.read("species_label_map")
    assert len(manifest) > len(test_rows) > 0
    assert set(test_rows["split"]) == {"test"}
    bundle = load_bundle(root / "models" / "species_head.safetensors")  # downloaded, verified
    assert bundle.label_map.num_classes == len(label_map)


def test_rematerializing_a_partition_in_the_bucket_reuses_every_cached_vector(two_lakes, demo_release, tiny_backbone,
                                                                              gcs_emulator, monkeypatch):
    monkeypatch.setenv("SNAKE_HOME", BUCKET_HOME)
    monkeypatch.setenv("SNAKE_DATA_DIR", str(demo_release))
    monkeypatch.setenv("SNAKE_BACKBONE", str(tiny_backbone))
    monkeypatch.setenv("SNAKE_DEVICE", "cpu")
    monkeypatch.setenv("SNAKE_BATCH_SIZE", "16")
    definitions = load_definitions()
    with dg.instance_for_test() as instance:
        job = definitions.resolve_job_def("ingest_job")
        assert job.execute_in_process(instance=instance).success
        shard = sorted(instance.get_dynamic_partitions("image_shards"))[0]
        result = definitions.resolve_job_def("embedding_job").execute_in_process(instance=instance, partition_key=shard)
    assert result.success
    mat = result.asset_materializations_for_node("image_embeddings")[0]
    assert mat.metadata["computed"].value == 0
    assert mat.metadata["reused"].value > 0

