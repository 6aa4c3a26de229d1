"""Runs as jobs: start a detached worker process, queue, cancel, resume, continue, fork.

A page or the command line never trains in its own process: :func:`start_run`
writes the run folder and launches ``python -m cnnlab.train.worker RUN_ID`` in a new
session (closing a browser tab or the terminal does not stop it), and then only reads
the run folder. The worker waits for a slot in the machine's queue
(``CNNLAB_MAX_CONCURRENT_RUNS``, default 1) so two trainings never fight over one GPU.

Several sessions share one workspace: a run joins the queue under :func:`admitting`
(its dataset must still exist; ``max_active_runs`` and free disk are checked, see
:mod:`cnnlab.limits`), and resume, continue and cancel check a run's status under its
own lock (:func:`cnnlab.runs.controlling`), so a run never gets two workers.

Nothing here imports TensorFlow: starting and watching a run stays instant.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

import cnnlab
from cnnlab import limits, runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.run import RunRecord
from cnnlab.runs import worker_info  # noqa: F401 - where callers found it before
from cnnlab.train.spec import TrainSpec

MAX_CONCURRENT_ENV = "CNNLAB_MAX_CONCURRENT_RUNS"
QUEUE_POLL_S = 0.5
# Held while a run joins the queue, so two sessions cannot both take its last place.
ADMISSION_LOCK_FILE = "admission.lock"
RESUMABLE = ("interrupted", "cancelled", "failed")


# --- preparing a run -----------------------------------------------------------------


def versions() -> dict[str, str]:
    """Library versions saved with each run (read from metadata: no TF import)."""
    found = {"python": platform.python_version(), "cnnlab": cnnlab.__version__}
    for package in ("tensorflow", "keras", "numpy", "scikit-learn"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def resolve_train_spec(dataset, spec: TrainSpec | dict | None) -> TrainSpec:
    """A TrainSpec from a spec, a dict of fields (over the auto recipe) or None (auto)."""
    from cnnlab.train.recipe import auto_recipe

    if isinstance(spec, TrainSpec):
        return spec
    if spec is None:
        return auto_recipe(dataset)[1]
    if isinstance(spec, dict):
        return TrainSpec.from_dict(spec)
    raise CnnlabError(
        f"A training spec must be a TrainSpec or a dict of its fields. Received: {spec!r}"
    )


def resolve_run_arch(arch: Any, image_size: int):
    """An ArchSpec from a spec, dict, preset name, saved name or JSON file; "auto" or
    None picks the auto recipe's preset for ``image_size``."""
    from cnnlab.train.recipe import AUTO, auto_arch

    if arch is None or arch == AUTO:
        return auto_arch(image_size)
    from cnnlab.models import resolve_arch

    return resolve_arch(arch)


