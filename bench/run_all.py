"""Every performance target the issues name, in one table.

    python bench/run_all.py            # about 35 minutes on 2 cores
    python bench/run_all.py --quick    # fewer rounds, for a first look

Runs each benchmark in its own process (so none warms another's caches), reads the
JSON line each prints last, and prints one table with the target, the measurement and
the verdict, plus the machine and the date, ready for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> dict:
    command = [sys.executable, str(REPO / "bench" / script), *args, "--json"]
    print(f"$ python bench/{script} {' '.join(args)} --json", file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench/{script} failed:\n{result.stderr[-3000:]}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(summary), file=sys.stderr, flush=True)
    return summary


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = "1" if args.quick else "3"
    started = time.time()
    ingest = run("bench_ingest.py")
    training = run("bench_train.py", "--rounds", rounds)
    quality = run("bench_quality.py", "--seeds", *(["0"] if args.quick else ["0", "1", "2"]))
    predict = run("bench_predict.py", "--rounds", rounds)
    pages = run("bench_pages.py")
    single_ms = predict["single_median_ms"]["cnnlab Predictor"]
    flowers, digits, simple = quality["flowers"], quality["digits"], quality["digits_simple"]
    rows = [
        ("ingest, 2,000-JPEG zip", ">= 200 images/s",
         f"{ingest['images_per_s']:.0f} images/s", ingest["images_per_s"] >= 200),
        ("ingest peak memory (x2 zip)", "< 1 GB, flat",
         f"{ingest['peak_mb']:.0f} MB (x{ingest['memory_ratio_2x']:.2f} at 2x)",
         ingest["peak_mb"] < 1024),
        ("training throughput vs Keras tutorial", ">= 1.0x",
         f"{training['throughput_ratio']:.2f}x ({training['cnnlab_images_per_s']:.0f} vs "
         f"{training['keras_images_per_s']:.0f} images/s)", training["throughput_ratio"] >= 1.0),
        ("training wall time vs Keras tutorial", "<= 1.0x",
         f"{training['wall_time_ratio']:.2f}x ({training['cnnlab_wall_s']:.1f} vs "
         f"{training['keras_wall_s']:.1f} s)", training["wall_time_ratio"] <= 1.0),
        ("default vs TF tutorial, flowers-small (test acc, median)", ">= +0.05, wall <= 1.0x",
         f"{flowers['cnnlab']['median_accuracy']:.4f} vs {flowers['peer']['median_accuracy']:.4f}"
         f" ({flowers['accuracy_margin']:+.2f}); {flowers['cnnlab']['median_wall_s']:.0f} vs "
         f"{flowers['peer']['median_wall_s']:.0f} s (x{flowers['wall_ratio']:.2f})",
         flowers["met"]),
        ("default on sample:digits", ">= 0.98 in <= 60 s",
         f"{digits['median_accuracy']:.4f} in {digits['slowest_wall_s']:.1f} s (slowest)",
         digits["met"]),
        ("digits 64 px, simple, 5 epochs vs Keras pipeline", ">= -0.01",
         f"{simple['cnnlab']['median_accuracy']:.4f} vs {simple['peer']['median_accuracy']:.4f}"
         f" ({simple['accuracy_margin']:+.4f})", simple["met"]),
        ("predict, one image (median)", "< 15 ms", f"{single_ms:.1f} ms", single_ms < 15),
        ("predict, batch of files", "(reported)",
         f"{predict['batch_images_per_s']:.0f} images/s", True),
        ("slowest page first render, 5,000 images", "< 2 s",
         f"{pages['slowest_first_render_s']:.2f} s", pages["meets_target"]),
    ]  # fmt: skip
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    print(f"\ncnnlab benchmarks, {time.strftime('%Y-%m-%d')}, {machine}, "
          f"{(time.time() - started) / 60:.0f} min\n")  # fmt: skip
    print("| target | goal | measured | |")
    print("| --- | --- | --- | --- |")
    for name, goal, measured, met in rows:
        print(f"| {name} | {goal} | {measured} | {verdict(met)} |")
    print("\nPages (first render / rerun, s): " + ", ".join(
        f"{row['page']} {row['first_render_s']:.2f}/{row['rerun_s']:.2f}" for row in pages["pages"]
    ))  # fmt: skip


if __name__ == "__main__":
    main()
