"""Keras callbacks of a run: progress events, checkpoints and history, the schedule,
TensorBoard logs.

Progress goes through a plain callable taking one small event dict (the worker appends
it to ``events.jsonl``; tests collect it in a list), so nothing here knows about pages.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from cnnlab import runs, workspace
from cnnlab.run import Run, checkpoint_file
from cnnlab.runs import best_in_history, monitor_improved
from cnnlab.tensorboard import write_trial_hparams

Event = dict[str, Any]

# Batch events are throttled: a page polls about once a second.
BATCH_EVENT_INTERVAL_S = 0.5
# The cancel flag is a file; look at it at most this often.
CANCEL_CHECK_INTERVAL_S = 0.2
# Checkpoints are written at most this often (and always when training ends).
CHECKPOINT_INTERVAL_S = 10.0
# Fine-tuning a pretrained backbone uses a tenth of the classifier's learning rate.
FINE_TUNE_LR_FACTOR = 0.1


def _plain_logs(logs: dict | None) -> dict[str, float]:
    plain = {}
    for key, value in (logs or {}).items():
        try:
            plain[key] = float(value)
        except (TypeError, ValueError):
            continue
    return plain


class ProgressCallback(keras.callbacks.Callback):
    """Forwards epoch and (throttled) batch progress to ``on_event``; stops the run
    when the cancel flag appears or the loss becomes NaN.

    Attributes:
        cancelled: a cancel was requested and training stopped.
        nan_at: ``(epoch, batch)`` where the loss became NaN, else None.
        images_per_s: training images per second of each finished epoch.
    """

    def __init__(
        self,
        on_event: Callable[[Event], None],
        *,
        epochs: int,
        batches: int,
        images: int,
        cancel_check: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
    ):
        super().__init__()
        self.on_event = on_event
        self.deadline = deadline  # time.monotonic() when the time budget stops training
        self.epochs = epochs
        self.batches = batches
        self.images = images
        self.cancel_check = cancel_check
        self.cancelled = False
        # Cancelled between batches: Keras still ends the epoch (and validates), but the
        # epoch is not complete and must not be recorded or checkpointed as done.
        self.stopped_mid_epoch = False
        self.nan_at: tuple[int, int] | None = None
        self.images_per_s: list[float] = []
        self.epoch_seconds: list[float] = []
        self._epoch = 0
        self._epoch_start = 0.0
        self._train_end = 0.0
        self._last_event = 0.0
        self._last_cancel_check = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self._train_end = time.perf_counter()
        self._last_event = 0.0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self._train_end = now
        logs = _plain_logs(logs)
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.nan_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True
            return
        if now - self._last_cancel_check >= CANCEL_CHECK_INTERVAL_S:
            self._last_cancel_check = now
            if self.cancel_check():
                self.cancelled = True
                self.stopped_mid_epoch = batch + 1 < self.batches
                self.model.stop_training = True
                return
        done = batch + 1
        if done >= self.batches or now - self._last_event >= BATCH_EVENT_INTERVAL_S:
            self._last_event = now
            elapsed = now - self._epoch_start
            per_batch = elapsed / done
            # The epoch's validation pass is folded into later epochs' average length.
            later_epochs = self.epochs - self._epoch - 1
            epoch_length = (
                sum(self.epoch_seconds) / len(self.epoch_seconds)
                if self.epoch_seconds
                else per_batch * self.batches
            )
            eta = max(0, self.batches - done) * per_batch + later_epochs * epoch_length
            self.on_event(
                {
                    "type": "batch",
                    "epoch": self._epoch + 1,
                    "epochs": self.epochs,
                    "batch": min(done, self.batches),
                    "batches": self.batches,
                    "logs": logs,
                    "images_per_s": done * self.images / self.batches / max(elapsed, 1e-9),
                    "eta_s": self._within_budget(eta),
                }
            )

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_seconds = max(self._train_end - self._epoch_start, 1e-9)
        self.epoch_seconds.append(now - self._epoch_start)
        self.images_per_s.append(self.images / train_seconds)
        logs = _plain_logs(logs)
        if self.nan_at is None and not all(math.isfinite(v) for v in logs.values()):
            self.nan_at = (epoch + 1, self.batches)
            self.model.stop_training = True
        later_epochs = self.epochs - epoch - 1
        self.on_event(
            {
                "type": "epoch",
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "batches": self.batches,
                "logs": logs,
                "images_per_s": self.images_per_s[-1],
                "train_s": train_seconds,
                "epoch_s": self.epoch_seconds[-1],
                "eta_s": self._within_budget(
                    later_epochs * sum(self.epoch_seconds) / len(self.epoch_seconds)
                ),
            }
        )
        # An epoch end is the natural place to stop: its checkpoint was just saved.
        if not self.cancelled and self.cancel_check():
            self.cancelled = True
            self.model.stop_training = True

    def _within_budget(self, eta: float) -> float:
        if self.deadline is None:
            return eta
        return max(0.0, min(eta, self.deadline - time.monotonic()))


def learning_rate_schedule(spec, time_used: Callable[[], float] = lambda: 0.0):
    """Keras's LearningRateScheduler over :func:`learning_rate_at`: warm-up, then
    cosine or steps, set at the start of each epoch (and logged as ``learning_rate``).

    Keyed on the epoch number, so a resumed run picks the schedule up where it was.
    The plateau schedule is Keras' ReduceLROnPlateau after the warm-up. With a time
    budget, ``time_used()`` (the share of the training time used) lets the cosine reach
    its floor when the time runs out, even if fewer epochs than planned fit.
    """

    def schedule(epoch: int, current: float) -> float:
        value = learning_rate_at(spec, epoch, time_used())
        return current if value is None else float(value)

    return keras.callbacks.LearningRateScheduler(schedule)


def learning_rate_at(spec, epoch: int, time_used: float = 0.0) -> float | None:
    """The scheduled learning rate of ``epoch`` (0-based); None = leave it (plateau).

    ``time_used`` (0-1) is the share of a time budget already spent; the cosine follows
    whichever of epochs and time is further along.
    """
    peak, floor = spec.learning_rate, spec.min_learning_rate
    warmup = spec.warmup_epochs
    if spec.fine_tune_at and epoch >= spec.fine_tune_at:
        peak, floor = peak * FINE_TUNE_LR_FACTOR, floor * FINE_TUNE_LR_FACTOR
    if epoch < warmup:
        return peak * (epoch + 1) / (warmup + 1)
    after = epoch - warmup
    if spec.schedule == "constant":
        return peak
    if spec.schedule == "cosine":
        span = max(1, spec.epochs - warmup)
        done = min(1.0, max(after / span, time_used))
        return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * done))
    if spec.schedule == "step":
        return max(floor, peak * spec.lr_factor ** (after // spec.step_epochs))
    # plateau: set the peak once when the warm-up ends, then ReduceLROnPlateau decides.
    return peak if epoch == warmup else None


class TimeBudget(keras.callbacks.Callback):
    """Stops training when the next epoch would not end before ``deadline``.

    At each epoch end it predicts the next epoch's length from the ones so far (the
    first, which traces the model, is left out once there are others); a single epoch
    longer than the whole budget is cut between batches at the deadline (like a cancel,
    that epoch is not recorded, so the best checkpoint stays a whole epoch).

    Attributes:
        stopped: training was stopped by the budget.
        stopped_mid_epoch: the epoch that ended last was cut short.
    """

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.deadline = deadline
        self.clock = clock
        self.stopped = False
        self.stopped_mid_epoch = False
        self._epoch_start = 0.0
        self._epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        if not self.stopped and self.clock() >= self.deadline:
            self.stopped = self.stopped_mid_epoch = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self._epoch_seconds.append(now - self._epoch_start)
        if self.stopped:
            return
        recent = self._epoch_seconds[1:] or self._epoch_seconds
        if now + sum(recent) / len(recent) > self.deadline:
            self.stopped = True
            self.model.stop_training = True


class CheckpointCallback(keras.callbacks.Callback):
    """Keeps ``history.json`` (every epoch), ``last.keras`` and ``best.keras`` (the best
    monitored epoch) and records both in ``checkpoints.json``.

    Checkpoints are written after the first epoch, then at most every ``interval``
    seconds, and always when training ends (finished, stopped early or cancelled): a
    save costs about as much as a small model's epoch, and a killed run loses at most
    ``interval`` seconds. A NaN epoch is never saved. Each save goes to a temporary file
    renamed into place, so a kill during a save leaves the previous checkpoint intact.
    """

    def __init__(
        self,
        folder: Path,
        monitor: str,
        history: dict[str, list[float]],
        interval: float = CHECKPOINT_INTERVAL_S,
        incomplete: Callable[[], bool] = lambda: False,
        start: int = 0,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.incomplete = incomplete  # true when the epoch ending now was cut short
        self.monitor = monitor
        self.interval = interval
        self.start = start  # from this epoch index on, only later epochs can be best
        self.history = {key: list(values) for key, values in history.items()}
        best = best_in_history(self.history, monitor, start)
        self.best_epoch = best[0] if best else None
        self.best = best[1] if best else None
        self._saved_at = -math.inf
        self._unsaved_last: int | None = None
        self._unsaved_best: tuple[int, float] | None = None
        self._best_weights = None

    def _save(self, checkpoint: str) -> None:
        temporary = self.folder / f".{checkpoint}.partial.keras"
        self.model.save(temporary)
        os.replace(temporary, self.folder / checkpoint_file(checkpoint))

    def on_epoch_end(self, epoch, logs=None):
        if self.incomplete():
            return  # resume redoes this epoch from the last checkpoint
        logs = _plain_logs(logs)
        for key, value in logs.items():
            series = self.history.setdefault(key, [])
            # A metric that appears late (e.g. learning_rate) is padded to line up.
            series.extend([None] * (epoch - len(series)))
            series.append(value)
        workspace.atomic_write_json(self.folder / runs.HISTORY_FILE, self.history)
        if not math.isfinite(logs.get("loss", 0.0)):
            self._unsaved_last = None  # never keep a NaN model as "last"
            return
        value = logs.get(self.monitor)
        if epoch == self.start:
            self.best = None  # the epochs before the start no longer compete
        if value is not None and monitor_improved(self.monitor, value, self.best):
            self.best, self.best_epoch = value, epoch
            self._unsaved_best = (epoch, value)
            self._best_weights = self.model.get_weights()
        self._unsaved_last = epoch
        if time.monotonic() - self._saved_at >= self.interval:
            self.flush()

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self) -> None:
        """Write the checkpoints not yet on disk."""
        if self._unsaved_last is None and self._unsaved_best is None:
            return
        checkpoints = self._read()
        saved_last = None
        if self._unsaved_last is not None:
            self._save("last")
            saved_last, self._unsaved_last = self._unsaved_last, None
            checkpoints["last"] = {"epoch": saved_last + 1}
        if self._unsaved_best is not None:
            epoch, value = self._unsaved_best
            if epoch == saved_last:
                temporary = self.folder / ".best.partial.keras"
                shutil.copyfile(self.folder / checkpoint_file("last"), temporary)
                os.replace(temporary, self.folder / checkpoint_file("best"))
            else:
                current = self.model.get_weights()
                self.model.set_weights(self._best_weights)
                self._save("best")
                self.model.set_weights(current)
            checkpoints["best"] = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
            self._unsaved_best, self._best_weights = None, None
        workspace.atomic_write_json(self.folder / runs.CHECKPOINTS_FILE, checkpoints)
        self._saved_at = time.monotonic()

    def _read(self) -> dict[str, Any]:
        return workspace.read_json(self.folder / runs.CHECKPOINTS_FILE, default={}) or {}


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, on a resumed run, remembers the best value and the epochs
    waited so far instead of starting from scratch."""

    def __init__(self, *args, initial_best: float | None = None, initial_wait: int = 0, **kw):
        super().__init__(*args, **kw)
        self.initial_best = initial_best
        self.initial_wait = initial_wait

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.initial_best is not None:
            self.best = self.initial_best
            self.wait = self.initial_wait


class RunTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback for a run: epoch scalars (the learning rate included)
    and the model graph, no histograms; a tuning trial's hparams at the start.

    A resumed run appends new event files to the same folder, its epochs numbered on.
    Like the checkpoints, an epoch cut short (cancel, time budget) is not logged: resume
    redoes it.
    """

    def __init__(
        self,
        log_dir: Path,
        tune: dict[str, Any] | None = None,
        incomplete: Callable[[], bool] = lambda: False,
    ):
        super().__init__(log_dir=str(log_dir), histogram_freq=0, write_graph=True)
        self.tune = tune  # the run's ``tune`` record, for a tuning trial
        self.incomplete = incomplete  # true when the epoch ending now was cut short
        self._hparams_written = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.tune and not self._hparams_written:  # once, not again per fit phase
            write_trial_hparams(self.log_dir, self.tune)
            self._hparams_written = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.incomplete():
            super().on_epoch_end(epoch, logs)


def tensorboard_callback(run: Run, incomplete: Callable[[], bool] = lambda: False):
    """The callback that writes ``run``'s TensorBoard logs into ``<run>/tensorboard/``."""
    return RunTensorBoard(run.tensorboard_path, run.tune or None, incomplete)
