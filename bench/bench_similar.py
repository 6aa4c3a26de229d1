"""Near-duplicate threshold and speed, on real photos.

Usage::

    python bench/bench_similar.py [--photos ../shared/data/flowers-small] [--images 2000]

1. Every photo's perceptual hashes (``cnnlab.data.similar.image_hash``) against those of
   copies of it: halved + JPEG q70, JPEG q50, brightened 15%, cropped 3% / 5% / 10% a
   side, shifted 5%. Prints, per threshold, the share of copies found and how many pairs
   of *different* photos would be flagged (must be 0 at the default).
2. Time of the near-duplicate search in the health report, cold (no hash cache) and
   warm, on the photos ingested as a dataset and on ``--images`` generated JPEGs.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

THRESHOLDS = (6, 8, 10, 12, 14)


def copies(image: Image.Image) -> dict[str, Image.Image]:
    width, height = image.size

    def jpeg(picture: Image.Image, quality: int) -> Image.Image:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue()))

    def crop(share: float) -> Image.Image:
        dx, dy = int(width * share), int(height * share)
        return image.crop((dx, dy, width - dx, height - dy))

    return {
        "halved+jpeg70": jpeg(image.resize((width // 2, height // 2)), 70),
        "jpeg50": jpeg(image, 50),
        "brighter15%": ImageEnhance.Brightness(image).enhance(1.15),
        "crop3%": crop(0.03),
        "crop5%": crop(0.05),
        "crop10%": crop(0.10),
        "shift5%": image.crop((int(width * 0.05), 0, width, height)),
    }


def hashes_of(image: Image.Image, folder: Path) -> np.ndarray:
    from cnnlab.data.similar import image_hash

    path = folder / "copy.png"
    image.save(path)
    value = image_hash(path)
    return np.array([int(value[:16], 16), int(value[16:], 16)], dtype=np.uint64)


def threshold_table(photos: list[Path]) -> None:
    from cnnlab.data.similar import DEFAULT_MAX_DISTANCE, distances

    originals, found = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for photo in photos:
            with Image.open(photo) as opened:
                image = opened.convert("RGB")
            original = hashes_of(image, Path(tmp))
            originals.append(original)
            for name, copy in copies(image).items():
                distance = distances(original[None], hashes_of(copy, Path(tmp))[None])[0, 0]
                found.setdefault(name, []).append(int(distance))
    table = np.array(originals)
    pairwise = distances(table, table)[np.triu_indices(len(table), 1)]
    print(f"{len(photos)} photos, {len(pairwise)} pairs of different photos")
    print(f"closest different photos: {pairwise.min()} bits (larger of phash, dhash)")
    header = "".join(f"  <={t:<3}" for t in THRESHOLDS)
    print(f"{'copies found':<22}{header}   (default {DEFAULT_MAX_DISTANCE})")
    for name, values in found.items():
        values = np.array(values)
        print(f"  {name:<20}" + "".join(f"  {np.mean(values <= t):5.1%}" for t in THRESHOLDS))
    print(
        f"  {'different pairs':<20}"
        + "".join(f"  {int((pairwise <= t).sum()):5d}" for t in THRESHOLDS)
    )


def timing(source: Path, home: Path, name: str) -> None:
    os.environ["CNNLAB_HOME"] = str(home)
    from cnnlab.data import similar
    from cnnlab.data.dataset import Dataset
    from cnnlab.data.ingest import ingest

    start = time.perf_counter()
    ingest(source, name)
    ingested = time.perf_counter() - start
    dataset = Dataset(name)
    (dataset.path / similar.CACHE_FILE).unlink()
    start = time.perf_counter()
    groups = similar.near_duplicates(dataset)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    similar.near_duplicates(dataset)
    warm = time.perf_counter() - start
    print(
        f"{name}: {len(dataset.records)} images, ingest (with report) {ingested:.1f}s, "
        f"near-duplicates cold {cold:.2f}s, warm {warm:.3f}s, {len(groups)} group(s) found"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(REPO.parent / "shared/data/flowers-small"))
    parser.add_argument("--images", type=int, default=2000, help="generated JPEGs to time")
    args = parser.parse_args(argv)
    photos = sorted(Path(args.photos).rglob("*.jpg"))
    threshold_table(photos)
    with tempfile.TemporaryDirectory(prefix="bench-similar-") as tmp:
        from bench.bench_ingest import make_zip

        timing(Path(args.photos), Path(tmp) / "home", "photos")
        upload = make_zip(Path(tmp) / "upload.zip", args.images, 5)
        timing(upload, Path(tmp) / "home", "generated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
