"""The run limits of a shared workspace: active runs, minutes of training, free disk."""

from __future__ import annotations

from collections import namedtuple

import pytest

from cnnlab import limits, runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.train import jobs, trainer
from cnnlab.train.spec import TrainSpec

RUN = "20260101-000000-tiny-simple-{}"
SPEC = {"image_size": 24, "batch_size": 8, "epochs": 1, "augmentation": "none"}


def _make_run(suffix: str, status: str, **meta) -> runs.Run:
    info = runs.create_run(
        {
            "run_id": RUN.format(suffix),
            "dataset": "tiny",
            "status": status,
            "train": TrainSpec(**SPEC).to_dict(),
            **meta,
        }
    )
    for checkpoint in ("best", "last"):
        (info.path / f"{checkpoint}.keras").write_bytes(b"model")
    workspace.atomic_write_json(
        info.path / runs.CHECKPOINTS_FILE, {"best": {"epoch": 1}, "last": {"epoch": 1}}
    )
    return info


@pytest.fixture
def launches(monkeypatch) -> list[str]:
    launched: list[str] = []
    monkeypatch.setattr(jobs, "_launch_worker", launched.append)
    return launched


def _ways_to_queue(finished: runs.Run, stopped: runs.Run):
    return {
        "start": lambda: jobs.start_run("tiny", "simple", SPEC),
        "fork": lambda: jobs.fork_run(finished.run_id, "best"),
        "continue": lambda: jobs.continue_run(finished.run_id, 1),
        "resume": lambda: jobs.resume_run(stopped.run_id),
    }


# --- max_active_runs ---------------------------------------------------------------------


def test_no_run_joins_a_full_queue(tiny_dataset, launches, monkeypatch):
    monkeypatch.setenv(limits.env_name("max_active_runs"), "2")
    finished = _make_run("aaaa", "completed")
    stopped = _make_run("bbbb", "cancelled")
    _make_run("cccc", "running")
    _make_run("dddd", "queued")
    before = {info.run_id: info.status for info in runs.list_runs()}
    for way, queue_one in _ways_to_queue(finished, stopped).items():
        with pytest.raises(CnnlabError) as refused:
            queue_one()
        message = str(refused.value)
        assert "2 runs are queued or running" in message, way
        assert "the limit is 2" in message and "CNNLAB_LIMIT_MAX_ACTIVE_RUNS" in message, way
        assert "Wait" in message and "cancel" in message, way
    assert {info.run_id: info.status for info in runs.list_runs()} == before
    assert launches == []


def test_a_run_joins_when_there_is_room(tiny_dataset, launches, monkeypatch):
    monkeypatch.setenv(limits.env_name("max_active_runs"), "2")
    _make_run("cccc", "running")
    run_id = jobs.start_run("tiny", "simple", SPEC)
    assert launches == [run_id]
    with pytest.raises(CnnlabError, match="2 runs are queued or running"):
        jobs.start_run("tiny", "simple", SPEC)


# --- max_run_minutes ---------------------------------------------------------------------


def test_a_run_trains_no_longer_than_max_run_minutes(monkeypatch):
    monkeypatch.setenv(limits.env_name("max_run_minutes"), "10")
    start = 1000.0
    cap = trainer._deadline(start, 10.0)
    assert cap == pytest.approx(start + 600 - 30 - 2)
    # No budget of its own, or a longer one: the limit is the deadline.
    assert trainer.training_deadline(start, 0.0) == cap
    assert trainer.training_deadline(start, 60.0) == cap
    # A shorter budget of its own stays as it was.
    assert trainer.training_deadline(start, 5.0) == trainer._deadline(start, 5.0) < cap
    monkeypatch.delenv(limits.env_name("max_run_minutes"))
    assert trainer.training_deadline(start, 0.0) == trainer._deadline(start, 24 * 60.0)


# --- free disk ---------------------------------------------------------------------------


def test_no_run_is_queued_without_free_disk(tiny_dataset, launches, monkeypatch):
    finished = _make_run("aaaa", "completed")
    stopped = _make_run("bbbb", "cancelled")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(limits.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 10**6))
    before = {info.run_id: info.status for info in runs.list_runs()}
    for queue_one in _ways_to_queue(finished, stopped).values():
        with pytest.raises(CnnlabError, match="Not enough free disk to start a training run"):
            queue_one()
    assert {info.run_id: info.status for info in runs.list_runs()} == before
    assert launches == []
