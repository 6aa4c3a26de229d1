"""The run store: one folder per training run, written atomically, read by every page.

Layout of ``$CNNLAB_HOME/runs/<run_id>/``::

    run.json          run_id, dataset, status, created/started/finished, error, arch, train,
                      class_names, channels, image_size, device, versions, worker, ...
    events.jsonl      progress events, one JSON object per line (epoch, batch, status)
    history.json      {metric: [value per epoch]}, as Keras' History
    checkpoints.json  {"last": {"epoch": n}, "best": {"epoch": n, "monitor": ..., "value": ...}}
    best.keras        the best epoch's model (optimizer state kept)
    last.keras        the last finished epoch's model (optimizer state kept)
    init.keras        a fork's starting weights
    metrics.json      final metrics from the evaluation on the test split
    predictions.csv   file,true,pred,confidence for every test image
    probabilities.npy the softmax rows of the test split, in predictions.csv's order
    heartbeat         touched every few seconds by the worker
    cancel            present when a cancel was requested
    worker.log        the worker's stdout and stderr
    tensorboard/      TensorBoard logs: train/ and validation/ scalars, the graph

:class:`cnnlab.run.Run` reads one folder (:class:`~cnnlab.run.RunRecord` is what
``run.json`` records); this module creates, lists, resolves and watches runs.

A run whose worker died (killed, crashed, machine restarted) is read as ``interrupted``:
its status says queued or running, but the worker's process is gone or its heartbeat is
older than :data:`HEARTBEAT_TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from cnnlab import workspace
from cnnlab.errors import CnnlabError
from cnnlab.run import (  # noqa: F401 - the run store's names, re-exported
    ACTIVE_STATUSES,
    CANCEL_FILE,
    CHECKPOINTS,
    CHECKPOINTS_FILE,
    EVENTS_FILE,
    HEARTBEAT_FILE,
    HISTORY_FILE,
    INIT_CHECKPOINT,
    LOG_FILE,
    METRICS_FILE,
    PREDICTION_FIELDS,
    PREDICTIONS_FILE,
    PROBABILITIES_FILE,
    RUN_FILE,
    Run,
    RunRecord,
    check_checkpoint,
    checkpoint_file,
)

STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
HEARTBEAT_TIMEOUT_S = 30.0
HEARTBEAT_INTERVAL_S = 2.0
# Held while a run's status is checked and its worker changed (see controlling).
CONTROL_LOCK_FILE = ".control.lock"
# A recorded process start time matches the live one within this many seconds: on Linux
# the start time is boot time (whole seconds) plus clock ticks, so it can round apart.
PROCESS_START_TOLERANCE_S = 2.0
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")

# The name older code uses for a Run.
RunInfo = Run


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def new_run_id(dataset: str, arch_name: str) -> str:
    """``20261123-174501-digits-simple-3f2a``: sortable, readable and unique."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    parts = [
        _ID_UNSAFE.sub("-", workspace.safe_name(text or "custom", what)).strip("-")[:limit]
        for text, what, limit in ((dataset, "dataset name", 24), (arch_name, "name", 20))
    ]
    return "-".join([stamp, *(part or "x" for part in parts), secrets.token_hex(2)])


def run_path(run_id: str) -> Path:
    return workspace.run_dir(run_id)


def create_run(meta: dict[str, Any]) -> Run:
    """Create the folder and ``run.json`` of a new run (``meta["run_id"]`` must be new)."""
    run_id = workspace.safe_name(meta["run_id"], "run id")
    path = run_path(run_id)
    path.mkdir(parents=True, exist_ok=False)
    meta = {"run_id": run_id, "status": "queued", "created": now_iso(), **meta}
    workspace.atomic_write_json(path / RUN_FILE, meta)
    touch_heartbeat(run_id)
    return Run(path, meta, meta["status"])


