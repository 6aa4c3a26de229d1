"""The ``auto`` recipe: a good first run picked from the dataset itself.

Image size follows the images (their median side, rounded to a multiple of 8 and kept
between 32 and 96 so a CPU trains in minutes); small images get the ``simple``
preset, larger ones ``vgg_small`` (global pooling keeps it small); epochs shrink as the
dataset grows, with early stopping; augmentation is the dataset's saved one, or a mild
recommended one when none (or a neutral one) was saved.
"""

from __future__ import annotations

import statistics
from typing import Any

from cnnlab.data.dataset import Dataset, load_dataset
from cnnlab.train.spec import TrainSpec

AUTO = "auto"
SMALL_IMAGE = 48  # at most this side: the `simple` preset
MIN_SIZE, MAX_SIZE = 32, 96


def _dataset(dataset: str | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def auto_image_size(dataset: str | Dataset) -> int:
    """Median image side rounded to a multiple of 8, within [32, 96]."""
    records = _dataset(dataset).split("train") or _dataset(dataset).records
    if not records:
        return MIN_SIZE
    side = statistics.median(max(record.width, record.height) for record in records)
    return int(min(MAX_SIZE, max(MIN_SIZE, 8 * round(side / 8))))


def auto_arch(image_size: int) -> Any:
    """The preset the auto recipe uses at ``image_size``, as an ArchSpec."""
    from cnnlab.models.spec import ArchSpec

    if image_size <= SMALL_IMAGE:
        return ArchSpec.preset("simple")
    return ArchSpec.preset("vgg_small")


def auto_augmentation(dataset: str | Dataset) -> dict[str, Any]:
    """The dataset's saved augmentation when it does something, else the recommended
    mild one for its channels (on digits it lifts test accuracy from 0.974-0.981 to
    0.978-0.989 over seeds 0-2, see bench/bench_train.py)."""
    from cnnlab.data.augment import AugmentSpec

    data = _dataset(dataset)
    saved = data.meta.get("augment")
    if isinstance(saved, dict):
        spec = AugmentSpec.from_dict(saved)
        if not spec.is_neutral():
            return spec.to_dict()
    return AugmentSpec.recommended(data.channels).to_dict()


def auto_recipe(dataset: str | Dataset, **changes: Any):
    """``(ArchSpec, TrainSpec)`` for a first run on ``dataset``, with ``changes`` applied
    to the TrainSpec (e.g. ``epochs=3``).

    On ``sample:digits`` this reaches at least 0.97 test accuracy (see bench/).
    """
    data = _dataset(dataset)
    image_size = int(changes.get("image_size") or auto_image_size(data))
    train_images = len(data.split("train"))
    epochs = 20 if train_images < 3000 else 12 if train_images < 20000 else 8
    spec = TrainSpec(
        image_size=image_size,
        batch_size=32,
        epochs=epochs,
        optimizer="adam",
        learning_rate=1e-3,
        early_stopping=True,
        monitor="val_loss",
        patience=4,
        restore_best_weights=True,
        augmentation=auto_augmentation(data),
    )
    if changes:
        spec = spec.with_changes(**changes)
    return auto_arch(spec.image_size), spec
