"""The command line: train --json, runs, cancel/resume errors, the progress printer."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnlab import runs
from cnnlab.cli import main
from cnnlab.commands.train import ProgressPrinter
from cnnlab.data.dataset import load_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fake_run(run_id="20260101-000000-tiny-simple-abcd", status="completed"):
    info = runs.create_run(
        {
            "run_id": run_id,
            "dataset": "tiny",
            "status": status,
            "arch": {"preset": "simple", "options": {}},
            "train": {"epochs": 2},
        }
    )
    from cnnlab import workspace

    workspace.atomic_write_json(info.path / "metrics.json", {"test_accuracy": 0.5, "epochs_run": 2})
    return info


def test_runs_json_lists_runs(workspace, capsys):
    _fake_run()
    assert main(["runs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = out["runs"][0]
    assert row["run_id"] == "20260101-000000-tiny-simple-abcd"
    assert {"status", "dataset", "created"} <= set(row)
    assert row["test_accuracy"] == 0.5
    assert main(["runs"]) == 0
    assert "20260101-000000-tiny-simple-abcd" in capsys.readouterr().out


def test_control_verbs_explain_what_cannot_be_done(workspace, capsys):
    _fake_run()
    assert main(["cancel", "20260101-000000-tiny-simple-abcd"]) == 2
    assert "already completed; there is nothing to cancel" in capsys.readouterr().err
    assert main(["resume", "20260101-000000-tiny-simple-abcd"]) == 2
    assert "continue 20260101-000000-tiny-simple-abcd --epochs N" in capsys.readouterr().err
    assert main(["resume", "nope"]) == 2
    assert "There is no run 'nope'" in capsys.readouterr().err
    assert main(["train", "--dataset", "missing"]) == 2
    assert "There is no dataset named 'missing'" in capsys.readouterr().err


def test_bad_spec_values_are_refused_before_a_worker_starts(tiny_dataset, capsys):
    assert main(["train", "--dataset", tiny_dataset, "--lr", "5"]) == 2
    assert "`learning_rate` must be in [1e-06, 1]. Received: learning_rate=5.0" in (
        capsys.readouterr().err
    )
    assert runs.list_runs() == []


def test_progress_printer_lines():
    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    printer(
        {
            "type": "start",
            "device": "CPU (no GPU found)",
            "epoch": 0,
            "epochs": 3,
            "batches": 4,
            "images": 30,
        }
    )
    printer(
        {"type": "batch", "epoch": 1, "epochs": 3, "batch": 2, "batches": 4, "logs": {"loss": 1.0}}
    )  # not a terminal: batches are not drawn
    printer(
        {
            "type": "epoch",
            "epoch": 1,
            "epochs": 3,
            "logs": {"loss": 0.5, "accuracy": 0.9, "val_loss": 0.6, "val_accuracy": 0.8},
            "images_per_s": 1234.0,
            "epoch_s": 1.5,
        }
    )
    printer({"type": "status", "status": "failed", "message": "boom"})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("training on CPU (no GPU found): epochs 1-3")
    assert lines[1] == (
        "epoch 1/3: loss 0.5000 acc 0.9000 val_loss 0.6000 val_acc 0.8000 (1234 img/s, 1.5s)"
    )
    assert lines[2] == "failed: boom"


@pytest.mark.slow
def test_train_json_last_line(tiny_dataset):
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--dataset",
        tiny_dataset,
        "--arch",
        "simple",
        "--image-size",
        "24",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--class-weight",
        "balanced",
        "--seed",
        "1",
        "--json",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    info = runs.load_run(summary["run_id"])
    assert summary["status"] == info.status == "completed"
    assert summary["dataset"] == tiny_dataset and summary["path"] == str(info.path)
    assert info.train["class_weight"] == "balanced" and info.train["seed"] == 1
    assert info.train["epochs"] == 2 and info.train["image_size"] == 24

    # Every number printed is the run folder's, not a second computation that may drift.
    metrics = json.loads((info.path / runs.METRICS_FILE).read_text())
    for key in ("epochs_run", "train_images_per_s", "val_accuracy", "test_accuracy",
                "test_loss", "best_epoch"):  # fmt: skip
        assert summary[key] == metrics[key], key
    history = runs.read_history(info.run_id)
    assert summary["epochs_run"] == len(history["loss"]) == 2
    assert summary["best_epoch"] == runs.read_checkpoints(info.run_id)["best"]["epoch"]
    assert summary["val_accuracy"] == history["val_accuracy"][metrics["final_epoch"] - 1]

    # ...and the test accuracy is what predictions.csv says, image by image.
    rows = runs.read_predictions(info.run_id)
    test_files, test_labels = load_dataset(tiny_dataset).files_and_labels("test")
    assert [row["file"] for row in rows] == test_files  # all 6 test images, in order
    assert [row["true"] for row in rows] == [info.class_names[i] for i in test_labels]
    correct = sum(row["true"] == row["pred"] for row in rows)
    assert summary["test_accuracy"] == pytest.approx(correct / len(rows), abs=1e-12)
    # The loss and confidences come from the same softmax rows.
    probabilities = np.load(info.path / runs.PROBABILITIES_FILE)
    assert probabilities.shape == (6, 3)
    assert [info.class_names[i] for i in probabilities.argmax(1)] == [r["pred"] for r in rows]
    picked = probabilities[np.arange(6), test_labels]
    assert summary["test_loss"] == pytest.approx(-np.mean(np.log(picked)), rel=1e-5)
    assert [r["confidence"] for r in rows] == pytest.approx(probabilities.max(1), abs=1e-6)

    assert "epoch 2/2" in result.stderr
    assert (
        f"Run {info.run_id} completed: test accuracy {summary['test_accuracy']:.4f} after 2 epochs"
        in result.stderr
    )
