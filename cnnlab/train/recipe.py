"""The ``auto`` recipe: a good first run picked from the data, the device and a budget.

:func:`plan_run` decides, in order:

1. **What the images are.** Small images (median side at most 48 px: digits, icons,
   sprites) train at their own size with the ``simple`` network. Photos train with
   ``vgg_small`` whose first convolution has stride 2 (a quarter of the work of a
   full-resolution first stage), at the largest size of a ladder that fits the budget:
   80 px down to 48 on a CPU (on ``flowers-small`` 80 px scored as well as 96 at 0.7x
   the time), from 128 px on a GPU.
2. **How long.** Small datasets need more passes: ``target_epochs`` falls from about
   40 epochs at 300 training images to 10 at 30,000. The device's speed for each
   candidate (:mod:`cnnlab.train.probe`: measured once and cached, or scaled from
   another measured model) turns epochs into seconds; the first candidate whose run
   fits ``budget_minutes`` wins, else the cheapest with the epochs that fit. The run
   itself also stops on time (``TrainSpec.budget_minutes``).
3. **How.** AdamW with weight decay, label smoothing, a short warm-up and a cosine
   schedule over the planned epochs (or the budget, whichever ends first); early
   stopping only after a few hundred steps, restoring the best epoch.
4. **Augmentation.** The dataset's saved augmentation when it does something; else
   random crops, flips and colour for photos, or the mild set for small images, and
   no flips wherever the dataset says orientation matters.
5. **Pretrained.** Colour photos start from a network trained on ImageNet (see
   :mod:`cnnlab.train.pretrained`: EfficientNet-Lite0, whose weights install with
   cnnlab, unless the user supplies MobileNetV2's), trained frozen first and its top
   then fine-tuned; otherwise the plan says why it trains from scratch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from cnnlab.data.dataset import Dataset, load_dataset
from cnnlab.train.spec import TrainSpec

AUTO = "auto"
SMALL_IMAGE = 48  # at most this median side: trained at its own size with `simple`
MIN_SIZE, MAX_SIZE = 32, 80
# Minutes a run may take when the user names no budget.
DEFAULT_BUDGET_MINUTES = {"cpu": 5.0, "gpu": 15.0}
# Importing TensorFlow, building the model and scoring the test split, in seconds.
RUN_OVERHEAD_S = 12.0
# Photo sizes tried from the best down; the network narrows at the end of the ladder.
PHOTO_SIZES = (80, 64, 48)
GPU_PHOTO_SIZES = (128, 96)  # tried first on a GPU (not measured here: no GPU)
PHOTO_WIDTHS = (32, 16)
BATCH_SIZE = 32
ENOUGH_EPOCHS = 0.6
# Early stopping waits for this many optimisation steps (at most 70% of the epochs): a
# small set has ~10 steps an epoch, and its validation loss is noisy until the schedule
# has cooled (on flowers-small, stopping from half-way kept epoch 15 of 40: 0.53 test
# accuracy where the run to the end scored 0.65).
EARLY_STOPPING_MIN_STEPS = 300


def _dataset(dataset: str | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def _median_side(data: Dataset) -> float:
    records = data.split("train") or data.records
    return statistics.median(max(r.width, r.height) for r in records) if records else MIN_SIZE


def is_photo_set(data: Dataset) -> bool:
    """Larger than icons: trained as photos (strided stem, crops)."""
    return _median_side(data) > SMALL_IMAGE


def _rounded_side(data: Dataset) -> int:
    return int(8 * round(_median_side(data) / 8))


def auto_image_size(dataset: str | Dataset) -> int:
    """Median image side rounded to a multiple of 8, within [32, 80]: the size the
    recipe starts its ladder from on a CPU (what the Data and Architecture pages show)."""
    return min(MAX_SIZE, max(MIN_SIZE, _rounded_side(_dataset(dataset))))


def auto_arch(image_size: int, width: int = PHOTO_WIDTHS[0]) -> Any:
    """The preset the auto recipe uses at ``image_size``, as an ArchSpec."""
    from cnnlab.models.spec import ArchSpec

    if image_size <= SMALL_IMAGE:
        return ArchSpec.preset("simple")
    return ArchSpec.preset("vgg_small", width=width, stem_stride=2, dropout=0.3)


def target_epochs(train_images: int) -> int:
    """Passes a from-scratch run needs: more for few images, within [10, 60]."""
    return int(min(60, max(10, round(40 * (300 / max(train_images, 1)) ** 0.35))))


def auto_augmentation(dataset: str | Dataset) -> dict[str, Any]:
    """The dataset's saved augmentation when it does something, else the recommended
    one for its kind; flips are left out wherever orientation matters."""
    from cnnlab.data.augment import AugmentSpec

    data = _dataset(dataset)
    saved = data.meta.get("augment")
    if isinstance(saved, dict):
        spec = AugmentSpec.from_dict(saved)
        if not spec.is_neutral():
            return spec.for_orientation(data.orientation_matters).to_dict()
    if is_photo_set(data):
        spec = AugmentSpec(
            horizontal_flip=True,
            crop=0.25,
            translation=0.1,
            contrast=0.2,
            brightness=0.2,
            saturation=0.2,
        )
    else:
        spec = AugmentSpec.recommended(data.channels)
    return spec.for_orientation(data.orientation_matters).to_dict()


@dataclass(frozen=True)
class Plan:
    """What ``auto`` will train, and how long it expects that to take."""

    arch: Any  # the ArchSpec
    spec: TrainSpec  # the resolved training spec (budget included)
    estimate_s: float  # the whole run, start-up and scoring included
    speed: str  # how the device's speed is known: measured, scaled or assumed
    pretrained: bool  # a pretrained backbone is used
    note: str  # one line on pretrained weights (why not, or which)

    def describe(self) -> str:
        """One line for the page and the CLI."""
        from cnnlab.train.progress import format_duration

        budget = self.spec.budget_minutes
        fits = f" of a {budget:g} min budget" if budget else ""
        return (
            f"{self.arch.label}, {self.spec.image_size}px, up to {self.spec.epochs} epochs: "
            f"about {format_duration(self.estimate_s)}{fits} ({self.speed} speed on this "
            f"device). {self.note}"
        )


def default_budget_minutes() -> float:
    from cnnlab.train import probe

    return DEFAULT_BUDGET_MINUTES["gpu" if probe.is_gpu(probe.device_key()) else "cpu"]


def plan_run(
    dataset: str | Dataset,
    budget_minutes: float | None = None,
    *,
    probe: bool = True,
    **changes: Any,
) -> Plan:
    """The auto recipe for ``dataset`` within ``budget_minutes`` (None = the device's
    default), with ``changes`` to the TrainSpec applied (e.g. ``epochs=3``).

    Args:
        probe: measure the chosen candidate's speed when this device has no number for
            it yet (a few seconds, once); False estimates from what is known.
    """
    from cnnlab.train import pretrained
    from cnnlab.train import probe as speed

    data = _dataset(dataset)
    if budget_minutes is None:
        budget_minutes = changes.pop("budget_minutes", None)
    if budget_minutes is None:
        budget_minutes = default_budget_minutes()
    train_images = max(1, len(data.split("train")))
    val_images = len(data.split("val"))
    classes = max(2, len(data.class_names))
    recommended = auto_augmentation(data)
    # The speed depends on the augmentation the run will really use.
    augment = changes.get("augmentation", recommended)
    augment = None if augment == "none" else recommended if augment == "dataset" else augment
    batch_size = int(changes.get("batch_size") or BATCH_SIZE)

    photos = is_photo_set(data) and data.channels == 3
    weights = pretrained.find_weights() if photos else None
    if weights is not None:
        # No larger than the photos themselves (rounded), nor below what ImageNet's
        # features need: 64-px shapes train at 96, not upscaled to 160.
        own = max(pretrained.MIN_IMAGE_SIZE, _rounded_side(data))
        size = int(changes.get("image_size") or min(weights.image_size, own))
        candidates = [(pretrained.transfer_arch(weights), size)]
        epochs = pretrained.EPOCHS
    else:
        candidates = _candidates(data, changes.get("image_size"))
        epochs = target_epochs(train_images)

    epochs = int(changes.get("epochs") or epochs)

    def epoch_seconds(arch, size: int, measure: bool) -> tuple[float, str]:
        key = speed.model_key(arch, size, data.channels, batch_size, augment)
        if measure and speed.cached_throughput(key) is None:
            speed.probe_throughput(arch, size, data.channels, classes, batch_size, augment)
        macs = speed.macs_per_image(arch, size, data.channels, classes)
        images_per_s, how = speed.estimated_throughput(key, macs)
        # Validation is a forward pass only: about a third of a training step.
        seconds = (train_images + val_images / speed.TRAINING_PASSES) / images_per_s
        # The probe times the frozen network; fine-tuning its top half the epochs is slower.
        return seconds * (pretrained.EPOCH_COST if weights is not None else 1.0), how

    available = (budget_minutes * 60 if budget_minutes else math.inf) - RUN_OVERHEAD_S
    # A candidate that fits at least this share of the epochs beats a cheaper one.
    enough = math.ceil(epochs * ENOUGH_EPOCHS)
    for index, (arch, size) in enumerate(candidates):
        last = index == len(candidates) - 1
        for measure in (False, True) if probe else (False,):
            per_epoch, how = epoch_seconds(arch, size, measure)
            fitting = epochs if math.isinf(available) else int(available // per_epoch)
            fitting = max(1, min(epochs, fitting))
            if fitting < enough and not last:
                break  # too slow: try the next candidate
        else:
            break
    # Epochs the user asked for are kept: the run then stops on time if it must.
    epochs = int(changes.get("epochs") or fitting)

    fields = dict(
        image_size=size,
        batch_size=batch_size,
        epochs=epochs,
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=0.05,
        schedule="cosine",
        label_smoothing=0.1,
        early_stopping=True,
        monitor="val_loss",
        restore_best_weights=True,
        augmentation=recommended,
        budget_minutes=float(budget_minutes or 0.0),
        **epoch_fields(epochs, train_images, batch_size),
    )
    if weights is not None and arch.preset_name == "transfer":
        fields.update(pretrained.train_fields(epochs))
    spec = TrainSpec.from_dict(fields)
    if changes:
        spec = spec.with_changes(**changes)
    estimate = RUN_OVERHEAD_S + spec.epochs * per_epoch
    if weights is not None:  # tracing the step again when fine-tuning starts
        estimate += pretrained.RETRACE_EPOCHS * per_epoch
    if spec.budget_minutes:
        estimate = min(estimate, spec.budget_minutes * 60)
    note = weights.note if weights is not None else pretrained.why_not(photos)
    return Plan(arch, spec, estimate, how, weights is not None, note)


def epoch_fields(epochs: int, train_images: int, batch_size: int) -> dict[str, int]:
    """The fields that follow the number of epochs: a couple of epochs of warm-up to
    steady the first steps, and early stopping that waits a few hundred steps."""
    steps_per_epoch = math.ceil(max(train_images, 1) / batch_size)
    start = min(math.ceil(EARLY_STOPPING_MIN_STEPS / steps_per_epoch), int(epochs * 0.7))
    return {
        "warmup_epochs": min(2, epochs // 5),
        "patience": max(4, epochs // 5),
        "early_stopping_start": start,
    }


def with_changes(plan: TrainSpec, dataset: str | Dataset, **changes: Any) -> TrainSpec:
    """``plan`` with a user's ``changes``; when they change the epochs or the batch size
    but not the fields that follow them (:func:`epoch_fields`), those follow too, so
    asking for 2 epochs never collides with the plan's warm-up."""
    changes = {key: value for key, value in changes.items() if getattr(plan, key, None) != value}
    if "epochs" in changes or "batch_size" in changes:
        data = _dataset(dataset)
        derived = epoch_fields(
            int(changes.get("epochs", plan.epochs)),
            len(data.split("train")),
            int(changes.get("batch_size", plan.batch_size)),
        )
        changes = {**derived, **changes}
    return plan.with_changes(**changes) if changes else plan