def prepare_run(dataset_name: Any, arch: Any = "auto", spec: Any = None, **extra: Any) -> dict:
    """The ``run.json`` contents of a new run: resolved specs, classes, versions.

    The dataset's saved augmentation is copied in (``augmentation="dataset"``), so the
    run folder alone says exactly how it was trained.

    Raises:
        CnnlabError: unknown dataset or architecture, an invalid spec, or an
            architecture that does not fit the image size.
    """
    from cnnlab.data.augment import load_augment
    from cnnlab.data.dataset import Dataset, load_dataset
    from cnnlab.models.analysis import check_blocks, check_input

    dataset = dataset_name if isinstance(dataset_name, Dataset) else load_dataset(dataset_name)
    train_spec = resolve_train_spec(dataset, spec)
    arch_spec = resolve_run_arch(arch, train_spec.image_size)
    class_names = dataset.class_names
    if len(class_names) < 2:
        raise CnnlabError(
            f"Dataset {dataset.name!r} has {len(class_names)} class(es); training needs at "
            "least 2. Add images of another class on the Data page."
        )
    for split in ("train", "val"):
        if not dataset.split(split):
            raise CnnlabError(
                f"The {split} split of dataset {dataset.name!r} is empty; training needs "
                "train and val images. Re-split the dataset on the Data page."
            )
    check_input(train_spec.image_size, dataset.channels, len(class_names), train_spec.batch_size)
    check_blocks(
        arch_spec.resolved_blocks(), train_spec.image_size, dataset.channels, len(class_names)
    )
    if train_spec.augmentation == "dataset":
        saved = load_augment(dataset.name).for_orientation(dataset.orientation_matters)
        train_spec = train_spec.with_changes(augmentation=saved.to_dict())
    elif isinstance(train_spec.augmentation, dict):
        from cnnlab.data.augment import AugmentSpec

        AugmentSpec.from_dict(train_spec.augmentation)  # validates
    record = RunRecord(
        run_id=runs.new_run_id(dataset.name, arch_spec.label.split(" ")[0]),
        dataset=dataset.name,
        dataset_version=dataset.version,
        arch=arch_spec,
        arch_label=arch_spec.label,
        train=train_spec,
        class_names=tuple(class_names),
        channels=dataset.channels,
        image_size=train_spec.image_size,
        name=extra.pop("name", None),
        tags=tuple(extra.pop("tags", []) or []),
        **{
            key: extra.pop(key)
            for key in ("study", "study_variant", "study_source", "tune")
            if key in extra
        },
    )
    return {**new_run_meta(record), **extra}


def new_run_meta(record: RunRecord) -> dict[str, Any]:
    """The ``run.json`` of a new, queued run: the record and a fresh state."""
    return {
        **record.to_dict(),
        "status": "queued",
        "created": runs.now_iso(),
        "queued_at": time.time(),
        "started": None,
        "finished": None,
        "error": None,
        "device": None,
        "versions": versions(),
        "worker": None,
    }


# --- the worker process ----------------------------------------------------------------


def _launch_worker(run_id: str) -> int:
    """Start the detached worker for ``run_id``; returns its pid."""
    pid = runs.spawn_detached("cnnlab.train.worker", run_id, runs.run_path(run_id) / runs.LOG_FILE)
    runs.update_run(run_id, worker=runs.worker_info(pid))
    runs.touch_heartbeat(run_id)
    return pid


def start_run(dataset_name: Any, arch: Any = "auto", train_spec: Any = None, **extra: Any) -> str:
    """Create a run and start its worker; returns the run id at once.

    Args:
        dataset_name: the dataset to train on.
        arch: ArchSpec, dict, preset name, saved name, JSON file, or "auto".
        train_spec: TrainSpec, dict of fields, or None for the auto recipe.
        extra: more run.json fields (``name``, ``tags``).

    Raises:
        CnnlabError: what :func:`prepare_run` refuses, or what :func:`check_room`
            refuses (a full queue or disk), or the dataset was deleted meanwhile.
    """
    check_room()  # fail before the work of preparing; checked again when queuing
    meta = prepare_run(dataset_name, arch, train_spec, **extra)
    with admitting(meta["dataset"]):
        info = runs.create_run(meta)
        runs.append_event(info.path, {"type": "status", "status": "queued"})
    _launch_worker(info.run_id)
    return info.run_id


def check_room() -> None:
    """Refuse a new place in the queue when the workspace already has
    ``max_active_runs`` runs queued or running, or too little free disk.

    Raises:
        CnnlabError: saying how many runs there are, the limit and its variable, or
            how much disk is free, and what to do.
    """
    limit = limits.current().max_active_runs
    active = len(runs.active_runs())
    if active >= limit:
        raise CnnlabError(
            f"{active} {'run is' if active == 1 else 'runs are'} queued or running in this "
            f"workspace, and the limit is {limit} ({limits.env_name('max_active_runs')}). "
            "Wait for one to finish, or cancel one (`python -m cnnlab cancel RUN_ID`), "
            "then try again."
        )
    limits.check_free_disk(workspace.runs_root(), "start a training run")


