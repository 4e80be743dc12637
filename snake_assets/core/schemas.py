"""Column contracts of the SnakeCLEF metadata files, and strict readers for them.

Every file is read by column *name* (column order differs between the official
files), every value starts as a string, and each typed column is checked value by
value so that a bad cell is reported with its file, line and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

TRAIN_INAT_FILE = "SnakeCLEF2023-TrainMetadata-iNat.csv"
TRAIN_HM_FILE = "SnakeCLEF2023-TrainMetadata-HM.csv"
VAL_FILE = "SnakeCLEF2023-ValMetadata.csv"
VENOMOUS_FILE = "venomous_status_list.csv"
TEST_FILE_CANDIDATES = (
    "SnakeCLEF2024-TestMetadata.csv",
    "SnakeCLEF2023-PubTestMetadata.csv",
)


class MetadataError(ValueError):
    """A metadata file cannot be used; the message names file, line and column."""

    def __init__(self, file: str | Path, message: str, *, line: int | None = None, column: str | None = None):
        self.file, self.line, self.column = str(file), line, column
        where = self.file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class TableSchema:
    """Required columns of one metadata file and how to type them."""

    name: str
    strings: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    """Columns kept as strings when present, filled with '' when absent."""
    nonempty: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        return self.strings + self.integers + self.booleans


TRAIN_SCHEMA = TableSchema(
    name="train",
    strings=("observation_id", "binomial_name", "image_path", "code", "subset"),
    integers=("class_id",),
    booleans=("endemic",),
    nonempty=("observation_id", "binomial_name", "image_path"),
)
VAL_SCHEMA = TableSchema(
    name="val",
    strings=TRAIN_SCHEMA.strings,
    integers=("class_id",),
    booleans=("endemic", "captive"),
    nonempty=TRAIN_SCHEMA.nonempty,
)
TEST_SCHEMA = TableSchema(
    name="test",
    strings=("observation_id", "image_path"),
    optional=("code",),
    nonempty=("observation_id", "image_path"),
)
VENOMOUS_SCHEMA = TableSchema(name="venomous", integers=("class_id", "MIVS"))

_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f", ""}


def read_csv_strict(path: str | Path, schema: TableSchema) -> pd.DataFrame:
    """Read one metadata CSV and validate it against ``schema``.

    Args:
        path: the CSV file.
        schema: the columns it must hold.

    Returns:
        A frame with exactly the schema's columns, typed, plus ``source_line``
        (the 1-based line number in the file, header = line 1).

    Raises:
        MetadataError: the file is missing, unreadable, empty, lacks a column,
            or holds a value of the wrong type (first offending cell named).
    """
    path = Path(path)
    if not path.is_file():
        raise MetadataError(path, "file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as e:
        raise MetadataError(path, "file is empty (no header)") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise MetadataError(path, f"unreadable CSV: {e}") from e
    df.columns = [c.strip() for c in df.columns]
    if schema is TEST_SCHEMA and "image_path" not in df.columns and "filename" in df.columns:
        df = df.rename(columns={"filename": "image_path"})
    missing = [c for c in schema.required if c not in df.columns]
    if missing:
        raise MetadataError(path, f"missing column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise MetadataError(path, "no data rows (header only)")
    out = pd.DataFrame(index=df.index)
    for col in schema.strings:
        out[col] = df[col].str.strip()
    for col in schema.optional:
        out[col] = df[col].str.strip() if col in df.columns else ""
    for col in schema.nonempty:
        _first_bad(path, out[col] == "", col, out[col], "empty value")
    for col in schema.integers:
        as_num = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = as_num.isna() | (as_num != as_num.round())
        _first_bad(path, bad, col, df[col], "not an integer")
        out[col] = as_num.astype("int64")
    for col in schema.booleans:
        low = df[col].str.strip().str.lower()
        _first_bad(path, ~low.isin(_TRUE | _FALSE), col, df[col], "not a boolean (True/False)")
        out[col] = low.isin(_TRUE)
    out["source_line"] = (df.index + 2).astype("int64")
    return out.reset_index(drop=True)


def _first_bad(path: Path, bad: pd.Series, col: str, values: pd.Series, what: str) -> None:
    if bad.any():
        i = bad.idxmax()
        raise MetadataError(path, f"{what}: {values[i]!r}", line=int(i) + 2, column=col)


def find_test_file(data_dir: str | Path) -> Path | None:
    """The test metadata file of a release, or None when the release has none."""
    for name in TEST_FILE_CANDIDATES:
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    return None


def read_train_metadata(data_dir: str | Path) -> pd.DataFrame:
    """iNat and HerpMapper training rows in one frame, with ``source_file``."""
    frames = []
    for name in (TRAIN_INAT_FILE, TRAIN_HM_FILE):
        df = read_csv_strict(Path(data_dir) / name, TRAIN_SCHEMA)
        df.insert(0, "source_file", name)
        frames.append(df)
    train = pd.concat(frames, ignore_index=True)
    check_unique_images(train)
    check_consistent_classes(train)
    return train


def read_val_metadata(data_dir: str | Path) -> pd.DataFrame:
    df = read_csv_strict(Path(data_dir) / VAL_FILE, VAL_SCHEMA)
    df.insert(0, "source_file", VAL_FILE)
    check_unique_images(df)
    check_consistent_classes(df)
    return df


def read_test_metadata(data_dir: str | Path) -> pd.DataFrame:
    path = find_test_file(data_dir)
    if path is None:
        raise MetadataError(Path(data_dir) / TEST_FILE_CANDIDATES[0], f"no test metadata file (looked for {list(TEST_FILE_CANDIDATES)})")
    df = read_csv_strict(path, TEST_SCHEMA)
    df.insert(0, "source_file", path.name)
    check_unique_images(df)
    return df


def read_venomous(data_dir: str | Path) -> pd.DataFrame:
    path = Path(data_dir) / VENOMOUS_FILE
    df = read_csv_strict(path, VENOMOUS_SCHEMA)
    bad = ~df["MIVS"].isin([0, 1])
    if bad.any():
        i = bad.idxmax()
        raise MetadataError(path, f"MIVS must be 0 or 1, got {df['MIVS'][i]}", line=int(df["source_line"][i]), column="MIVS")
    dup = df["class_id"].duplicated()
    if dup.any():
        i = dup.idxmax()
        raise MetadataError(path, f"class_id {df['class_id'][i]} listed twice", line=int(df["source_line"][i]), column="class_id")
    return df


def check_unique_images(df: pd.DataFrame) -> None:
    """Each image appears once; a repeated ``image_path`` names both lines."""
    dup = df.duplicated("image_path", keep=False)
    if dup.any():
        rows = df[dup].sort_values("source_line")
        first, second = rows.iloc[0], rows[rows["image_path"] == rows.iloc[0]["image_path"]].iloc[1]
        raise MetadataError(
            second["source_file"],
            f"image_path {first['image_path']!r} repeats line {first['source_line']} of {first['source_file']}",
            line=int(second["source_line"]),
            column="image_path",
        )


def check_consistent_classes(df: pd.DataFrame) -> None:
    """One class_id per observation and one binomial name per class_id."""
    for key, val in (("observation_id", "class_id"), ("class_id", "binomial_name")):
        counts = df.groupby(key)[val].nunique()
        if (counts > 1).any():
            k = counts[counts > 1].index[0]
            rows = df[df[key] == k]
            second = rows[rows[val] != rows.iloc[0][val]].iloc[0]
            raise MetadataError(
                second["source_file"],
                f"{key} {k!r} has {val} {second[val]!r} here but {rows.iloc[0][val]!r} on line {rows.iloc[0]['source_line']}",
                line=int(second["source_line"]),
                column=val,
            )
