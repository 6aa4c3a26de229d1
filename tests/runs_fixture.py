"""A real, trained run folder for tests that need one (evaluate, predict, explain).

``make_trained_run(dataset_name, epochs=2, **overrides) -> run_id`` trains a small model
on a dataset already in the current ``CNNLAB_HOME`` (e.g. the ``tiny_dataset`` fixture)
with the app's own in-process :class:`~cnnlab.train.trainer.Trainer`, and returns the
id of the completed run. The folder is exactly what the app writes (run.json,
events.jsonl, history.json, checkpoints, best.keras, last.keras, metrics.json,
predictions.csv), and its predictions come from the trained model.

``overrides`` are TrainSpec fields (``batch_size``, ``learning_rate``, ``seed``,
``image_size``, ``class_weight``, ``oversample`` ...), plus ``arch`` (a preset name,
ArchSpec or its dict; default ``"simple"``) and run.json extras ``name`` and ``tags``.
Any other run.json field (e.g. ``study``) can be passed too and is stored as given.

``prepared_run(dataset_name, status="completed", epochs_done=3) -> run_id`` writes a
run folder by hand, as a worker leaves it at that status, without training.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small, quick training for 24x24 test images (overrides win).
FAST_SPEC = {"image_size": 24, "batch_size": 8, "learning_rate": 0.01, "early_stopping": False}


def make_trained_run(dataset_name: str, epochs: int = 2, **overrides: Any) -> str:
    """Train a small model on ``dataset_name`` for ``epochs`` and return the run id."""
    from cnnlab import runs
    from cnnlab.train import TrainSpec, prepare_run
    from cnnlab.train.trainer import Trainer

    arch = overrides.pop("arch", "simple")
    spec_fields = {field.name for field in dataclasses.fields(TrainSpec)}
    spec = {key: overrides.pop(key) for key in list(overrides) if key in spec_fields}
    spec = {**FAST_SPEC, "epochs": epochs, **spec}
    # What is left goes into run.json, as start_run's **extra does.
    meta = prepare_run(dataset_name, arch, spec, **overrides)
    run_id = runs.create_run(meta).run_id
    Trainer(dataset_name, run_id=run_id).fit()
    status = runs.load_run(run_id).status
    if status != "completed":
        raise RuntimeError(f"training run {run_id} ended {status}: {runs.load_run(run_id).error}")
    return run_id


def last_start(run_id: str) -> tuple[int, list[int]]:
    """The epoch the run's last "start" event began from, and the epochs it then ran."""
    from cnnlab import runs

    events = runs.read_events(run_id)
    last = max(i for i, event in enumerate(events) if event["type"] == "start")
    ran = [event["epoch"] for event in events[last:] if event["type"] == "epoch"]
    return events[last]["epoch"], ran


def optimizer_steps(path) -> int:
    """Optimizer steps taken by a saved model: how much training its weights have seen."""
    import keras

    return int(keras.models.load_model(path).optimizer.iterations.numpy())


def prepared_run(dataset: str, status: str = "completed", epochs_done: int = 3) -> str:
    """A run folder as a worker leaves it, written by hand (no training). A "running"
    run's worker is this process, so it counts as alive."""
    import socket

    from cnnlab import runs, workspace

    run_id = runs.new_run_id(dataset, "simple")
    meta = {
        "run_id": run_id,
        "dataset": dataset,
        "status": status,
        "arch": {"preset": "simple", "options": {}},
        "arch_label": "simple",
        "train": {"epochs": 5, "image_size": 24, "batch_size": 8},
        "class_names": ["cat", "dog", "fox"],
        "device": {"device": "CPU (no GPU found)"},
        "worker": {"pid": os.getpid(), "host": socket.gethostname()},
        "error": "The loss became NaN at epoch 2" if status == "failed" else None,
    }
    info = runs.create_run(meta)
    history = {
        "loss": [1.0, 0.6, 0.4][:epochs_done],
        "accuracy": [0.4, 0.7, 0.8][:epochs_done],
        "val_loss": [0.9, 0.5, 0.55][:epochs_done],
        "val_accuracy": [0.5, 0.75, 0.7][:epochs_done],
    }
    workspace.atomic_write_json(info.path / runs.HISTORY_FILE, history)
    workspace.atomic_write_json(
        info.path / runs.CHECKPOINTS_FILE,
        {"last": {"epoch": epochs_done}, "best": {"epoch": 2, "monitor": "val_loss"}},
    )
    runs.append_event(info.path, {"type": "start", "epoch": 0, "epochs": 5, "batches": 4})
    for epoch in range(1, epochs_done + 1):
        runs.append_event(
            info.path,
            {
                "type": "epoch",
                "epoch": epoch,
                "epochs": 5,
                "batches": 4,
                "images_per_s": 321.0,
                "eta_s": 12.0,
            },
        )
    if status == "running":
        runs.append_event(
            info.path,
            {
                "type": "batch",
                "epoch": epochs_done + 1,
                "epochs": 5,
                "batch": 2,
                "batches": 4,
                "images_per_s": 345.0,
                "eta_s": 30.0,
            },
        )
    if status == "completed":
        workspace.atomic_write_json(
            info.path / runs.METRICS_FILE,
            {"test_accuracy": 0.8333, "epochs_run": epochs_done, "train_images_per_s": 300.0},
        )
    return run_id