@contextlib.contextmanager
def admitting(dataset: str) -> Iterator[None]:
    """Hold the locks under which a run on ``dataset`` joins the queue, once it may.

    The dataset's lock comes first: :func:`cnnlab.data.ingest.delete_dataset` looks for
    runs using the dataset under it, so either it sees the new run and refuses, or the
    run sees the dataset gone. The queue's lock comes next, so two sessions cannot both
    take the last place of ``max_active_runs``. (A run's own lock, when held, is taken
    before both: :func:`cnnlab.runs.controlling`.)

    Raises:
        CnnlabError: the dataset no longer exists, or :func:`check_room` refuses.
    """
    from cnnlab.data.dataset import list_datasets
    from cnnlab.data.store import dataset_lock

    with dataset_lock(dataset), FileLock(queue_dir() / ADMISSION_LOCK_FILE):
        if dataset not in list_datasets():
            raise CnnlabError(
                f"Dataset {dataset!r} no longer exists (it was deleted), so no run can "
                "train on it. Pick another dataset, or ingest it again on the Data page."
            )
        check_room()
        yield


# --- the queue -----------------------------------------------------------------------------


def max_concurrent_runs() -> int:
    """Trainings allowed at once on this machine (``CNNLAB_MAX_CONCURRENT_RUNS``)."""
    text = os.environ.get(MAX_CONCURRENT_ENV, "1").strip() or "1"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CnnlabError(
            f"`{MAX_CONCURRENT_ENV}` must be a whole number of at least 1. "
            f"Received: {MAX_CONCURRENT_ENV}={text!r}"
        )
    return value


def queue_dir() -> Path:
    path = workspace.home() / "queue"
    path.mkdir(parents=True, exist_ok=True)
    return path


class QueueSlot:
    """One of the machine's training slots, held with an OS file lock on a slot file.

    Runs are served in the order they were queued (``queued_at`` in run.json), not in
    the order their worker processes happened to start: a worker takes a free slot
    only when fewer runs queued before it are waiting than there are free slots. A
    dead process's lock is released by the kernel, and a dead run reads
    ``interrupted``, so a crash never blocks the queue. (The lock is
    ``filelock.FileLock``, flock/LockFileEx underneath, never its soft fallback: a
    soft lock would outlive a killed worker.)
    """

    def __init__(self, run_id: str, queued_at: float | None = None):
        self.run_id = run_id
        self.queued_at = queued_at if queued_at is not None else time.time()
        self.index: int | None = None
        self._lock: FileLock | None = None

    def position(self) -> tuple[int, int]:
        """``(runs queued before this one, runs running)``, from the run store."""
        listed = runs.list_runs()
        own = next((info for info in listed if info.run_id == self.run_id), None)
        if own is None:  # not in the store: placed by the time it was queued
            own = runs.Run(runs.run_path(self.run_id), {"queued_at": self.queued_at})
        # The same key as the queue everyone sees: ties on queued_at are broken the
        # same way from both sides, so two runs never each wait for the other.
        mine = runs.queue_key(own)
        ahead = running = 0
        for info in listed:
            if info.run_id == self.run_id:
                continue
            if info.status == "running":
                running += 1
            elif info.status == "queued" and runs.queue_key(info) < mine:
                ahead += 1
        return ahead, running

    def acquire(
        self,
        should_stop: Callable[[], bool] = lambda: False,
        on_wait: Callable[[int], None] | None = None,
    ) -> bool:
        """Wait for a slot; False when ``should_stop()`` turned true while waiting."""
        limit = max_concurrent_runs()
        folder = queue_dir()
        last_position = None
        while True:
            ahead, running = self.position()
            if ahead < max(1, limit - running) and self._try_slots(folder, limit):
                return True
            if should_stop():
                return False
            if on_wait is not None and ahead != last_position:
                on_wait(ahead)
            last_position = ahead
            time.sleep(QUEUE_POLL_S)

    def _try_slots(self, folder: Path, limit: int) -> bool:
        for index in range(limit):
            lock = FileLock(
                folder / f"slot-{index}.lock",
                blocking=False,
                fallback_to_soft=False,
                preserve_lock_file=True,
                on_acquired=self._write_holder,
            )
            try:
                lock.acquire()
            except Timeout:
                continue
            self.index, self._lock = index, lock
            return True
        return False

    def _write_holder(self, descriptor: int) -> None:
        """Leave ``RUN_ID PID`` in the slot file, for whoever wonders who holds it."""
        os.ftruncate(descriptor, 0)
        os.lseek(descriptor, 0, os.SEEK_SET)
        os.write(descriptor, f"{self.run_id} {os.getpid()}\n".encode())

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.release()
            self._lock = None


