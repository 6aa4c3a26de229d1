"""AugmentSpec limits, the op registry, the layer stack, previews and storage."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cnnlab import workspace
from cnnlab.data import augment
from cnnlab.data.augment import (
    AugmentSpec,
    build_augmentation,
    load_augment,
    preview,
    registered_ops,
    save_augment,
)
from cnnlab.errors import CnnlabError
from cnnlab.spec import Range

# The strongest value each op allows, so every layer does visible work.
STRONGEST = {
    field.name: (True if isinstance(field.default, bool) else AugmentSpec.limits(field.name).high)
    for field in dataclasses.fields(AugmentSpec)
}


def _image(size=32, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, channels), dtype=np.uint8)


# --- the spec ------------------------------------------------------------------------


def test_default_spec_is_neutral_and_round_trips():
    spec = AugmentSpec()
    assert spec.is_neutral()
    assert spec.active_ops() == []
    assert AugmentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_rotation_out_of_range_names_field_and_value():
    with pytest.raises(
        CnnlabError, match=r"`rotation` must be in \[0, 0.5\]. Received: rotation=0.9"
    ):
        AugmentSpec(rotation=0.9)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("zoom", -0.1, r"`zoom` must be in \[0, 0.5\]. Received: zoom=-0.1"),
        ("contrast", 1.5, r"`contrast` must be in \[0, 1\]. Received: contrast=1.5"),
        ("brightness", "a lot", r"`brightness` must be a number. Received: brightness='a lot'"),
        ("horizontal_flip", "yes", r"`horizontal_flip` must be one of False, True"),
        (
            "vertical_flip",
            1,
            r"`vertical_flip` must be one of False, True. Received: vertical_flip=1",
        ),
        ("gaussian_noise", float("nan"), r"`gaussian_noise` must be a finite number"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(field, value, message):
    with pytest.raises(CnnlabError, match=message):
        AugmentSpec(**{field: value})


def test_unknown_field_lists_the_valid_ones():
    with pytest.raises(CnnlabError, match=r"Unknown augmentation spec field\(s\): spin.*rotation"):
        AugmentSpec.from_dict({"spin": 0.1})


def test_every_field_has_limits_and_help():
    for field in dataclasses.fields(AugmentSpec):
        assert AugmentSpec.limits(field.name) is not None, field.name
        assert AugmentSpec.help(field.name), field.name


def test_recommended_is_mild_and_skips_flips_for_grayscale_or_oriented_data():
    colour, gray = AugmentSpec.recommended(3), AugmentSpec.recommended(1)
    oriented = AugmentSpec.recommended(3, orientation_matters=True)
    assert colour.horizontal_flip and not gray.horizontal_flip
    assert not oriented.horizontal_flip and not oriented.vertical_flip
    for spec in (colour, gray, oriented):
        assert not spec.is_neutral()
        for field in dataclasses.fields(spec):
            limits = AugmentSpec.limits(field.name)
            if isinstance(limits, Range):
                assert getattr(spec, field.name) <= limits.high / 2


# --- the registry ----------------------------------------------------------------------


def test_registry_covers_every_field_exactly_once():
    assert sorted(registered_ops()) == sorted(f.name for f in dataclasses.fields(AugmentSpec))


def test_a_duplicate_op_name_fails():
    with pytest.raises(ValueError, match="registered twice"):
        augment.augmentation_op("rotation")(lambda value, seed: None)
    assert augment.get_op("rotation").build is augment._rotation


def test_unknown_op_lists_valid_names():
    with pytest.raises(CnnlabError, match=r"Unknown augmentation 'spin'. Valid augmentations: "):
        augment.get_op("spin")


def test_colour_ops_are_skipped_for_grayscale():
    spec = AugmentSpec(saturation=0.5, hue=0.2, rotation=0.1)
    assert spec.active_ops(3) == ["rotation", "saturation", "hue"]
    assert spec.active_ops(1) == ["rotation"]


@pytest.mark.parametrize("name", registered_ops())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_builds_keeps_shape_dtype_and_range(name, channels):
    spec = AugmentSpec(**{name: STRONGEST[name]})
    stack = build_augmentation(spec, channels, seed=1)
    op_layers = [layer.name for layer in stack.layers]
    skipped = augment.get_op(name).colour_only and channels == 1
    assert op_layers == (["to_float32"] if skipped else ["to_float32", name, "clip_0_255"])

    images = np.stack([_image(24, channels, seed) for seed in range(4)])
    out = np.asarray(stack(images, training=True))
    assert out.shape == images.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    if not skipped:
        assert not np.allclose(out, images), f"{name} changed nothing"
    # At inference the stack only casts.
    np.testing.assert_array_equal(np.asarray(stack(images, training=False)), images)


def test_neutral_spec_only_casts():
    stack = build_augmentation(AugmentSpec(), 3)
    assert [layer.name for layer in stack.layers] == ["to_float32"]
    images = _image()[None]
    np.testing.assert_array_equal(np.asarray(stack(images, training=True)), images)


def test_bad_channels_are_refused():
    with pytest.raises(CnnlabError, match=r"`channels` must be one of 1, 3. Received: channels=4"):
        build_augmentation(AugmentSpec(), 4)


def test_stack_works_inside_a_model_and_in_tf_data():
    import keras
    import tensorflow as tf

    spec = AugmentSpec(horizontal_flip=True, rotation=0.1, contrast=0.2)
    inputs = keras.Input((24, 24, 3), dtype="uint8")
    outputs = build_augmentation(spec, 3, seed=0)(inputs)
    model = keras.Model(inputs, outputs)
    images = np.stack([_image(24, 3, seed) for seed in range(4)])
    np.testing.assert_array_equal(model.predict(images, verbose=0), images)

    stack = build_augmentation(spec, 3, seed=0)
    data = tf.data.Dataset.from_tensor_slices(images).batch(2)
    data = data.map(lambda x: stack(x, training=True))
    batches = list(data.as_numpy_iterator())
    assert [b.shape for b in batches] == [(2, 24, 24, 3), (2, 24, 24, 3)]
    assert all(b.min() >= 0 and b.max() <= 255 for b in batches)


def test_a_model_holding_every_op_saves_and_loads(tmp_path):
    import keras

    inputs = keras.Input((24, 24, 3), dtype="uint8")
    outputs = build_augmentation(AugmentSpec(**STRONGEST), 3, seed=0)(inputs)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    names = [layer.name for layer in loaded.get_layer("augmentation").layers]
    assert names == ["to_float32", *registered_ops(), "clip_0_255"]
    images = np.stack([_image(24, 3, seed) for seed in range(2)])
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), images)


def _centred_square(batch=8, size=32, side=8):
    images = np.zeros((batch, size, size, 1), np.uint8)
    start = (size - side) // 2
    images[:, start : start + side, start : start + side] = 255
    return images


def _extent(image):
    """Height and width of the bright region of one (H, W, 1) image."""
    bright = image[..., 0] > 127
    return int(bright.any(axis=1).sum()), int(bright.any(axis=0).sum())


def test_crop_zooms_in_with_varying_aspect_and_only_when_training():
    images = _centred_square()
    stack = build_augmentation(AugmentSpec(crop=0.5), 1, seed=3)
    assert [layer.name for layer in stack.layers] == ["to_float32", "crop", "clip_0_255"]
    out = np.asarray(stack(images, training=True))
    extents = [_extent(image) for image in out]
    # Zoom in only: the centred square never shrinks, and it grows in most variants.
    assert all(height >= 8 and width >= 8 for height, width in extents), extents
    assert sum(height > 8 or width > 8 for height, width in extents) >= len(extents) // 2
    # Height and width are drawn independently, so the square becomes a rectangle.
    assert any(height != width for height, width in extents), extents
    # Around the centre: the grown square stays centred (to within interpolation).
    rows = np.where(out[0, :, :, 0].max(axis=1) > 127)[0]
    assert abs((rows[0] + rows[-1]) / 2 - 15.5) <= 1.0
    np.testing.assert_array_equal(np.asarray(stack(images, training=False)), images)


def test_crop_comes_before_zoom_and_translation():
    ops = registered_ops()
    assert ops.index("vertical_flip") < ops.index("crop") < ops.index("rotation")
    assert ops.index("crop") < ops.index("zoom") < ops.index("translation")
    spec = AugmentSpec(crop=0.2, zoom=0.1, translation=0.1)
    assert spec.active_ops() == ["crop", "zoom", "translation"]


def test_a_model_with_crop_saves_and_loads_without_custom_objects(tmp_path):
    import keras

    spec = AugmentSpec(crop=0.3, translation=0.1, horizontal_flip=True)
    inputs = keras.Input((24, 24, 3), dtype="uint8")
    outputs = build_augmentation(spec, 3, seed=0)(inputs)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    crop = loaded.get_layer("augmentation").get_layer("crop")
    assert isinstance(crop, keras.layers.RandomZoom)
    config = crop.get_config()
    assert list(config["height_factor"]) == list(config["width_factor"]) == [-0.3, 0.0]
    images = np.stack([_image(24, 3, seed) for seed in range(2)])
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), images)
    varied = np.asarray(loaded.get_layer("augmentation")(images, training=True))
    assert not np.allclose(varied, images)


# --- preview ---------------------------------------------------------------------------


def test_preview_is_deterministic_varied_and_reseedable():
    image = _image(64)
    spec = AugmentSpec(horizontal_flip=True, rotation=0.1, zoom=0.2, brightness=0.3)
    first = preview(image, spec, n=8, seed=0)
    again = preview(image, spec, n=8, seed=0)
    other = preview(image, spec, n=8, seed=1)
    assert len(first) == 8
    assert all(v.shape == image.shape and v.dtype == np.uint8 for v in first)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert len({v.tobytes() for v in first}) == 8, "every variant should differ"


def test_preview_is_fast():
    import time

    image, spec = _image(64), AugmentSpec.recommended(3)
    preview(image, spec)  # the first call pays Keras' start-up
    start = time.perf_counter()
    preview(image, spec, n=8, seed=3)
    assert time.perf_counter() - start < 1.0


def test_preview_of_neutral_spec_returns_the_image():
    image = _image(24)
    assert all(np.array_equal(v, image) for v in preview(image, AugmentSpec(), n=3))


def test_preview_keeps_a_2d_grayscale_image_2d():
    image = _image(24, 1)[..., 0]
    variants = preview(image, AugmentSpec(rotation=0.2, hue=0.3), n=2)
    assert [v.shape for v in variants] == [(24, 24), (24, 24)]


def test_preview_can_resize_first_as_the_pipeline_does():
    from cnnlab.data.pipeline import resize_pixels

    image = _image(48)
    variants = preview(image, AugmentSpec(), n=2, image_size=20)
    assert [v.shape for v in variants] == [(20, 20, 3), (20, 20, 3)]
    np.testing.assert_array_equal(variants[0], resize_pixels(image, 20))
    with pytest.raises(CnnlabError, match=r"`image_size` must be in \[8, 1024\]"):
        preview(image, AugmentSpec(), image_size=2)


def test_preview_refuses_a_bad_image():
    with pytest.raises(
        CnnlabError, match=r"`image` must be an .*Received: image.shape=\(4, 4, 4\)"
    ):
        preview(np.zeros((4, 4, 4), np.uint8), AugmentSpec())


# --- stored with the dataset -----------------------------------------------------------


def test_save_and_load_round_trip_keeps_the_rest_of_dataset_json(tiny_dataset):
    path = workspace.dataset_dir(tiny_dataset) / "dataset.json"
    before = workspace.read_json(path)
    assert load_augment(tiny_dataset) == AugmentSpec()
    spec = AugmentSpec(vertical_flip=True, rotation=0.125, gaussian_noise=8.0)
    save_augment(tiny_dataset, spec)
    assert load_augment(tiny_dataset) == spec
    after = workspace.read_json(path)
    assert after.pop("augment") == spec.to_dict()
    assert after == before


def test_a_damaged_entry_names_the_field(tiny_dataset):
    path = workspace.dataset_dir(tiny_dataset) / "dataset.json"
    meta = workspace.read_json(path)
    meta["augment"] = {"rotation": 2}
    workspace.atomic_write_json(path, meta)
    with pytest.raises(CnnlabError, match=r"'tiny'.*damaged: `rotation` must be in \[0, 0.5\]"):
        load_augment(tiny_dataset)
    meta["augment"] = [1, 2]
    workspace.atomic_write_json(path, meta)
    with pytest.raises(CnnlabError, match="damaged: expected an object of fields"):
        load_augment(tiny_dataset)
    # Saving a good spec repairs it.
    save_augment(tiny_dataset, AugmentSpec(zoom=0.1))
    assert load_augment(tiny_dataset) == AugmentSpec(zoom=0.1)


def test_unknown_dataset_is_named(workspace):
    with pytest.raises(CnnlabError, match=r"There is no dataset named 'nope'"):
        load_augment("nope")
    with pytest.raises(CnnlabError, match=r"There is no dataset named 'nope'"):
        save_augment("nope", AugmentSpec())
