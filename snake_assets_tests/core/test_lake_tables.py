"""Tables and atomic writes in a bucket (GCS emulator on 127.0.0.1)."""

import uuid

import duckdb
import pandas as pd
import pytest

from snake_assets.core.files import atomic_path, atomic_write_bytes, local_copy
from snake_assets.core.lake_location import lake_root
from snake_assets.core.lake_tables import ParquetTables


@pytest.fixture
def bucket_root(gcs_emulator):
    return lake_root(f"gs://snake-lake/unit-{uuid.uuid4().hex[:8]}", gcs_token="anon")


def test_tables_round_trip_through_duckdb_with_bound_parameters(bucket_root):
    df = pd.DataFrame({"class_id": [1783, 5, 77], "name": ["a", None, "o'neil"], "venomous": [True, False, True],
                       "score": [0.5, 1.25, float("nan")]})
    with ParquetTables.open(bucket_root / "tables") as db:
        assert db.replace({"species": df, "empty": df.iloc[:0]}) == {"species": 3, "empty": 0}
        back = db.read("species")
        assert back["class_id"].tolist() == [1783, 5, 77]
        assert back["name"].tolist()[::2] == ["a", "o'neil"] and pd.isna(back["name"][1])
        assert back["venomous"].dtype == bool
        assert db.read("species", "name = ?", ["o'neil"])["class_id"].tolist() == [77]
        assert db.read("species", "venomous AND class_id > ?", [100])["class_id"].tolist() == [1783]
        assert len(db.read("empty")) == 0 and list(db.read("empty").columns) == list(df.columns)
        assert db.exists("species") and not db.exists("nothing")
    assert (bucket_root / "tables" / "species.parquet").exists()


def test_missing_table_names_the_object_and_bad_names_are_refused(bucket_root):
    with ParquetTables.open(bucket_root / "tables") as db:
        with pytest.raises(duckdb.CatalogException, match=r"Table image_manifest does not exist: gs://.*/tables/image_manifest.parquet"):
            db.read("image_manifest")
        with pytest.raises(ValueError, match="not a plain table name"):
            db.read("x; DROP TABLE y")


def test_failed_upload_keeps_the_stored_table(bucket_root, monkeypatch):
    with ParquetTables.open(bucket_root / "tables") as db:
        db.replace({"t": pd.DataFrame({"x": [1, 2]})})

        def dropped_connection(*args, **kwargs):
            raise OSError("connection reset during upload")

        monkeypatch.setattr(bucket_root.fs, "put_file", dropped_connection)
        with pytest.raises(OSError, match="connection reset"):
            db.replace({"t": pd.DataFrame({"x": [3, 4, 5]})})
        monkeypatch.undo()
        assert db.read("t")["x"].tolist() == [1, 2]


def test_atomic_write_to_a_bucket_is_all_or_nothing(bucket_root):
    target = bucket_root / "models" / "bundle.bin"
    atomic_write_bytes(target, b"first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"
    assert [p.name for p in (bucket_root / "models").iterdir()] == ["bundle.bin"]
    with local_copy(target) as local:
        assert local.read_bytes() == b"first"
        assert local.is_file()
    assert not local.exists()  # the download is a temporary copy
