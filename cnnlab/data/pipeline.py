"""The tf.data input pipeline: decode and resize each image once, then stream batches.

:func:`make_dataset` yields ``(images, labels)`` batches: uint8 images
``[B, size, size, C]`` (C = the dataset's channels) and int32 labels ``[B]`` (indices
into ``Dataset.class_names``). Each image is decoded and resized once into a cache of
uint8 pixels:

* **memory** when the split fits ``cache_budget_bytes``: one uint8 tensor, decoded
  with a parallel map before the first batch and sliced from then on (oversampling
  gathers whole batches of indices from it);
* **disk** otherwise: a ``tf.data`` cache file under
  ``$CNNLAB_HOME/cache/<dataset>/``, written completely before the first batch and
  keyed on the split's files, so it is reused until the index changes and memory stays
  flat however large the dataset grows.

Resizing is bilinear without antialiasing (:data:`RESIZE_METHOD`, :data:`RESIZE_ANTIALIAS`),
rounded to uint8: the defaults of ``keras.layers.Resizing(size, size)`` and of
``keras.utils.image_dataset_from_directory``, so a model whose first layer is that
``Resizing`` sees the same pixels (up to rounding) from a raw image at prediction time.
Antialiasing was measured to double decode+resize time, for a difference that only
shows when shrinking images several-fold. :func:`resize_pixels` applies the same resize
to one image.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab import workspace
from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    import tensorflow as tf

    from cnnlab.data.dataset import Dataset

RESIZE_METHOD = "bilinear"
RESIZE_ANTIALIAS = False
# Bumped when decoding or resizing changes, so old disk caches are not reused.
CACHE_VERSION = 1
CACHE_CHOICES = ("auto", "memory", "disk", None)
# Largest shuffle buffer for disk-cached data, in images and in bytes, so memory stays
# flat as datasets grow; the in-memory path shuffles all images.
SHUFFLE_BUFFER_CAP = 10_000
SHUFFLE_BUFFER_BYTES = 256 << 20
IMAGE_SIZE_RANGE = (8, 1024)
BATCH_SIZE_RANGE = (1, 4096)


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CnnlabError(f"`{name}` must be a whole number. Received: {name}={value!r}")
    if not low <= value <= high:
        raise CnnlabError(f"`{name}` must be in [{low}, {high}]. Received: {name}={value!r}")
    return int(value)


def _decode_resize(path, image_size: int, channels: int):
    """Read, decode and resize one image file into uint8 ``[size, size, C]``."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    # Resizing to the same size returns the same pixels, so no branch is needed (a
    # tf.cond here measured slower).
    return _resize(image, image_size)