def queue() -> list[dict[str, Any]]:
    """The runs queued or running, oldest first, with their place in the queue."""
    rows = []
    waiting = 0
    for info in runs.active_runs():
        row = info.summary()
        if info.status == "queued":
            row["position"] = waiting
            waiting += 1
        else:
            row["position"] = None
        rows.append(row)
    return rows


# --- controlling runs -----------------------------------------------------------------


def cancel_run(run_id: str) -> str:
    """Ask a queued or running run to stop; returns the status it will end in.

    The worker checks the request between batches, saves what it has and ends
    ``cancelled``. An interrupted run (its worker died) is marked cancelled at once.

    Raises:
        CnnlabError: when the run has already finished.
    """
    with runs.controlling(run_id) as info:  # not while a resume requeues it
        if info.status in runs.ACTIVE_STATUSES:
            (info.path / runs.CANCEL_FILE).touch()
            runs.append_event(info.path, {"type": "status", "status": "cancelling"})
            return "cancelled"
        if info.status == "interrupted":
            runs.update_run(run_id, status="cancelled", finished=runs.now_iso())
            runs.append_event(info.path, {"type": "status", "status": "cancelled"})
            return "cancelled"
    raise CnnlabError(f"Run {run_id} is already {info.status}; there is nothing to cancel.")


def _refuse_if_active(info: runs.Run) -> None:
    """A run has at most one worker: a queued or running one gets no second."""
    if info.is_active:
        raise CnnlabError(
            f"Run {info.run_id} is already {info.status}; a run has one worker at a time. "
            f"Wait for it to finish, or cancel it (`python -m cnnlab cancel {info.run_id}`) "
            "and try again once it has stopped."
        )


def _requeue(info: runs.Run, **fields: Any) -> None:
    """Queue a stopped run again; the caller holds its lock and :func:`admitting`."""
    (info.path / runs.CANCEL_FILE).unlink(missing_ok=True)
    runs.touch_heartbeat(info.path)
    runs.update_run(
        info.run_id,
        status="queued",
        queued_at=time.time(),
        finished=None,
        error=None,
        worker=None,  # the dead worker's pid must not make the new wait look interrupted
        **fields,
    )
    runs.append_event(info.path, {"type": "status", "status": "queued"})


def resume_run(run_id: str) -> str:
    """Restart an interrupted, cancelled or failed run from its last checkpoint
    (optimizer state included; epoch numbering continues). Returns the run id.

    Raises:
        CnnlabError: when the run is active or completed (use continue_run), its
            dataset is gone, or :func:`check_room` refuses.
    """
    with runs.controlling(run_id) as info:
        _refuse_if_active(info)
        if info.status not in RESUMABLE:
            raise CnnlabError(
                f"Run {run_id} is {info.status}; only an interrupted, cancelled or failed "
                f"run can be resumed (use `python -m cnnlab continue {run_id} --epochs N` "
                "to train it further)."
            )
        with admitting(info.dataset):
            _requeue(info, resumes=info.resumes + 1)
        _launch_worker(run_id)
    return run_id


