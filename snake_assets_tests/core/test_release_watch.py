"""Release change detection: which edits of a release mean ingest, and which mean re-embedding which shard."""

import os
from pathlib import Path

import pandas as pd
import pytest

from snake_assets.core import schemas
from snake_assets.core.manifest import build_image_manifest, shard_of
from snake_assets.core.release_watch import (
    LastIngest, ReleaseFingerprint, WatchState, diff_releases, fingerprint_release, plan_tick,
)

N = 4
COLUMNS = {
    schemas.TRAIN_INAT_FILE: "observation_id,binomial_name,image_path,class_id,code,endemic,subset",
    schemas.TRAIN_HM_FILE: "observation_id,binomial_name,image_path,class_id,code,endemic,subset",
    schemas.VAL_FILE: "observation_id,binomial_name,image_path,class_id,code,endemic,subset,captive",
    "SnakeCLEF2024-TestMetadata.csv": "observation_id,filename,code",
    schemas.VENOMOUS_FILE: "class_id,MIVS",
}


def name_in(shard: str, split: str, stem: str, folder: str = "a") -> str:
    """An image path (relative to the root) whose image key falls in ``shard``."""
    for i in range(1000):
        rel = f"{folder}/{stem}{i}.jpg" if split != "test" else f"{stem}{i}.jpg"
        key = f"{split}/{rel}" if split != "test" else f"test/test/{rel}"
        if shard_of(key, N) == shard:
            return rel
    raise AssertionError("no name found")


def write_file(root: Path, name: str, rows: list[str]) -> None:
    (root / name).write_text("\n".join([COLUMNS[name], *rows]) + "\n")


def write_image(root: Path, rel: str, data: bytes = b"\xff\xd8 not decoded here") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)


@pytest.fixture
def release(tmp_path) -> Path:
    """Train images in shards 000 and 001, one val image in 001, one test image in 002; shard 003 empty."""
    root = tmp_path / "release"
    root.mkdir()
    train = [name_in("shard-000", "train", "t"), name_in("shard-001", "train", "u")]
    val = name_in("shard-001", "val", "v")
    test = name_in("shard-002", "test", "x")
    write_file(root, schemas.TRAIN_INAT_FILE, [f"1,Natrix natrix,{train[0]},7,DE,False,train", f"2,Natrix natrix,{train[1]},7,FR,False,train"])
    write_file(root, schemas.TRAIN_HM_FILE, [])
    write_file(root, schemas.VAL_FILE, [f"3,Natrix natrix,{val},7,DE,False,val,False"])
    write_file(root, "SnakeCLEF2024-TestMetadata.csv", [f"4,{test},DE"])
    write_file(root, schemas.VENOMOUS_FILE, ["7,0", "8,1"])
    for rel in [*train, val, f"test/{test}"]:
        write_image(root, rel)
    return root


def fp(root: Path) -> ReleaseFingerprint:
    return fingerprint_release(root, num_shards=N)


def rewrite(root: Path, name: str, edit) -> None:
    lines = (root / name).read_text().splitlines()
    (root / name).write_text("\n".join(edit(lines)) + "\n")


