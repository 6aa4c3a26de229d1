"""The command line: train --json, runs, cancel/resume errors, the progress printer."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from cnnlab import runs
from cnnlab.cli import main
from cnnlab.commands.train import ProgressPrinter

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
    assert set(summary) >= {
        "run_id",
        "status",
        "epochs_run",
        "train_images_per_s",
        "val_accuracy",
        "test_accuracy",
        "duration_s",
    }
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
    assert 0 <= summary["test_accuracy"] <= 1 and summary["train_images_per_s"] > 0
    assert "epoch 2/2" in result.stderr
    info = runs.load_run(summary["run_id"])
    assert info.train["class_weight"] == "balanced" and info.train["seed"] == 1
