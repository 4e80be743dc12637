"""Cost of one release-sensor look (``fingerprint_release``) as the release grows.

Run: ``python benchmarks/release_fingerprint.py [--images 50000] [--work DIR]``. Writes a
synthetic release in the official layout (tiny image files: the fingerprint stats images,
it never reads them), times a cold and a warm fingerprint, and prints images per second
and the projected time for the full 182k-image SnakeCLEF release, next to the sensor's
30 s interval.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from snake_assets.core import schemas
from snake_assets.core.release_watch import fingerprint_release

FULL_RELEASE = 182_000
SENSOR_INTERVAL_S = 30


def write_release(root: Path, images: int) -> None:
    """``images`` listed images: 70% iNat train, 10% HerpMapper, 10% val, 10% test."""
    counts = {"inat": int(images * 0.7), "hm": int(images * 0.1), "val": int(images * 0.1)}
    counts["test"] = images - sum(counts.values())
    rows = {k: [] for k in counts}
    for kind, n in counts.items():
        for i in range(n):
            rel = f"{i}.jpg" if kind == "test" else f"{kind}/{i % 1000:03d}/{i}.jpg"
            path = root / ("test/" + rel if kind == "test" else rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\xff\xd8\xff")
            if kind == "test":
                rows[kind].append(f"{i},{rel},US")
            else:
                cid = i % 1784
                rows[kind].append(f"{i},Species {cid},{rel},{cid},US,False,{kind}" + (",False" if kind == "val" else ""))
    head = "observation_id,binomial_name,image_path,class_id,code,endemic,subset"
    files = {
        schemas.TRAIN_INAT_FILE: [head, *rows["inat"]], schemas.TRAIN_HM_FILE: [head, *rows["hm"]],
        schemas.VAL_FILE: [head + ",captive", *rows["val"]], "SnakeCLEF2024-TestMetadata.csv": ["observation_id,filename,code", *rows["test"]],
        schemas.VENOMOUS_FILE: ["class_id,MIVS", *(f"{c},{c % 5 == 0:d}" for c in range(1784))],
    }
    for name, lines in files.items():
        (root / name).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the synthetic release (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.work or Path(tmp)) / "release"
        root.mkdir(parents=True, exist_ok=True)
        write_release(root, args.images)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            fp = fingerprint_release(root, num_shards=4)
            times.append(time.perf_counter() - start)
        assert fp.listed_images == args.images
        rate = args.images / times[1]
        print(f"images: {args.images}  cold: {times[0]:.2f} s  warm: {times[1]:.2f} s  ({rate:,.0f} images/s)")
        print(f"projected for {FULL_RELEASE:,} images: {FULL_RELEASE / rate:.1f} s per look, "
              f"{FULL_RELEASE / rate / SENSOR_INTERVAL_S:.0%} of the {SENSOR_INTERVAL_S} s sensor interval")
        print(f"cursor: {len(fp.to_json())} bytes")


if __name__ == "__main__":
    main()
