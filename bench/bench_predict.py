"""Prediction speed: cnnlab's Predictor against the usual Keras ways, on the digits model.

    python bench/bench_predict.py                 # reuse (or train once) a digits run
    python bench/bench_predict.py --retrain       # train a fresh run first
    python bench/bench_predict.py --home DIR      # workspace to use (default below)

The model is the default one for digits: the auto recipe (``Trainer("digits")``),
trained once and reused. Every side predicts the same test images, one at a time,
starting from the file's bytes, interleaved round by round so machine noise hits all
sides alike:

* **cnnlab**: ``Predictor.predict_bytes``: ingest's decoder, then one compiled call that
  resizes (as training did) and runs the model;
* **peer: model.predict**: the same decoding and resizing, then ``model.predict(x)``
  per image, as most tutorials do;
* **peer: eager call**: the same, then ``model(x, training=False)`` without compiling.

Batch mode: ``Predictor.predict_files`` over all test images against a loop of
``model.predict`` per file. Also reported: label agreement with the labels evaluation
stored in the run's predictions.csv (must be 100%). The target is a median under 15 ms
per single image on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HOME = Path(tempfile.gettempdir()) / "cnnlab-bench-predict"
TARGET_MS = 15.0


def digits_run(retrain: bool, epochs: int | None) -> str:
    """A completed run on the digits sample: the newest one, or a new one."""
    from cnnlab import predict, runs
    from cnnlab.data import ingest
    from cnnlab.data.dataset import list_datasets

    if "digits" not in list_datasets():
        print("Ingesting sample:digits...", file=sys.stderr)
        ingest.ingest("sample:digits", "digits")
    done = [
        info
        for info in runs.list_runs("digits")
        if info.status == "completed" and predict.has_model(info)
    ]
    if done and not retrain:
        return done[0].run_id
    from cnnlab.train.recipe import auto_recipe
    from cnnlab.train.trainer import Trainer

    arch, spec = auto_recipe("digits", **({"epochs": epochs} if epochs else {}))
    print(f"Training the default digits model ({spec.epochs} epochs)...", file=sys.stderr)
    trainer = Trainer("digits", arch, spec).fit()
    return trainer.run_id_


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=None, help=f"default {DEFAULT_HOME}")
    parser.add_argument("--retrain", action="store_true", help="train a new digits run first")
    parser.add_argument("--epochs", type=int, default=None, help="epochs when training")
    parser.add_argument("--images", type=int, default=200, help="test images to time")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always last)")
    args = parser.parse_args()

    os.environ["CNNLAB_HOME"] = str(args.home or os.environ.get("CNNLAB_HOME") or DEFAULT_HOME)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    import numpy as np

    from cnnlab import runs
    from cnnlab.predict import Predictor

    run_id = digits_run(args.retrain, args.epochs)
    started = time.perf_counter()
    predictor = Predictor(run_id).load()
    load_s = time.perf_counter() - started
    model = predictor.model_
    stored = runs.read_predictions(run_id)
    files = [row["file"] for row in stored]
    blobs = [Path(file).read_bytes() for file in files[: args.images]]

    def prepared(data: bytes) -> np.ndarray:
        return predictor.prepare(predictor.decode(data))[None].astype("float32")

    sides = {
        "cnnlab Predictor": lambda data: predictor.predict_bytes(data).probabilities,
        "peer: model.predict": lambda data: model.predict(prepared(data), verbose=0)[0],
        "peer: eager call": lambda data: np.asarray(model(prepared(data), training=False))[0],
    }
    for side in sides.values():  # warm every path up once
        side(blobs[0])
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for data in blobs:
            for name, side in sides.items():
                start = time.perf_counter()
                side(data)
                timings[name].append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    batch = predictor.predict_files(files)
    batch_s = time.perf_counter() - started
    started = time.perf_counter()
    peer_labels = [int(np.argmax(model.predict(prepared(Path(f).read_bytes()), verbose=0)))
                   for f in files]  # fmt: skip
    peer_batch_s = time.perf_counter() - started
    agree = sum(p.label == row["pred"] for p, row in zip(batch, stored, strict=True))
    peer_agree = sum(
        predictor.class_names_[label] == row["pred"]
        for label, row in zip(peer_labels, stored, strict=True)
    )

    ours = statistics.median(timings["cnnlab Predictor"])
    print(f"run {run_id}: {len(predictor.class_names_)} classes, "
          f"{predictor.image_size_}px, {predictor.channels_} channel(s); model loaded in "
          f"{load_s:.2f} s; {os.cpu_count()} CPU core(s)")  # fmt: skip
    print(f"\nSingle image, bytes to probabilities ({len(blobs)} images x {args.rounds} rounds)")
    print(f"{'':24}{'median ms':>10}{'p90 ms':>9}{'mean ms':>9}{'vs cnnlab':>11}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:24}{median:10.2f}{percentile(values, 0.9):9.2f}"
              f"{statistics.fmean(values):9.2f}{median / ours:10.1f}x")  # fmt: skip
    verdict = "meets" if ours < TARGET_MS else "MISSES"
    print(f"cnnlab median {ours:.2f} ms {verdict} the {TARGET_MS:.0f} ms target")
    print(f"\nBatch mode over {len(files)} test files")
    print(f"cnnlab predict_files:      {len(files) / batch_s:8.1f} images/s")
    print(f"peer model.predict loop:   {len(files) / peer_batch_s:8.1f} images/s "
          f"({peer_batch_s / batch_s:.1f}x slower)")  # fmt: skip
    print(f"label agreement with evaluation: cnnlab {agree}/{len(files)}, "
          f"peer {peer_agree}/{len(files)}")  # fmt: skip
    print(json.dumps({
        "run_id": run_id,
        "single_median_ms": {name: round(statistics.median(v), 3) for name, v in timings.items()},
        "batch_images_per_s": round(len(files) / batch_s, 1),
        "peer_batch_images_per_s": round(len(files) / peer_batch_s, 1),
        "agreement": agree / len(files),
        "target_met": ours < TARGET_MS,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
