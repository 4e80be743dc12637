"""The image manifest: one row per listed image, resolved, hashed, decoded once and sharded.

Nothing is dropped: a listed image that cannot be used keeps its row with
``readable = False`` and a ``reason`` (missing file, zero bytes, not an image,
truncated, too many pixels, or a training row without a species), and the same rows
form the ``rejected_images`` table. Every image is decoded here exactly as the
embedding step will decode it, so *readable* means *will be embedded* and the counts
reconcile: metadata rows = embedded + rejected.
"""

from __future__ import annotations

import hashlib
import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from snake_assets.core.preprocess import UnreadableImageError, load_rgb
from snake_assets.core.schemas import MetadataError

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "row_id", "image_key", "split", "observation_id", "class_id", "image_path", "resolved_path",
    "bytes", "content_hash", "readable", "reason", "shard", "source_file", "source_line", "detail",
)
REJECTED_COLUMNS = (
    "row_id", "image_key", "split", "observation_id", "class_id", "image_path", "source_file", "source_line",
    "reason", "detail",
)
MAX_IMAGE_BYTES = 256 * 2**20
"""Files larger than this are refused unread (the largest SnakeCLEF photos are a few MB)."""
NO_LABEL = "no species label (class_id -1 in train)"
"""Reason of a training row whose class is unknown: it can be neither a label nor a target."""


class UnsafePathError(MetadataError):
    """An ``image_path`` from metadata resolves outside the data root."""


def resolve_image_path(data_root: str | Path, relative: str, *, file: str, line: int, column: str = "image_path") -> Path:
    """Resolve a metadata ``image_path`` under ``data_root``.

    Raises:
        UnsafePathError: the path is absolute or leads outside the root
            (``..`` components or a symlink pointing elsewhere).
    """
    root = Path(data_root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafePathError(file, f"absolute image path {relative!r} refused", line=line, column=column)
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root):
        raise UnsafePathError(file, f"image path {relative!r} leads outside the data root {root}", line=line, column=column)
    return resolved


def relative_image_path(split: str, image_path: str, test_image_dir: str) -> str:
    """``image_path`` relative to the data root (2024 test metadata names bare files under ``test_image_dir``)."""
    if split == "test" and test_image_dir and "/" not in image_path:
        return f"{test_image_dir}/{image_path}"
    return image_path


def check_image_paths(data_root: str | Path, df: pd.DataFrame, *, split: str, test_image_dir: str = "test") -> list[Path]:
    """Resolve every ``image_path`` of one metadata table, refusing the first unsafe one.

    Run before a metadata table is stored, so an unsafe release writes nothing.

    Raises:
        UnsafePathError: naming the file, line and column of the offending row (the
            file's own column name: ``filename`` in 2024 test metadata).
    """
    column = df.attrs.get("image_path_column", "image_path")
    return [
        resolve_image_path(
            data_root, relative_image_path(split, rec.image_path, test_image_dir),
            file=rec.source_file, line=rec.source_line, column=column,
        )
        for rec in df[["image_path", "source_file", "source_line"]].itertuples(index=False)
    ]


def shard_of(image_key: str, num_shards: int) -> str:
    """Stable shard key: a hash of the image key, so shard membership never depends on row order."""
    bucket = int(hashlib.sha1(image_key.encode()).hexdigest()[:8], 16) % num_shards
    return f"shard-{bucket:03d}"


def _inspect(path: Path) -> tuple[int, str, str, str]:
    """(bytes, sha256, reason, detail) of one image file; reason is '' when it decodes. Never raises."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device would hang or mislead a read
            return 0, "", "not a file", ""
        if st.st_size > MAX_IMAGE_BYTES:
            return st.st_size, "", "file too large", f"{st.st_size} bytes > {MAX_IMAGE_BYTES}"
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, "", "missing file", ""
    except OSError as e:
        return 0, "", "unreadable file", str(e.strerror or e)
    digest = hashlib.sha256(data).hexdigest()
    try:
        load_rgb(path, data=data, draft=True)
    except UnreadableImageError as e:
        detail = f"unrecognised format; the file starts with {data[:16]!r}" if e.reason == "not an image" else e.detail
        return len(data), digest, e.reason, detail
    except Exception as e:  # untrusted bytes: any decoder failure quarantines the file, never the run
        return len(data), digest, "corrupt image", f"{type(e).__name__}: {e}"
    return len(data), digest, "", ""


def build_image_manifest(
    data_root: str | Path,
    tables: dict[str, pd.DataFrame],
    *,
    num_shards: int,
    test_image_dir: str = "test",
    max_workers: int = 8,
) -> pd.DataFrame:
    """Resolve, hash, decode and shard every image listed in the metadata.

    Args:
        data_root: the release folder that ``image_path`` values are relative to.
        tables: split name (``train``, ``val``, ``test``) -> validated metadata
            with ``observation_id``, ``image_path``, ``source_file``, ``source_line``
            and, except for test, ``class_id``.
        num_shards: number of hash buckets images are spread over.
        test_image_dir: folder (under the root) holding test images named by a bare
            ``filename``; 2024 test metadata names images without a folder.
        max_workers: threads reading and decoding files (both release the GIL).

    Returns:
        One row per listed image with the columns in ``MANIFEST_COLUMNS``.

    Raises:
        UnsafePathError: an image path escapes the data root (nothing is returned).
    """
    rows = []
    for split, df in tables.items():
        paths = check_image_paths(data_root, df, split=split, test_image_dir=test_image_dir)
        for rec, path in zip(df.itertuples(index=False), paths):
            rel = relative_image_path(split, rec.image_path, test_image_dir)
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
    manifest["reason"] = [i[2] for i in inspected]
    manifest["detail"] = [i[3] for i in inspected]
    unlabelled = manifest["split"].eq("train") & manifest["class_id"].lt(0) & manifest["reason"].eq("")
    manifest.loc[unlabelled, "reason"] = NO_LABEL
    manifest["readable"] = manifest["reason"].eq("")
    rejected = int((~manifest["readable"]).sum())
    if rejected:
        log.warning("%d of %d listed images are rejected: %s", rejected, len(manifest), rejection_counts(manifest))
    return manifest[list(MANIFEST_COLUMNS)]


def rejected_images(manifest: pd.DataFrame) -> pd.DataFrame:
    """The quarantined rows of a manifest: where each comes from and why it is not embedded."""
    return manifest.loc[~manifest["readable"], list(REJECTED_COLUMNS)].reset_index(drop=True)


def rejection_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Rejected rows per reason."""
    return {str(k): int(v) for k, v in manifest.loc[~manifest["readable"], "reason"].value_counts().sort_index().items()}


def reconcile(manifest: pd.DataFrame) -> dict[str, int]:
    """Counts that must add up.

    ``metadata_rows = readable + rejected``, ``rejected = missing_files + unreadable``
    (``unreadable`` counts every found file that is rejected, for whatever reason) and
    ``metadata_rows = files_found + missing_files``.
    """
    missing = manifest["reason"].eq("missing file")
    return {
        "metadata_rows": len(manifest),
        "files_found": int((~missing).sum()),
        "missing_files": int(missing.sum()),
        "readable": int(manifest["readable"].sum()),
        "rejected": int((~manifest["readable"]).sum()),
        "unreadable": int((~manifest["readable"] & ~missing).sum()),
        "shards": int(manifest["shard"].nunique()),
    }
