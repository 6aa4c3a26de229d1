"""The tf.data pipeline: shapes, labels, caches, determinism and oversampling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import workspace
from cnnlab.data import pipeline
from cnnlab.data.dataset import Dataset
from cnnlab.data.pipeline import class_counts, load_arrays, make_dataset, resize_pixels
from cnnlab.errors import CnnlabError
from tests.conftest import make_dataset_on_disk


def _epoch(data) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in data], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def _cache_files(name: str) -> list[str]:
    folder = workspace.home() / "cache" / name
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def tiny(tiny_dataset) -> Dataset:
    return Dataset(tiny_dataset)


def test_batches_have_the_promised_shapes_dtypes_and_labels(tiny):
    batches = list(make_dataset(tiny, "train", 24, 4))
    assert [int(x.shape[0]) for x, _ in batches] == [4, 4, 4, 4, 2]
    images, labels = batches[0]
    assert images.dtype.name == "uint8" and labels.dtype.name == "int32"
    for cache in ("memory", "disk", None):
        spec = make_dataset(tiny, "train", 16, 4, cache=cache).element_spec
        assert spec[0].shape.as_list() == [None, 16, 16, 3], cache
        assert spec[1].shape.as_list() == [None], cache
    assert tuple(images.shape) == (4, 24, 24, 3)
    # Unshuffled, the order is the index order and each image is its file's pixels.
    files, expected = tiny.files_and_labels("train")
    all_images, all_labels = _epoch(make_dataset(tiny, "train", 24, 4))
    assert all_labels.tolist() == expected
    for i in (0, 7, 17):
        np.testing.assert_array_equal(all_images[i], np.asarray(Image.open(files[i])))


def test_the_labels_follow_the_class_names(tiny):
    _, labels = _epoch(make_dataset(tiny, "test", 24, 8))
    names = [tiny.class_names[i] for i in labels]
    assert names == [record.label for record in tiny.split("test")]
    assert Counter(names) == {"cat": 2, "dog": 2, "fox": 2}


def test_resizing_matches_resize_pixels(tiny):
    files, _ = tiny.files_and_labels("val")
    images, _ = _epoch(make_dataset(tiny, "val", 16, 3))
    assert images.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(images[0], resize_pixels(np.asarray(Image.open(files[0])), 16))


def test_the_resize_is_the_one_a_keras_resizing_layer_does():
    import keras

    rng = np.random.default_rng(0)
    for shape in [(40, 30, 3), (10, 12, 1)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        layer = keras.layers.Resizing(
            20, 20, interpolation=pipeline.RESIZE_METHOD, antialias=pipeline.RESIZE_ANTIALIAS
        )
        expected = np.clip(np.rint(np.asarray(layer(image.astype("float32")))), 0, 255)
        np.testing.assert_array_equal(resize_pixels(image, 20), expected.astype(np.uint8))
    flat = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    np.testing.assert_array_equal(
        resize_pixels(flat, 15), resize_pixels(flat[..., None], 15)[..., 0]
    )


def test_grayscale_keeps_one_channel(workspace):
    name = make_dataset_on_disk("gray", {"a": 5, "b": 5}, channels=1, splits=(3, 1, 1))
    images, _ = _epoch(make_dataset(Dataset(name), "train", 20, 4))
    assert images.shape == (6, 20, 20, 1)
    arrays, labels = load_arrays(Dataset(name), "train", 24)
    assert arrays.shape == (6, 24, 24, 1) and labels.dtype == np.int32


def test_shuffling_is_deterministic_for_a_seed_and_new_each_epoch(tiny):
    first = make_dataset(tiny, "train", 24, 5, shuffle=True, seed=3)
    again = make_dataset(tiny, "train", 24, 5, shuffle=True, seed=3)
    other = make_dataset(tiny, "train", 24, 5, shuffle=True, seed=4)
    epochs = [_epoch(first) for _ in range(2)]
    same = [_epoch(again) for _ in range(2)]
    for (xa, ya), (xb, yb) in zip(epochs, same, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(epochs[0][0], epochs[1][0]), "each epoch has a new order"
    assert not np.array_equal(epochs[0][0], _epoch(other)[0]), "another seed, another order"
    unshuffled, _ = _epoch(make_dataset(tiny, "train", 24, 5))
    assert sorted(map(bytes, epochs[0][0])) == sorted(map(bytes, unshuffled))


@pytest.mark.parametrize("cache", ["disk", None])
def test_every_cache_gives_the_same_batches_as_memory(tiny, cache):
    memory = make_dataset(tiny, "train", 16, 4, shuffle=True, seed=1, cache="memory")
    other = make_dataset(tiny, "train", 16, 4, shuffle=True, seed=1, cache=cache)
    for _ in range(2):
        (xa, ya), (xb, yb) = _epoch(memory), _epoch(other)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert bool(_cache_files("tiny")) == (cache == "disk")


def test_a_small_budget_routes_to_the_disk_cache(tiny):
    assert _cache_files("tiny") == []
    in_memory = _epoch(make_dataset(tiny, "train", 24, 4, cache_budget_bytes=1 << 20))
    assert _cache_files("tiny") == []
    on_disk = _epoch(make_dataset(tiny, "train", 24, 4, cache_budget_bytes=1000))
    prefix = pipeline.cache_path(tiny, "train", 24).name
    assert any(name == f"{prefix}.index" for name in _cache_files("tiny"))
    np.testing.assert_array_equal(in_memory[0], on_disk[0])
    np.testing.assert_array_equal(in_memory[1], on_disk[1])


def test_the_disk_shuffle_buffer_is_bounded_in_bytes(tiny, monkeypatch):
    monkeypatch.setattr(pipeline, "SHUFFLE_BUFFER_BYTES", 4 * 24 * 24 * 3)
    plain, _ = _epoch(make_dataset(tiny, "train", 24, 4, cache="disk"))
    shuffled, _ = _epoch(make_dataset(tiny, "train", 24, 4, cache="disk", shuffle=True))
    assert not np.array_equal(plain, shuffled)
    assert sorted(map(bytes, plain)) == sorted(map(bytes, shuffled))
    # A 4-image buffer can only emit, at position k, one of the first k + 4 images.
    where = {bytes(image): i for i, image in enumerate(plain)}
    assert all(where[bytes(image)] <= k + 3 for k, image in enumerate(shuffled))


def test_the_disk_cache_is_reused_and_replaced_when_the_index_changes(tiny):
    make_dataset(tiny, "train", 24, 4, cache="disk")
    index = pipeline.cache_path(tiny, "train", 24).with_suffix(".index")
    stamp = index.stat().st_mtime_ns
    make_dataset(tiny, "train", 24, 4, cache="disk")
    assert index.stat().st_mtime_ns == stamp, "a complete cache is not rewritten"

    # Moving one image from train to val changes the key; the old cache is removed.
    from cnnlab.data.dataset import write_index

    records = list(tiny.records)
    records[0] = type(records[0])(**{**records[0].__dict__, "split": "val"})
    write_index(tiny.path / "index.csv", records)
    changed = Dataset("tiny")
    images, _ = _epoch(make_dataset(changed, "train", 24, 4, cache="disk"))
    assert len(images) == 17
    assert not index.exists()
    assert pipeline.cache_path(changed, "train", 24).with_suffix(".index").exists()
    assert not any(name.startswith(".") for name in _cache_files("tiny")), "no temp files left"


def test_a_name_works_for_a_dataset_and_caches_can_be_cleared(tiny):
    images, _ = _epoch(make_dataset("tiny", "val", 24, 8, cache="disk"))
    assert images.shape == (6, 24, 24, 3)
    assert load_arrays("tiny", "val", 24)[0].shape == (6, 24, 24, 3)
    assert class_counts("tiny", "val") == {"cat": 2, "dog": 2, "fox": 2}
    assert _cache_files("tiny")
    pipeline.clear_cache("tiny")
    assert not pipeline.cache_dir("tiny").exists()
    pipeline.clear_cache("tiny")  # nothing to clear is fine
    with pytest.raises(CnnlabError, match="There is no dataset named 'nope'"):
        make_dataset("nope", "train", 24, 4)


@pytest.mark.parametrize("cache", ["memory", "disk", None])
def test_oversampling_balances_the_classes(workspace, cache):
    name = make_dataset_on_disk("skewed", {"big": 12, "mid": 4, "small": 2}, size=12, splits=None)
    data = Dataset(name)
    assert class_counts(data, "train") == {"big": 8, "mid": 4, "small": 2}
    balanced = make_dataset(data, "train", 12, 5, oversample=True, seed=2, cache=cache)
    images, labels = _epoch(balanced)
    assert Counter(labels.tolist()) == {0: 8, 1: 8, 2: 8}
    # Every image of a minority class is drawn.
    small_train, _ = load_arrays(data, "train", 12)
    small_train = small_train[np.asarray(data.files_and_labels("train")[1]) == 2]
    drawn = {bytes(image) for image in images[labels == 2]}
    assert {bytes(image) for image in small_train} == drawn
    again_images, again_labels = _epoch(
        make_dataset(data, "train", 12, 5, oversample=True, seed=2, cache=cache)
    )
    np.testing.assert_array_equal(labels, again_labels)
    np.testing.assert_array_equal(images, again_images)


@pytest.mark.parametrize("cache", ["memory", "disk", None])
@pytest.mark.parametrize("oversample", [False, True])
def test_an_epoch_has_a_known_number_of_batches(tiny, cache, oversample):
    data = make_dataset(tiny, "train", 24, 4, cache=cache, oversample=oversample, shuffle=True)
    assert int(data.cardinality()) == 5 == len(list(data))
    assert int(make_dataset(tiny, "val", 24, 4, cache=cache, repeat=True).cardinality()) < 0


def test_oversampling_skips_a_class_missing_from_the_split(workspace):
    name = make_dataset_on_disk("gap", {"a": 5, "b": 5}, size=12, splits=(3, 1, 1))
    data = Dataset(name)
    records = [r for r in data.records if not (r.label == "b" and r.split == "val")]
    from cnnlab.data.dataset import write_index

    write_index(data.path / "index.csv", records)
    data = Dataset(name)
    assert class_counts(data, "val") == {"a": 1, "b": 0}
    _, labels = _epoch(make_dataset(data, "val", 12, 4, oversample=True))
    assert labels.tolist() == [0]


def test_repeat_runs_past_one_epoch(tiny):
    batches = list(make_dataset(tiny, "val", 24, 4, repeat=True).take(5))
    assert [int(x.shape[0]) for x, _ in batches] == [4, 2, 4, 2, 4]


def test_load_arrays_is_in_index_order(tiny):
    images, labels = load_arrays(tiny, "test", 24)
    files, expected = tiny.files_and_labels("test")
    assert images.shape == (6, 24, 24, 3) and images.dtype == np.uint8
    assert labels.tolist() == expected
    np.testing.assert_array_equal(images[-1], np.asarray(Image.open(files[-1])))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"cache": "ram"},
            r"`cache` must be one of 'auto', 'memory', 'disk', None. Received: cache='ram'",
        ),
        ({"image_size": 4}, r"`image_size` must be in \[8, 1024\]. Received: image_size=4"),
        ({"batch_size": 0}, r"`batch_size` must be in \[1, 4096\]. Received: batch_size=0"),
        ({"batch_size": 2.5}, r"`batch_size` must be a whole number. Received: batch_size=2.5"),
        (
            {"split": "holdout"},
            r"`split` must be one of train, val, test, or several joined by '\+' "
            r"\(train\+val\)\. Received: 'holdout'",
        ),
    ],
)
def test_bad_arguments_name_the_field(tiny, kwargs, message):
    arguments = {"split": "train", "image_size": 24, "batch_size": 4, **kwargs}
    with pytest.raises(CnnlabError, match=message):
        make_dataset(tiny, **arguments)


def test_an_empty_split_is_explained(workspace):
    name = make_dataset_on_disk("notest", {"a": 3, "b": 3}, size=12, splits=(3, 0, 0))
    with pytest.raises(CnnlabError, match=r"The test split of dataset 'notest' has no images"):
        make_dataset(Dataset(name), "test", 12, 2)


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_an_unreadable_image_is_named(tiny, cache):
    files, _ = tiny.files_and_labels("val")
    with open(files[1], "wb") as handle:
        handle.write(b"not a png at all")
    relative = Path(files[1]).relative_to(tiny.path)
    with pytest.raises(
        CnnlabError,
        match=rf"Could not read the image {relative} of the val split of dataset 'tiny' "
        r"\(.*Unknown image file format.*\); re-ingest",
    ):
        make_dataset(tiny, "val", 24, 4, cache=cache)
    assert not any(name.startswith(".") for name in _cache_files("tiny")), "no temp files left"