def starting_spec(plan: Plan, designed_size: int | None = None) -> TrainSpec:
    """What a training form starts from: the plan's spec, at the image size an
    architecture was designed for (the Architecture page's) when there is one."""
    return plan.spec.with_changes(image_size=int(designed_size)) if designed_size else plan.spec


def chosen_run(
    plan: Plan,
    dataset: str | Dataset,
    arch: Any,
    start: TrainSpec,
    *,
    custom_weights: dict[str, float] | None = None,
    **changes: Any,
) -> tuple[Any, TrainSpec]:
    """``(arch, spec)`` a user asks for from a form that started at ``start``.

    The changes go through :func:`with_changes` (fewer epochs bring the warm-up along);
    ``augmentation="recipe"`` keeps the plan's; ``custom_weights`` count only when
    class weighting is custom. ``auto`` at the plan's image size trains the plan's
    network (pretrained when weights are at hand); at another size, the preset for it.
    """
    if changes.get("augmentation") == "recipe":
        changes["augmentation"] = start.augmentation
    custom = changes.get("class_weight", start.class_weight) == "custom"
    changes["custom_class_weights"] = (custom_weights or {}) if custom else ()
    spec = with_changes(start, dataset, **changes)
    if arch == AUTO and spec.image_size == plan.spec.image_size:
        arch = plan.arch
    return arch, spec


