"""The image manifest: one row per listed image, resolved, hashed and sharded.

Nothing is dropped: a listed image that is missing or unreadable keeps its row,
with ``readable = False`` and the reason, so counts always reconcile.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from snake_assets.core.schemas import MetadataError

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "row_id", "image_key", "split", "observation_id", "class_id", "image_path", "resolved_path",
    "bytes", "content_hash", "readable", "reason", "shard", "source_file", "source_line",
)


class UnsafePathError(MetadataError):
    """An ``image_path`` from metadata resolves outside the data root."""


def resolve_image_path(data_root: str | Path, relative: str, *, file: str, line: int) -> Path:
    """Resolve a metadata ``image_path`` under ``data_root``.

    Raises:
        UnsafePathError: the path is absolute or leads outside the root
            (``..`` components or a symlink pointing elsewhere).
    """
    root = Path(data_root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafePathError(file, f"absolute image path {relative!r} refused", line=line, column="image_path")
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root):
        raise UnsafePathError(file, f"image path {relative!r} leads outside the data root {root}", line=line, column="image_path")
    return resolved


def shard_of(image_key: str, num_shards: int) -> str:
    """Stable shard key: a hash of the image key, so shard membership never depends on row order."""
    bucket = int(hashlib.sha1(image_key.encode()).hexdigest()[:8], 16) % num_shards
    return f"shard-{bucket:03d}"


def _inspect(path: Path) -> tuple[int, str, bool, str]:
    """(bytes, sha256, readable, reason) of one image file; never raises."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, "", False, "missing file"
    except OSError as e:
        return 0, "", False, f"unreadable file: {e.strerror or e}"
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return 0, digest, False, "zero bytes"
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return len(data), digest, False, f"not an image: {type(e).__name__}"
    return len(data), digest, True, ""


def build_image_manifest(
    data_root: str | Path,
    tables: dict[str, pd.DataFrame],
    *,
    num_shards: int,
    test_image_dir: str = "test",
    max_workers: int = 8,
) -> pd.DataFrame:
    """Resolve, hash and shard every image listed in the metadata.

    Args:
        data_root: the release folder that ``image_path`` values are relative to.
        tables: split name (``train``, ``val``, ``test``) -> validated metadata
            with ``observation_id``, ``image_path``, ``source_file``, ``source_line``
            and, except for test, ``class_id``.
        num_shards: number of hash buckets images are spread over.
        test_image_dir: folder (under the root) holding test images named by a bare
            ``filename``; 2024 test metadata names images without a folder.
        max_workers: threads hashing files (hashing releases the GIL).

    Returns:
        One row per listed image with the columns in ``MANIFEST_COLUMNS``.

    Raises:
        UnsafePathError: an image path escapes the data root (nothing is returned).
    """
    rows = []
    for split, df in tables.items():
        for rec in df.itertuples(index=False):
            rel = rec.image_path
            if split == "test" and test_image_dir and "/" not in rel:
                rel = f"{test_image_dir}/{rel}"
            path = resolve_image_path(data_root, rel, file=rec.source_file, line=rec.source_line)
            key = f"{split}/{rel}"
            rows.append({
                "image_key": key,
                "split": split,
                "observation_id": str(rec.observation_id),
                "class_id": int(getattr(rec, "class_id", -1)) if split != "test" else -1,
                "image_path": rel,
                "resolved_path": str(path),
                "shard": shard_of(key, num_shards),
                "source_file": rec.source_file,
                "source_line": int(rec.source_line),
            })
    manifest = pd.DataFrame(rows)
    manifest.insert(0, "row_id", range(len(manifest)))
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        inspected = list(pool.map(_inspect, (Path(p) for p in manifest["resolved_path"])))
    manifest["bytes"] = [i[0] for i in inspected]
    manifest["content_hash"] = [i[1] for i in inspected]
    manifest["readable"] = [i[2] for i in inspected]
    manifest["reason"] = [i[3] for i in inspected]
    unreadable = int((~manifest["readable"]).sum())
    if unreadable:
        log.warning("%d of %d listed images are missing or unreadable", unreadable, len(manifest))
    return manifest[list(MANIFEST_COLUMNS)]


def reconcile(manifest: pd.DataFrame) -> dict[str, int]:
    """Counts that must add up: rows listed = files found + missing; found = readable + unreadable."""
    missing = manifest["reason"].eq("missing file")
    return {
        "metadata_rows": len(manifest),
        "files_found": int((~missing).sum()),
        "missing_files": int(missing.sum()),
        "readable": int(manifest["readable"].sum()),
        "unreadable": int((~manifest["readable"] & ~missing).sum()),
        "shards": int(manifest["shard"].nunique()),
    }
