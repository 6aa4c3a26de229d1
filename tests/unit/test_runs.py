"""The run store: folders, atomic writes, status resolution, events with torn lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from cnnlab import runs
from cnnlab import workspace as cnnlab_workspace
from cnnlab.errors import CnnlabError


def _make_run(run_id="20260101-000000-tiny-simple-abcd", **meta):
    base = {
        "run_id": run_id,
        "dataset": "tiny",
        "status": "completed",
        "arch": {"preset": "simple", "options": {}},
        "train": {"epochs": 2},
        "class_names": ["cat", "dog"],
    }
    return runs.create_run({**base, **meta})


def test_create_load_and_list(workspace):
    first = _make_run("20260101-000000-tiny-simple-aaaa", created="2026-01-01T00:00:00+00:00")
    _make_run(
        "20260102-000000-other-simple-bbbb", dataset="other", created="2026-01-02T00:00:00+00:00"
    )
    info = runs.load_run(first.run_id)
    assert info.status == "completed"
    assert info.dataset == "tiny" and info.class_names == ["cat", "dog"]
    assert (info.path / runs.RUN_FILE).exists()
    assert [r.run_id for r in runs.list_runs()] == [
        "20260102-000000-other-simple-bbbb",
        "20260101-000000-tiny-simple-aaaa",
    ]
    assert [r.run_id for r in runs.list_runs("tiny")] == [first.run_id]
    summary = info.summary()
    assert summary["run_id"] == first.run_id and summary["status"] == "completed"


def test_unknown_run_lists_recent_ones(workspace):
    _make_run()
    with pytest.raises(CnnlabError, match=r"no run 'nope' \(recent runs: 20260101-000000-tiny"):
        runs.load_run("nope")


def test_run_ids_are_safe_and_unique(workspace):
    one = runs.new_run_id("my data/../x", "simple")
    two = runs.new_run_id("my data/../x", "simple")
    assert one != two
    assert "/" not in one and ".." not in one
    with pytest.raises(CnnlabError):
        runs.load_run("../../etc")


def test_update_is_atomic_when_the_write_fails(workspace, monkeypatch):
    info = _make_run(status="running", worker={"pid": os.getpid(), "host": "elsewhere"})
    before = (info.path / runs.RUN_FILE).read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            runs.update_run(info.run_id, status="completed")
    # The old file is intact and no temporary file is left behind.
    assert (info.path / runs.RUN_FILE).read_text() == before
    assert not [p for p in info.path.iterdir() if p.name.endswith(".tmp")]
    runs.update_run(info.run_id, status="completed", error=None)
    assert runs.load_run(info.run_id).meta["status"] == "completed"


def test_running_with_a_stale_heartbeat_reads_interrupted(workspace):
    info = _make_run(status="running", worker={"pid": os.getpid(), "host": "elsewhere"})
    assert runs.load_run(info.run_id).status == "running"
    old = time.time() - runs.HEARTBEAT_TIMEOUT_S - 5
    os.utime(info.path / runs.HEARTBEAT_FILE, (old, old))
    assert runs.load_run(info.run_id).status == "interrupted"
    (info.path / runs.HEARTBEAT_FILE).unlink()
    assert runs.load_run(info.run_id).status == "interrupted"


def test_running_with_a_dead_worker_reads_interrupted(workspace):
    import socket

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    info = _make_run(status="running", worker={"pid": process.pid, "host": socket.gethostname()})
    assert runs.load_run(info.run_id).status == "interrupted"
    runs.update_run(info.run_id, worker={"pid": os.getpid(), "host": socket.gethostname()})
    assert runs.load_run(info.run_id).status == "running"


def test_a_zombie_is_not_alive():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline:
        state = open(f"/proc/{process.pid}/stat").read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    assert not runs.pid_alive(process.pid)  # exited but not yet reaped
    process.wait()
    assert not runs.pid_alive(process.pid)
    assert runs.pid_alive(os.getpid())


def test_events_tolerate_a_torn_last_line(workspace):
    info = _make_run()
    runs.append_event(info.path, {"type": "epoch", "epoch": 1, "logs": {"loss": 1.0}})
    runs.append_event(info.path, {"type": "epoch", "epoch": 2, "logs": {"loss": 0.5}})
    with open(info.path / runs.EVENTS_FILE, "a") as handle:
        handle.write('{"type": "batch", "epo')  # a write cut short by a kill
    events = runs.read_events(info.run_id)
    assert [e["epoch"] for e in events] == [1, 2]
    assert all("time" in e for e in events)
    assert runs.read_events(info.run_id, since=1)[0]["epoch"] == 2

    reader = runs.EventReader(info.run_id)
    assert len(reader.read()) == 2
    assert reader.read() == []
    with open(info.path / runs.EVENTS_FILE, "a") as handle:
        handle.write('ch": 3}\n')  # the torn line completed
    assert reader.read() == [{"type": "batch", "epoch": 3}]


def test_predictions_round_trip(workspace):
    info = _make_run()
    runs.write_predictions(info.path, [("/a/x.png", "cat", "dog", 0.75)])
    text = (info.path / runs.PREDICTIONS_FILE).read_text()
    assert text.splitlines()[0] == "file,true,pred,confidence"
    rows = runs.read_predictions(info.run_id)
    assert rows == [{"file": "/a/x.png", "true": "cat", "pred": "dog", "confidence": 0.75}]


def test_checkpoint_lookup(workspace):
    info = _make_run()
    with pytest.raises(CnnlabError, match="has no best checkpoint yet"):
        info.checkpoint("best")
    with pytest.raises(CnnlabError, match=r"`checkpoint` must be one of 'best', 'last'"):
        info.checkpoint("first")
    (info.path / "last.keras").write_bytes(b"x")
    assert info.checkpoint("last") == info.path / "last.keras"


def test_delete_refuses_an_active_run(workspace):
    import socket

    active = _make_run(
        "20260101-000000-tiny-simple-1111",
        status="running",
        worker={"pid": os.getpid(), "host": socket.gethostname()},
    )
    with pytest.raises(CnnlabError, match="is running; cancel it first"):
        runs.delete_run(active.run_id)
    done = _make_run("20260101-000000-tiny-simple-2222")
    runs.delete_run(done.run_id)
    assert not done.path.exists()
    assert [r.run_id for r in runs.list_runs()] == [active.run_id]


def test_history_and_metrics_default_to_empty(workspace):
    info = _make_run()
    assert runs.read_history(info.run_id) == {}
    assert runs.read_metrics(info.run_id) == {}
    history_file = info.path / runs.HISTORY_FILE
    cnnlab_workspace.atomic_write_json(history_file, {"loss": [1.0, 0.5]})
    assert runs.read_history(info.run_id) == {"loss": [1.0, 0.5]}
    assert json.loads(history_file.read_text()) == {"loss": [1.0, 0.5]}
