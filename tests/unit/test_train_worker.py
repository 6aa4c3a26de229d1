"""Runs in real worker processes: start and wait, SIGKILL then resume, the queue,
cancel, continue and fork."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.train import (
    cancel_run,
    continue_run,
    fork_run,
    queue,
    resume_run,
    start_run,
    wait_for_run,
)
from tests.runs_fixture import last_start, optimizer_steps

pytestmark = pytest.mark.slow

QUICK = {"image_size": 24, "batch_size": 8, "augmentation": "none", "early_stopping": False}
WAIT_S = 240
BATCHES = 3  # optimizer steps per epoch: 18 train images of the tiny dataset, 8 a batch


def _wait_until(predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_start_wait_continue_and_fork(tiny_dataset):
    seen = []
    run_id = start_run(tiny_dataset, "simple", {**QUICK, "epochs": 2})
    info = wait_for_run(run_id, timeout=WAIT_S, on_event=seen.append)
    assert info.status == "completed", (info.error, (info.path / "worker.log").read_text())
    assert info.meta["worker"]["pid"] != os.getpid()  # trained in another process
    assert (info.path / "worker.log").exists()
    assert [e["epoch"] for e in seen if e["type"] == "epoch"] == [1, 2]
    assert runs.read_metrics(run_id)["epochs_run"] == 2
    first_two = runs.read_history(run_id)

    with pytest.raises(CnnlabError, match="only an interrupted, cancelled or failed run"):
        resume_run(run_id)
    with pytest.raises(CnnlabError, match="already completed; there is nothing to cancel"):
        cancel_run(run_id)

    continue_run(run_id, 1)
    info = wait_for_run(run_id, timeout=WAIT_S)
    assert info.status == "completed", info.error
    assert info.train["epochs"] == 3 and info.meta["continued_from_epoch"] == 2
    history = runs.read_history(run_id)
    assert len(history["loss"]) == 3 and history["loss"][:2] == first_two["loss"]
    assert runs.read_metrics(run_id)["epochs_run"] == 3
    # It went on from epoch 2, with the optimizer state of the checkpoint.
    assert last_start(run_id) == (2, [3])
    assert optimizer_steps(info.path / "last.keras") == 3 * BATCHES

    with pytest.raises(CnnlabError, match="A fork keeps the model.*`image_size`"):
        fork_run(run_id, "best", image_size=32)
    parent_last = (info.path / "last.keras").read_bytes()
    child = fork_run(run_id, "last", learning_rate=1e-4, epochs=1)
    info = wait_for_run(child, timeout=WAIT_S)
    assert info.status == "completed", info.error
    assert info.meta["parent"] == {"run_id": run_id, "checkpoint": "last", "epoch": 3}
    assert info.train["learning_rate"] == 1e-4
    assert len(runs.read_history(child)["loss"]) == 1
    # The child starts from the parent's weights, numbered from 0, with a fresh optimizer.
    assert (info.path / "init.keras").read_bytes() == parent_last
    assert last_start(child) == (0, [1])
    assert optimizer_steps(info.path / "last.keras") == BATCHES
    assert len(runs.read_history(run_id)["loss"]) == 3  # the parent is left as it was


def test_a_killed_worker_leaves_an_interrupted_run_that_resumes(tiny_dataset):
    run_id = start_run(tiny_dataset, "simple", {**QUICK, "epochs": 60})
    _wait_until(lambda: runs.read_checkpoints(run_id).get("last"), what="the first checkpoint")
    pid = runs.load_run(run_id).meta["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait_until(
        lambda: runs.load_run(run_id).status == "interrupted",
        timeout=10,
        what="the run to read interrupted",
    )
    done = runs.read_checkpoints(run_id)["last"]["epoch"]
    assert 1 <= done < 60
    before = runs.read_history(run_id)

    resume_run(run_id)
    info = wait_for_run(run_id, timeout=WAIT_S)
    assert info.status == "completed", info.error
    assert info.meta["resumes"] == 1
    # The resumed worker started at the checkpoint's epoch and numbered on from there;
    # a restart from epoch 0 would have begun at 0 and run epoch 1 again.
    assert last_start(run_id) == (done, list(range(done + 1, 61)))
    history = runs.read_history(run_id)
    assert len(history["loss"]) == 60
    # The checkpointed epochs' history is kept (epochs after the checkpoint are redone).
    assert history["loss"][:done] == before["loss"][:done]
    # The model trained 60 epochs of steps in all: the weights and optimizer state the
    # resumed run began with were the checkpoint's, not fresh ones.
    assert optimizer_steps(info.path / "last.keras") == 60 * BATCHES
    assert runs.read_metrics(run_id)["epochs_run"] == 60


def test_one_training_at_a_time_others_wait_queued(tiny_dataset, monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_CONCURRENT_RUNS", "1")
    first = start_run(tiny_dataset, "simple", {**QUICK, "epochs": 200})
    second = start_run(tiny_dataset, "simple", {**QUICK, "epochs": 1})
    _wait_until(lambda: runs.load_run(first).meta.get("started"), what="the first to start")
    time.sleep(2)
    assert runs.load_run(first).status == "running"
    assert runs.load_run(second).status == "queued"
    assert runs.load_run(second).meta.get("started") is None
    rows = queue()
    assert [row["run_id"] for row in rows] == [first, second]
    assert rows[1]["position"] == 0

    cancel_run(second)  # cancelled while waiting: it never trains
    info = wait_for_run(second, timeout=30)
    assert info.status == "cancelled"
    assert not runs.read_history(second)

    cancel_run(first)
    info = wait_for_run(first, timeout=WAIT_S)
    assert info.status == "cancelled"
    # A cancel inside an epoch records only the epochs that ended (maybe none yet), and
    # the last checkpoint is the last recorded epoch: a resume would go on from there.
    recorded = len(runs.read_history(first).get("loss", []))
    assert recorded < 200
    assert (runs.read_checkpoints(first).get("last") or {}).get("epoch", 0) == recorded
    assert not (info.path / "metrics.json").exists()
