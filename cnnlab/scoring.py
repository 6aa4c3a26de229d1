"""The one way a test split is scored: a model's softmax rows over batches of images.

The trainer scores the test split at the end of a run (``metrics.json``,
``predictions.csv``, ``probabilities.npy``); :mod:`cnnlab.evaluate` recomputes a run's
probabilities through the same pass when they are missing; the export parity check
(:func:`cnnlab.export.check_export`) runs the in-app and the exported model over the
same batches with the same loop. Nothing here imports TensorFlow until a split is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

# Images per forward pass when scoring a test split.
SCORE_BATCH = 256


def score_batches(forward: Callable[[Any], Any], batches: Iterable[Any]) -> np.ndarray:
    """The one scoring loop: softmax rows of ``forward`` over batches of images.

    Args:
        forward: a batch of images ``[B, size, size, C]`` (uint8 pixels) -> softmax rows
            ``[B, classes]`` (a Keras model called with ``training=False``, a
            Predictor's probabilities, an exported model).
        batches: the batches, in order.

    Returns:
        ``[images, classes]`` float64, the batches' rows in order.
    """
    rows = [np.asarray(forward(images)) for images in batches]
    return np.concatenate(rows).astype(np.float64)


def chunks(pixels: np.ndarray, size: int = SCORE_BATCH) -> Iterator[np.ndarray]:
    """Consecutive batches of at most ``size`` images."""
    for start in range(0, len(pixels), size):
        yield pixels[start : start + size]


def score_split(
    forward: Callable[[Any], Any],
    dataset,
    image_size: int,
    batch_size: int = SCORE_BATCH,
    split: str = "test",
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Score a dataset's ``split`` (the test split unless told) as the training pipeline
    feeds it (the trainer's final evaluation, and a run's probabilities when they must
    be recomputed).

    Direct calls on large batches: no per-image work, and no predict function to trace
    (tracing costs more than the whole pass on a typical test split).

    Returns:
        ``(files, true class indices, probabilities)``; empty when there is no test split.
    """
    from cnnlab.data.pipeline import make_dataset

    files, labels = dataset.files_and_labels(split)
    truth = np.asarray(labels, dtype=np.int64)
    if not files:
        return files, truth, np.zeros((0, len(dataset.class_names)))
    batches = make_dataset(dataset, split, image_size, batch_size)
    return files, truth, score_batches(forward, (images for images, _ in batches))
