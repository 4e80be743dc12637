"""A generated, deterministic demo release in the official SnakeCLEF layout.

``write_demo_release`` writes metadata CSVs (official names and column orders) and procedural
images (``demo_images``) for a handful of species, with the quirks of the real release that
the pipeline must survive: string observation ids (``HM 1954`` next to iNat ``1954``),
multi-image observations, mixed ``.jpg``/``.jpeg``/``.JPG``/``.png`` extensions, sparse
unordered class ids, a test file without labels whose images sit in a flat folder, and a
venomous list with many more ids than species.

Unlike a real release, the demo also writes ``test_ground_truth.csv`` so that a demo
submission can be scored; real releases do not ship test labels.

The tiny backbone that goes with it is ``demo_backbone.write_tiny_backbone``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from snake_assets.core.demo_images import draw_snake, encode_image, sample_individual
from snake_assets.core.files import atomic_write_bytes

logger = logging.getLogger(__name__)

TRAIN_INAT_CSV = "SnakeCLEF2023-TrainMetadata-iNat.csv"
TRAIN_HM_CSV = "SnakeCLEF2023-TrainMetadata-HM.csv"
VAL_CSV = "SnakeCLEF2023-ValMetadata.csv"
TEST_CSV = "SnakeCLEF2024-TestMetadata.csv"
VENOMOUS_CSV = "venomous_status_list.csv"
TEST_GROUND_TRUTH_CSV = "test_ground_truth.csv"
"""Demo-only: real releases have no test labels."""
TEST_IMAGE_DIR = "test"

COLUMNS: dict[str, list[str]] = {
    TRAIN_INAT_CSV: ["observation_id", "endemic", "binomial_name", "code", "image_path", "class_id", "subset"],
    TRAIN_HM_CSV: ["observation_id", "binomial_name", "image_path", "subset", "code", "endemic", "class_id"],
    VAL_CSV: ["observation_id", "captive", "endemic", "binomial_name", "code", "image_path", "class_id", "subset"],
    TEST_CSV: ["observation_id", "filename", "code"],
    VENOMOUS_CSV: ["class_id", "MIVS"],
    TEST_GROUND_TRUTH_CSV: ["observation_id", "class_id"],
}
"""Column order of each file, as in the official release (it differs between files)."""

EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".png")
EXTENSION_WEIGHTS = (0.4, 0.5, 0.06, 0.04)  # roughly the validation file's mix
IMAGES_PER_SPECIES = {"train": 22, "val": 8, "test": 6}
IMAGES_PER_OBSERVATION = (1, 2, 3, 4)
IMAGES_PER_OBSERVATION_WEIGHTS = (0.45, 0.3, 0.15, 0.1)
HM_FRACTION = 0.25
NUM_LISTED_CLASSES = 1784
COLLIDING_ID = 1954
"""Both iNat observation ``1954`` and HerpMapper observation ``HM 1954`` exist in the demo."""


@dataclass(frozen=True)
class DemoSpecies:
    """A species of the demo release."""

    class_id: int
    venomous: bool
    codes: tuple[str, ...]
    """Country codes where it is observed."""
    endemic: bool


DEMO_SPECIES: dict[str, DemoSpecies] = {
    "Micrurus fulvius": DemoSpecies(1029, True, ("US",), False),
    "Lampropeltis triangulum": DemoSpecies(812, False, ("US", "MX", "CA"), False),
    "Morelia spilota": DemoSpecies(1093, False, ("AU", "PG"), False),
    "Bitis gabonica": DemoSpecies(247, True, ("CM", "GA", "TZ", "CD"), False),
    "Agkistrodon contortrix": DemoSpecies(34, True, ("US",), False),
    "Agkistrodon piscivorus": DemoSpecies(35, True, ("US",), False),
    "Natrix natrix": DemoSpecies(1137, False, ("DE", "FR", "GB", "PL"), False),
    "Vipera berus": DemoSpecies(1710, True, ("GB", "DE", "SE", "FI"), False),
    "Python regius": DemoSpecies(1346, False, ("GH", "TG", "BJ"), True),
}
"""The paper's six species plus three more; default class ids are sparse and not in species order."""


@dataclass
class _Observation:
    split: str
    species: str
    index: int
    """Position among this species' observations in this split (seeds its drawing)."""
    source: str
    """``inat``, ``hm`` or ``test``."""
    extensions: list[str]
    observation_id: str = ""
    code: str = ""
    captive: bool = False
    image_names: list[str] = field(default_factory=list)