def _resize(image, image_size: int):
    import tensorflow as tf

    resized = tf.image.resize(
        image, (image_size, image_size), method=RESIZE_METHOD, antialias=RESIZE_ANTIALIAS
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def resize_pixels(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Resize one ``(H, W, C)`` or ``(H, W)`` uint8 image exactly as the pipeline does."""
    import tensorflow as tf

    image_size = _check_int("image_size", image_size, *IMAGE_SIZE_RANGE)
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.shape[:2] == (image_size, image_size):
        return pixels
    if pixels.ndim == 2:
        return resize_pixels(pixels[..., None], image_size)[..., 0]
    return _resize(tf.convert_to_tensor(pixels), image_size).numpy()


def class_counts(dataset: Dataset | str, split: str) -> dict[str, int]:
    """Images per class in ``split``, in ``class_names`` order (0 for absent classes)."""
    dataset = _as_dataset(dataset)
    counts = dict.fromkeys(dataset.class_names, 0)
    for record in dataset.split(split):
        counts[record.label] += 1
    return counts


def _as_dataset(dataset: Dataset | str) -> Dataset:
    from cnnlab.data.dataset import Dataset

    return Dataset(dataset) if isinstance(dataset, str) else dataset


def _files_labels(dataset: Dataset, split: str) -> tuple[list[str], np.ndarray]:
    files, labels = dataset.files_and_labels(split)
    if not files:
        raise CnnlabError(
            f"The {split} split of dataset {dataset.name!r} has no images; "
            "choose another split or re-split the dataset."
        )
    return files, np.asarray(labels, dtype=np.int32)


def _decoded(files: list[str], labels: np.ndarray, image_size: int, channels: int):
    """An ordered tf.data dataset of ``(uint8 image, int32 label)``, decoded in parallel."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((files, labels)).map(
        lambda path, label: (_decode_resize(path, image_size, channels), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _reading(dataset: Dataset, split: str, files: list[str], run):
    """Run ``run()``, turning a failed image read into a message naming the file."""
    import tensorflow as tf

    try:
        return run()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        path, reason = _first_unreadable(files)
        what = f"the image {Path(path).relative_to(dataset.path)}" if path else "an image"
        reason = reason or _plain_message(error)
        raise CnnlabError(
            f"Could not read {what} of the {split} split of dataset {dataset.name!r} "
            f"({reason}); re-ingest the dataset."
        ) from error


def _first_unreadable(files: list[str]) -> tuple[str | None, str | None]:
    """The first file TensorFlow cannot decode, and why (only called after a failure)."""
    import tensorflow as tf

    for path in files:
        try:
            tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            return path, _plain_message(error)
    return None, None


def _plain_message(error) -> str:
    """TensorFlow's error text without its ``{{function_node ...}}`` and ``[Op:...]``."""
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:.*$", "", error.message).strip()
    return (text.splitlines() or [type(error).__name__])[0][:200]


def load_arrays(
    dataset: Dataset | str, split: str, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """All images of ``split``, decoded and resized as in training, in index order.

    Returns:
        ``(images, labels)``: uint8 ``[N, size, size, C]`` and int32 ``[N]``.
    """
    dataset = _as_dataset(dataset)
    image_size = _check_int("image_size", image_size, *IMAGE_SIZE_RANGE)
    files, labels = _files_labels(dataset, split)
    return _decode_all(dataset, split, image_size, files, labels).numpy(), labels


def _decode_all(dataset: Dataset, split: str, image_size: int, files, labels):
    """Every image of the split as one uint8 tensor ``[N, size, size, C]``."""
    decoded = _decoded(files, labels, image_size, dataset.channels)
    # One batch of everything: a single tensor, with no numpy round trip or extra copy.
    everything = decoded.map(lambda image, label: image).batch(len(files))
    return _reading(dataset, split, files, everything.get_single_element)


def cache_dir(dataset_name: str) -> Path:
    """The folder of a dataset's disk caches (which need not exist)."""
    return workspace.inside(
        workspace.home(), "cache", workspace.safe_name(dataset_name, "dataset name")
    )


def clear_cache(dataset_name: str) -> None:
    """Delete a dataset's disk caches (they are rebuilt on demand)."""
    workspace.remove_tree(cache_dir(dataset_name))


def cache_path(dataset: Dataset, split: str, image_size: int) -> Path:
    """The disk-cache prefix for ``split`` at ``image_size``; changes with the index."""
    rows = sorted((record.file, record.sha, record.label) for record in dataset.split(split))
    key = hashlib.sha256(
        repr((CACHE_VERSION, dataset.channels, dataset.class_names, rows)).encode()
    ).hexdigest()[:16]
    return cache_dir(dataset.name) / f"{split}-{image_size}px-{dataset.channels}c-{key}"


def _disk_cached(dataset: Dataset, split: str, image_size: int, files, labels):
    """The decoded split, read from (and on first use, written to) its disk cache."""

    prefix = cache_path(dataset, split, image_size)
    if not Path(f"{prefix}.index").exists():
        prefix.parent.mkdir(parents=True, exist_ok=True)
        # Write under a private name, then rename: a half-written cache is never read,
        # and two processes building the same cache do not collide.
        temporary = prefix.with_name(f".{prefix.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        writer = _decoded(files, labels, image_size, dataset.channels).cache(str(temporary))
        try:
            _reading(dataset, split, files, lambda: writer.reduce(0, lambda count, _: count + 1))
            for piece in prefix.parent.glob(f"{temporary.name}.*"):
                if not piece.name.endswith(".index"):
                    suffix = piece.name[len(temporary.name) :]
                    os.replace(piece, prefix.with_name(prefix.name + suffix))
            # The index last: its presence marks the cache complete.
            os.replace(f"{temporary}.index", f"{prefix}.index")
        finally:
            for leftover in prefix.parent.glob(f"{temporary.name}*"):
                leftover.unlink(missing_ok=True)
        for old in prefix.parent.glob(f"{split}-{image_size}px-{dataset.channels}c-*"):
            if not old.name.startswith(prefix.name):
                old.unlink(missing_ok=True)
    # Reads the complete cache; the decoding map only runs if the cache vanished since.
    return _decoded(files, labels, image_size, dataset.channels).cache(str(prefix))


def _balanced_choice(streams: list, counts: list[int], seed: int):
    """One epoch drawing ``max(counts)`` elements from every non-empty class stream."""
    import tensorflow as tf

    largest = max(counts)
    present = [i for i, count in enumerate(counts) if count]
    selector = np.repeat(np.arange(len(present), dtype=np.int64), largest)
    order = tf.data.Dataset.from_tensor_slices(selector).shuffle(
        len(selector), seed=seed, reshuffle_each_iteration=True
    )
    chosen = tf.data.Dataset.choose_from_datasets([streams[i] for i in present], order)
    # Known length, so Keras can show progress and count steps from the first epoch.
    return chosen.apply(tf.data.experimental.assert_cardinality(len(selector)))


def make_dataset(
    dataset: Dataset | str,
    split: str,
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    cache: str | None = "auto",
    cache_budget_bytes: int = 1 << 30,
    repeat: bool = False,
    oversample: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(uint8 images [B, size, size, C], int32 labels [B])`` for ``split``.

    Args:
        dataset: the dataset (or its name) to read.
        split: ``train``, ``val`` or ``test``.
        image_size: the side images are resized to.
        batch_size: images per batch; the last batch of an epoch may be smaller.
        shuffle: a new order every epoch, the same sequence of orders for a seed.
        seed: makes shuffling and oversampling repeatable.
        cache: ``"auto"`` (memory when the split fits ``cache_budget_bytes``, else disk),
            ``"memory"``, ``"disk"``, or ``None`` to decode every epoch.
        cache_budget_bytes: the most memory the ``"auto"`` cache may take.
        repeat: repeat epochs forever (each pass is one whole epoch of batches).
        oversample: draw every class as often as the largest one, each epoch (for
            imbalanced training data); an epoch then has ``classes x largest`` images.

    Raises:
        CnnlabError: for a bad argument, an empty split, or an unreadable image.
    """
    import tensorflow as tf

    dataset = _as_dataset(dataset)
    image_size = _check_int("image_size", image_size, *IMAGE_SIZE_RANGE)
    batch_size = _check_int("batch_size", batch_size, *BATCH_SIZE_RANGE)
    if cache not in CACHE_CHOICES:
        allowed = ", ".join(repr(choice) for choice in CACHE_CHOICES)
        raise CnnlabError(f"`cache` must be one of {allowed}. Received: cache={cache!r}")
    seed = _check_int("seed", seed, 0, 2**31 - 1)
    _check_int("cache_budget_bytes", cache_budget_bytes, 0, 2**62)
    files, labels = _files_labels(dataset, split)
    count, channels = len(files), dataset.channels
    if cache == "auto":
        fits = count * image_size * image_size * channels <= cache_budget_bytes
        cache = "memory" if fits else "disk"

    # Which images an epoch visits, and in what order, as a stream of indices or elements.
    per_class = [np.flatnonzero(labels == c) for c in range(len(dataset.class_names))]

    def index_order():
        if oversample:
            streams = [
                tf.data.Dataset.from_tensor_slices(indices.astype(np.int64))
                .shuffle(max(len(indices), 1), seed=seed + 1 + c)
                .repeat()
                for c, indices in enumerate(per_class)
            ]
            return _balanced_choice(streams, [len(i) for i in per_class], seed)
        order = tf.data.Dataset.range(count)
        return order.shuffle(count, seed=seed) if shuffle else order

    if cache == "memory":
        images = _decode_all(dataset, split, image_size, files, labels)
        if oversample:
            label_tensor = tf.constant(labels)
            data = (
                index_order()
                .batch(batch_size)
                .map(
                    lambda batch: (tf.gather(images, batch), tf.gather(label_tensor, batch)),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True,
                )
            )
        else:
            # Slicing the decoded tensor needs no traced function: the quickest start.
            data = tf.data.Dataset.from_tensor_slices((images, labels))
            data = data.shuffle(count, seed=seed) if shuffle else data
            data = data.batch(batch_size)
    elif cache is None:
        paths, label_tensor = tf.constant(files), tf.constant(labels)
        data = (
            index_order()
            .map(
                lambda i: (
                    _decode_resize(paths[i], image_size, channels),
                    label_tensor[i],
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .batch(batch_size)
        )
    else:
        cached = _disk_cached(dataset, split, image_size, files, labels)
        image_bytes = image_size * image_size * channels
        buffer = max(1, min(count, SHUFFLE_BUFFER_CAP, SHUFFLE_BUFFER_BYTES // image_bytes))
        if oversample:
            # Each class streams through the cache file on its own: reads grow with the
            # number of classes, memory does not.
            streams = [
                cached.filter(lambda image, label, c=c: label == c)
                .shuffle(max(min(len(indices), buffer), 1), seed=seed + 1 + c)
                .repeat()
                for c, indices in enumerate(per_class)
            ]
            data = _balanced_choice(streams, [len(i) for i in per_class], seed)
        else:
            data = cached.shuffle(buffer, seed=seed) if shuffle else cached
        data = data.batch(batch_size)
    if repeat:
        data = data.repeat()
    return data.prefetch(tf.data.AUTOTUNE)
