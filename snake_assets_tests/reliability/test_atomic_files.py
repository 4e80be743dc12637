"""Crash-safe writes under a real SIGKILL: the target is never half-written, and debris is cleaned only when safe."""

import os
import signal
import subprocess
import sys

from snake_assets.core import files
from snake_assets.core.files import atomic_write_bytes
from snake_assets_tests.reliability.conftest import REPO

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from snake_assets.core.files import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"new" * 100_000)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # half-way: the with block never finishes
"""


def test_killed_writer_leaves_the_target_intact_and_the_next_write_removes_its_debris(tmp_path):
    target = tmp_path / "submission[1].csv"  # glob metacharacters in the name too
    target.write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old"
    (debris,) = tmp_path.glob(".submission*.tmp")
    assert debris.stat().st_size == 300_000

    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_temporaries_of_live_processes_and_other_hosts_are_left_alone(tmp_path):
    target = tmp_path / "shard-000.parquet"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".{target.name}.{files._HOST}-{sleeper.pid}-abc.tmp"
        other_host = tmp_path / f".{target.name}.{'0' * 8 if files._HOST != '0' * 8 else '1' * 8}-{2**22 + 7}-abc.tmp"
        for p in (live, other_host):
            p.write_bytes(b"in progress")
        atomic_write_bytes(target, b"x")
        assert live.exists() and other_host.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    atomic_write_bytes(target, b"y")
    assert not live.exists() and other_host.exists()
    assert os.path.getsize(target) == 1


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    """A submission or PNG written atomically is as readable as one written with open()."""
    import os

    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    written = atomic_write_bytes(tmp_path / "atomic.txt", b"x")
    assert os.stat(written).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
