"""The generated demo release: official layout, real-data quirks, determinism; and the tiny backbone."""

import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from snake_assets.core.demo import DEMO_SPECIES, write_demo_release
from snake_assets.core.demo_backbone import TINY_BACKBONE_HIDDEN_SIZE, write_tiny_backbone
from snake_assets.core.projection import PAPER_SPECIES as PAPER_SPECIES_ORDERED

INAT = "SnakeCLEF2023-TrainMetadata-iNat.csv"
HM = "SnakeCLEF2023-TrainMetadata-HM.csv"
VAL = "SnakeCLEF2023-ValMetadata.csv"
TEST = "SnakeCLEF2024-TestMetadata.csv"
VENOMOUS = "venomous_status_list.csv"
GROUND_TRUTH = "test_ground_truth.csv"

OFFICIAL_COLUMNS = {
    INAT: "observation_id,endemic,binomial_name,code,image_path,class_id,subset",
    HM: "observation_id,binomial_name,image_path,subset,code,endemic,class_id",
    VAL: "observation_id,captive,endemic,binomial_name,code,image_path,class_id,subset",
    TEST: "observation_id,filename,code",
    VENOMOUS: "class_id,MIVS",
    GROUND_TRUTH: "observation_id,class_id",
}
PAPER_SPECIES = set(PAPER_SPECIES_ORDERED)
MIXED_EXTENSIONS = {".jpg", ".jpeg", ".JPG", ".png"}
# Large, sparse, and ordered differently from the species.
OVERRIDE = dict(zip(DEMO_SPECIES, [1783, 5, 977, 1500, 42, 1204, 333, 1650, 808]))


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype={"observation_id": str})


def _image_paths(root: Path) -> dict[str, list[Path]]:
    paths = {name: [root / p for p in _read(root, name)["image_path"]] for name in (INAT, HM, VAL)}
    paths[TEST] = [root / "test" / f for f in _read(root, TEST)["filename"]]
    return paths


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(OFFICIAL_COLUMNS))
def test_every_official_file_exists_with_its_column_order(demo_release, name):
    assert (demo_release / name).read_text().splitlines()[0] == OFFICIAL_COLUMNS[name]


def test_observation_ids_are_strings_and_hm_ids_collide_with_inat_ids(demo_release):
    inat, hm = _read(demo_release, INAT), _read(demo_release, HM)
    assert inat["observation_id"].str.fullmatch(r"\d+").all()
    assert hm["observation_id"].str.fullmatch(r"HM \d+").all()
    assert "1954" in set(inat["observation_id"]) and "HM 1954" in set(hm["observation_id"])
    assert set(hm["subset"]) == {"train-hm"}
    all_ids = pd.concat([inat, hm, _read(demo_release, VAL), _read(demo_release, TEST)])["observation_id"]
    assert all_ids.map(type).eq(str).all()


def test_image_paths_follow_the_official_layout(demo_release):
    for name in (INAT, VAL):
        frame = _read(demo_release, name)
        folders = frame["binomial_name"].str.replace(" ", "_")
        for path, folder in zip(frame["image_path"], folders):
            assert re.fullmatch(rf"(19|20)\d\d/{folder}/\d+\.(jpg|jpeg|JPG|png)", path), path
    hm = _read(demo_release, HM)
    for path, name in zip(hm["image_path"], hm["binomial_name"]):
        assert re.fullmatch(rf"HMP/{name.replace(' ', '_')}/\d+\.jpg", path), path
    assert all("/" not in f for f in _read(demo_release, TEST)["filename"])


def test_every_listed_image_exists_and_decodes_as_its_extension_says(demo_release):
    for name, paths in _image_paths(demo_release).items():
        assert paths, name
        for path in paths:
            with Image.open(path) as image:
                image.load()
                assert image.format == ("PNG" if path.suffix.lower() == ".png" else "JPEG"), path
                assert 160 <= min(image.size) and max(image.size) <= 320


@pytest.mark.parametrize("name", [INAT, VAL, TEST])
def test_extensions_are_mixed_in_every_split(demo_release, name):
    column = "filename" if name == TEST else "image_path"
    assert {Path(p).suffix for p in _read(demo_release, name)[column]} == MIXED_EXTENSIONS