def _candidates(data: Dataset, image_size: int | None) -> list[tuple[Any, int]]:
    """``(arch, size)`` to try, best first; a given ``image_size`` is kept."""
    if image_size:
        return [(auto_arch(int(image_size)), int(image_size))]
    if not is_photo_set(data):
        size = auto_image_size(data)
        return [(auto_arch(size), size)]
    from cnnlab.train import probe

    gpu = probe.is_gpu(probe.device_key())
    ladder_sizes = (GPU_PHOTO_SIZES if gpu else ()) + PHOTO_SIZES
    largest = _rounded_side(data)
    sizes = [size for size in ladder_sizes if size <= largest] or [PHOTO_SIZES[-1]]
    ladder = [(auto_arch(size), size) for size in sizes]
    smallest = sizes[-1]
    ladder += [(auto_arch(smallest, width), smallest) for width in PHOTO_WIDTHS[1:]]
    return ladder


def auto_recipe(dataset: str | Dataset, **changes: Any):
    """``(ArchSpec, TrainSpec)`` of :func:`plan_run` for ``dataset``, with ``changes``
    applied to the TrainSpec (e.g. ``epochs=3``, ``budget_minutes=2``).

    On ``sample:digits`` this reaches at least 0.98 test accuracy (see bench/).
    """
    plan = plan_run(dataset, **changes)
    return plan.arch, plan.spec
