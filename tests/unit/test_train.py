"""The Trainer in this process on tiny data: the run folder, determinism, cancel and
resume, NaN and out-of-memory messages."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.train import Trainer, TrainSpec

TINY = {"image_size": 24, "batch_size": 8, "augmentation": "none", "epochs": 2}


def _spec(**changes) -> TrainSpec:
    return TrainSpec.from_dict({**TINY, **changes})


def test_trainer_writes_a_complete_run_folder(tiny_dataset):
    events = []
    trainer = Trainer(tiny_dataset, "simple", _spec(), on_event=events.append).fit()
    assert trainer is not None and trainer.status_ == "completed"
    info = runs.load_run(trainer.run_id_)
    assert info.status == "completed" and info.error is None
    for name in (
        "run.json",
        "events.jsonl",
        "history.json",
        "best.keras",
        "last.keras",
        "metrics.json",
        "predictions.csv",
        "checkpoints.json",
        "heartbeat",
    ):
        assert (info.path / name).exists(), name
    meta = info.meta
    assert meta["arch"] == {"preset": "simple", "options": {}}
    assert meta["train"]["epochs"] == 2 and meta["image_size"] == 24
    assert meta["class_names"] == ["cat", "dog", "fox"] and meta["channels"] == 3
    assert meta["device"]["device"] == "CPU (no GPU found)"
    assert {"python", "tensorflow", "keras", "cnnlab"} <= set(meta["versions"])
    assert meta["started"] and meta["finished"]

    history = runs.read_history(info.run_id)
    assert len(history["loss"]) == len(history["val_accuracy"]) == 2
    assert history["learning_rate"] == pytest.approx([1e-3, 1e-3])

    # Progress events: status, start, throttled batches, one per epoch, final status.
    kinds = [event["type"] for event in runs.read_events(info.run_id)]
    assert kinds[0] == "status" and kinds[-1] == "status"
    epochs = [e for e in runs.read_events(info.run_id) if e["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[0]["batches"] == 3 and epochs[0]["images_per_s"] > 0
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(epochs[0]["logs"])
    assert [e["type"] for e in events] == kinds

    # Predictions on the test split, one batched pass, readable by `predict`.
    with open(info.path / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "true", "pred", "confidence"]
    assert len(rows) == 6
    from cnnlab.data.dataset import load_dataset

    files, labels = load_dataset(tiny_dataset).files_and_labels("test")
    assert [row["file"] for row in rows] == files
    assert all(Path(row["file"]).is_absolute() and Path(row["file"]).exists() for row in rows)
    assert [row["true"] for row in rows] == [info.class_names[i] for i in labels]
    assert all(0 < float(row["confidence"]) <= 1 for row in rows)
    # The full softmax rows, same order, so evaluation needs no model pass.
    probabilities = np.load(info.path / runs.PROBABILITIES_FILE)
    assert probabilities.shape == (6, 3)
    assert [info.class_names[i] for i in probabilities.argmax(axis=1)] == [
        row["pred"] for row in rows
    ]
    assert probabilities.max(axis=1) == pytest.approx(
        [float(r["confidence"]) for r in rows], abs=1e-5
    )

    metrics = runs.read_metrics(info.run_id)
    correct = np.mean([row["true"] == row["pred"] for row in rows])
    assert metrics["test_accuracy"] == pytest.approx(correct)
    assert metrics["epochs_run"] == 2 and metrics["test_images"] == 6
    assert math.isfinite(metrics["test_loss"]) and metrics["train_images_per_s"] > 0

    # The saved model takes raw pixels and gives the same answers.
    import keras

    model = keras.models.load_model(info.path / "last.keras")
    assert model.input_shape == (None, None, None, 3)
    assert model.optimizer is not None and int(model.optimizer.iterations) == 6


def test_same_seed_and_spec_give_the_same_test_metrics(tiny_dataset):
    from sklearn.utils.class_weight import compute_class_weight

    spec = _spec(epochs=1, seed=7, class_weight="balanced", augmentation={"rotation": 0.1})
    first = Trainer(tiny_dataset, "simple", spec).fit()
    second = Trainer(tiny_dataset, "simple", spec).fit()
    assert first.run_id_ != second.run_id_
    assert first.metrics_["test_loss"] == second.metrics_["test_loss"]
    assert runs.read_predictions(first.run_id_) == runs.read_predictions(second.run_id_)
    assert runs.read_history(first.run_id_)["loss"] == runs.read_history(second.run_id_)["loss"]
    # The class weights used are stored in run.json (balanced data: all equal to 1).
    stored = runs.load_run(first.run_id_).meta["class_weights"]
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.repeat([0, 1, 2], 6))
    assert list(stored.values()) == pytest.approx(list(expected))


def test_a_cancel_between_batches_does_not_count_the_cut_epoch(tiny_dataset, monkeypatch):
    from cnnlab.train import callbacks

    monkeypatch.setattr(callbacks, "CANCEL_CHECK_INTERVAL_S", 0.0)
    checks = []

    def cancel_in_second_epoch() -> bool:
        checks.append(1)
        # 3 batches per epoch plus one check at the epoch's end: the 5th check is the
        # first batch of epoch 2.
        return len(checks) >= 5

    trainer = Trainer(tiny_dataset, "simple", _spec(epochs=3), cancel_check=cancel_in_second_epoch)
    trainer.fit()
    assert trainer.status_ == "cancelled"
    # Only the whole first epoch is recorded and checkpointed; resume redoes epoch 2.
    assert len(runs.read_history(trainer.run_id_)["loss"]) == 1
    assert runs.read_checkpoints(trainer.run_id_)["last"]["epoch"] == 1


def test_cancel_then_resume_continues_from_the_last_checkpoint(tiny_dataset):
    def cancel_after_first_epoch() -> bool:
        return bool(runs.read_checkpoints(trainer.run_id_).get("last"))

    trainer = Trainer(
        tiny_dataset, "simple", _spec(epochs=3), cancel_check=cancel_after_first_epoch
    )
    trainer.fit()
    assert trainer.status_ == "cancelled"
    info = runs.load_run(trainer.run_id_)
    assert info.status == "cancelled"
    assert len(runs.read_history(info.run_id)["loss"]) == 1
    assert runs.read_metrics(info.run_id) == {}  # no final evaluation for a cancelled run

    # Resume in this process (the worker does exactly this after resume_run).
    runs.update_run(info.run_id, status="queued")
    events_before = len(runs.read_events(info.run_id))
    resumed = Trainer(info.dataset, info.arch, info.train, run_id=info.run_id).fit()
    assert resumed.status_ == "completed"
    new_epochs = [
        e["epoch"]
        for e in runs.read_events(info.run_id, since=events_before)
        if e["type"] == "epoch"
    ]
    assert new_epochs == [2, 3]
    assert len(runs.read_history(info.run_id)["loss"]) == 3
    # Optimizer state came back with last.keras: steps continue from 3, not from 0.
    assert int(resumed.model_.optimizer.iterations) == 9
    assert runs.read_metrics(info.run_id)["epochs_run"] == 3


def test_nan_loss_stops_the_run_with_a_message(tiny_dataset, monkeypatch):
    import keras

    from cnnlab.train import trainer as trainer_module

    def nan_loss(spec):
        return lambda y_true, y_pred: keras.ops.mean(y_pred) * float("nan")

    monkeypatch.setattr(trainer_module, "make_loss", nan_loss)
    trainer = Trainer(tiny_dataset, "simple", _spec(learning_rate=0.5))
    with pytest.raises(CnnlabError, match=r"loss became NaN at epoch 1, batch 1.*learning rate"):
        trainer.fit()
    info = runs.load_run(trainer.run_id_)
    assert info.status == "failed"
    assert "NaN" in info.error and "0.5" in info.error
    assert not (info.path / "last.keras").exists()  # a NaN model is never kept


def test_out_of_memory_becomes_advice():
    import tensorflow as tf

    from cnnlab.train.trainer import _user_message

    error = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    message = _user_message(error, TrainSpec(batch_size=64, image_size=128))
    assert "batch_size=64" in message and "e.g. 32" in message and "image size (e.g. 96)" in message
    assert _user_message(CnnlabError("plain"), TrainSpec()) == "plain"
    assert _user_message(RuntimeError("boom\nmore"), TrainSpec()) == "RuntimeError: boom"


def test_an_architecture_too_deep_for_the_image_size_fails_before_training(tiny_dataset):
    from cnnlab.train import prepare_run

    with pytest.raises(CnnlabError, match="image_size|1x1|too small|shrink"):
        prepare_run(
            tiny_dataset, {"preset": "vgg_small", "options": {"stages": 5}}, _spec(image_size=16)
        )


def test_oversampling_label_smoothing_schedule_and_sgd(workspace):
    from tests.conftest import make_dataset_on_disk

    # Imbalanced: 10 / 6 / 6 training images.
    name = make_dataset_on_disk("uneven", {"cat": 16, "dog": 10, "fox": 8}, splits=None, channels=1)
    spec = _spec(
        epochs=3,
        oversample=True,
        label_smoothing=0.1,
        optimizer="sgd",
        momentum=0.5,
        weight_decay=0.001,
        learning_rate=0.01,
        schedule="cosine",
        early_stopping=False,
    )
    events = []
    trainer = Trainer(name, "simple", spec, on_event=events.append).fit()
    assert trainer.status_ == "completed"
    start = next(e for e in events if e["type"] == "start")
    # Every class drawn as often as the largest (cat: 16 - 2*3 = 10 train images).
    assert start["images"] == 3 * 10 and start["batches"] == math.ceil(30 / 8)
    rates = runs.read_history(trainer.run_id_)["learning_rate"]
    assert rates == pytest.approx([0.01, 0.0075, 0.0025])
    assert runs.load_run(trainer.run_id_).channels == 1
    assert runs.read_metrics(trainer.run_id_)["test_images"] == 3 + 2 + 1