def test_test_split_has_no_labels_and_its_ground_truth_covers_every_observation(demo_release):
    test = _read(demo_release, TEST)
    truth = _read(demo_release, GROUND_TRUTH)
    assert "class_id" not in test.columns
    assert truth["observation_id"].is_unique
    assert set(truth["observation_id"]) == set(test["observation_id"])
    assert set(truth["class_id"]) == {s.class_id for s in DEMO_SPECIES.values()}


@pytest.mark.parametrize("names", [(INAT, HM), (VAL,), (TEST,)])
def test_splits_have_multi_image_observations(demo_release, names):
    frame = pd.concat([_read(demo_release, n) for n in names])
    sizes = frame.groupby("observation_id").size()
    assert sizes.between(1, 4).all()
    assert (sizes >= 3).any() and (sizes == 1).any()


def test_species_mix_and_one_class_id_per_species(demo_release):
    train = pd.concat([_read(demo_release, INAT), _read(demo_release, HM), _read(demo_release, VAL)])
    assert PAPER_SPECIES <= set(train["binomial_name"]) and train["binomial_name"].nunique() >= 8
    pairs = train[["binomial_name", "class_id"]].drop_duplicates()
    assert pairs["binomial_name"].is_unique and pairs["class_id"].is_unique
    by_species = dict(zip(pairs["binomial_name"], pairs["class_id"]))
    assert list(by_species[n] for n in DEMO_SPECIES) != sorted(by_species.values())
    venomous = _read(demo_release, VENOMOUS).set_index("class_id")["MIVS"]
    assert venomous.index.is_unique and len(venomous) == 1784
    flags = {venomous[by_species[n]] for n in by_species}
    assert flags == {0, 1}
    assert venomous[by_species["Micrurus fulvius"]] == 1 and venomous[by_species["Lampropeltis triangulum"]] == 0


def test_class_id_override_is_honoured_everywhere_and_summarised(tmp_path):
    summary = write_demo_release(tmp_path, seed=0, class_ids=OVERRIDE, scale=0.15)
    assert summary["rows"] == {name: len(_read(tmp_path, name)) for name in OFFICIAL_COLUMNS}
    assert summary["images"]["train-inat"] + summary["images"]["train-hm"] == 3 * len(DEMO_SPECIES)
    assert summary["observations"]["test"] == len(_read(tmp_path, GROUND_TRUTH))
    assert {n: s["class_id"] for n, s in summary["species"].items()} == OVERRIDE
    for name in (INAT, HM, VAL):
        frame = _read(tmp_path, name)
        assert (frame["class_id"] == frame["binomial_name"].map(OVERRIDE)).all()
    assert set(_read(tmp_path, GROUND_TRUTH)["class_id"]) <= set(OVERRIDE.values())
    venomous = _read(tmp_path, VENOMOUS).set_index("class_id")["MIVS"]
    for name, class_id in OVERRIDE.items():
        assert venomous[class_id] == int(DEMO_SPECIES[name].venomous)


@pytest.mark.parametrize(
    "class_ids", [{"Naja naja": 3}, {"Micrurus fulvius": 5, "Lampropeltis triangulum": 5}, {"Micrurus fulvius": -1}]
)
def test_invalid_class_id_overrides_are_rejected(tmp_path, class_ids):
    with pytest.raises(ValueError):
        write_demo_release(tmp_path, class_ids=class_ids, scale=0.15)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first, second, other = (tmp_path / n for n in ("a", "b", "c"))
    write_demo_release(first, seed=7, scale=0.15)
    write_demo_release(second, seed=7, scale=0.15)
    write_demo_release(other, seed=8, scale=0.15)
    assert _tree(first) == _tree(second)
    tree, other_tree = _tree(first), _tree(other)
    assert all(tree[name] != other_tree[name] for name in OFFICIAL_COLUMNS)
    assert not set(tree.values()) & set(other_tree.values())


def test_tiny_backbone_loads_offline_with_the_auto_classes(tiny_backbone, tmp_path):
    import torch
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(tiny_backbone).eval()
    assert model.config.hidden_size == TINY_BACKBONE_HIDDEN_SIZE
    processor = AutoImageProcessor.from_pretrained(tiny_backbone)
    pixels = processor(images=[Image.new("RGB", (300, 200), (200, 40, 30))], return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 224, 224)
    with torch.inference_mode():
        hidden = model(pixel_values=pixels).last_hidden_state
    assert tuple(hidden.shape) == (1, 1 + (224 // 14) ** 2, TINY_BACKBONE_HIDDEN_SIZE)
    again = write_tiny_backbone(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny_backbone / "model.safetensors").read_bytes()
