"""Training speed: cnnlab against the Keras tutorial pipeline, interleaved in one run.

    python bench/bench_train.py                  # throughput and wall-time ratios
    python bench/bench_train.py --auto-digits    # the auto recipe on digits: time to 0.97

The peer is the pipeline of TensorFlow's "Load and preprocess images" tutorial:
``keras.utils.image_dataset_from_directory`` + ``cache()`` + ``prefetch(AUTOTUNE)``,
training the same ``simple`` model (built by cnnlab's builder, so the networks are
identical) on the same images (the digits dataset exported as class folders), at the
same image size, batch size, epochs, optimizer and seed, then evaluating on the test
split. cnnlab runs as a user would: ``python -m cnnlab train ... --json`` (a CLI process
that starts a worker process), with early stopping and augmentation off so both do
the same number of epochs of the same work.

Both sides measure steady-state throughput the same way: training images divided by
the time from an epoch's start to its last training batch, the median over the epochs
after the first (the median resists another program taking the CPU for a moment).
Wall time is the whole process, start-up included, as a user waits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, add_common_args, bench_workspace, class_folders, run

# --- the peer: the Keras tutorial pipeline, run in its own process ----------------------


def peer_main(args: argparse.Namespace) -> None:
    """Train with image_dataset_from_directory + cache + prefetch; print one JSON line."""
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    sys.path.insert(0, str(REPO))
    from cnnlab.models import ArchSpec, build_model

    keras.utils.set_random_seed(args.seed)
    root = Path(args.folders)
    color_mode = "grayscale" if args.channels == 1 else "rgb"

    def load(split: str, shuffle: bool):
        return keras.utils.image_dataset_from_directory(
            root / split,
            image_size=(args.image_size, args.image_size),
            batch_size=args.batch_size,
            color_mode=color_mode,
            shuffle=shuffle,
            seed=args.seed,
            verbose=False,
        )

    autotune = tf.data.AUTOTUNE
    train_ds = load("train", True)
    class_names = train_ds.class_names
    train_ds = train_ds.cache().prefetch(buffer_size=autotune)
    val_ds = load("val", False).cache().prefetch(buffer_size=autotune)
    test_ds = load("test", False).prefetch(buffer_size=autotune)
    model = build_model(ArchSpec.preset("simple"), args.image_size, args.channels, len(class_names))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    train_images = sum(1 for _ in (root / "train").rglob("*.png"))

    class Speed(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rates = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = self.end = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.rates.append(train_images / (self.end - self.start))

    speed = Speed()
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=[speed], verbose=0)
    _, test_accuracy = model.evaluate(test_ds, verbose=0)
    steady = speed.rates[1:] or speed.rates
    print(
        json.dumps(
            {
                "train_images_per_s": statistics.median(steady),
                "test_accuracy": float(test_accuracy),
                "in_process_s": time.perf_counter() - started,
            }
        ),
        flush=True,
    )


# --- the benchmark -------------------------------------------------------------------------


def ingest_digits(env: dict) -> None:
    """``sample:digits`` as dataset ``digits`` in the workspace ``env`` points at."""
    command = ["ingest", "sample:digits", "--name", "digits", "--no-progress", "--json"]
    subprocess.run(
        [sys.executable, "-m", "cnnlab", *command],
        check=True, env=env, cwd=REPO, capture_output=True,
    )  # fmt: skip


def prepare(home: Path, env: dict) -> Path:
    """Ingest sample:digits into ``home`` and export its splits as class folders."""
    ingest_digits(env)
    return class_folders(home)


def compare(args: argparse.Namespace, env: dict, home: Path) -> dict:
    folders = prepare(home, env)
    common = [
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--seed",
        "0",
    ]
    ours_command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--dataset",
        "digits",
        "--arch",
        "simple",
        "--augmentation",
        "none",
        "--set",
        "early_stopping=false",
        "--no-progress",
        "--json",
        *common,
    ]
    peer_command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--peer",
        "--folders",
        str(folders),
        "--channels",
        "1",
        *common,
    ]
    rows = []
    for round_index in range(args.rounds):
        order = [("cnnlab", ours_command), ("keras", peer_command)]
        if round_index % 2:
            order.reverse()  # interleave, so drift in machine load hits both sides
        measured = {}
        for name, command in order:
            result, wall = run(command, env)
            measured[name] = (result["train_images_per_s"], wall, result["test_accuracy"])
        rows.append(measured)
        ours, peer = measured["cnnlab"], measured["keras"]
        print(
            f"round {round_index + 1} (load {os.getloadavg()[0]:.1f}): "
            f"cnnlab {ours[0]:7.0f} img/s {ours[1]:5.1f} s "
            f"(test acc {ours[2]:.4f}) | keras tutorial {peer[0]:7.0f} img/s {peer[1]:5.1f} s "
            f"(test acc {peer[2]:.4f}) | throughput x{ours[0] / peer[0]:.2f}, "
            f"wall x{ours[1] / peer[1]:.2f}",
            flush=True,
        )
    throughput = statistics.median(r["cnnlab"][0] / r["keras"][0] for r in rows)
    wall = statistics.median(r["cnnlab"][1] / r["keras"][1] for r in rows)
    print(
        f"\nmedian over {len(rows)} interleaved rounds (digits, simple, "
        f"{args.image_size}px, batch {args.batch_size}, {args.epochs} epochs, "
        f"{os.cpu_count()} cores; the 1-minute load average is shown per round, as other "
        f"programs on a shared machine move single rounds a lot):\n"
        f"  steady-state throughput cnnlab / keras tutorial = {throughput:.2f}x "
        f"(target >= 1.0)\n"
        f"  whole-process wall time cnnlab / keras tutorial = {wall:.2f}x (target <= 1.0)"
    )
    return {
        "throughput_ratio": round(throughput, 3),
        "wall_time_ratio": round(wall, 3),
        "cnnlab_images_per_s": round(statistics.median(r["cnnlab"][0] for r in rows), 1),
        "keras_images_per_s": round(statistics.median(r["keras"][0] for r in rows), 1),
        "cnnlab_wall_s": round(statistics.median(r["cnnlab"][1] for r in rows), 2),
        "keras_wall_s": round(statistics.median(r["keras"][1] for r in rows), 2),
        "meets_target": throughput >= 1.0 and wall <= 1.0,
    }


def auto_digits(args: argparse.Namespace, env: dict, home: Path) -> dict:
    ingest_digits(env)
    results = []
    for round_index in range(args.rounds):
        command = [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--dataset",
            "digits",
            "--no-progress",
            "--json",
        ]
        result, wall = run(command, env)
        results.append((result["test_accuracy"], wall, result["epochs_run"]))
        print(
            f"round {round_index + 1} (load {os.getloadavg()[0]:.1f}): test accuracy "
            f"{result['test_accuracy']:.4f} after "
            f"{result['epochs_run']} epochs, whole process {wall:.1f} s",
            flush=True,
        )
    worst_accuracy = min(r[0] for r in results)
    worst_wall = max(r[1] for r in results)
    print(
        f"\nauto recipe on sample:digits ({os.cpu_count()} cores): worst test accuracy "
        f"{worst_accuracy:.4f} (target >= 0.97), slowest whole process {worst_wall:.1f} s "
        f"(target <= 90 s)"
    )
    return {
        "worst_test_accuracy": round(worst_accuracy, 4),
        "slowest_wall_s": round(worst_wall, 2),
        "meets_target": worst_accuracy >= 0.97 and worst_wall <= 90,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--auto-digits",
        action="store_true",
        help="time the auto recipe on digits to 0.97 test accuracy",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_common_args(parser)
    parser.add_argument("--channels", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args)
        return
    with bench_workspace(args.keep) as (home, env):
        summary = auto_digits(args, env, home) if args.auto_digits else compare(args, env, home)
        if args.json:
            print(json.dumps(summary))


if __name__ == "__main__":
    main()
