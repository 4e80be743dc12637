"""Shared fixtures: one generated demo release and tiny backbone per test session."""

import os
from pathlib import Path

import pytest

from snake_assets.core.demo import write_demo_release, write_tiny_backbone

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
