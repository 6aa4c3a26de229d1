"""Ingest throughput and memory: a zip of N JPEGs, then one twice as large.

Usage::

    python bench/bench_ingest.py [--images 2000] [--classes 5]

Each ingest runs in a fresh child process with a fresh ``CNNLAB_HOME``; the table shows
images per second (ingest call only, and whole process including start-up) and the
child's peak resident memory, so the second row shows whether memory stays flat as the
upload doubles. Targets: >= 200 images/s on 2 cores, peak memory < 1 GB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TARGET_RATE = 200.0
TARGET_MEMORY_MB = 1024.0

CHILD = """
import json, sys, time
from cnnlab.data.ingest import ingest
start = time.perf_counter()
report = ingest(sys.argv[1], "bench")
seconds = time.perf_counter() - start
print(json.dumps({"images": report.images, "rejected": len(report.rejected),
                  "seconds": seconds}))
"""


def make_zip(path: Path, images: int, classes: int, seed: int = 0) -> Path:
    """JPEGs of varied sizes (64..320 px a side), smooth content plus noise, like photos."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(images):
            width, height = (int(v) for v in rng.integers(64, 321, size=2))
            label = f"class_{index % classes}"
            y, x = np.mgrid[0:height, 0:width]
            base = rng.uniform(0, 255, size=3)
            wave = 60 * np.sin(x[..., None] / rng.uniform(5, 30) + rng.uniform(0, 6, size=3))
            noise = rng.normal(0, 12, (height, width, 3))
            pixels = np.clip(base + wave + noise, 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
            archive.writestr(f"photos/{label}/{index:06d}.jpg", buffer.getvalue())
    return path


def run_child(zip_path: Path, home: Path) -> dict:
    """Ingest in a child process; return its report, wall time and peak RSS (``os.wait4``)."""
    env = {**os.environ, "CNNLAB_HOME": str(home), "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(zip_path)], stdout=out, stderr=err, env=env, cwd=REPO
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"ingest failed ({child.returncode}):\n{err.read().decode()}")
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    result["wall"] = wall
    result["peak_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["cpu"] = usage.ru_utime + usage.ru_stime  # whole process, start-up included
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="images in the first zip")
    parser.add_argument("--classes", type=int, default=5, help="classes in the zips")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        for images in (args.images, 2 * args.images):
            start = time.perf_counter()
            zip_path = make_zip(tmp_path / f"upload-{images}.zip", images, args.classes)
            made = time.perf_counter() - start
            size_mb = zip_path.stat().st_size / 2**20
            print(
                f"made {zip_path.name}: {images} JPEGs, {size_mb:.0f} MB in {made:.1f}s",
                file=sys.stderr,
            )
            result = run_child(zip_path, tmp_path / f"home-{images}")
            assert result["images"] == images, result
            rows.append((images, size_mb, result))
            zip_path.unlink()

    load = os.getloadavg()[0]
    print(
        f"\nbench_ingest on {os.cpu_count()} CPU(s), load average {load:.1f}, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        f"{'images':>7} {'zip MB':>7} {'ingest s':>9} {'img/s':>7} {'CPU s':>7} "
        f"{'img/CPU-s':>10} {'peak RSS MB':>12}"
    )
    for images, size_mb, result in rows:
        print(
            f"{images:>7} {size_mb:>7.0f} {result['seconds']:>9.2f} "
            f"{images / result['seconds']:>7.0f} {result['cpu']:>7.2f} "
            f"{images / result['cpu']:>10.0f} {result['peak_mb']:>12.0f}"
        )
    first, second = rows[0][2], rows[1][2]
    growth = second["peak_mb"] / first["peak_mb"]
    rate = rows[0][0] / first["seconds"]
    cpu_rate = rows[0][0] / first["cpu"]
    peak = max(row[2]["peak_mb"] for row in rows)
    print(f"\nmemory ratio (2x images / 1x images): {growth:.2f}  (flat means ~1.0)")
    print(
        f"target >= {TARGET_RATE:.0f} img/s: {'met' if rate >= TARGET_RATE else 'MISSED'} "
        f"(wall clock); {'met' if cpu_rate >= TARGET_RATE else 'MISSED'} per CPU-second "
        "(independent of other load on the machine)"
    )
    verdict = "met" if peak < TARGET_MEMORY_MB else "MISSED"
    print(f"target peak < {TARGET_MEMORY_MB:.0f} MB: {verdict}")
    if args.json:
        summary = {
            "images": rows[0][0],
            "images_per_s": round(rate, 1),
            "images_per_cpu_s": round(cpu_rate, 1),
            "peak_mb": round(peak, 1),
            "memory_ratio_2x": round(growth, 3),
            "meets_target": rate >= TARGET_RATE and peak < TARGET_MEMORY_MB,
        }
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