EDITS = {
    "nothing": (lambda r: None, (), (), (), ()),
    "rows reordered": (lambda r: rewrite(r, schemas.TRAIN_INAT_FILE, lambda ls: [ls[0], ls[2], ls[1]]), (), (), (), ()),
    "columns reordered": (
        lambda r: (r / schemas.VENOMOUS_FILE).write_text("MIVS,class_id\n0,7\n1,8\n"), (), (), (), ()),
    "image relabelled": (
        lambda r: rewrite(r, schemas.TRAIN_INAT_FILE, lambda ls: [ls[0], ls[1].replace(",7,", ",9,"), ls[2]]),
        (schemas.TRAIN_INAT_FILE,), (), (), ()),
    "venomous list edited": (
        lambda r: rewrite(r, schemas.VENOMOUS_FILE, lambda ls: [*ls, "9,1"]), (schemas.VENOMOUS_FILE,), (), (), ()),
    "image bytes replaced": (
        lambda r: write_image(r, name_in("shard-000", "train", "t"), b"different and longer bytes"), (), (), ("shard-000",), ()),
    "image touched": (
        lambda r: os.utime(r / name_in("shard-001", "val", "v"), ns=(1, 1)), (), (), ("shard-001",), ()),
    "listed image deleted": (
        lambda r: (r / name_in("shard-000", "train", "t")).unlink(), (), (), ("shard-000",), ()),
    "drop into an existing shard": (
        lambda r: (write_image(r, name_in("shard-001", "train", "d", "b")),
                   rewrite(r, schemas.TRAIN_INAT_FILE, lambda ls: [*ls, f"5,Natrix natrix,{name_in('shard-001', 'train', 'd', 'b')},7,DE,False,train"])),
        (schemas.TRAIN_INAT_FILE,), (), ("shard-001",), ()),
    "drop opens a new shard": (
        lambda r: (write_image(r, name_in("shard-003", "train", "d", "b")),
                   rewrite(r, schemas.TRAIN_HM_FILE, lambda ls: [*ls, f"HM 5,Natrix natrix,{name_in('shard-003', 'train', 'd', 'b')},7,DE,False,train-hm"])),
        (schemas.TRAIN_HM_FILE,), ("shard-003",), (), ()),
    "test image renamed away": (
        lambda r: rewrite(r, "SnakeCLEF2024-TestMetadata.csv", lambda ls: [ls[0], f"4,{name_in('shard-001', 'test', 'y')},DE"]),
        ("SnakeCLEF2024-TestMetadata.csv",), (), ("shard-001",), ("shard-002",)),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_what_each_edit_means(release, edit):
    apply, files, new, changed, removed = EDITS[edit]
    before = fp(release)
    apply(release)
    change = diff_releases(before, fp(release))
    assert (change.changed_files, change.new_shards, change.changed_shards, change.removed_shards) == (files, new, changed, removed)
    assert change.needs_ingest == bool(files or new or changed or removed)
    assert change.shards_to_embed == tuple(sorted(new + changed))


def test_shards_match_the_manifest(demo_release):
    """The sensor's shard of every image is the one ``build_image_manifest`` gives it."""
    tables = {
        "train": schemas.read_train_metadata(demo_release),
        "val": schemas.read_val_metadata(demo_release),
        "test": schemas.read_test_metadata(demo_release),
    }
    manifest = build_image_manifest(demo_release, tables, num_shards=N)
    fingerprint = fingerprint_release(demo_release, num_shards=N)
    assert {s: n for s, (n, _) in fingerprint.shards.items()} == manifest.groupby("shard").size().to_dict()
    assert fingerprint.listed_images == len(manifest)
    rows = sum(len(pd.read_csv(demo_release / f)) for f in fingerprint.files if f != schemas.VENOMOUS_FILE)
    assert rows == len(manifest)


def test_broken_files_and_unsafe_paths_are_recorded_not_raised(release):
    before = fp(release)
    (release / schemas.VAL_FILE).write_bytes(b"\xff\xfe not utf-8 \x00")
    rewrite(release, schemas.TRAIN_INAT_FILE, lambda ls: [*ls, "6,Natrix natrix,../../etc/passwd,7,DE,False,train"])
    after = fp(release)
    assert after.files[schemas.VAL_FILE][1].startswith("unreadable:")
    change = diff_releases(before, after)
    assert set(change.changed_files) == {schemas.VAL_FILE, schemas.TRAIN_INAT_FILE}
    assert change.needs_ingest  # ingest then fails, naming the file and line


def test_cursor_round_trip_and_unknown_version(release):
    fingerprint = fp(release)
    assert ReleaseFingerprint.from_json(fingerprint.to_json()) == fingerprint
    assert ReleaseFingerprint.from_json(None) is None
    assert ReleaseFingerprint.from_json(fingerprint.to_json().replace('"version":1', '"version":0')) is None
    assert len(fingerprint.to_json()) < 1000
    state = WatchState(fingerprint, {"shard-001": 12.5})
    assert WatchState.from_json(state.to_json()) == state
    assert WatchState.from_json(None) == WatchState()


def test_first_look_runs_everything(release):
    plan = plan_tick(None, fp(release), last_ingest=None)
    assert plan.action == "run"
    assert plan.shards == plan.change.shards_to_embed == ("shard-000", "shard-001", "shard-002")
    assert "first look" in plan.reason


@pytest.mark.parametrize(
    ("listed", "seconds_after_newest", "action"),
    [(4, 10.0, "adopt"), (5, 10.0, "run"), (None, 10.0, "run"), (4, -10.0, "run")],
    ids=["same release ingested", "row count differs", "count not recorded", "file newer than ingest"],
)
def test_first_look_adopts_what_the_instance_already_ingested(release, listed, seconds_after_newest, action):
    current = fp(release)
    ingest = LastIngest(timestamp=current.newest_mtime_ns / 1e9 + seconds_after_newest, listed_images=listed)
    assert plan_tick(None, current, ingest).action == action


def test_with_a_cursor_only_changes_run(release):
    before = fp(release)
    ingest = LastIngest(timestamp=0.0, listed_images=None)
    assert plan_tick(before, fp(release), ingest).action == "skip"
    write_image(release, name_in("shard-000", "train", "t"), b"new bytes, new vectors")
    plan = plan_tick(before, fp(release), ingest)
    assert (plan.action, plan.shards) == ("run", ("shard-000",))
    assert plan.reason == "changed shard-000 (1 -> 1 images)"


def test_shards_never_embedded_are_carried_into_the_next_change(release):
    """A drop whose backfill failed (say, on a broken CSV) is embedded when the fix arrives."""
    before = fp(release)
    rewrite(release, schemas.VENOMOUS_FILE, lambda ls: [*ls, "9,1"])  # the fix: a metadata-only change
    plan = plan_tick(before, fp(release), None, unembedded=("shard-002",))
    assert (plan.action, plan.change.shards_to_embed, plan.shards) == ("run", (), ("shard-002",))
    assert plan.reason.endswith("not embedded since an earlier request: shard-002")
    unchanged = plan_tick(fp(release), fp(release), None, unembedded=("shard-002",))
    assert (unchanged.action, unchanged.shards) == ("skip", ())  # carried only with a change, never retried in a loop
