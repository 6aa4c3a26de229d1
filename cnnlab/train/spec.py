"""TrainSpec: how a model is trained, with every limit declared once.

The same table validates a spec (messages name the field, the allowed values and what
was received) and feeds the Train page's widgets. ``auto_recipe`` picks a good first
recipe from the dataset itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range, Spec, param

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step", "plateau")
MONITORS = ("val_loss", "val_accuracy")
CLASS_WEIGHTING = ("none", "balanced", "custom")
MIXED_PRECISION = ("auto", "on", "off")
# The weight one class may get in the loss (custom class weighting).
CLASS_WEIGHT_LIMITS = Range(0.001, 1000.0)
# "dataset" means the dataset's saved AugmentSpec; a dict is an AugmentSpec of its own.
AUGMENTATION_NAMES = ("dataset", "none")
# The splits the model learns from: train+val once the settings are chosen (a tuning
# study's best trial retrained), with nothing held out to stop it early.
TRAIN_ON = ("train", "train+val")


@dataclass(frozen=True)
class TrainSpec(Spec):
    """Everything about one training run except the data and the architecture."""

    kind = "training spec"

    # Images are resized to image_size x image_size before the model sees them.
    image_size: int = param(64, Range(16, 512, integer=True), "side of the square input")
    # Images per optimisation step.
    batch_size: int = param(32, Range(1, 1024, integer=True), "images per training step")
    # Upper bound on passes over the training split; early stopping may end sooner.
    epochs: int = param(15, Range(1, 500, integer=True), "passes over the training images")
    # Optimiser family.
    optimizer: str = param("adam", Choice(OPTIMIZERS), "how the weights are updated")
    # Peak learning rate (after warm-up).
    learning_rate: float = param(1e-3, Range(1e-6, 1.0), "step size of the optimiser")
    # Momentum of SGD (ignored by the other optimisers).
    momentum: float = param(0.9, Range(0.0, 0.999), "SGD momentum")
    # Decoupled weight decay applied by the optimiser.
    weight_decay: float = param(0.0, Range(0.0, 0.1), "decoupled weight decay")
    # How the learning rate changes over epochs.
    schedule: str = param("constant", Choice(SCHEDULES), "learning-rate schedule")
    # Epochs of linear warm-up from learning_rate / (warmup_epochs + 1).
    warmup_epochs: int = param(0, Range(0, 50, integer=True), "epochs of linear warm-up")
    # step schedule: the rate is multiplied by lr_factor every step_epochs epochs.
    step_epochs: int = param(10, Range(1, 500, integer=True), "step schedule: epochs per step")
    # step and plateau schedules: factor applied to the rate at each drop.
    lr_factor: float = param(0.1, Range(0.01, 0.99), "step/plateau: factor per drop")
    # plateau schedule: epochs without improvement before the rate drops.
    plateau_patience: int = param(3, Range(1, 100, integer=True), "plateau: epochs to wait")
    # Floor of the cosine, step and plateau schedules.
    min_learning_rate: float = param(0.0, Range(0.0, 0.1), "lowest learning rate")
    # Weight moved from the true class to the others in the loss.
    label_smoothing: float = param(0.0, Range(0.0, 0.5), "label smoothing of the loss")
    # Stop when the monitored value stops improving.
    early_stopping: bool = param(True, None, "stop when the monitored value stalls")
    # Quantity watched by early stopping, the plateau schedule and the best checkpoint.
    monitor: str = param("val_loss", Choice(MONITORS), "validation value to watch")
    # Epochs without improvement before early stopping ends the run.
    patience: int = param(5, Range(1, 100, integer=True), "early stopping: epochs to wait")
    # A short run's first epochs are noisy: early stopping only acts from this epoch on.
    early_stopping_start: int = param(
        0, Range(0, 500, integer=True), "early stopping: epochs before it may stop the run"
    )
    # End with the best epoch's weights instead of the last epoch's.
    restore_best_weights: bool = param(True, None, "finish with the best epoch's weights")
    # none, balanced (scikit-learn's compute_class_weight) or custom per class.
    class_weight: str = param("none", Choice(CLASS_WEIGHTING), "weight of each class in the loss")
    # custom class weighting: (label, weight) pairs; unnamed classes weigh 1.
    custom_class_weights: tuple = param((), None, "custom: (label, weight) pairs")
    # Draw minority classes more often so each class is seen equally per epoch.
    oversample: bool = param(False, None, "oversample minority classes")
    # "dataset" (its saved AugmentSpec), "none", or an AugmentSpec as a dict.
    augmentation: Any = param("dataset", None, "augmentation during training")
    # float16 compute with float32 weights; auto = on when training on a GPU.
    mixed_precision: str = param("auto", Choice(MIXED_PRECISION), "mixed precision")
    # Transfer runs: from this epoch on, the backbone's top layers train too (at a tenth
    # of the learning rate); before it only the classifier learns. 0 = never.
    fine_tune_at: int = param(
        0, Range(0, 500, integer=True), "transfer: epoch from which the backbone's top trains"
    )
    # Transfer runs: how many of the backbone's last layers train from fine_tune_at.
    fine_tune_last: int = param(
        30, Range(1, 1000, integer=True), "transfer: backbone layers fine-tuned"
    )
    # Training stops on time too: the last epoch that fits, then the test split is scored.
    budget_minutes: float = param(
        0.0, Range(0.0, 1440.0), "time budget of the run in minutes; 0 = no limit"
    )
    # train+val learns from the validation images too (their scores then say little).
    train_on: str = param("train", Choice(TRAIN_ON), "splits the model learns from")
    # Seeds weights, shuffling and augmentation; same seed + spec on CPU = same result.
    seed: int = param(0, Range(0, 2**31 - 1, integer=True), "random seed")

    def validate(self) -> None:
        object.__setattr__(self, "custom_class_weights", _weight_pairs(self.custom_class_weights))
        if self.class_weight == "custom" and not self.custom_class_weights:
            raise CnnlabError(
                "`class_weight` is 'custom' but `custom_class_weights` is empty; "
                "give (label, weight) pairs, e.g. custom_class_weights={'cat': 2.0}, "
                "or choose class_weight='balanced'."
            )
        augmentation = self.augmentation
        if isinstance(augmentation, str):
            if augmentation not in AUGMENTATION_NAMES:
                raise CnnlabError(
                    "`augmentation` must be 'dataset', 'none' or an augmentation spec (a dict). "
                    f"Received: augmentation={augmentation!r}"
                )
        elif augmentation is not None and not isinstance(augmentation, dict):
            raise CnnlabError(
                "`augmentation` must be 'dataset', 'none' or an augmentation spec (a dict). "
                f"Received: augmentation={augmentation!r}"
            )
        if augmentation is None:
            object.__setattr__(self, "augmentation", "none")
        if self.train_on != "train" and self.early_stopping:
            raise CnnlabError(
                f"`train_on` is {self.train_on!r}: the validation images are learnt from, so "
                "they cannot tell early stopping when to stop. Set early_stopping=false and "
                "the number of epochs to train."
            )
        if self.warmup_epochs >= self.epochs:
            raise CnnlabError(
                f"`warmup_epochs` ({self.warmup_epochs}) must be less than `epochs` "
                f"({self.epochs}); lower warmup_epochs or raise epochs."
            )
        if self.min_learning_rate >= self.learning_rate and self.schedule != "constant":
            raise CnnlabError(
                f"`min_learning_rate` ({self.min_learning_rate:g}) must be below "
                f"`learning_rate` ({self.learning_rate:g}) for the {self.schedule!r} schedule; "
                "lower min_learning_rate."
            )

    @property
    def custom_weights(self) -> dict[str, float]:
        """``custom_class_weights`` as a dict label -> weight."""
        return dict(self.custom_class_weights)


def _weight_pairs(value: Any) -> tuple:
    """Normalise custom class weights (dict or pairs) to sorted (label, weight) tuples."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise CnnlabError(
                    "`custom_class_weights` must be (label, weight) pairs or a dict "
                    f"label -> weight. Received: custom_class_weights={value!r}"
                )
            items.append(tuple(item))
    else:
        raise CnnlabError(
            "`custom_class_weights` must be (label, weight) pairs or a dict label -> weight. "
            f"Received: custom_class_weights={value!r}"
        )
    pairs = []
    for label, weight in items:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise CnnlabError(
                f"The weight of class {label!r} must be a number. Received: {weight!r}"
            )
        low, high = CLASS_WEIGHT_LIMITS.low, CLASS_WEIGHT_LIMITS.high
        if not math.isfinite(weight) or not low <= weight <= high:
            raise CnnlabError(
                f"The weight of class {label!r} must be in [{low:g}, {high:g}]. "
                f"Received: {weight!r}"
            )
        pairs.append((str(label), float(weight)))
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        raise CnnlabError(f"`custom_class_weights` names a class twice. Received: {labels}")
    return tuple(sorted(pairs))
