"""Change detection for a release folder: what changed since the last look, and what must run.

A :class:`ReleaseFingerprint` summarises a release in a few hundred bytes, so it fits in
a sensor cursor however many images the release lists:

- one digest per metadata file, over its rows, each row hashed by column *name* (so
  reordering rows or columns is not a change, editing a cell is);
- one digest per embedding shard, over the listed images that fall in it (image key,
  file size, mtime). An image is assigned to its shard by ``manifest.shard_of``, exactly
  as ``build_image_manifest`` does, so the shards named here are the partitions the
  manifest will produce.

Comparing two fingerprints (:func:`diff_releases`) says which files changed (ingest must
run) and which shards are new or changed (those embedding partitions must run). Shard
digests ignore labels: relabelling an image re-ingests but never re-embeds it.
:func:`plan_tick` is the whole decision a sensor tick makes. Nothing here imports dagster.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from snake_assets.core import schemas
from snake_assets.core.manifest import shard_of

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1
LISTING_FILES = {schemas.TRAIN_INAT_FILE: "train", schemas.TRAIN_HM_FILE: "train", schemas.VAL_FILE: "val"}
"""Metadata files that list images, and the split their images belong to (the test file is found at run time)."""


@dataclass(frozen=True)
class ReleaseFingerprint:
    """What a release looked like: per-file row digests and per-shard image digests."""

    num_shards: int
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Metadata file name -> (data rows, digest); digest ``missing``/``unreadable:..`` when it cannot be parsed."""
    shards: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Shard key -> (listed images, digest of their keys, sizes and mtimes)."""
    newest_mtime_ns: int = 0
    """Latest modification time among the metadata files and listed images."""

    @property
    def listed_images(self) -> int:
        return sum(n for n, _ in self.shards.values())

    def to_json(self) -> str:
        return json.dumps(
            {"version": FINGERPRINT_VERSION, "num_shards": self.num_shards, "files": self.files,
             "shards": self.shards, "newest_mtime_ns": self.newest_mtime_ns},
            sort_keys=True, separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> ReleaseFingerprint | None:
        """Parse :meth:`to_json` output; None for no text or another format version (treated as a first look)."""
        if not text:
            return None
        data = json.loads(text)
        if data.get("version") != FINGERPRINT_VERSION:
            log.warning("release fingerprint version %r is not %d; treating the release as new", data.get("version"), FINGERPRINT_VERSION)
            return None
        return cls(
            num_shards=int(data["num_shards"]),
            files={k: (int(n), str(d)) for k, (n, d) in data["files"].items()},
            shards={k: (int(n), str(d)) for k, (n, d) in data["shards"].items()},
            newest_mtime_ns=int(data.get("newest_mtime_ns", 0)),
        )


def _row_hash(header: list[str], row: list[str]) -> str:
    cells = sorted(zip((h.strip() for h in header), (v.strip() for v in row)))
    return hashlib.sha1("\x1f".join(f"{k}={v}" for k, v in cells).encode()).hexdigest()


def _read_rows(path: Path) -> tuple[list[dict[str, str]] | None, tuple[int, str]]:
    """(rows as dicts or None, (row count, digest)) of one metadata CSV; never raises."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, (0, "missing")
    except OSError as e:
        return None, (0, f"unreadable:{e.strerror or e}")
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
        header = next(reader, [])
        rows = [r for r in reader if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error):
        return None, (0, "unreadable:" + hashlib.sha256(data).hexdigest()[:16])
    digest = hashlib.sha256("\n".join(sorted(_row_hash(header, r) for r in rows)).encode()).hexdigest()[:16]
    names = [h.strip() for h in header]
    return [dict(zip(names, r)) for r in rows], (len(rows), digest)


def _image_state(root: str, relative: str) -> tuple[str, int]:
    """(``size:mtime_ns``, mtime_ns) of a listed image; ``missing``/``unsafe`` when it cannot be used.

    The safety test is lexical (absolute, or climbing with ``..``) because it runs for every
    image on every tick; ``manifest.resolve_image_path`` makes the authoritative check,
    symlinks included, when ingest runs.
    """
    if os.path.isabs(relative) or ".." in relative.replace("\\", "/").split("/"):
        return "unsafe", 0
    try:
        st = os.stat(os.path.join(root, relative))
    except OSError:
        return "missing", 0
    return f"{st.st_size}:{st.st_mtime_ns}", st.st_mtime_ns


def fingerprint_release(data_dir: str | Path, *, num_shards: int, test_image_dir: str = "test") -> ReleaseFingerprint:
    """Fingerprint the metadata files and listed images of a release folder.

    Args:
        data_dir: the release folder (``SNAKE_DATA_DIR``).
        num_shards: hash buckets images are spread over; must equal the manifest's.
        test_image_dir: folder of test images named by a bare ``filename`` (as the manifest).

    Returns:
        The fingerprint. Unreadable files and missing or unsafe images are recorded as
        such (so fixing them later is a change), never raised: ingest reports them.
    """
    root = Path(data_dir).expanduser()
    listing = dict(LISTING_FILES)
    test_file = schemas.find_test_file(root)
    listing[test_file.name if test_file else schemas.TEST_FILE_CANDIDATES[0]] = "test"
    files: dict[str, tuple[int, str]] = {}
    by_shard: dict[str, list[str]] = defaultdict(list)
    newest = 0
    for name in [*listing, schemas.VENOMOUS_FILE]:
        path = root / name
        rows, files[name] = _read_rows(path)
        newest = max(newest, path.stat().st_mtime_ns if path.exists() else 0)
        split = listing.get(name)
        for row in (rows or []) if split else []:
            rel = (row.get("image_path") or (row.get("filename") if split == "test" else None) or "").strip()
            if not rel:
                continue  # ingest rejects the row with its line number
            if split == "test" and test_image_dir and "/" not in rel:
                rel = f"{test_image_dir}/{rel}"
            key = f"{split}/{rel}"
            state, mtime = _image_state(str(root), rel)
            newest = max(newest, mtime)
            by_shard[shard_of(key, num_shards)].append(f"{key}\x1f{state}")
    shards = {
        shard: (len(entries), hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16])
        for shard, entries in sorted(by_shard.items())
    }
    return ReleaseFingerprint(num_shards=num_shards, files=files, shards=shards, newest_mtime_ns=newest)


