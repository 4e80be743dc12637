"""Where the lake lives: a local folder, or a prefix in a Google Cloud Storage bucket.

``SNAKE_HOME=/data/lake`` gives a ``pathlib.Path``; ``SNAKE_HOME=gs://bucket/prefix`` gives a
``upath.UPath`` over gcsfs with the same path API (``/``, ``exists``, ``iterdir``, ``open``),
so the code that writes shards, caches, checkpoints and submissions is the same for both
(writes go through :func:`snake_assets.core.files.atomic_path`, uploads for a bucket).

Credentials are gcsfs's: Google application-default credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
workload identity on GKE), or the token given here (``"anon"`` for an emulator or a public
bucket). ``STORAGE_EMULATOR_HOST`` points gcsfs at an emulator.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

GCS_SCHEMES = ("gs", "gcs")


def _use_standard_gcsfs() -> None:
    """Map ``gs://`` to gcsfs's standard filesystem rather than its experimental extension.

    gcsfs >= 2026 defaults to ``ExtendedGcsFileSystem``, which asks the Storage Control gRPC
    API for every bucket's layout before opening a file (zonal/hierarchical buckets). That call
    needs an extra IAM permission, is retried for up to 30 s where it fails (emulators never
    answer it) and is not cached after a failure. The lake writes whole objects and needs none
    of it. Set ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`` explicitly to keep gcsfs's own choice.
    """
    if "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT" in os.environ:
        return
    import fsspec
    import gcsfs.core

    for scheme in GCS_SCHEMES:
        fsspec.register_implementation(scheme, gcsfs.core.GCSFileSystem, clobber=True)


def lake_root(home: str, *, gcs_token: str | None = None) -> Any:
    """The lake root for ``SNAKE_HOME``.

    Args:
        home: a local folder (``~`` expanded, ``file://`` accepted) or ``gs://bucket/prefix``.
        gcs_token: gcsfs token for a bucket: ``"anon"``, a service-account JSON file, or None
            for application-default credentials.

    Returns:
        ``Path`` for a local lake, ``upath.UPath`` for a bucket.

    Raises:
        ValueError: another scheme (``s3://``, ``http://``...): only local folders and GCS are supported.
    """
    scheme = urlsplit(home).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive, e.g. C:\lake
        return Path(home.removeprefix("file://")).expanduser()
    if scheme not in GCS_SCHEMES:
        raise ValueError(f"SNAKE_HOME={home!r}: unsupported scheme {scheme!r}; use a local folder or gs://bucket/prefix")
    if not urlsplit(home).netloc:
        raise ValueError(f"SNAKE_HOME={home!r} names no bucket; use gs://bucket/prefix")
    from upath import UPath

    _use_standard_gcsfs()
    # Listings are not cached: other pods write to the same prefix while this process runs.
    options: dict[str, Any] = {"use_listings_cache": False}
    if gcs_token:
        options["token"] = gcs_token
    return UPath(home.rstrip("/"), **options)
