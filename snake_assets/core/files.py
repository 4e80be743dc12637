"""Crash-safe file writes, on a local disk or in object storage (the lake on ``gs://``).

Local: write to a temporary name beside the target, then rename. A process killed
mid-write (SIGKILL, OOM, power loss) leaves the target as it was, plus at most one
temporary file named ``.<target>.<host>-<pid>-<random>.tmp``. The next write to the
same target removes temporaries whose writing process (on this host) is gone, so
crash debris does not pile up; a temporary of a live process, or of another machine
sharing the folder, is never touched.

Object storage (a ``upath.UPath`` such as ``gs://bucket/lake/...``): write to a local
temporary file, then upload it as one object. An object upload is all or nothing, so
readers (other pods included) see the old object or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TMP_OWNER = re.compile(r"\.([0-9a-f]{8})-(\d+)-[^.]+\.tmp$")
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def is_remote(path: Any) -> bool:
    """True for a location in object storage (a ``UPath`` like ``gs://...``), False for a local path."""
    return getattr(path, "protocol", "") not in ("", "file", "local")


def as_path(path: Any) -> Any:
    """``path`` as a ``Path``; a remote ``UPath`` is kept as it is (it has the same API)."""
    return path if is_remote(path) else Path(path)


def arrow_source(path: Any) -> tuple[str, Any]:
    """``(source, filesystem)`` for pyarrow readers: the fsspec filesystem of a remote path, None locally."""
    return (path.path, path.fs) if is_remote(path) else (os.fspath(path), None)


@contextlib.contextmanager
def local_copy(path: Any) -> Iterator[Path]:
    """A local file with the content of ``path``: the file itself, or a downloaded temporary copy."""
    if not is_remote(path):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="snake-download-") as folder:
        local = Path(folder) / path.name
        path.fs.get_file(path.path, str(local))
        yield local


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete temporaries of ``target`` left by processes that no longer exist.

    Returns:
        The paths removed.
    """
    target = Path(target)
    removed = []
    for tmp in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        m = _TMP_OWNER.search(tmp.name)
        if m and m.group(1) == _HOST and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d temporary file(s) of %s left by killed processes", len(removed), target)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped (file names may contain ``[``)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems do not support it, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def _upload_on_success(target: Any) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="snake-upload-") as folder:
        tmp = Path(folder) / target.name
        yield tmp
        target.fs.put_file(str(tmp), target.path)  # one object upload: all or nothing


@contextlib.contextmanager
def atomic_path(target: Any, *, durable: bool = True) -> Iterator[Path]:
    """Yield a local temporary path; on success its content replaces ``target`` atomically.

    A crash (or exception) leaves ``target`` untouched; an exception also removes the
    temporary file, and a kill leaves it for the next write to clean up. Readers never
    see a half-written Parquet file, checkpoint or submission.

    Args:
        target: a local path, or a remote ``UPath`` (written by one object upload).
        durable: fsync the file and its folder (local only). Without it the replace is
            still atomic against a killed process, but a power cut may lose the new file.
    """
    if is_remote(target):
        with _upload_on_success(target) as tmp:
            yield tmp
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_HOST}-{os.getpid()}-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would (umask applies).
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, target)
        if durable:
            _fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(target: Any, data: bytes) -> Any:
    """Write ``data`` to ``target`` (local or remote) atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return as_path(target)
