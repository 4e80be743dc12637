"""Bad metadata files, ingested over a lake that already holds a good run.

Each refused case must fail its asset with an error naming the file, line and column,
and leave every stored table exactly as it was (the metadata assets run; Dagster skips
whatever depends on a failed one). Accepted quirks (BOM, CRLF, quoting)
must load the same data as the clean file.
"""

import csv
import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from snake_assets.core import schemas
from snake_assets.definitions import defs
from snake_assets_tests.reliability.conftest import NUM_SHARDS, failure_messages, read_tables

INAT, HM, VAL, TEST = schemas.TRAIN_INAT_FILE, schemas.TRAIN_HM_FILE, schemas.VAL_FILE, "SnakeCLEF2024-TestMetadata.csv"


def _edit_cell(file: str, line: int, column: str, value: str):
    def edit(root: Path) -> None:
        df = pd.read_csv(root / file, dtype=str, keep_default_na=False)
        df.loc[line - 2, column] = value
        _rewrite(root / file, df)
    return edit


def _rewrite(path: Path, df: pd.DataFrame) -> None:
    path.unlink()  # hard-linked from the shared release: never write through the link
    path.write_text(df.to_csv(index=False, lineterminator="\n"), encoding="utf-8")


def _replace_text(file: str, old: str, new: str, count: int = 1):
    def edit(root: Path) -> None:
        text = (root / file).read_text(encoding="utf-8")
        (root / file).unlink()
        (root / file).write_text(text.replace(old, new, count), encoding="utf-8")
    return edit


def _drop_column(file: str, column: str):
    def edit(root: Path) -> None:
        _rewrite(root / file, pd.read_csv(root / file, dtype=str, keep_default_na=False).drop(columns=column))
    return edit


def _write_bytes(file: str, data: bytes):
    def edit(root: Path) -> None:
        (root / file).unlink()
        (root / file).write_bytes(data)
    return edit


def _header_only(file: str):
    def edit(root: Path) -> None:
        header = (root / file).read_text().splitlines()[0]
        _write_bytes(file, (header + "\n").encode())(root)
    return edit


def _append_copy_of_line(file: str, line: int, **changes):
    def edit(root: Path) -> None:
        df = pd.read_csv(root / file, dtype=str, keep_default_na=False)
        row = df.iloc[[line - 2]].assign(**changes)
        _rewrite(root / file, pd.concat([df, row], ignore_index=True))
    return edit


def _symlink_outside(root: Path) -> None:
    outside = root.parent / "outside.jpg"
    shutil.copy(next((root / "odd").glob("grey.jpeg")), outside)
    os.symlink(outside, root / "odd" / "escape.jpg")
    _edit_cell(INAT, 2, "image_path", "odd/escape.jpg")(root)


def _latin1(root: Path) -> None:
    _edit_cell(VAL, 2, "binomial_name", "Vip\u00e8re")(root)
    text = (root / VAL).read_text(encoding="utf-8")
    (root / VAL).write_bytes(text.encode("latin-1"))


REFUSED = {
    "renamed column": (_replace_text(VAL, "class_id", "classid"), VAL, r"line 1: missing column\(s\) \['class_id'\]"),
    "missing column": (_drop_column(HM, "binomial_name"), HM, r"line 1: missing column\(s\) \['binomial_name'\]"),
    "class_id not an integer": (_edit_cell(INAT, 5, "class_id", "seven"), INAT, "line 5, column 'class_id': not an integer: 'seven'"),
    "class_id as a float": (_edit_cell(VAL, 3, "class_id", "1137.0"), VAL, "line 3, column 'class_id': not an integer"),
    "boolean column garbage": (_edit_cell(VAL, 4, "captive", "maybe"), VAL, "line 4, column 'captive': not a boolean"),
    "empty file": (_write_bytes(TEST, b""), TEST, "file is empty"),
    "header only": (_header_only(HM), HM, "no data rows"),
    "ragged row": (_replace_text(INAT, ",train\n", ",train,extra\n"), INAT, "line 2: 8 fields but the header has 7"),
    "not UTF-8": (_latin1, VAL, "line 2: not UTF-8"),
    "duplicate image_path": (_append_copy_of_line(INAT, 4), INAT, r"column 'image_path': image_path .* repeats line 4"),
    "conflicting class ids": (
        _append_copy_of_line(VAL, 2, image_path="val34/extra.jpg", class_id="4242", binomial_name="Fake species"),
        VAL, "column 'class_id': observation_id .* has class_id",
    ),
    "path with ..": (_edit_cell(VAL, 3, "image_path", "../../etc/passwd"), VAL, "line 3, column 'image_path': .*outside the data root"),
    "absolute path": (_edit_cell(TEST, 2, "filename", "/etc/passwd"), TEST, "line 2, column 'filename': absolute image path"),
    "symlink leading outside": (_symlink_outside, INAT, "line 2, column 'image_path': .*outside the data root"),
    "venomous list missing": (lambda root: (root / schemas.VENOMOUS_FILE).unlink(), schemas.VENOMOUS_FILE, "file not found"),
}


