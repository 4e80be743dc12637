"""Data drops on a copy of the demo release: new images and rows for the release sensor to find.

A drop writes its images first and the metadata last, each CSV replaced atomically, as a
sync tool would, so a sensor tick never sees rows whose images are missing.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from snake_assets.core import schemas
from snake_assets.core.files import atomic_write_bytes
from snake_assets.core.manifest import shard_of

NUM_SHARDS = 4
TEST_FILE = "SnakeCLEF2024-TestMetadata.csv"
GROUND_TRUTH = "test_ground_truth.csv"


@dataclass(frozen=True)
class Drop:
    """What a drop added: new image keys, their shard, new test observations."""

    image_keys: tuple[str, ...]
    shard: str
    test_observations: tuple[str, ...]


def copy_release(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype=str, keep_default_na=False)


def _write(root: Path, name: str, frame: pd.DataFrame) -> None:
    atomic_write_bytes(root / name, frame.to_csv(index=False, lineterminator="\n").encode())


def _names_in(shard: str, key_of, count: int) -> list[str]:
    names = [n for n in (f"drop{i:04d}.jpg" for i in range(10_000)) if shard_of(key_of(n), NUM_SHARDS) == shard]
    return names[:count]


def add_drop(root: Path, *, shard: str = "shard-001", train_images: int = 3, test_images: int = 1) -> Drop:
    """Add new train images (copies of one species' images) and test observations, all in ``shard``.

    Train rows go to the iNat file (same species and class id as the copied image), test
    rows to the test file and to the demo's ground truth, so the submission can be scored.
    """
    train = _read(root, schemas.TRAIN_INAT_FILE)
    source = train.iloc[0]
    folder = f"drop/{source['binomial_name'].replace(' ', '_')}"
    train_names = _names_in(shard, lambda n: f"train/{folder}/{n}", train_images)
    test = _read(root, TEST_FILE)
    truth = _read(root, GROUND_TRUTH)
    test_source = test.iloc[0]
    test_names = _names_in(shard, lambda n: f"test/test/t{n}", test_images)
    for name in train_names:
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / source["image_path"], root / folder / name)
    for name in test_names:
        shutil.copyfile(root / "test" / test_source["filename"], root / "test" / f"t{name}")
    new_train = [{**source.to_dict(), "observation_id": f"9{i:06d}", "image_path": f"{folder}/{n}"} for i, n in enumerate(train_names)]
    new_test = [{**test_source.to_dict(), "observation_id": f"8{i:06d}", "filename": f"t{n}"} for i, n in enumerate(test_names)]
    truth_class = truth.loc[truth["observation_id"] == test_source["observation_id"], "class_id"].iloc[0]
    new_truth = [{"observation_id": r["observation_id"], "class_id": truth_class} for r in new_test]
    _write(root, schemas.TRAIN_INAT_FILE, pd.concat([train, pd.DataFrame(new_train)], ignore_index=True))
    _write(root, GROUND_TRUTH, pd.concat([truth, pd.DataFrame(new_truth)], ignore_index=True))
    _write(root, TEST_FILE, pd.concat([test, pd.DataFrame(new_test)], ignore_index=True))
    keys = tuple(f"train/{folder}/{n}" for n in train_names) + tuple(f"test/test/t{n}" for n in test_names)
    return Drop(keys, shard, tuple(r["observation_id"] for r in new_test))


def rename_species(root: Path, old: str = "Natrix natrix", new: str = "Natrix helvetica") -> int:
    """Rename a species in every metadata file, keeping its class id: same class set, different label map.

    Returns:
        The class id whose name changed.
    """
    class_id = None
    for name in (schemas.TRAIN_INAT_FILE, schemas.TRAIN_HM_FILE, schemas.VAL_FILE):
        frame = _read(root, name)
        hit = frame["binomial_name"] == old
        if hit.any():
            class_id = int(frame.loc[hit, "class_id"].iloc[0])
        frame.loc[hit, "binomial_name"] = new
        _write(root, name, frame)
    assert class_id is not None, f"{old} is not in the release"
    return class_id