def continue_run(run_id: str, epochs: int) -> str:
    """Train a completed run for ``epochs`` more epochs from its last checkpoint.

    Raises:
        CnnlabError: when the run has not completed, has no checkpoint, the new total
            is out of range, its dataset is gone, or :func:`check_room` refuses.
    """
    with runs.controlling(run_id) as info:
        _refuse_if_active(info)
        if info.status != "completed":
            raise CnnlabError(
                f"Run {run_id} is {info.status}; only a completed run can be continued "
                "(resume an interrupted or cancelled one with "
                f"`python -m cnnlab resume {run_id}`)."
            )
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise CnnlabError(
                f"`epochs` must be a whole number of at least 1. Received: {epochs!r}"
            )
        info.checkpoint("last")
        done = info.checkpoint_epoch("last") or 0
        spec = info.record.train.with_changes(epochs=done + epochs)
        with admitting(info.dataset):  # a refusal here leaves the results in place
            for name in (runs.METRICS_FILE, runs.PREDICTIONS_FILE, runs.PROBABILITIES_FILE):
                (info.path / name).unlink(missing_ok=True)
            _requeue(info, train=spec.to_dict(), continued_from_epoch=done)
        _launch_worker(run_id)
    return run_id


def fork_run(
    run_id: str, checkpoint: str = "best", *, tune: dict | None = None, **changes: Any
) -> str:
    """A new run starting from ``checkpoint`` (best or last) of ``run_id``, with
    ``changes`` to its TrainSpec (e.g. ``learning_rate=1e-4, epochs=5``) and a fresh
    optimizer. Returns the new run id. ``tune`` makes it a tuning study's trial (see
    :mod:`cnnlab.tune.study`: Hyperband trains a promising trial further this way).

    Raises:
        CnnlabError: a missing checkpoint, a change the saved model cannot take
            (image size, augmentation are part of the model), the dataset is gone, or
            :func:`check_room` refuses.
    """
    source = runs.load_run(run_id)
    checkpoint_path = source.checkpoint(checkpoint)
    from cnnlab.train.recipe import with_changes

    original = source.record.train
    # Fewer epochs bring the warm-up and early-stopping start along.
    spec = with_changes(original, source.dataset, **changes)
    for fixed in ("image_size", "augmentation"):
        if getattr(spec, fixed) != getattr(original, fixed):
            raise CnnlabError(
                f"A fork keeps the model, whose layers fix `{fixed}`; it cannot change "
                f"(received {fixed}={getattr(spec, fixed)!r}). Start a new run instead."
            )
    record = source.record.forked(
        run_id=runs.new_run_id(source.dataset, source.arch_label.split(" ")[0]),
        train=spec,
        parent={
            "run_id": run_id,
            "checkpoint": checkpoint,
            "epoch": source.checkpoint_epoch(checkpoint),
        },
    )
    if tune is not None:  # a tuning study's trial that goes on from an earlier one
        record = record.replace(
            tune=tune, tags=tuple(sorted({*record.tags, "tune"})),
            name=f"{tune['study']} trial {tune['trial']}",
        )  # fmt: skip
    with admitting(source.dataset):
        info = runs.create_run(new_run_meta(record))
        shutil.copyfile(checkpoint_path, info.init_model_path)
        runs.append_event(info.path, {"type": "status", "status": "queued"})
    _launch_worker(info.run_id)
    return info.run_id


def wait_for_run(
    run_id: str,
    timeout: float | None = None,
    on_event: Callable[[dict], None] | None = None,
    poll: float = 0.1,
) -> runs.Run:
    """Block until the run ends (completed, failed, cancelled or interrupted), passing
    each new event to ``on_event``; returns the final Run.

    Raises:
        CnnlabError: when ``timeout`` seconds pass first.
    """
    reader = runs.EventReader(run_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for event in reader.read():
            if on_event is not None:
                on_event(event)
        info = runs.load_run(run_id)
        if not info.is_active:
            for event in reader.read():
                if on_event is not None:
                    on_event(event)
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise CnnlabError(
                f"Run {run_id} is still {info.status} after {timeout:g} s; it goes on in "
                f"the background (`python -m cnnlab runs` shows it)."
            )
        time.sleep(poll)
