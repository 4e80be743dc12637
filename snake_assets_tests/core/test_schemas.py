"""Strict metadata readers: bad cells are named by file, line and column."""

from pathlib import Path

import pytest

from snake_assets.core import schemas
from snake_assets.core.schemas import MetadataError, read_csv_strict

TRAIN_HEADER = "observation_id,endemic,binomial_name,code,image_path,class_id,subset\n"


def _write(tmp_path: Path, text: str, name="train.csv", encoding="utf-8") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


def test_reads_by_name_with_string_ids_and_line_numbers(tmp_path):
    p = _write(tmp_path, "observation_id,binomial_name,image_path,subset,code,endemic,class_id\n"
                         'HM 1954,Natrix natrix,HMP/Natrix_natrix/1.jpg,train-hm,CZ,False,17\n'
                         '01954,"Vipera berus, var",2020/Vipera_berus/1.jpeg,train,DE,True,901\n')
    df = read_csv_strict(p, schemas.TRAIN_SCHEMA)
    assert df["observation_id"].tolist() == ["HM 1954", "01954"]
    assert df["class_id"].tolist() == [17, 901]
    assert df["endemic"].tolist() == [False, True]
    assert df["binomial_name"][1] == "Vipera berus, var"
    assert df["source_line"].tolist() == [2, 3]


def test_utf8_bom_is_accepted(tmp_path):
    p = _write(tmp_path, TRAIN_HEADER + "1,False,Natrix natrix,CZ,a/b.jpg,17,train\n", encoding="utf-8-sig")
    assert read_csv_strict(p, schemas.TRAIN_SCHEMA)["observation_id"].tolist() == ["1"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        (TRAIN_HEADER, "header only"),
        (TRAIN_HEADER.replace("class_id", "classid") + "1,False,N n,CZ,a.jpg,17,train\n", r"missing column\(s\) \['class_id'\]"),
        (TRAIN_HEADER + "1,False,N n,CZ,a.jpg,17,train\n2,False,N n,CZ,b.jpg,seven,train\n", "line 3, column 'class_id': not an integer"),
        (TRAIN_HEADER + "1,False,N n,CZ,a.jpg,17.5,train\n", "line 2, column 'class_id'"),
        (TRAIN_HEADER + "1,maybe,N n,CZ,a.jpg,17,train\n", "line 2, column 'endemic'"),
        (TRAIN_HEADER + ",False,N n,CZ,a.jpg,17,train\n", "line 2, column 'observation_id': empty"),
    ],
)
def test_bad_files_name_file_line_and_column(tmp_path, text, match):
    p = _write(tmp_path, text)
    with pytest.raises(MetadataError, match=match) as e:
        read_csv_strict(p, schemas.TRAIN_SCHEMA)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(MetadataError, match="file not found"):
        read_csv_strict(tmp_path / "nope.csv", schemas.TRAIN_SCHEMA)


def test_test_metadata_accepts_filename_column(tmp_path):
    p = _write(tmp_path, "observation_id,filename,code\n7,abc.jpg,US\n", name=schemas.TEST_FILE_CANDIDATES[0])
    df = schemas.read_test_metadata(tmp_path)
    assert df["image_path"].tolist() == ["abc.jpg"]


def test_duplicate_image_and_conflicting_classes_are_refused(tmp_path):
    val = "observation_id,captive,endemic,binomial_name,code,image_path,class_id,subset\n"
    _write(tmp_path, val + "1,False,False,N n,CZ,a.jpg,17,val\n1,False,False,N n,CZ,b.jpg,18,val\n", name=schemas.VAL_FILE)
    with pytest.raises(MetadataError, match=r"line 3, column 'class_id'.*observation_id '1'"):
        schemas.read_val_metadata(tmp_path)
    _write(tmp_path, val + "1,False,False,N n,CZ,a.jpg,17,val\n2,False,False,N n,CZ,a.jpg,17,val\n", name=schemas.VAL_FILE)
    with pytest.raises(MetadataError, match="line 3, column 'image_path'.*repeats line 2"):
        schemas.read_val_metadata(tmp_path)


def test_venomous_list_values(tmp_path):
    _write(tmp_path, "class_id,MIVS\n1,0\n2,3\n", name=schemas.VENOMOUS_FILE)
    with pytest.raises(MetadataError, match="line 3, column 'MIVS'"):
        schemas.read_venomous(tmp_path)
