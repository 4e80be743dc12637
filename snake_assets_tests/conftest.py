"""Shared fixtures: one generated demo release and tiny backbone per test session."""

import os
from pathlib import Path

import pytest

from snake_assets.core.demo import write_demo_release
from snake_assets.core.demo_backbone import write_tiny_backbone

# Large, sparse and deliberately unordered relative to species order: a head that
# forgot to map labels back to class ids cannot pass the end-to-end tests.
SPARSE_CLASS_IDS = {
    "Micrurus fulvius": 1783,
    "Lampropeltis triangulum": 5,
    "Morelia spilota": 1204,
    "Bitis gabonica": 77,
    "Agkistrodon contortrix": 999,
    "Agkistrodon piscivorus": 312,
}


@pytest.fixture(scope="session")
def demo_release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release")
    write_demo_release(root, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return write_tiny_backbone(tmp_path_factory.mktemp("backbone"), seed=0)


def set_snake_env(mp: pytest.MonkeyPatch, release: Path, backbone: Path, lake: Path) -> dict[str, str]:
    """Set the env vars the code location's EnvVar resources read; returns them."""
    env = {
        "SNAKE_DATA_DIR": str(release),
        "SNAKE_HOME": str(lake),
        "SNAKE_BACKBONE": str(backbone),
        "SNAKE_DEVICE": "cpu",
        "SNAKE_BATCH_SIZE": "16",
    }
    for k, v in env.items():
        mp.setenv(k, v)
    return env


@pytest.fixture
def snake_env(tmp_path, demo_release, tiny_backbone, monkeypatch):
    """Env vars the code location's EnvVar resources read, on temp paths."""
    return set_snake_env(monkeypatch, demo_release, tiny_backbone, tmp_path / "lake")


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout_s: float = 10) -> None:
    """Terminate a server we started (by its pid), killing it if it does not exit in time."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator():
    """A ``gcp-storage-emulator`` on 127.0.0.1 (in memory) with bucket ``snake-lake``; stopped by pid.

    Yields the env a client needs (``STORAGE_EMULATOR_HOST``, ``SNAKE_GCS_TOKEN=anon``).
    """
    import socket
    import subprocess
    import sys
    import time

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator did not start on port {port} (exit code {proc.poll()})")
                time.sleep(0.05)
        env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "SNAKE_GCS_TOKEN": "anon"}
        mp = pytest.MonkeyPatch()
        for k, v in env.items():
            mp.setenv(k, v)
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(project="snake-test", credentials=AnonymousCredentials()).create_bucket("snake-lake")
        yield env
        mp.undo()
    finally:
        stop_process(proc)