def update_run(run_id: str, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` atomically; returns the new contents."""
    return Run(_existing_path(run_id)).update(**fields).meta


def _existing_path(run_id: str) -> Path:
    path = run_path(run_id)
    if not (path / RUN_FILE).exists():
        recent = ", ".join(info.run_id for info in list_runs()[:5]) or "none yet"
        raise CnnlabError(
            f"There is no run {run_id!r} (recent runs: {recent}). "
            "List them with `python -m cnnlab runs`."
        )
    return path


def load_run(run_id: str) -> Run:
    """Read a run, resolving a dead worker's status to ``interrupted``.

    Raises:
        CnnlabError: when there is no such run (the message lists recent ones).
    """
    return _read(_existing_path(run_id))


def as_run(run: Run | str) -> Run:
    """``run`` itself when it is a :class:`Run`, else the run of that id (resolved)."""
    return run if isinstance(run, Run) else load_run(run)


def list_runs(dataset: str | None = None) -> list[Run]:
    """All runs, newest first; only those of ``dataset`` when given."""
    runs = []
    for path in workspace.runs_root().iterdir():
        if not (path / RUN_FILE).exists():
            continue
        try:
            info = _read(path)
        except CnnlabError:
            continue  # a damaged run.json hides one run, not the list
        if dataset is None or info.dataset == dataset:
            runs.append(info)
    runs.sort(key=lambda info: (info.created, info.run_id), reverse=True)
    return runs


def _read(path: Path) -> Run:
    info = Run(path)
    info.status = resolve_status(info)
    return info


def resolve_status(info: Run) -> str:
    """The stored status, or ``interrupted`` when an active run's worker is gone."""
    status = info.status
    if status not in ACTIVE_STATUSES:
        return status
    age = heartbeat_age(info.path)
    if age is None or age > HEARTBEAT_TIMEOUT_S:
        return "interrupted"
    worker = info.worker
    pid = worker.get("pid")
    if (
        pid
        and worker.get("host") == socket.gethostname()
        and not pid_alive(int(pid), worker.get("process_started"))
    ):
        return "interrupted"
    return status


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` runs on this machine; a zombie counts as dead.

    Args:
        pid: the process id.
        started: its start time as :func:`process_started` recorded it, if known. A
            process with this pid but another start time is a later one that reused
            the pid, and the recorded process is dead.
    """
    if pid < 1:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        if started is None:
            return True
        return abs(process.create_time() - float(started)) <= PROCESS_START_TOLERANCE_S
    except psutil.NoSuchProcess:  # ZombieProcess is one too (macOS)
        return False
    except psutil.AccessDenied:  # it exists; another user's process
        return True


def process_started(pid: int | None = None) -> float | None:
    """Start time of process ``pid`` (default: this one), seconds since the epoch;
    None when it is gone or cannot be read."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def touch_heartbeat(run_id_or_path: str | Path) -> None:
    path = Path(run_id_or_path) if isinstance(run_id_or_path, Path) else run_path(run_id_or_path)
    (path / HEARTBEAT_FILE).touch()


class Heartbeat:
    """Touches the run's heartbeat file every few seconds from a daemon thread."""

    def __init__(self, path: Path, interval: float = HEARTBEAT_INTERVAL_S):
        self.path = Path(path)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.is_set():
            touch_heartbeat(self.path)
            self._stop.wait(self.interval)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the worker last touched the heartbeat; None when there is none."""
    try:
        return max(0.0, time.time() - (Path(path) / HEARTBEAT_FILE).stat().st_mtime)
    except FileNotFoundError:
        return None


def append_event(run_id_or_path: str | Path, event: dict[str, Any]) -> None:
    """Append one event line (the worker's side); a crash can tear only the last line."""
    path = Path(run_id_or_path) if isinstance(run_id_or_path, Path) else run_path(run_id_or_path)
    event = {"time": time.time(), **event}
    line = json.dumps(event, default=_json_default) + "\n"
    with open(path / EVENTS_FILE, "a", encoding="utf-8", buffering=1) as handle:
        handle.write(line)
        handle.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def read_events(run_id: str, since: int = 0) -> list[dict[str, Any]]:
    """Events from the ``since``-th on (0 = all); a torn or damaged line is skipped.

    Pass ``since=len(events_read_so_far)`` to poll for new events only.
    """
    return Run(run_path(run_id)).events(since)


class EventReader:
    """Reads new events as they are appended, remembering where it stopped."""

    def __init__(self, run_id: str):
        self.path = run_path(run_id) / EVENTS_FILE
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].split(b"\n"):
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                    events.append(json.loads(line))
        return events


def read_history(run_id: str) -> dict[str, list[float]]:
    """``{metric: [value per epoch]}`` (empty before the first epoch ends)."""
    return Run(run_path(run_id)).history()


def read_checkpoints(run_id: str) -> dict[str, Any]:
    return Run(run_path(run_id)).checkpoints()


def read_metrics(run_id: str) -> dict[str, Any]:
    """Final metrics (test accuracy, loss, ...); empty until the run has completed."""
    return Run(run_path(run_id)).metrics()


def read_predictions(run_id: str) -> list[dict[str, Any]]:
    """Rows of ``predictions.csv``: file, true, pred, confidence (float)."""
    return Run(run_path(run_id)).predictions()


def write_predictions(path: Path, rows: list[tuple[str, str, str, float]]) -> None:
    """Write ``predictions.csv`` atomically from (file, true, pred, confidence) rows."""
    Run(path).write_predictions(rows)


def write_probabilities(path: Path, probabilities) -> None:
    """Write the test split's softmax rows (``predictions.csv`` order) atomically."""
    Run(path).write_probabilities(probabilities)


def cancel_requested(path: Path) -> bool:
    return (Path(path) / CANCEL_FILE).exists()


def monitor_improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best if monitor.endswith("loss") else value > best


def best_in_history(
    history: dict[str, list[float]], monitor: str, start: int = 0
) -> tuple[int, float] | None:
    """``(epoch index, value)`` of the best monitored value so far, or None.

    Only epochs from index ``start`` on compete once there are any (the run's
    ``early_stopping_start``: earlier epochs of a short run are too noisy to keep).
    """
    values = history.get(monitor) or []
    best = None
    first = start if len(values) > start else 0
    for index, value in enumerate(values[first:], first):
        if value is not None and monitor_improved(
            monitor, value, None if best is None else best[1]
        ):
            best = (index, value)
    return best


@contextlib.contextmanager
def controlling(run_id: str) -> Iterator[Run]:
    """Hold run ``run_id``'s control lock; yields the run as read under it.

    Whatever checks a run's status and then changes what runs it (resume, continue,
    cancel, delete) does both under this lock, so two sessions clicking at once cannot
    both pass the check: a run has at most one worker.

    Raises:
        CnnlabError: when there is no such run (or it was deleted while we waited).
    """
    lock = FileLock(_existing_path(run_id) / CONTROL_LOCK_FILE)
    try:
        lock.acquire()
    except FileNotFoundError:  # the folder was deleted while we waited
        _existing_path(run_id)  # raises the "no such run" message
        raise
    try:
        yield load_run(run_id)
    finally:
        lock.release()


def delete_run(run_id: str) -> None:
    """Delete a run's folder.

    Raises:
        CnnlabError: when the run is queued or running (cancel it first).
    """
    with controlling(run_id) as info:
        if info.is_active:
            raise CnnlabError(
                f"Run {run_id} is {info.status}; cancel it first "
                f"(`python -m cnnlab cancel {run_id}`), then delete it."
            )
        workspace.remove_tree(info.path)


def queue_key(info: Run) -> tuple[float, str, str]:
    """A run's place in the queue: first queued, first trained (creation time and run id
    break ties, so the order is total). The one key every queue order uses."""
    return (float(info.queued_at or 0.0), info.created, info.run_id)


def active_runs(dataset: str | None = None) -> list[Run]:
    """Queued and running runs (only those of ``dataset`` when given), oldest first:
    the queue as users see it."""
    return sorted((info for info in list_runs(dataset) if info.is_active), key=queue_key)


def check_dataset_unused(dataset: str, doing: str) -> None:
    """Refuse to ``doing`` (e.g. "delete") ``dataset`` while queued or running runs train
    on it. Call it under the dataset's lock, which runs join the queue under too.

    Raises:
        CnnlabError: naming the runs, and saying to cancel them or wait.
    """
    safe = workspace.safe_name(dataset, "dataset name")
    active = active_runs(safe)
    if active:
        listed = ", ".join(f"{info.run_id} ({info.status})" for info in active)
        raise CnnlabError(
            f"Cannot {doing} dataset {safe!r}: {len(active)} queued or running run(s) "
            f"train on it: {listed}. Cancel them (`python -m cnnlab cancel RUN_ID`) or "
            "wait for them to finish, then try again."
        )


def default_run(candidates: Iterable[Run] | None = None) -> Run | None:
    """The run to show when the user has not picked one: the newest live (queued or
    running) run, else the newest completed one, else the newest of any status.

    Args:
        candidates: the runs to choose from, newest first (default: all runs); a page
            passes those it can show (e.g. completed runs, runs with a model).
    """
    candidates = list_runs() if candidates is None else list(candidates)
    # sorted() is stable: within each group the newest stays first.
    ranked = sorted(candidates, key=lambda info: (not info.is_active, info.status != "completed"))
    return ranked[0] if ranked else None


def worker_info(pid: int | None = None) -> dict[str, Any]:
    """Who runs a run: pid, host, and the process's start time (so a reused pid is
    not taken for the worker, see :func:`pid_alive`)."""
    pid = pid or os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "process_started": process_started(pid)}


def spawn_detached(module: str, argument: str, log_path: Path) -> int:
    """Start ``python -m MODULE ARGUMENT`` in its own session (a closed tab or terminal
    does not stop it), output appended to ``log_path``; returns its pid."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, argument],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=package_root,
        )
    # Reap the child when it ends, so it never lingers as a zombie that looks alive.
    threading.Thread(target=process.wait, name=f"reap-{argument}", daemon=True).start()
    return process.pid
