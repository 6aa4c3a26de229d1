"""The Trainer: one run, in this process, from specs to a complete run folder.

scikit-learn style: the constructor stores its arguments, :meth:`Trainer.fit` does the
work and returns ``self``; what it learned ends in ``_`` (``model_``, ``history_``,
``metrics_``, ``class_weights_``, ``run_id_``). The worker process
(``python -m cnnlab.train.worker``) runs one Trainer per run; tests use it directly.

A run folder that already holds ``last.keras`` is resumed from it (optimizer state
included, epoch numbering continued); one that holds ``init.keras`` (a fork) starts
from those weights with a fresh optimizer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab import limits, runs, workspace
from cnnlab.devices import _tf
from cnnlab.errors import CnnlabError
from cnnlab.run import INIT_CHECKPOINT, Run  # noqa: F401 - INIT_CHECKPOINT: its old home
from cnnlab.train.spec import TrainSpec

# Fewer Python round-trips per step: run several steps per call, yet report progress
# about BATCH_EVENTS_PER_EPOCH times per epoch.
MAX_STEPS_PER_EXECUTION = 16
BATCH_EVENTS_PER_EPOCH = 4


class RunStopped(Exception):
    """Training stopped early for a reason that is not an error of the code."""


def class_weights_for(spec: TrainSpec, labels: np.ndarray, class_names: list[str]):
    """Per-class loss weights, as a dict class index -> weight, or None.

    ``balanced`` is scikit-learn's ``compute_class_weight("balanced")`` over the
    classes present in ``labels`` (absent classes weigh 1); ``custom`` takes
    ``spec.custom_class_weights`` by label (unnamed classes weigh 1).

    Raises:
        CnnlabError: when a custom weight names a class the dataset does not have.
    """
    if spec.class_weight == "none":
        return None
    weights = dict.fromkeys(range(len(class_names)), 1.0)
    if spec.class_weight == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(labels)
        values = compute_class_weight("balanced", classes=present, y=labels)
        weights.update({int(c): float(w) for c, w in zip(present, values, strict=True)})
        return weights
    unknown = sorted(set(spec.custom_weights) - set(class_names))
    if unknown:
        raise CnnlabError(
            f"`custom_class_weights` names class(es) {', '.join(map(repr, unknown))} that "
            f"the dataset does not have. Classes: {', '.join(class_names)}."
        )
    for label, weight in spec.custom_weights.items():
        weights[class_names.index(label)] = float(weight)
    return weights


def make_optimizer(spec: TrainSpec):
    import keras

    common = {"learning_rate": spec.learning_rate}
    if spec.weight_decay:
        common["weight_decay"] = spec.weight_decay
    if spec.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if spec.optimizer == "adamw":
        common.setdefault("weight_decay", 0.0)
        return keras.optimizers.AdamW(**common)
    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=spec.momentum, **common)
    return keras.optimizers.RMSprop(**common)


def make_loss(spec: TrainSpec):
    import keras

    if spec.label_smoothing:
        # Keras' sparse loss has no smoothing; labels are one-hot encoded in the pipeline.
        return keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def oom_message(spec: TrainSpec) -> str:
    smaller_batch = max(1, spec.batch_size // 2)
    smaller_size = max(16, spec.image_size * 3 // 4 // 8 * 8)
    return (
        f"The device ran out of memory with batch_size={spec.batch_size} and "
        f"image_size={spec.image_size}. Try a smaller batch size (e.g. {smaller_batch}) "
        f"or image size (e.g. {smaller_size}), or a smaller architecture."
    )


class Trainer:
    """Train ``arch`` on ``dataset`` with ``spec``, writing everything to a run folder.

    Args:
        dataset: a dataset name (or :class:`~cnnlab.data.dataset.Dataset`).
        arch: an ArchSpec, its dict, a preset name, an ArchSpec JSON file, or "auto".
        spec: a TrainSpec or its dict; None = the auto recipe.
        run_id: an existing run (made by :func:`cnnlab.train.jobs.start_run`) to
            execute; None creates a new run for this process.
        on_event: also receives every progress event (the run folder always does).
        cancel_check: returns True when the run should stop; default: the run's
            ``cancel`` file exists.
    """

    def __init__(
        self,
        dataset: Any,
        arch: Any = "auto",
        spec: TrainSpec | dict | None = None,
        *,
        run_id: str | None = None,
        on_event: Callable[[dict], None] | None = None,
        cancel_check: Callable[[], bool] | None = None,
    ):
        self.dataset = dataset
        self.arch = arch
        self.spec = spec
        self.run_id = run_id
        self.on_event = on_event
        self.cancel_check = cancel_check

    # --- public --------------------------------------------------------------------

    def fit(self) -> Trainer:
        """Train, then evaluate on the test split; the run ends completed, cancelled or
        failed (the error is recorded in ``run.json`` and raised again).

        Returns:
            self, with ``run_id_``, ``status_``, ``model_``, ``history_``,
            ``metrics_``, ``class_weights_``.
        """
        from cnnlab.train import jobs

        if self.run_id is None:
            meta = jobs.prepare_run(self.dataset, self.arch, self.spec)
            meta["worker"] = runs.worker_info()
            self.run_id = runs.create_run(meta).run_id
        self.run_id_ = self.run_id
        self.path_ = runs.run_path(self.run_id)
        self._run = Run(self.path_)  # the folder's files (run.json is read afresh)
        self._determinism_before = None
        with runs.Heartbeat(self.path_):
            try:
                self._fit()
            except BaseException as error:
                self._fail(error)
                raise
            finally:
                # In-process use (tests, notebooks) must not leave the switch on.
                if self._determinism_before is not None:
                    _op_determinism(self._determinism_before)
        return self

    # --- steps ---------------------------------------------------------------------

    def _emit(self, event: dict) -> None:
        runs.append_event(self.path_, event)
        if self.on_event is not None:
            self.on_event(event)

    def _set_status(self, status: str, **fields: Any) -> None:
        runs.update_run(self.run_id, status=status, **fields)
        event = {"type": "status", "status": status}
        if fields.get("error"):
            event["message"] = fields["error"]
        self._emit(event)

    def _fail(self, error: BaseException) -> None:
        if isinstance(error, KeyboardInterrupt):
            self.status_ = "cancelled"
            self._set_status("cancelled", finished=runs.now_iso(), error="Stopped by the user.")
            return
        message = _user_message(error, self._spec())
        self.status_ = "failed"
        self._set_status("failed", finished=runs.now_iso(), error=message)

    def _spec(self) -> TrainSpec:
        try:
            return TrainSpec.from_dict(runs.load_run(self.run_id).train)
        except CnnlabError:  # the message must still be written when run.json is bad
            return TrainSpec()

    def _fit(self) -> None:
        from cnnlab import devices
        from cnnlab.data.dataset import load_dataset

        info = runs.load_run(self.run_id)
        spec = TrainSpec.from_dict(info.train)
        # The version the run was queued on: a change made meanwhile is a newer version.
        dataset = load_dataset(info.dataset, info.record.dataset_version)
        class_names = info.class_names or dataset.class_names
        if dataset.class_names != class_names:
            raise CnnlabError(
                f"Dataset {dataset.name!r} now has classes {dataset.class_names}, but run "
                f"{self.run_id} was made with {class_names}; fork a new run instead."
            )
        started = time.time()
        # The budget counts from here (the worker's start), and keeps time for scoring
        # the test split and the final checkpoint.
        self._deadline = training_deadline(time.monotonic(), spec.budget_minutes)
        self._set_status(
            "running",
            started=info.started or runs.now_iso(),
            finished=None,
            error=None,
            worker={**info.worker, **runs.worker_info()},
        )
        import keras  # after "running": importing TensorFlow takes seconds

        devices.configure_from_env()
        keras.utils.set_random_seed(spec.seed)
        mixed = devices.use_mixed_precision(spec.mixed_precision)
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        device = devices.describe_devices()
        if not device["gpu_count"]:
            # Same seed + spec on the CPU must give the same numbers.
            self._determinism_before = _op_determinism(True)
        strategy = self._strategy = devices.choose_strategy()
        runs.update_run(
            self.run_id,
            device={
                **device,
                "strategy": devices.strategy_name(strategy),
                "replicas": strategy.num_replicas_in_sync,
                "mixed_precision": mixed,
            },
        )

        train_files, train_labels = dataset.files_and_labels(spec.train_on)
        labels = np.asarray(train_labels)
        self.class_weights_ = class_weights_for(spec, labels, class_names)
        runs.update_run(
            self.run_id,
            class_weights=(
                {class_names[i]: w for i, w in self.class_weights_.items()}
                if self.class_weights_
                else None
            ),
        )
        train_ds, val_ds, images, batches = self._datasets(dataset, spec, labels)

        history, initial_epoch = self._history_so_far()
        with strategy.scope():
            model, compiled = self._model(dataset, info, spec)
            if not compiled:
                _compile(model, spec, batches)
        self.model_ = model
        # Continuing a finished run asks for more epochs: early stopping waits afresh.
        fresh_wait = info.continued_from_epoch == initial_epoch
        callbacks, progress = self._callbacks(
            spec, history, initial_epoch, images, batches, fresh_wait
        )
        if initial_epoch < spec.epochs:
            self._emit(
                {
                    "type": "start",
                    "epoch": initial_epoch,
                    "epochs": spec.epochs,
                    "batches": batches,
                    "images": images,
                    "device": device["device"],
                }
            )
            for start, end in _phases(spec, initial_epoch):
                if (
                    start
                    and start == spec.fine_tune_at
                    and not self._start_fine_tuning(model, spec, batches)
                ):
                    end = spec.epochs  # no backbone to fine-tune: one plain phase
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=end,
                    initial_epoch=start,
                    class_weight=self.class_weights_,
                    callbacks=callbacks,
                    shuffle=False,  # the pipeline shuffles
                    verbose=0,
                )
                if model.stop_training or end == spec.epochs:
                    break
        self.history_ = self._run.history()
        if progress.nan_at is not None:
            epoch, batch = progress.nan_at
            raise CnnlabError(
                f"The loss became NaN at epoch {epoch}, batch {batch}, so training stopped. "
                f"Lower the learning rate (now {spec.learning_rate:g}), or check the images."
            )
        if progress.cancelled:
            self.status_ = "cancelled"
            self._set_status("cancelled", finished=runs.now_iso())
            return
        self._restore_best(model, spec)
        self.metrics_ = self._evaluate(model, dataset, spec, class_names, progress, started)
        _remember_speed(info.arch, spec, dataset, self.metrics_.get("train_images_per_s"))
        self.status_ = "completed"
        self._set_status("completed", finished=runs.now_iso())

    def _start_fine_tuning(self, model, spec: TrainSpec, batches: int) -> bool:
        """Unfreeze the backbone's top and recompile (Keras needs it for trainability)."""
        from cnnlab.models.builder import fine_tune_backbone

        if not fine_tune_backbone(model, spec.fine_tune_last):
            return False
        with self._strategy.scope():
            _compile(model, spec, batches)
        self._emit({"type": "phase", "epoch": spec.fine_tune_at, "phase": "fine-tuning"})
        return True

    def _datasets(self, dataset, spec: TrainSpec, labels: np.ndarray):
        from cnnlab.data.pipeline import make_dataset

        tf = _tf()
        train_ds = make_dataset(
            dataset,
            spec.train_on,
            spec.image_size,
            spec.batch_size,
            shuffle=True,
            seed=spec.seed,
            oversample=spec.oversample,
        )
        val_ds = make_dataset(dataset, "val", spec.image_size, spec.batch_size)
        if spec.oversample:
            counts = np.bincount(labels, minlength=len(dataset.class_names))
            images = int(np.count_nonzero(counts) * counts.max())
        else:
            images = len(labels)
        if spec.label_smoothing:
            classes = len(dataset.class_names)

            def one_hot(x, y):
                return x, tf.one_hot(y, classes)

            train_ds = train_ds.map(one_hot)
            val_ds = val_ds.map(one_hot)
        return train_ds, val_ds, images, math.ceil(images / spec.batch_size)

    def _history_so_far(self) -> tuple[dict[str, list[float]], int]:
        """History up to the last checkpoint (a kill may have left a later epoch)."""
        last = self._run.checkpoint_epoch("last") or 0
        if not last or not self._run.last_model_path.exists():
            return {}, 0
        history = self._run.history()
        return {key: values[:last] for key, values in history.items()}, last

    def _model(self, dataset, info: Run, spec: TrainSpec):
        """``(model, compiled)``: resumed from last.keras, forked from init.keras, or new."""
        import keras

        last = self._run.last_model_path
        if last.exists() and self._run.checkpoint_epoch("last"):
            return keras.models.load_model(last), True
        init = self._run.init_model_path
        if init.exists():
            return keras.models.load_model(init, compile=False), False
        from cnnlab.data.augment import AugmentSpec, build_augmentation
        from cnnlab.models.builder import build_model
        from cnnlab.models.spec import ArchSpec

        augmentation = None
        if isinstance(spec.augmentation, dict):
            augment = AugmentSpec.from_dict(spec.augmentation)
            if not augment.is_neutral():
                augmentation = build_augmentation(augment, dataset.channels, seed=spec.seed)
        model = build_model(
            ArchSpec.from_dict(info.arch),
            spec.image_size,
            dataset.channels,
            len(dataset.class_names),
            augmentation=augmentation,
        )
        return model, False

    def _callbacks(self, spec, history, initial_epoch, images, batches, fresh_wait=False):
        import keras

        from cnnlab.train import callbacks as cb

        cancel_check = self.cancel_check or (lambda: runs.cancel_requested(self.path_))
        progress = cb.ProgressCallback(
            self._emit,
            epochs=spec.epochs,
            batches=batches,
            images=images,
            cancel_check=cancel_check,
            deadline=self._deadline,
        )
        budget = cb.TimeBudget(self._deadline) if self._deadline is not None else None
        checkpoint = cb.CheckpointCallback(
            self.path_,
            spec.monitor,
            history,
            incomplete=lambda: (
                progress.stopped_mid_epoch or bool(budget and budget.stopped_mid_epoch)
            ),
            start=spec.early_stopping_start,
        )
        training_start = time.monotonic()

        def time_used() -> float:
            # Only a budget the run asked for steers its schedule: the workspace's
            # max_run_minutes stops a run, but must not make its numbers depend on time.
            if not spec.budget_minutes:
                return 0.0
            return (time.monotonic() - training_start) / max(self._deadline - training_start, 1e-9)

        callbacks = [cb.learning_rate_schedule(spec, time_used)]
        # Before ReduceLROnPlateau: it logs the learning rate the epoch trained with.
        callbacks.append(cb.tensorboard_callback(self._run, checkpoint.incomplete))
        mode = "min" if spec.monitor.endswith("loss") else "max"
        if spec.schedule == "plateau":
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor=spec.monitor,
                    mode=mode,
                    factor=spec.lr_factor,
                    patience=spec.plateau_patience,
                    min_lr=spec.min_learning_rate,
                )
            )
        if spec.early_stopping:
            best = cb.best_in_history(history, spec.monitor, spec.early_stopping_start)
            if best and best[0] < spec.early_stopping_start:
                best = None  # early stopping has not started watching yet
            callbacks.append(
                cb.ResumableEarlyStopping(
                    monitor=spec.monitor,
                    mode=mode,
                    patience=spec.patience,
                    initial_best=best[1] if best else None,
                    initial_wait=0 if fresh_wait or not best else initial_epoch - 1 - best[0],
                    start_from_epoch=spec.early_stopping_start,
                )
            )
        if budget is not None:
            callbacks.append(budget)
        callbacks += [checkpoint, progress]
        self._checkpoint = checkpoint
        self._budget = budget
        return callbacks, progress

    def _restore_best(self, model, spec: TrainSpec) -> None:
        best = self._run.best_model_path
        best_epoch = self._run.checkpoint_epoch("best")
        last_epoch = self._run.checkpoint_epoch("last")
        if spec.restore_best_weights and best.exists() and best_epoch != last_epoch:
            model.load_weights(best)

    def _evaluate(self, model, dataset, spec, class_names, progress, started) -> dict:
        """One batched pass over the test split: metrics.json and predictions.csv."""
        from cnnlab.scoring import SCORE_BATCH, score_split

        history = self._run.history()
        epochs_run = len(history.get("loss", []))
        best_epoch = self._run.checkpoint_epoch("best")
        final_epoch = (best_epoch if spec.restore_best_weights else None) or epochs_run
        steady = progress.images_per_s[1:] or progress.images_per_s
        metrics: dict[str, Any] = {
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "final_epoch": final_epoch,
            # Steady state: the median epoch after the first (which traces and fills caches),
            # robust to another program briefly taking the CPU.
            "train_images_per_s": float(np.median(steady)) if steady else None,
            "stopped_on_time": bool(self._budget and self._budget.stopped),
        }
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            values = history.get(key) or []
            if final_epoch and len(values) >= final_epoch:
                metrics[key if key.startswith("val_") else f"train_{key}"] = values[final_epoch - 1]

        def forward(images):
            return model(images, training=False)

        batch = max(spec.batch_size, SCORE_BATCH)
        # The validation split's macro F1: what a tuning study may optimise (the test
        # split stays for judging its result).
        _, val_truth, val_probabilities = score_split(
            forward, dataset, spec.image_size, batch, split="val"
        )
        if len(val_truth):
            from sklearn.metrics import f1_score

            metrics["val_macro_f1"] = float(
                f1_score(
                    val_truth,
                    val_probabilities.argmax(axis=1),
                    average="macro",
                    labels=range(len(class_names)),
                    zero_division=0,
                )
            )
        files, truth, probabilities = score_split(forward, dataset, spec.image_size, batch)
        if files:
            predicted = probabilities.argmax(axis=1)
            confidence = probabilities[np.arange(len(predicted)), predicted]
            picked = np.clip(probabilities[np.arange(len(truth)), truth], 1e-12, 1.0)
            accuracy = float(np.mean(predicted == truth))
            loss = float(-np.mean(np.log(picked)))
            metrics.update(
                test_accuracy=accuracy,
                test_loss=loss,
                test_images=len(files),
                # Plain names too, as the Evaluate page reads them.
                accuracy=accuracy,
                loss=loss,
                images=len(files),
            )
            self._run.write_predictions(
                [
                    (file, class_names[t], class_names[p], float(c))
                    for file, t, p, c in zip(files, truth, predicted, confidence, strict=True)
                ],
            )
            # The Evaluate page's curves and calibration need the full rows; saving them
            # here spares its first view a model load and a pass over the test split.
            self._run.write_probabilities(probabilities)
        metrics["duration_s"] = time.time() - started
        workspace.atomic_write_json(self.path_ / runs.METRICS_FILE, metrics)
        return metrics


