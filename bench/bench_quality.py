"""Training quality: cnnlab's default recipe against peers, by test accuracy, in one run.

    python bench/bench_quality.py                          # all three parts, seeds 0 1 2
    python bench/bench_quality.py --only flowers --cnnlab-args "--epochs 10"

Three parts, each repeated for every seed, every training a whole process timed by this
script (start-up included, as a user waits), one process at a time:

``flowers``: 450 real photos in five classes, already split into ``train/ val/ test/``
(``../shared/data/flowers-small``). cnnlab ingests the folder once (timed, but not part
of training), then trains with the default recipe: ``python -m cnnlab train --dataset
flowers --seed S --json`` (plus ``--cnnlab-args``). The peer is the recipe of TensorFlow's
"Image classification" tutorial as published: ``image_dataset_from_directory`` at 180 px,
batch 32, ``cache().shuffle(1000).prefetch()``, random flip/rotation/zoom, the 3-conv
Sequential model with dropout, Adam, 15 epochs, evaluated on the test folder. The two
sides alternate which goes first from seed to seed. Target: median cnnlab test accuracy
at least 0.05 above the peer's, in no more median wall time.

``digits``: the default recipe on ``sample:digits``. Target: median test accuracy
>= 0.98 and every run (the slowest) done within 60 s.

``digits-simple``: bench_train.py's comparison at 64 px: cnnlab ``--arch simple --epochs 5
--image-size 64 --batch-size 32`` (its recipe otherwise: augmentation, early stopping)
against bench_train.py's Keras tutorial pipeline peer training the same model on the
same images exported as class folders. Target: median cnnlab test accuracy no more than
0.01 below the peer's.

``--cnnlab-args`` goes to the default-recipe runs (flowers and digits), not to
digits-simple, whose settings are fixed to match its peer.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

from common import REPO, add_common_args, bench_workspace, class_folders, run

PARTS = ("flowers", "digits", "digits-simple")


# --- the flowers peer: TensorFlow's image classification tutorial, in its own process -----


def peer_main(args: argparse.Namespace) -> None:
    """Train the tutorial's model on ``args.folders``; print one JSON line."""
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(args.seed)
    root, size = Path(args.folders), (180, 180)

    def load(split: str, **options):
        return keras.utils.image_dataset_from_directory(
            root / split, image_size=size, batch_size=32, verbose=False, **options
        )

    autotune = tf.data.AUTOTUNE
    train_ds = load("train", seed=args.seed)
    num_classes = len(train_ds.class_names)
    train_ds = train_ds.cache().shuffle(1000).prefetch(buffer_size=autotune)
    val_ds = load("val", seed=args.seed).cache().prefetch(buffer_size=autotune)
    test_ds = load("test", shuffle=False).prefetch(buffer_size=autotune)
    data_augmentation = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1)]
    )
    model = keras.Sequential(
        [
            keras.Input((*size, 3)),
            data_augmentation,
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(train_ds, validation_data=val_ds, epochs=15, verbose=0)
    _, test_accuracy = model.evaluate(test_ds, verbose=0)
    result = {
        "test_accuracy": float(test_accuracy),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "in_process_s": time.perf_counter() - started,
    }
    print(json.dumps(result), flush=True)


# --- running things ------------------------------------------------------------------------


def ingest(source: str, name: str, env: dict) -> float:
    """Ingest ``source`` as dataset ``name``; returns the wall seconds."""
    command = [sys.executable, "-m", "cnnlab", "ingest", source, "--name", name, "--json"]
    return run([*command, "--no-progress"], env)[1]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cnnlab_train(options: list[str], env: dict, home: Path) -> dict:
    """``cnnlab train`` as a user runs it; the fields of interest, tolerant of missing ones."""
    command = [sys.executable, "-m", "cnnlab", "train", *options, "--json", "--no-progress"]
    result, wall = run(command, env)
    run_dir = home / "runs" / result["run_id"] if result.get("run_id") else None
    meta = read_json(run_dir / "run.json") if run_dir else {}
    if result.get("test_accuracy") is None and run_dir:
        result["test_accuracy"] = read_json(run_dir / "metrics.json").get("test_accuracy")
    if result.get("test_accuracy") is None:
        raise SystemExit(f"no test accuracy in {result} nor in the run's metrics.json")
    arch = result.get("arch") or meta.get("arch_label") or (meta.get("arch") or {}).get("preset")
    return {
        "test_accuracy": result.get("test_accuracy"),
        "val_accuracy": result.get("val_accuracy"),
        "wall_s": wall,
        "arch": arch,
        "image_size": result.get("image_size") or meta.get("image_size"),
        "epochs_run": result.get("epochs_run"),
    }


def describe(row: dict) -> str:
    text = f"test acc {row['test_accuracy']:.4f} in {row['wall_s']:6.1f} s"
    if row.get("val_accuracy") is not None:
        text = f"val acc {row['val_accuracy']:.4f}, {text}"
    details = [str(row[key]) for key in ("arch",) if row.get(key)]
    details += [f"{row[key]}{unit}" for key, unit in (("image_size", " px"), ("epochs_run", " ep"))
                if row.get(key) is not None]  # fmt: skip
    return text + (f" ({', '.join(details)})" if details else "")


def side(rows: list[dict], **extra) -> dict:
    """Per-seed lists and medians of one side's rows."""
    accuracies = [row["test_accuracy"] for row in rows]
    walls = [round(row["wall_s"], 2) for row in rows]
    summary = {"test_accuracy": accuracies, "wall_s": walls, **extra}
    for key in ("val_accuracy", "arch", "image_size", "epochs_run"):
        if any(row.get(key) is not None for row in rows):
            summary[key] = [row.get(key) for row in rows]
    summary["median_accuracy"] = statistics.median(accuracies)
    summary["median_wall_s"] = round(statistics.median(walls), 2)
    return summary


def verdict(met: bool) -> str:
    return "met" if met else "not met"


# --- the parts -----------------------------------------------------------------------------


def versus(args, env: dict, home: Path, ours: list[str], peer: list[str], name: str):
    """cnnlab ``train`` with ``ours`` against ``peer``, per seed; the rows of both sides."""
    ours_rows, peer_rows = [], []
    for index, seed in enumerate(args.seeds):
        seeded = ["--seed", str(seed)]
        for which in ("cnnlab", "peer") if index % 2 == 0 else ("peer", "cnnlab"):  # alternate,
            if which == "cnnlab":  # so drift in machine load hits both sides
                ours_rows.append(cnnlab_train([*ours, *seeded], env, home))
            else:
                result, wall = run([*peer, *seeded], env)
                peer_rows.append({**result, "wall_s": wall})
        print(f"seed {seed} (load {os.getloadavg()[0]:.1f}): cnnlab {describe(ours_rows[-1])} | "
              f"{name} {describe(peer_rows[-1])}", flush=True)  # fmt: skip
    return ours_rows, peer_rows


def flowers(args: argparse.Namespace, env: dict, home: Path) -> dict:
    ingest_s = ingest(str(args.flowers), "flowers", env)
    print(f"\nflowers ({args.flowers}), ingested in {ingest_s:.1f} s", flush=True)
    peer = [sys.executable, str(Path(__file__).resolve()), "--peer", "--folders", str(args.flowers)]
    ours = ["--dataset", "flowers", *args.cnnlab_args]
    ours_rows, peer_rows = versus(args, env, home, ours, peer, "keras tutorial")
    ours, theirs = side(ours_rows, ingest_s=round(ingest_s, 2)), side(peer_rows)
    margin = ours["median_accuracy"] - theirs["median_accuracy"]
    ratio = ours["median_wall_s"] / theirs["median_wall_s"]
    met = margin >= 0.05 and ratio <= 1.0
    print(f"median: cnnlab {ours['median_accuracy']:.4f} in {ours['median_wall_s']:.1f} s, "
          f"keras tutorial {theirs['median_accuracy']:.4f} in {theirs['median_wall_s']:.1f} s; "
          f"margin {margin:+.4f} (target >= +0.05), wall x{ratio:.2f} (target <= 1.0): "
          f"{verdict(met)}", flush=True)  # fmt: skip
    return {"cnnlab": ours, "peer": theirs, "accuracy_margin": round(margin, 4),
            "wall_ratio": round(ratio, 3), "met": met}  # fmt: skip


def ensure_digits(env: dict, state: dict) -> None:
    if "digits_ingest_s" not in state:
        state["digits_ingest_s"] = ingest("sample:digits", "digits", env)
        print(f"sample:digits ingested in {state['digits_ingest_s']:.1f} s", flush=True)


def digits(args: argparse.Namespace, env: dict, home: Path, state: dict) -> dict:
    print("\ndigits, default recipe:", flush=True)
    ensure_digits(env, state)
    rows = []
    for seed in args.seeds:
        options = ["--dataset", "digits", "--seed", str(seed), *args.cnnlab_args]
        rows.append(cnnlab_train(options, env, home))
        print(
            f"seed {seed} (load {os.getloadavg()[0]:.1f}): cnnlab {describe(rows[-1])}", flush=True
        )
    summary = side(rows, ingest_s=round(state["digits_ingest_s"], 2))
    summary["slowest_wall_s"] = max(summary["wall_s"])
    summary["met"] = summary["median_accuracy"] >= 0.98 and summary["slowest_wall_s"] <= 60
    print(f"median test accuracy {summary['median_accuracy']:.4f} (target >= 0.98), wall "
          f"median {summary['median_wall_s']:.1f} s, slowest {summary['slowest_wall_s']:.1f} s "
          f"(target <= 60 s): {verdict(summary['met'])}", flush=True)  # fmt: skip
    return summary


def export_digits(home: Path, env: dict, state: dict) -> Path:
    """The digits dataset's splits as class folders, as bench_train.py's peer reads them."""
    ensure_digits(env, state)
    return class_folders(home)


def digits_simple(args: argparse.Namespace, env: dict, home: Path, state: dict) -> dict:
    print("\ndigits-simple (simple, 64 px, batch 32, 5 epochs):", flush=True)
    folders = export_digits(home, env, state)
    common = ["--image-size", "64", "--batch-size", "32", "--epochs", "5"]
    peer = [sys.executable, str(REPO / "bench" / "bench_train.py"), "--peer", "--folders",
            str(folders), "--channels", "1", *common]  # fmt: skip
    ours = ["--dataset", "digits", "--arch", "simple", *common]
    ours_rows, peer_rows = versus(args, env, home, ours, peer, "keras tutorial pipeline")
    ours, theirs = side(ours_rows), side(peer_rows)
    margin = ours["median_accuracy"] - theirs["median_accuracy"]
    met = margin >= -0.01
    print(f"median test accuracy: cnnlab {ours['median_accuracy']:.4f}, keras tutorial "
          f"pipeline {theirs['median_accuracy']:.4f}, margin {margin:+.4f} (target >= -0.01): "
          f"{verdict(met)}", flush=True)  # fmt: skip
    return {"cnnlab": ours, "peer": theirs, "accuracy_margin": round(margin, 4), "met": met}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=PARTS, help="run this part (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--flowers", type=Path, default=REPO.parent / "shared/data/flowers-small",
        help="a folder with train/ val/ test/, one folder per class in each",
    )  # fmt: skip
    parser.add_argument(
        "--cnnlab-args", type=shlex.split, default=[],
        help='extra `cnnlab train` options for the default-recipe runs, e.g. "--epochs 10" '
        "(or --cnnlab-args=--OPTION for a single word)",
    )  # fmt: skip
    add_common_args(parser)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args)
        return
    parts = [part for part in PARTS if part in (args.only or PARTS)]
    if "flowers" in parts and not (args.flowers / "train").is_dir():
        parser.error(f"no train/ folder in {args.flowers}; give the flowers data with --flowers")
    with bench_workspace(args.keep) as (home, env):
        print(f"{os.cpu_count()} cores, seeds {args.seeds}, workspace {home}", flush=True)
        summary, state = {}, {}
        if "flowers" in parts:
            summary["flowers"] = flowers(args, env, home)
        if "digits" in parts:
            summary["digits"] = digits(args, env, home, state)
        if "digits-simple" in parts:
            summary["digits_simple"] = digits_simple(args, env, home, state)
        if args.json:
            print(json.dumps(summary))


if __name__ == "__main__":
    main()
