"""One run: the record of what it is (``RunRecord``) and the folder it owns (``Run``).

``run.json`` holds the record (dataset, architecture, training spec, classes, parent,
study, name, tags) next to the run's state (status, times, error, device, worker).
:class:`RunRecord` is the frozen, typed view of the record; :class:`Run` is the only
reader of the folder: model paths, metrics, history, predictions, probabilities,
events, one summary row, and a version for page caches. Everything after training
(evaluate, predict, explain, export, report) takes a ``Run``.

Listing and status resolution (a dead worker reads ``interrupted``) live in
:mod:`cnnlab.runs`; nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from filelock import FileLock

from cnnlab import workspace
from cnnlab.errors import CnnlabError
from cnnlab.spec import Spec

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
HISTORY_FILE = "history.json"
CHECKPOINTS_FILE = "checkpoints.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
PREDICTION_FIELDS = ("file", "true", "pred", "confidence")
PROBABILITIES_FILE = "probabilities.npy"  # full softmax rows, predictions.csv's order
HEARTBEAT_FILE = "heartbeat"
CANCEL_FILE = "cancel"
LOG_FILE = "worker.log"
CHECKPOINTS = ("best", "last")
# A fork's starting weights (fresh optimizer); see cnnlab.train.trainer.
INIT_CHECKPOINT = "init.keras"
# TensorBoard's event files (scalars, graph, a tuning trial's hparams); see cnnlab.tensorboard.
TENSORBOARD_DIR = "tensorboard"
ACTIVE_STATUSES = ("queued", "running")
# Files whose change changes what a page shows of a run (see Run.version).
RESULT_FILES = (RUN_FILE, HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, PROBABILITIES_FILE)


def checkpoint_file(checkpoint: str) -> str:
    """The model file of a checkpoint: ``best`` -> ``best.keras``."""
    return f"{checkpoint}.keras"


def check_checkpoint(checkpoint: str) -> str:
    if checkpoint not in CHECKPOINTS:
        raise CnnlabError(
            f"`checkpoint` must be one of 'best', 'last'. Received: checkpoint={checkpoint!r}"
        )
    return checkpoint


@dataclass(frozen=True)
class RunRecord(Spec):
    """What a run is, as ``run.json`` records it (its state lives beside it).

    :meth:`from_dict` reads a whole ``run.json``: state fields and keys it does not know
    are left out, missing ones take their defaults, so old run folders still load.
    """

    kind = "run record"

    run_id: str = ""  # the folder name
    dataset: str = ""  # the dataset trained on
    dataset_version: int | None = None  # the dataset's version it trains on (None: older)
    arch: Any = None  # the ArchSpec
    arch_label: str | None = None  # a short description of the architecture
    train: Any = None  # the TrainSpec
    class_names: tuple = ()  # the model's outputs, in order
    channels: int | None = None  # 1 (grayscale) or 3 (colour)
    image_size: int | None = None  # the side images are resized to
    parent: Any = None  # {"run_id", "checkpoint", "epoch"} when forked from another run
    study: str | None = None  # the study that queued it, if any
    study_variant: str | None = None  # its variant in that study
    study_source: str | None = None  # the run the study started from
    # A tuning study's trial: {"study", "trial", "params", "objective"} (cnnlab.tune).
    tune: Any = None
    name: str | None = None  # the user's name for it
    tags: tuple = ()  # the user's tags
    versions: Any = None  # library versions it was trained with

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunRecord:
        """The record in a ``run.json`` dict.

        Raises:
            CnnlabError: when its ``arch`` or ``train`` is not a valid spec.
        """
        from cnnlab.models.spec import ArchSpec
        from cnnlab.train.spec import TrainSpec

        names = {field.name for field in dataclasses.fields(cls)}
        known = {key: value for key, value in (data or {}).items() if key in names}
        known = {key: value for key, value in known.items() if value is not None}
        if isinstance(known.get("arch"), dict):
            known["arch"] = ArchSpec.from_dict(known["arch"])
        if isinstance(known.get("train"), dict):
            known["train"] = TrainSpec.from_dict(known["train"])
        for name in ("class_names", "tags"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)

    def forked(self, run_id: str, train: Any, parent: dict[str, Any]) -> RunRecord:
        """The record of a new run that starts from this one's weights.

        It keeps what makes the model (dataset, architecture, classes, input) and the
        tags; a name, a study membership or anything added later is the source's own.
        """
        return RunRecord(
            run_id=run_id,
            dataset=self.dataset,
            dataset_version=self.dataset_version,
            arch=self.arch,
            arch_label=self.arch_label,
            train=train,
            class_names=self.class_names,
            channels=self.channels,
            image_size=self.image_size,
            parent=parent,
            tags=self.tags,
        )


class _Stored:
    """A ``run.json`` field as a read-only attribute of :class:`Run`.

    Args:
        empty: makes the value of a missing or null field (``str``, ``list``, ``dict``,
            ``int``), and converts a present one to that type; None leaves it as stored.
    """

    def __init__(self, empty: type | None = None):
        self.empty = empty

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, run: Run | None, owner: type | None = None) -> Any:
        if run is None:
            return self
        value = run.meta.get(self.key)
        if self.empty is None:
            return value
        return self.empty() if value is None else self.empty(value)


def locked(path: Path) -> FileLock:
    """Serialise read-modify-write of ``run.json`` between the worker and the UI/CLI."""
    return FileLock(Path(path) / ".run.lock")


class Run:
    """A run folder and what it holds.

    Args:
        path: the run folder (its name is the run id).
        meta: the parsed ``run.json`` (read from the folder when not given).
        status: the resolved status (see :func:`cnnlab.runs.resolve_status`); the
            stored one when not given.
    """

    def __init__(self, path: Path, meta: dict[str, Any] | None = None, status: str | None = None):
        self.path = Path(path)
        self.run_id = self.path.name
        if meta is not None:
            self.meta = meta
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, status={self.status!r})"

    # --- run.json ----------------------------------------------------------------------

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The parsed ``run.json``; read the typed :attr:`record` where it serves."""
        return workspace.read_json(self.path / RUN_FILE, default={}) or {}

    @cached_property
    def status(self) -> str:
        return self.meta.get("status", "queued")

    @cached_property
    def record(self) -> RunRecord:
        return RunRecord.from_dict(self.meta)

    # Fields of run.json, read tolerantly: missing or null gives the default (a fresh
    # copy for lists and dicts), so run folders of any age load.
    dataset = _Stored(str)  # the dataset trained on
    created = _Stored(str)  # ISO time the run was made
    started = _Stored()  # ISO time training (last) started, or None
    finished = _Stored()  # ISO time it ended, or None
    queued_at = _Stored()  # time.time() it joined the queue
    error = _Stored()  # why it failed, or None
    arch = _Stored(dict)  # the ArchSpec's dict (``record.arch`` is the spec)
    train = _Stored(dict)  # the TrainSpec's dict (``record.train`` is the spec)
    class_names = _Stored(list)  # the model's outputs, in order
    image_size = _Stored()  # the side images are resized to
    channels = _Stored()  # 1 or 3
    name = _Stored()  # the user's name for it, or None
    tags = _Stored(list)  # the user's tags
    study = _Stored()  # the study that queued it, or None
    study_variant = _Stored()  # its variant in that study
    study_source = _Stored()  # the run the study started from
    tune = _Stored(dict)  # {"study", "trial", "params", "objective"} of a tuning trial
    parent = _Stored()  # {"run_id", "checkpoint", "epoch"} of a fork's source
    worker = _Stored(dict)  # pid, host, process_started of its worker
    versions = _Stored(dict)  # library versions it was trained with
    class_weights = _Stored()  # class -> loss weight, when it weighted classes
    resumes = _Stored(int)  # times it was resumed
    continued_from_epoch = _Stored()  # the epoch a "continue" went on from

    @property
    def label(self) -> str:
        """The run's name when it has one, else its id."""
        return self.name or self.run_id

    @property
    def device(self) -> dict[str, Any]:
        """What trained it: ``device``, ``strategy``, ``replicas``, ... (empty before)."""
        device = self.meta.get("device") or {}
        return device if isinstance(device, dict) else {"device": str(device)}

    @property
    def device_name(self) -> str:
        return str(self.device.get("device") or self.device.get("strategy") or "")

    @property
    def arch_label(self) -> str:
        """How listings name the architecture (the one way)."""
        arch = self.arch
        return self.meta.get("arch_label") or arch.get("name") or arch.get("preset") or "custom"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def update(self, **fields: Any) -> Run:
        """Merge ``fields`` into ``run.json`` atomically (under the run's lock)."""
        with locked(self.path):
            meta = workspace.read_json(self.path / RUN_FILE, default={}) or {}
            meta.update(fields)
            workspace.atomic_write_json(self.path / RUN_FILE, meta)
        self.__dict__.update(meta=meta)
        self.__dict__.pop("record", None)
        if "status" in fields:
            self.status = fields["status"]
        return self

    # --- models --------------------------------------------------------------------------

    def checkpoint_path(self, checkpoint: str) -> Path:
        """Where the ``best`` or ``last`` model is (whether or not it exists yet)."""
        return self.path / checkpoint_file(check_checkpoint(checkpoint))

    @property
    def best_model_path(self) -> Path:
        return self.checkpoint_path("best")

    @property
    def last_model_path(self) -> Path:
        return self.checkpoint_path("last")

    @property
    def init_model_path(self) -> Path:
        return self.path / INIT_CHECKPOINT

    @property
    def tensorboard_path(self) -> Path:
        """The folder of the run's TensorBoard logs (``train/``, ``validation/``)."""
        return self.path / TENSORBOARD_DIR

    def saved_models(self) -> list[str]:
        """The checkpoints (``best``, ``last``) whose model file exists."""
        return [name for name in CHECKPOINTS if self.checkpoint_path(name).exists()]

    @property
    def has_model(self) -> bool:
        return bool(self.saved_models())

    def checkpoint(self, which: str = "best") -> Path:
        """Path of the ``best`` or ``last`` checkpoint.

        Raises:
            CnnlabError: for another name, or when the run has no such checkpoint yet.
        """
        path = self.checkpoint_path(which)
        if not path.exists():
            raise CnnlabError(
                f"Run {self.run_id} has no {which} checkpoint yet (status: {self.status}); "
                "it is written at the end of the first epoch."
            )
        return path

    def model_path(self, checkpoint: str = "best") -> Path:
        """The model file, or a message that says why there is none and what to do.

        Raises:
            CnnlabError: when the run has no model file for ``checkpoint``.
        """
        path = self.checkpoint_path(checkpoint)
        if path.exists():
            return path
        other = "last" if checkpoint == "best" else "best"
        if self.checkpoint_path(other).exists():
            hint = f"it has a {other} checkpoint: use checkpoint={other!r}."
        elif self.status in ("failed", "cancelled", "interrupted"):
            reason = f": {self.error}" if self.error else ""
            hint = (
                f"it {self.status} before saving one{reason}. Train it again or pick another run."
            )
        else:
            hint = (
                f"it is {self.status} and writes its first model at the end of the first "
                "epoch; wait for it or pick a completed run."
            )
        raise CnnlabError(f"Run {self.run_id} has no usable model ({path.name}): {hint}")

    def checkpoints(self) -> dict[str, Any]:
        """``{"last": {"epoch": n}, "best": {"epoch": n, "monitor": ..., "value": ...}}``."""
        return workspace.read_json(self.path / CHECKPOINTS_FILE, default={}) or {}

    def checkpoint_epoch(self, checkpoint: str) -> int | None:
        """The epoch (1-based) a checkpoint was saved at; None before it exists."""
        return (self.checkpoints().get(checkpoint) or {}).get("epoch")

    # --- results ---------------------------------------------------------------------

    def history(self) -> dict[str, list[float]]:
        """``{metric: [value per epoch]}`` (empty before the first epoch ends)."""
        return workspace.read_json(self.path / HISTORY_FILE, default={}) or {}

    def metrics(self) -> dict[str, Any]:
        """Final metrics (test accuracy, loss, ...); empty until the run has completed."""
        return workspace.read_json(self.path / METRICS_FILE, default={}) or {}

    @property
    def has_predictions(self) -> bool:
        return (self.path / PREDICTIONS_FILE).exists()

    def predictions(self) -> list[dict[str, Any]]:
        """Rows of ``predictions.csv``: file, true, pred, confidence (float)."""
        path = self.path / PREDICTIONS_FILE
        if not path.exists():
            raise CnnlabError(
                f"Run {self.run_id} has no predictions yet; they are written when the run "
                "completes."
            )
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row["confidence"] = float(row["confidence"])
        return rows

    def probabilities(self):
        """The stored softmax rows of the test split (``predictions.csv`` order), or None
        when they are missing or damaged (:func:`cnnlab.evaluate.run_probabilities`
        computes them then)."""
        import numpy as np

        try:
            return np.load(self.path / PROBABILITIES_FILE, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Events from the ``since``-th on (0 = all); a torn or damaged line is skipped."""
        try:
            text = (self.path / EVENTS_FILE).read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        events = []
        # Without a final newline the last line may still be being written: leave it.
        for line in text.split("\n")[:-1]:
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
        return events[since:]

    def version(self, checkpoint: str | None = None) -> tuple:
        """Changes whenever what a page shows of the run does: a cache key.

        With ``checkpoint``, only that model file counts (for a cached model).
        """
        if checkpoint is not None:
            return (_mtime(self.checkpoint_path(checkpoint)),)
        names = (*RESULT_FILES, *map(checkpoint_file, CHECKPOINTS))
        return (self.status, *(_mtime(self.path / name) for name in names))

    def summary(self) -> dict[str, Any]:
        """The one JSON-ready summary of a run (``runs --json``, the queue, the
        experiments table, ``train --json``)."""
        metrics = self.metrics()
        history = self.history()
        val_accuracy = [v for v in history.get("val_accuracy") or [] if v is not None]
        duration = metrics.get("duration_s")
        if duration is None:
            duration = seconds_between(self.started, self.finished)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "dataset": self.dataset,
            "arch": self.arch_label,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "epochs": self.train.get("epochs"),
            "epochs_run": metrics.get("epochs_run", len(history.get("loss", []))),
            "test_accuracy": metrics.get("test_accuracy", metrics.get("accuracy")),
            "error": self.error,
            "name": self.name,
            "tags": self.tags,
            # The imbalance or tuning study that queued it, and its trial in a tuning study.
            "study": self.study or self.tune.get("study"),
            "trial": self.tune.get("trial"),
            "device": self.device_name,
            "best_epoch": metrics.get("best_epoch"),
            "best_val_accuracy": max(val_accuracy) if val_accuracy else None,
            "val_accuracy": metrics.get("val_accuracy"),
            "test_loss": metrics.get("test_loss"),
            "train_images_per_s": metrics.get("train_images_per_s"),
            "stopped_on_time": metrics.get("stopped_on_time"),
            "budget_minutes": self.train.get("budget_minutes"),
            "duration_s": duration,
            "path": str(self.path),
        }

    # --- written by the worker ---------------------------------------------------------

    def write_predictions(self, rows: list[tuple[str, str, str, float]]) -> None:
        """Write ``predictions.csv`` atomically from (file, true, pred, confidence) rows."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(PREDICTION_FIELDS)
        for file, true, pred, confidence in rows:
            writer.writerow([file, true, pred, f"{confidence:.6f}"])
        workspace.atomic_write_text(self.path / PREDICTIONS_FILE, buffer.getvalue())

    def write_probabilities(self, probabilities) -> None:
        """Write the test split's softmax rows (``predictions.csv`` order) atomically."""
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(probabilities, dtype=np.float32), allow_pickle=False)
        workspace.atomic_write_bytes(self.path / PROBABILITIES_FILE, buffer.getvalue())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two ISO 8601 times; None when one is missing or unreadable."""
    if not start or not end:
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None