def _op_determinism(enabled: bool) -> bool:
    """Switch TensorFlow's op determinism; returns the previous setting."""
    tf = _tf()
    try:
        from tensorflow.python.framework import config
    except ImportError:  # pragma: no cover - layout of a future TensorFlow
        if enabled:
            tf.config.experimental.enable_op_determinism()
        return False
    before = config.is_op_determinism_enabled()
    if enabled:
        config.enable_op_determinism()
    else:
        config.disable_op_determinism()
    return before


def _remember_speed(arch: dict, spec: TrainSpec, dataset, images_per_s: float | None) -> None:
    """This run's steady speed, for the auto recipe's next estimate on this device."""
    from cnnlab.train import probe

    if not images_per_s or spec.oversample:
        return
    args = (arch, spec.image_size, dataset.channels)
    macs = probe.macs_per_image(*args, max(2, len(dataset.class_names)))
    key = probe.model_key(*args, spec.batch_size, spec.augmentation)
    probe.record_throughput(key, images_per_s, "run", macs)


def _compile(model, spec: TrainSpec, batches: int) -> None:
    model.compile(
        optimizer=make_optimizer(spec),
        loss=make_loss(spec),
        metrics=["accuracy"],
        steps_per_execution=_steps_per_execution(batches),
    )


def _phases(spec: TrainSpec, initial_epoch: int) -> list[tuple[int, int]]:
    """``(first, end)`` epoch ranges to fit: one, or frozen then fine-tuned for transfer."""
    switch = spec.fine_tune_at
    if switch and initial_epoch < switch < spec.epochs:
        return [(initial_epoch, switch), (switch, spec.epochs)]
    return [(initial_epoch, spec.epochs)]


def training_deadline(start: float, budget_minutes: float) -> float:
    """When a run that starts training at ``start`` (``time.monotonic()``) must stop: at
    its own ``budget_minutes`` (0 = none), and never after the workspace's
    ``max_run_minutes`` (:mod:`cnnlab.limits`). A stop at either is recorded alike
    (``stopped_on_time``)."""
    cap = limits.current().max_run_minutes
    return _deadline(start, min(budget_minutes, cap) if budget_minutes else cap)


def _deadline(start: float, budget_minutes: float) -> float | None:
    """When training must stop so the run, scored, ends inside ``budget_minutes``."""
    if not budget_minutes:
        return None
    budget = budget_minutes * 60
    return start + budget - min(0.05 * budget, 30.0) - 2.0


def _steps_per_execution(batches: int) -> int:
    return max(1, min(MAX_STEPS_PER_EXECUTION, batches // BATCH_EVENTS_PER_EPOCH))


def _user_message(error: BaseException, spec: TrainSpec) -> str:
    if isinstance(error, CnnlabError):
        return str(error)
    try:
        tf = _tf()
        if isinstance(error, tf.errors.ResourceExhaustedError):
            return oom_message(spec)
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        pass
    text = str(error).strip().splitlines()
    first = text[0][:300] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
