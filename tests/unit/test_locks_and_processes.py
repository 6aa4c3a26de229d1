"""File locks (run.json, training slots, datasets) and process liveness, across processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

from cnnlab import runs
from cnnlab.data.store import dataset_lock
from cnnlab.train import jobs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code: str, **popen) -> subprocess.Popen:
    """Start ``python -c code`` in this test's workspace, with cnnlab importable."""
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, text=True, **popen
    )


def _make_run(run_id="20260101-000000-tiny-simple-abcd", **meta) -> runs.RunInfo:
    return runs.create_run({"run_id": run_id, "dataset": "tiny", "status": "running", **meta})


def _wait_for_line(process: subprocess.Popen, expected: str) -> None:
    line = process.stdout.readline().strip()
    assert line == expected, f"child said {line!r}; stderr: {process.stderr.read()}"


# --- the run.json lock ----------------------------------------------------------------


def test_concurrent_run_updates_lose_nothing(workspace):
    info = _make_run()
    code = """
        import sys
        from cnnlab import runs
        writer = sys.argv[1]
        for i in range(40):
            runs.update_run("20260101-000000-tiny-simple-abcd", **{f"{writer}_{i}": i})
    """
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), name],
            env={**os.environ, "PYTHONPATH": REPO},
        )
        for name in ("a", "b")
    ]
    threads = [
        threading.Thread(
            target=lambda name=name: [
                runs.update_run(info.run_id, **{f"{name}_{i}": i}) for i in range(40)
            ]
        )
        for name in ("c", "d")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    meta = runs.load_run(info.run_id).meta
    for name in ("a", "b", "c", "d"):
        assert [meta.get(f"{name}_{i}") for i in range(40)] == list(range(40)), name
    assert meta["dataset"] == "tiny"  # the fields written at creation survived too


def test_a_run_update_waits_for_the_lock_holder(workspace):
    info = _make_run()
    holder = _python(
        """
        import sys
        from cnnlab import run, runs
        with run.locked(runs.run_path("20260101-000000-tiny-simple-abcd")):
            print("held", flush=True)
            sys.stdin.read()
        """,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_line(holder, "held")
        writer = threading.Thread(target=runs.update_run, args=(info.run_id,), kwargs={"x": 1})
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive()  # blocked behind the other process
        assert "x" not in runs.load_run(info.run_id).meta
        holder.stdin.close()
        writer.join(timeout=30)
        assert not writer.is_alive()
        assert runs.load_run(info.run_id).meta["x"] == 1
    finally:
        holder.kill()
        holder.wait()


# --- training slots -------------------------------------------------------------------


def test_a_slot_held_by_a_killed_process_is_free_again(workspace, monkeypatch):
    monkeypatch.setenv(jobs.MAX_CONCURRENT_ENV, "1")
    child = _python(
        """
        import time
        from cnnlab.train.jobs import QueueSlot
        assert QueueSlot("run-a").acquire(lambda: True)
        print("held", flush=True)
        time.sleep(120)
        """,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_line(child, "held")
        # The slot file says who holds it.
        holder = (jobs.queue_dir() / "slot-0.lock").read_text().split()
        assert holder == ["run-a", str(child.pid)]
        assert not jobs.QueueSlot("run-b").acquire(lambda: True)  # one try, then give up
    finally:
        child.kill()  # SIGKILL: no cleanup code runs in the child
        child.wait()
    mine = jobs.QueueSlot("run-b")
    assert mine.acquire(lambda: True)
    assert mine.index == 0
    assert not jobs.QueueSlot("run-c").acquire(lambda: True)  # held by this process now
    mine.release()
    other = jobs.QueueSlot("run-c")
    assert other.acquire(lambda: True)
    other.release()


def test_slots_are_shared_up_to_the_limit(workspace, monkeypatch):
    monkeypatch.setenv(jobs.MAX_CONCURRENT_ENV, "2")
    first, second, third = (jobs.QueueSlot(f"run-{i}") for i in range(3))
    assert first.acquire(lambda: True) and second.acquire(lambda: True)
    assert {first.index, second.index} == {0, 1}
    assert not third.acquire(lambda: True)
    first.release()
    assert third.acquire(lambda: True) and third.index == first.index
    second.release()
    third.release()


# --- process liveness -----------------------------------------------------------------


def test_pid_alive_for_this_process_and_not_for_a_dead_one():
    assert runs.pid_alive(os.getpid())
    assert runs.pid_alive(os.getpid(), runs.process_started())
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = runs.process_started(process.pid)
    process.wait()
    assert not runs.pid_alive(process.pid)
    assert not runs.pid_alive(process.pid, started)
    assert runs.process_started(process.pid) is None
    assert not runs.pid_alive(0) and not runs.pid_alive(-1)


def test_a_reused_pid_is_not_the_recorded_process():
    # A process now holding the recorded pid but started at another time is not the
    # recorded one: this process stands in for it, with a start time an hour off.
    started = runs.process_started()
    assert started is not None and abs(started - time.time()) < 24 * 3600
    assert not runs.pid_alive(os.getpid(), started - 3600)
    assert not runs.pid_alive(os.getpid(), started + 3600)
    assert runs.pid_alive(os.getpid(), started + runs.PROCESS_START_TOLERANCE_S / 2)


def test_a_run_whose_worker_pid_was_reused_reads_interrupted(workspace):
    worker = jobs.worker_info()
    assert worker["pid"] == os.getpid() and worker["host"] == socket.gethostname()
    assert worker["process_started"] == runs.process_started()
    info = _make_run(worker=worker)
    assert runs.load_run(info.run_id).status == "running"
    runs.update_run(
        info.run_id, worker={**worker, "process_started": worker["process_started"] - 60}
    )
    assert runs.load_run(info.run_id).status == "interrupted"
    # Runs recorded before start times were kept are judged by the pid alone.
    runs.update_run(info.run_id, worker={"pid": os.getpid(), "host": socket.gethostname()})
    assert runs.load_run(info.run_id).status == "running"


# --- the dataset lock -------------------------------------------------------------------


def test_the_dataset_lock_blocks_a_second_holder(workspace):
    holder = _python(
        """
        import sys
        from cnnlab.data.store import dataset_lock
        with dataset_lock("pets"):
            print("held", flush=True)
            sys.stdin.read()
        """,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    entered = threading.Event()

    def second_holder() -> None:
        with dataset_lock("pets"):
            entered.set()

    try:
        _wait_for_line(holder, "held")
        thread = threading.Thread(target=second_holder)
        thread.start()
        assert not entered.wait(0.5)  # blocked behind the other process
        with dataset_lock("other"):  # another dataset's lock is independent
            pass
        holder.stdin.close()
        assert entered.wait(30)
        thread.join(timeout=30)
    finally:
        holder.kill()
        holder.wait()


def test_the_dataset_lock_blocks_another_thread(workspace):
    entered = threading.Event()

    def second_holder() -> None:
        with dataset_lock("pets"):
            entered.set()

    with dataset_lock("pets"):
        thread = threading.Thread(target=second_holder)
        thread.start()
        assert not entered.wait(0.3)
    assert entered.wait(30)
    thread.join(timeout=30)
