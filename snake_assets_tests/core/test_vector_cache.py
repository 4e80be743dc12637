"""The vector cache: atomic batch parts, lookups by content hash, row-group reads, compaction."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from snake_assets.core.preprocess import PreprocessConfig
from snake_assets.core.vector_cache import VectorCache, cache_fingerprint

WIDTHS = {"cls": 4, "dct8x8": 3}


def _vectors(hashes: list[str]) -> dict[str, np.ndarray]:
    """Deterministic vectors derived from the hash, so any mix-up is visible."""
    seeds = [int(h, 16) for h in hashes]
    return {r: np.array([[s * 10 + j for j in range(w)] for s in seeds], np.float32).reshape(len(hashes), w) for r, w in WIDTHS.items()}


def _hashes(a: int, b: int) -> list[str]:
    return [f"{i:x}" for i in range(a, b)]


def test_fingerprint_depends_on_preprocessing_and_precision():
    base = cache_fingerprint(PreprocessConfig(), "fp32")
    assert base == cache_fingerprint(PreprocessConfig(), "fp32") and base.startswith("fp32-")
    assert base != cache_fingerprint(PreprocessConfig(crop_size=196), "fp32")
    assert base != cache_fingerprint(PreprocessConfig(), "bf16")


def test_batches_round_trip_through_lookup_and_gather(tmp_path):
    cache = VectorCache(tmp_path / "c", WIDTHS)
    writer = cache.writer()
    for a in range(0, 30, 7):  # five batch parts of up to 7 rows
        writer.write(_hashes(a, min(a + 7, 30)), _vectors(_hashes(a, min(a + 7, 30))))
    assert len(cache.parts()) == 5
    wanted = ["1c", "3", "f", "3", "ff"]  # out of order, repeated, one unknown
    hits = cache.lookup(wanted, ["cls", "dct8x8"])
    assert set(hits) == {"1c", "3", "f"}
    got = cache.gather([hits[h] for h in ["1c", "3", "f", "3"]], ["cls", "dct8x8"])
    expected = _vectors(["1c", "3", "f", "3"])
    for r in WIDTHS:
        np.testing.assert_array_equal(got[r], expected[r])


def test_compaction_keeps_every_row_and_row_groups_stay_batch_sized(tmp_path):
    cache = VectorCache(tmp_path / "c", WIDTHS)
    writer = cache.writer()
    for a in range(0, 40, 8):
        writer.write(_hashes(a, a + 8), _vectors(_hashes(a, a + 8)))
    merged = writer.compact()
    assert cache.parts() == [merged] and merged.name.startswith("c-")
    assert pq.ParquetFile(merged).num_row_groups == 5
    hashes = _hashes(0, 40)[::-1]
    hits = cache.lookup(hashes, ["dct8x8"])
    np.testing.assert_array_equal(cache.gather([hits[h] for h in hashes], ["dct8x8"])["dct8x8"], _vectors(hashes)["dct8x8"])


def test_failures_are_cached_only_when_they_belong_to_the_bytes(tmp_path):
    cache = VectorCache(tmp_path / "c", WIDTHS)
    cache.writer().write(["a"], _vectors(["a"]), [("b", "truncated image"), ("c", "missing file"), ("d", "error: OSError")])
    hits = cache.lookup(["a", "b", "c", "d"], ["cls"])
    assert set(hits) == {"a", "b"}
    assert (hits["a"].reason, hits["b"].reason) == (None, "truncated image")


def test_parts_without_a_recipe_do_not_satisfy_it(tmp_path):
    VectorCache(tmp_path / "c", {"cls": 4}).writer().write(["a"], {"cls": np.ones((1, 4), np.float32)})
    cache = VectorCache(tmp_path / "c", WIDTHS)
    assert set(cache.lookup(["a"], ["cls"])) == {"a"}
    assert cache.lookup(["a"], ["cls", "dct8x8"]) == {}


def test_interrupted_writes_and_damaged_parts_are_ignored(tmp_path, caplog):
    cache = VectorCache(tmp_path / "c", WIDTHS)
    cache.writer().write(["a"], _vectors(["a"]))
    (cache.root / ".b-killed-000001.parquet.x1y2.tmp").write_bytes(b"PAR1 half a file")
    (cache.root / "b-damaged-000000.parquet").write_bytes(b"not parquet")
    assert len(cache.parts()) == 2  # the temp file is not a part
    assert set(cache.lookup(["a"], ["cls"])) == {"a"}
    assert "ignoring unreadable cache part" in caplog.text


def test_writer_rejects_vectors_that_do_not_match_the_rows(tmp_path):
    writer = VectorCache(tmp_path / "c", WIDTHS).writer()
    with pytest.raises(ValueError):
        writer.write(["a", "b"], _vectors(["a"]))


def test_a_corrupted_vector_page_is_caught_by_its_checksum(tmp_path):
    cache = VectorCache(tmp_path / "c", {"cls": 256})
    cache.writer().write(["a"], {"cls": np.arange(256, dtype=np.float32)[None]})
    (part,) = cache.parts()
    data = bytearray(part.read_bytes())
    start = data.find(np.arange(256, dtype=np.float32).tobytes()[400:432])  # inside the vector's data page
    assert start > 0
    data[start] ^= 0xFF
    part.write_bytes(bytes(data))
    hits = cache.lookup(["a"], ["cls"])  # the hash column is intact
    with pytest.raises(RuntimeError, match="damaged"):
        cache.gather([hits["a"]], ["cls"])