def _broken_copy(release: Path, dest: Path, edit) -> Path:
    shutil.copytree(release, dest, copy_function=os.link, symlinks=True)
    edit(dest)
    return dest


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


METADATA_ASSETS = [dg.AssetKey(k) for k in ("raw_train_metadata", "raw_val_metadata", "raw_test_metadata", "venomous_species")]
"""The assets that read metadata files; everything downstream of a failed one is skipped by Dagster."""


def _ingest(release: Path, lake: Path, backbone: Path, instance, monkeypatch, *, only_metadata: bool = False) -> dg.ExecuteInProcessResult:
    for k, v in {"SNAKE_DATA_DIR": str(release), "SNAKE_HOME": str(lake), "SNAKE_BACKBONE": str(backbone),
                 "SNAKE_DEVICE": "cpu", "SNAKE_BATCH_SIZE": "16"}.items():
        monkeypatch.setenv(k, v)
    job = defs().resolve_job_def("ingest_job")
    if only_metadata:
        return job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=METADATA_ASSETS)
    run_config = {"ops": {"image_manifest": {"config": {"num_shards": NUM_SHARDS}}}}
    return job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config)


def _lake_copy(baseline, tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(baseline.lake / "warehouse.duckdb", lake / "warehouse.duckdb")
    return lake


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused_metadata_names_file_line_column_and_writes_nothing(case, baseline, instance, tmp_path, monkeypatch):
    edit, file, match = REFUSED[case]
    release = _broken_copy(baseline.release, tmp_path / "release", edit)
    lake = _lake_copy(baseline, tmp_path)
    result = _ingest(release, lake, baseline.backbone, instance, monkeypatch, only_metadata=True)
    assert not result.success
    errors = failure_messages(result)
    assert file in errors
    assert pd.Series([errors]).str.contains(match).iloc[0], errors[-3000:]
    before, after = read_tables(baseline.lake), read_tables(lake)
    assert after.keys() == before.keys()
    for name in before:  # tables of the files that are fine are rebuilt with the same rows
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)


def test_bom_crlf_and_quoted_commas_load_the_same_rows(baseline, instance, tmp_path, monkeypatch):
    def requote(root: Path) -> None:
        df = pd.read_csv(root / VAL, dtype=str, keep_default_na=False)
        df.loc[0, "code"] = "DE, AT"  # a quoted comma inside a field
        (root / VAL).unlink()
        with open(root / VAL, "w", encoding="utf-8-sig", newline="") as f:
            df.to_csv(f, index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n")

    release = _broken_copy(baseline.release, tmp_path / "release", requote)
    lake = _lake_copy(baseline, tmp_path)
    result = _ingest(release, lake, baseline.backbone, instance, monkeypatch)
    assert result.success, failure_messages(result)
    before, after = read_tables(baseline.lake)["raw_val_metadata"], read_tables(lake)["raw_val_metadata"]
    assert after.loc[0, "code"] == "DE, AT"
    pd.testing.assert_frame_equal(after.drop(columns="code"), before.drop(columns="code"))
    assert after["source_line"].tolist() == before["source_line"].tolist()