def _resolve_class_ids(class_ids: Mapping[str, int] | None) -> dict[str, int]:
    """Default class ids updated by ``class_ids``; rejects unknown species and clashing ids."""
    resolved = {name: s.class_id for name, s in DEMO_SPECIES.items()}
    unknown = set(class_ids or {}) - set(resolved)
    if unknown:
        raise ValueError(f"class_ids names species that are not in the demo: {sorted(unknown)}")
    resolved.update({name: int(cid) for name, cid in (class_ids or {}).items()})
    values = list(resolved.values())
    if len(set(values)) != len(values) or min(values) < 0:
        raise ValueError(f"class ids must be distinct and non-negative, got {resolved}")
    return resolved


def _observation_sizes(rng: np.random.Generator, n_images: int, *, multi_first: bool) -> list[int]:
    """Split ``n_images`` into observations of 1-4 images (the first of 3+ when ``multi_first``)."""
    sizes: list[int] = [min(3, n_images)] if multi_first else []
    while sum(sizes) < n_images:
        size = int(rng.choice(IMAGES_PER_OBSERVATION, p=IMAGES_PER_OBSERVATION_WEIGHTS))
        sizes.append(min(size, n_images - sum(sizes)))
    return sizes


def _source(split: str, index: int, rng: np.random.Generator) -> str:
    """Where an observation comes from; each species' second training observation is HerpMapper."""
    if split == "test":
        return "test"
    if split == "train" and (index == 1 or (index > 1 and rng.random() < HM_FRACTION)):
        return "hm"
    return "inat"


def _plan(seed: int, scale: float) -> list[_Observation]:
    """Decide observations, sources, image counts, extensions and ids (no pixels yet)."""
    rng = np.random.default_rng([seed, 1])
    observations: list[_Observation] = []
    for split, per_species in IMAGES_PER_SPECIES.items():
        n_images = max(1, round(per_species * scale))
        for s_idx, name in enumerate(DEMO_SPECIES):
            for o_idx, size in enumerate(_observation_sizes(rng, n_images, multi_first=s_idx == 0)):
                source = _source(split, o_idx, rng)
                exts = [".jpg"] * size if source == "hm" else rng.choice(EXTENSIONS, size, p=EXTENSION_WEIGHTS)
                observations.append(_Observation(split, name, o_idx, source, [str(e) for e in exts]))
    for split in IMAGES_PER_SPECIES:  # every extension in every split, given enough images
        slots = [(o, i) for o in observations if o.split == split and o.source != "hm" for i in range(len(o.extensions))]
        for ext, (obs, i) in zip(EXTENSIONS, slots):
            obs.extensions[i] = ext
    _assign_ids(observations, rng)
    order = rng.permutation(len(observations))  # file order is not species order
    return [observations[i] for i in order]


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int, taken: set[int]) -> list[int]:
    """``n`` integers in ``[low, high)`` not yet in ``taken`` (which they are added to)."""
    out: list[int] = []
    while len(out) < n:
        value = int(rng.integers(low, high))
        if value not in taken:
            taken.add(value)
            out.append(value)
    return out


def _assign_ids(observations: list[_Observation], rng: np.random.Generator) -> None:
    """Fill in observation ids, country codes, captive flags and image names."""
    numeric = {COLLIDING_ID}
    image_numbers: set[int] = set()
    hm_image_numbers: set[int] = set()
    hm_numbers = {COLLIDING_ID}
    first_inat = first_hm = True
    for obs in observations:
        if obs.source == "hm":
            number = COLLIDING_ID if first_hm else _unique_ints(rng, 1, 1, 20_000, hm_numbers)[0]
            obs.observation_id, first_hm = f"HM {number}", False
        elif obs.split == "train" and first_inat:
            obs.observation_id, first_inat = str(COLLIDING_ID), False
        else:
            obs.observation_id = str(_unique_ints(rng, 1, 10_000, 3_000_000, numeric)[0])
        codes = DEMO_SPECIES[obs.species].codes
        obs.code = codes[int(rng.integers(len(codes)))]
        obs.captive = obs.split == "val" and bool(rng.random() < 0.05)
        if obs.source == "hm":
            numbers = _unique_ints(rng, len(obs.extensions), 1, 60_000, hm_image_numbers)
        else:
            numbers = _unique_ints(rng, len(obs.extensions), 100_000, 90_000_000, image_numbers)
        folder = obs.species.replace(" ", "_")
        if obs.source == "hm":
            obs.image_names = [f"HMP/{folder}/{n}.jpg" for n in numbers]
        elif obs.source == "test":
            obs.image_names = [f"{n}{ext}" for n, ext in zip(numbers, obs.extensions)]
        else:
            year = int(rng.integers(2008, 2023))
            obs.image_names = [f"{year}/{folder}/{n}{ext}" for n, ext in zip(numbers, obs.extensions)]


