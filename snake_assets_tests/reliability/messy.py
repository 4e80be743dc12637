"""A generated release with every kind of messy input a real one has, and the cases' expected answers.

It starts from the demo release (official layout, mixed extensions, ``1954`` next to
``HM 1954``) and adds real files for each bad or unusual image, rows whose ids only
differ in type, a 34-image observation, validation classes unseen in train, class
id -1, and names carrying SQL and shell metacharacters.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from snake_assets.core import schemas
from snake_assets.core.demo import write_demo_release
from snake_assets.core.manifest import NO_LABEL

SPECIES, CLASS_ID = "Natrix natrix", 1137
"""Species the added training rows belong to (already in the demo)."""
UNSEEN_SPECIES, UNSEEN_CLASS_ID = "Naja naja", 1200
SQL_OBSERVATION = "x'); DROP TABLE raw_train_metadata; --"
SHELL_NAME = "odd/a;b $(touch PWNED) `touch PWNED2` 'q'.jpg"
BOMB_SIDE = 10_000
"""10000 x 10000 = 100 MP: above the limit, below PIL's own error threshold (PIL would only warn)."""

# image_path -> expected manifest reason ('' = embedded)
TRAIN_IMAGES = {
    "bad/missing.jpg": "missing file",
    "bad/empty.jpg": "zero bytes",
    "bad/truncated.jpg": "truncated image",
    "bad/text.jpg": "not an image",
    "bad/bomb.png": "image too large",
    "bad/folder.jpg": "not a file",
    "odd/alpha.png": "",
    "odd/grey.jpeg": "",
    "odd/cmyk.JPG": "",
    "odd/sixteen.png": "",
    "odd/rotated.jpg": "",
    "odd/upright.png": "",
    "odd/sideways.png": "",
    SHELL_NAME: "",
    "odd/no_species.jpg": NO_LABEL,
}


def png_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A valid greyscale PNG of ``side`` x ``side`` zeros, streamed (never allocated here): ~100 KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, parts, row = zlib.compressobj(9), [], b"\x00" * (side + 1)
    for _ in range(side):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def _photo(seed: int, size=(96, 72)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 2, y * 3, (x + y)], axis=-1) % 256
    return np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)


def _write_images(root: Path) -> None:
    (root / "bad").mkdir()
    (root / "odd").mkdir()
    (root / "bad" / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(_photo(1, (320, 240))).save(buf, "JPEG", quality=95)
    (root / "bad" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "bad" / "text.jpg").write_text("observation_id,class_id\nthis is not a JPEG\n")
    png_bomb(root / "bad" / "bomb.png")
    (root / "bad" / "folder.jpg").mkdir()
    rgba = np.dstack([_photo(2), np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (72, 1))])
    Image.fromarray(rgba, "RGBA").save(root / "odd" / "alpha.png")
    Image.fromarray(_photo(3)).convert("L").save(root / "odd" / "grey.jpeg", quality=92)
    Image.fromarray(_photo(4)).convert("CMYK").save(root / "odd" / "cmyk.JPG", quality=92)
    Image.fromarray((_photo(5)[..., 0].astype(np.uint16) * 257)).save(root / "odd" / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; viewers rotate 90 degrees clockwise
    Image.fromarray(_photo(6)).save(root / "odd" / "rotated.jpg", quality=95, exif=exif)
    with Image.open(root / "odd" / "rotated.jpg") as im:
        ImageOps.exif_transpose(im).convert("RGB").save(root / "odd" / "upright.png")
        im.convert("RGB").save(root / "odd" / "sideways.png")
    Image.fromarray(_photo(7)).save(root / SHELL_NAME, quality=92)
    Image.fromarray(_photo(8)).save(root / "odd" / "no_species.jpg", quality=92)


def _append(path: Path, rows: list[dict]) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = pd.concat([df, pd.DataFrame(rows)[df.columns]], ignore_index=True)
    path.write_text(out.to_csv(index=False, lineterminator="\n"), encoding="utf-8")


def write_messy_release(root: Path, *, seed: int = 1) -> Path:
    """Write the release under ``root`` and return it."""
    write_demo_release(root, seed=seed, scale=0.5)
    _write_images(root)
    train = [
        {"observation_id": f"bad-{i}", "endemic": "False", "binomial_name": SPECIES, "code": "DE", "image_path": p,
         "class_id": str(CLASS_ID), "subset": "train"}
        for i, p in enumerate(TRAIN_IMAGES)
    ]
    train[-1].update(class_id="-1", binomial_name="Serpentes sp.")
    train[0]["observation_id"] = SQL_OBSERVATION
    # "01954" is not "1954" (a different species here): observation ids are strings, never ints.
    train.append({**train[6], "observation_id": "01954", "image_path": "odd/alpha2.png"})
    shutil.copy(root / "odd" / "alpha.png", root / "odd" / "alpha2.png")
    _append(root / schemas.TRAIN_INAT_FILE, train)

    listed = pd.read_csv(root / schemas.VAL_FILE, dtype=str)["image_path"]
    val_src = root / listed[listed.str.endswith(".jpg")].iloc[0]
    (root / "val34").mkdir()
    val = []
    for i in range(34):
        shutil.copy(val_src, root / "val34" / f"{i:02d}.jpg")
        val.append({"observation_id": "many-34", "image_path": f"val34/{i:02d}.jpg", "class_id": str(CLASS_ID), "binomial_name": SPECIES})
    for i in range(2):
        shutil.copy(val_src, root / "val34" / f"unseen{i}.jpg")
        val.append({"observation_id": "unseen-1", "image_path": f"val34/unseen{i}.jpg", "class_id": str(UNSEEN_CLASS_ID), "binomial_name": UNSEEN_SPECIES})
    shutil.copy(val_src, root / "val34" / "unknown.jpg")
    val.append({"observation_id": "unknown-1", "image_path": "val34/unknown.jpg", "class_id": "-1", "binomial_name": "Serpentes sp."})
    _append(root / schemas.VAL_FILE, [{**r, "captive": "False", "endemic": "False", "code": "DE", "subset": "val"} for r in val])

    _append(root / "SnakeCLEF2024-TestMetadata.csv", [{"observation_id": "lost-1", "filename": "lost.jpg", "code": "DE"}])
    _append(root / "test_ground_truth.csv", [{"observation_id": "lost-1", "class_id": str(CLASS_ID)}])
    return root


def metadata_rows(root: Path) -> int:
    """Rows of every metadata file that lists images."""
    files = [schemas.TRAIN_INAT_FILE, schemas.TRAIN_HM_FILE, schemas.VAL_FILE, "SnakeCLEF2024-TestMetadata.csv"]
    return sum(len(pd.read_csv(root / f, dtype=str)) for f in files)
