"""Column contracts of the SnakeCLEF metadata files, and strict readers for them.

Every file is read by column *name* (column order differs between the official
files), every value starts as a string, and each typed column is checked value by
value so that a bad cell is reported with its file, line and column.
"""

from __future__ import annotations

import csv
import io
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
_INTEGER = r"^[+-]?\d{1,18}$"
"""Plain decimal integers only: ``17.0``, ``1e3`` or ``0x11`` are refused, never coerced."""


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise MetadataError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", line=line) from e
    if "\x00" in text:
        raise MetadataError(path, "contains a NUL byte (binary file?)", line=text[: text.index("\x00")].count("\n") + 1)
    return text


def _records(path: Path, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data records and the physical line each record starts on (blank lines skipped)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows, lines = [], []
    last_line = 0
    try:
        for record in reader:
            start, last_line = last_line + 1, reader.line_num
            if not record or record == [""]:
                continue
            if header is None:
                header = [c.strip() for c in record]
                continue
            if len(record) > len(header) and not any(v.strip() for v in record[len(header):]):
                record = record[: len(header)]  # trailing commas
            if len(record) != len(header):
                raise MetadataError(path, f"{len(record)} fields but the header has {len(header)}", line=start)
            rows.append(record)
            lines.append(start)
    except csv.Error as e:
        raise MetadataError(path, f"malformed CSV ({e}; an unterminated quote?)", line=last_line + 1) from e
    if header is None:
        raise MetadataError(path, "file is empty (no header)")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise MetadataError(path, f"column(s) {dup} appear more than once in the header", line=1)
    return header, rows, lines


def read_header(path: str | Path) -> list[str]:
    """Column names of a CSV file (after :func:`read_csv_strict` accepted it)."""
    return _records(Path(path), _decode(Path(path)).split("\n", 1)[0] + "\n")[0]


def read_csv_strict(path: str | Path, schema: TableSchema) -> pd.DataFrame:
    """Read one metadata CSV and validate it against ``schema``.

    Args:
        path: the CSV file (UTF-8, optionally with a BOM; RFC 4180 quoting).
        schema: the columns it must hold.

    Returns:
        A frame with exactly the schema's columns, typed, plus ``source_line``
        (the physical line the record starts on, header = line 1).

    Raises:
        MetadataError: the file is missing, not UTF-8, malformed (ragged row,
            unterminated quote, duplicated column), empty, header-only, lacks a
            column, or holds a value of the wrong type (first offending cell named).
    """
    path = Path(path)
    if not path.is_file():
        raise MetadataError(path, "file not found")
    header, rows, lines = _records(path, _decode(path))
    df = pd.DataFrame(rows, columns=header, dtype=str) if rows else pd.DataFrame(columns=header, dtype=str)
    if schema is TEST_SCHEMA and "image_path" not in df.columns and "filename" in df.columns:
        df = df.rename(columns={"filename": "image_path"})
    missing = [c for c in schema.required if c not in df.columns]
    if missing:
        near = {c: f for c in missing for f in df.columns if f.lower().replace(" ", "_") == c.lower()}
        hint = f" (column names are case-sensitive: {near})" if near else ""
        raise MetadataError(path, f"missing column(s) {missing}; found {list(df.columns)}{hint}", line=1)
    if df.empty:
        raise MetadataError(path, "no data rows (header only)")
    df.index = pd.Index(lines)
    out = pd.DataFrame(index=df.index)
    for col in schema.strings:
        out[col] = df[col].str.strip()
    for col in schema.optional:
        out[col] = df[col].str.strip() if col in df.columns else ""
    for col in schema.nonempty:
        _first_bad(path, out[col] == "", col, out[col], "empty value")
    for col in schema.integers:
        raw = df[col].str.strip()
        _first_bad(path, ~raw.str.match(_INTEGER), col, df[col], "not an integer")
        out[col] = raw.astype("int64")
    for col in schema.booleans:
        low = df[col].str.strip().str.lower()
        _first_bad(path, ~low.isin(_TRUE | _FALSE), col, df[col], "not a boolean (True/False)")
        out[col] = low.isin(_TRUE)
    out["source_line"] = df.index.astype("int64")
    return out.reset_index(drop=True)


def _first_bad(path: Path, bad: pd.Series, col: str, values: pd.Series, what: str) -> None:
    if bad.any():
        i = bad.idxmax()  # the index holds source lines
        raise MetadataError(path, f"{what}: {values[i]!r}", line=int(i), column=col)


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
    df.attrs["image_path_column"] = "image_path" if "image_path" in read_header(path) else "filename"
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


def class_coverage(train: pd.DataFrame, labelled: pd.DataFrame) -> dict[str, object]:
    """How a labelled split (validation) relates to the training classes.

    Rows of a class the head never saw cannot be predicted correctly and rows with
    ``class_id`` -1 (unknown species) have no class at all; both are kept (the
    official scorer handles them) and counted here rather than refused.

    Returns:
        ``unknown_species_rows`` (class_id -1), ``classes_unseen_in_train`` (sorted
        ids), ``rows_of_unseen_classes`` and ``observations_of_unseen_classes``.
    """
    known = set(train.loc[train["class_id"] >= 0, "class_id"].astype(int))
    has_class = labelled["class_id"] >= 0
    unseen = labelled[has_class & ~labelled["class_id"].isin(known)]
    return {
        "unknown_species_rows": int((~has_class).sum()),
        "classes_unseen_in_train": sorted(int(c) for c in unseen["class_id"].unique()),
        "rows_of_unseen_classes": len(unseen),
        "observations_of_unseen_classes": int(unseen["observation_id"].nunique()),
    }