def _write_images(root: Path, observations: list[_Observation], seed: int) -> None:
    """Draw and encode every image; each observation has its own seeded generator."""
    split_index = {split: i for i, split in enumerate(IMAGES_PER_SPECIES)}
    species_index = {name: i for i, name in enumerate(DEMO_SPECIES)}
    for obs in observations:
        rng = np.random.default_rng([seed, 2, split_index[obs.split], species_index[obs.species], obs.index])
        individual = sample_individual(obs.species, rng)
        for name, ext in zip(obs.image_names, obs.extensions):
            path = root / TEST_IMAGE_DIR / name if obs.source == "test" else root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_image(draw_snake(obs.species, individual, rng), ext))


def _tables(observations: list[_Observation], class_ids: dict[str, int], seed: int) -> dict[str, pd.DataFrame]:
    """Every CSV of the release as a frame in the official column order, keyed by file name."""
    rows: dict[str, list[dict]] = {name: [] for name in COLUMNS}
    for obs in observations:
        meta = {
            "observation_id": obs.observation_id,
            "binomial_name": obs.species,
            "class_id": class_ids[obs.species],
            "code": obs.code,
            "endemic": DEMO_SPECIES[obs.species].endemic,
            "captive": obs.captive,
        }
        file, subset = {"hm": (TRAIN_HM_CSV, "train-hm"), "test": (TEST_CSV, None)}.get(
            obs.source, (TRAIN_INAT_CSV, "train") if obs.split == "train" else (VAL_CSV, "val")
        )
        for name in obs.image_names:
            rows[file].append({**meta, "image_path": name, "filename": name, "subset": subset})
        if obs.source == "test":
            rows[TEST_GROUND_TRUTH_CSV].append(meta)
    rng = np.random.default_rng([seed, 3])
    venomous_by_id = {class_ids[name]: s.venomous for name, s in DEMO_SPECIES.items()}
    for class_id in sorted(set(range(NUM_LISTED_CLASSES)) | set(venomous_by_id)):
        mivs = venomous_by_id.get(class_id, bool(rng.random() < 0.16))
        rows[VENOMOUS_CSV].append({"class_id": class_id, "MIVS": int(mivs)})
    return {name: pd.DataFrame(rows[name], columns=COLUMNS[name]) for name in COLUMNS}


def write_demo_release(
    root: Path, *, seed: int = 0, class_ids: Mapping[str, int] | None = None, scale: float = 1.0
) -> dict:
    """Write a small, deterministic SnakeCLEF-style release under ``root``.

    Images are written first and the metadata CSVs last (each atomically), so a watcher
    never sees metadata that names missing images. Files of an earlier release in the same
    folder are overwritten where names coincide and otherwise left in place.

    Args:
        root: Data root to write into (created if missing).
        seed: Same seed, same bytes; a different seed gives different ids and images.
        class_ids: ``binomial_name -> class_id`` overrides of the default ids (``DEMO_SPECIES``).
        scale: Multiplies the images per species and split (22 train, 8 val, 6 test at 1.0).

    Returns:
        A JSON-serialisable summary: rows per file, images and observations per split, and
        each species' class id and venomous flag.

    Raises:
        ValueError: On unknown species, duplicate or negative class ids, or a non-positive scale.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    resolved = _resolve_class_ids(class_ids)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    observations = _plan(seed, scale)
    _write_images(root, observations, seed)
    tables = _tables(observations, resolved, seed)
    for name, frame in tables.items():
        atomic_write_bytes(root / name, frame.to_csv(index=False, lineterminator="\n").encode())
    groups = {"train-inat": TRAIN_INAT_CSV, "train-hm": TRAIN_HM_CSV, "val": VAL_CSV, "test": TEST_CSV}
    summary = {
        "root": str(root),
        "seed": seed,
        "scale": scale,
        "rows": {name: len(frame) for name, frame in tables.items()},
        "images": {group: len(tables[file]) for group, file in groups.items()},
        "observations": {group: int(tables[file]["observation_id"].nunique()) for group, file in groups.items()},
        "species": {name: {"class_id": resolved[name], "venomous": s.venomous} for name, s in DEMO_SPECIES.items()},
    }
    logger.info("wrote demo release to %s: images %s", root, summary["images"])
    return summary