@dataclass(frozen=True)
class ReleaseChange:
    """The difference between two fingerprints, and what it means for the pipeline."""

    previous: ReleaseFingerprint | None
    current: ReleaseFingerprint
    changed_files: tuple[str, ...]
    new_shards: tuple[str, ...]
    changed_shards: tuple[str, ...]
    removed_shards: tuple[str, ...]

    @property
    def needs_ingest(self) -> bool:
        return bool(self.changed_files or self.new_shards or self.changed_shards or self.removed_shards)

    @property
    def shards_to_embed(self) -> tuple[str, ...]:
        """Embedding partitions whose images were added, removed, replaced or touched."""
        return tuple(sorted(self.new_shards + self.changed_shards))

    def describe(self) -> str:
        """One line for a sensor tick: files with row counts before -> after, shards with image counts."""
        if self.previous is None:
            return f"first look: {len(self.current.files)} metadata files, {self.current.listed_images} images in {len(self.current.shards)} shards"
        if not self.needs_ingest:
            return "release unchanged"
        before, after = self.previous, self.current
        parts = [f"{f} ({before.files.get(f, (0, ''))[0]} -> {after.files[f][0]} rows)" for f in self.changed_files]
        parts += [f"new {s} ({after.shards[s][0]} images)" for s in self.new_shards]
        parts += [f"changed {s} ({before.shards[s][0]} -> {after.shards[s][0]} images)" for s in self.changed_shards]
        parts += [f"emptied {s}" for s in self.removed_shards]
        return "; ".join(parts)


def diff_releases(previous: ReleaseFingerprint | None, current: ReleaseFingerprint) -> ReleaseChange:
    """What changed from ``previous`` (None: never seen) to ``current``."""
    if previous is None:
        return ReleaseChange(None, current, tuple(sorted(current.files)), tuple(sorted(current.shards)), (), ())
    files = sorted(f for f in set(previous.files) | set(current.files) if previous.files.get(f) != current.files.get(f))
    new = sorted(s for s in current.shards if s not in previous.shards)
    changed = sorted(s for s in current.shards if s in previous.shards and previous.shards[s] != current.shards[s])
    removed = sorted(s for s in previous.shards if s not in current.shards)
    return ReleaseChange(previous, current, tuple(files), tuple(new), tuple(changed), tuple(removed))


@dataclass(frozen=True)
class LastIngest:
    """What the instance recorded about the latest ``image_manifest`` materialization."""

    timestamp: float
    """Seconds since the epoch."""
    listed_images: int | None
    """Its ``metadata_rows`` (images listed by the release it read), if recorded."""


@dataclass(frozen=True)
class WatchState:
    """The release sensor's cursor: the last fingerprint, and shards requested but not yet embedded."""

    fingerprint: ReleaseFingerprint | None = None
    pending: dict[str, float] = field(default_factory=dict)
    """Shard -> when it was requested; dropped once the partition is materialized after that."""

    def to_json(self) -> str:
        fingerprint = json.loads(self.fingerprint.to_json()) if self.fingerprint else None
        return json.dumps({"fingerprint": fingerprint, "pending": self.pending}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> WatchState:
        data = json.loads(text) if text else {}
        fingerprint = data.get("fingerprint")
        return cls(ReleaseFingerprint.from_json(json.dumps(fingerprint)) if fingerprint else None, dict(data.get("pending", {})))


@dataclass(frozen=True)
class TickPlan:
    """A sensor tick's decision: ``run`` (ingest, then embed ``shards``), ``adopt`` (record a baseline) or ``skip``."""

    action: str
    change: ReleaseChange
    reason: str
    shards: tuple[str, ...] = ()


def plan_tick(
    previous: ReleaseFingerprint | None,
    current: ReleaseFingerprint,
    last_ingest: LastIngest | None,
    unembedded: tuple[str, ...] = (),
) -> TickPlan:
    """Decide what one look at the release must run.

    With a previous fingerprint (the sensor's cursor), run exactly what changed, plus
    ``unembedded``: shards an earlier request named that were never embedded (its backfill
    failed, e.g. on a broken CSV that this change fixes), so no change is lost. Without a
    previous fingerprint (a sensor that never ticked) the release is new, unless the instance
    already ingested this very release (same number of listed images, no file modified since
    that ingest): then it is adopted as the baseline and nothing is recomputed, so a release
    built by ``snake-assets run`` before the daemon started is not processed twice.
    """
    change = diff_releases(previous, current)
    if previous is None and (
        last_ingest is not None
        and last_ingest.listed_images == current.listed_images
        and current.newest_mtime_ns <= last_ingest.timestamp * 1e9
    ):
        reason = f"baseline adopted: the instance ingested this release already ({current.listed_images} images, no file newer than that ingest)"
        return TickPlan("adopt", change, reason)
    if not change.needs_ingest:
        return TickPlan("skip", change, change.describe())
    carried = tuple(sorted(set(unembedded) - set(change.shards_to_embed)))
    reason = change.describe() + (f"; not embedded since an earlier request: {', '.join(carried)}" if carried else "")
    return TickPlan("run", change, reason, tuple(sorted(set(change.shards_to_embed) | set(carried))))
