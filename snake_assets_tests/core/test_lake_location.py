"""Where the lake lives: local folders stay ``Path``; ``gs://`` becomes a UPath; other schemes are refused."""

from pathlib import Path

import pytest

from snake_assets.core.files import is_remote
from snake_assets.core.lake_location import lake_root


def test_local_lake_is_a_plain_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lake_root(str(tmp_path / "lake")) == tmp_path / "lake"
    assert lake_root(f"file://{tmp_path}/lake") == tmp_path / "lake"
    assert lake_root("~/lake") == tmp_path / "lake"
    assert type(lake_root(str(tmp_path))) is type(Path(tmp_path))
    assert not is_remote(lake_root(str(tmp_path)))


def test_bucket_lake_is_a_gcs_upath_with_the_standard_gcsfs_filesystem():
    import gcsfs.core

    root = lake_root("gs://bucket/some/prefix/", gcs_token="anon")
    assert is_remote(root)
    assert str(root / "tables" / "t.parquet") == "gs://bucket/some/prefix/tables/t.parquet"
    assert type(root.fs) is gcsfs.core.GCSFileSystem  # not the experimental zonal-bucket subclass
    assert root.fs.dircache.use_listings_cache is False  # other pods write to the same prefix


def test_unsupported_schemes_and_missing_bucket_are_refused():
    with pytest.raises(ValueError, match="SNAKE_HOME='s3://bucket/lake': unsupported scheme 's3'"):
        lake_root("s3://bucket/lake")
    with pytest.raises(ValueError, match="names no bucket"):
        lake_root("gs:///lake")
