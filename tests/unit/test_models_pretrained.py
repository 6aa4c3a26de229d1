"""Pretrained backbones: cnnlab's inlined model computes exactly what Keras's does.

No network here, so a stand-in "ImageNet" file (random weights in the legacy .h5
layout keras.applications download) is served in place of the download. Slow: each
case builds the backbone three times.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cnnlab.models import ArchSpec

BACKBONES = ["mobilenetv2", "efficientnetb0", "resnet50"]
TITLES = {"mobilenetv2": "MobileNetV2", "efficientnetb0": "EfficientNetB0", "resnet50": "ResNet50"}
FIRST_ACTIVATION = {
    "mobilenetv2": "Conv1_relu",
    "efficientnetb0": "stem_activation",
    "resnet50": "conv1_relu",
}
PREPROCESS_MODULES = {
    "mobilenetv2": "mobilenet_v2",
    "efficientnetb0": "efficientnet",
    "resnet50": "resnet50",
}


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _legacy_weights_file(application, path):
    """Write ``application``'s weights in the legacy .h5 layout keras.applications use."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, application)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_pretrained_backbone_matches_keras_with_its_preprocessing(
    backbone, keras, tmp_path, monkeypatch
):
    """A stand-in for ImageNet weights: cnnlab's model computes what Keras's does."""
    from keras.src.utils import file_utils

    from cnnlab.models import build_model

    title = TITLES[backbone]
    application = getattr(keras.applications, title)
    donor = application(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    donor.set_weights(
        [w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in donor.get_weights()]
    )
    weights_file = _legacy_weights_file(donor, tmp_path / "imagenet_notop.h5")
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(weights_file))

    model = build_model(ArchSpec.preset("transfer", backbone=backbone), 32, 3, 3)
    # Keras changes EfficientNet's stem for ImageNet weights, so rebuild it the Keras way;
    # the others are the donor itself.
    reference = donor
    if backbone == "efficientnetb0":
        reference = application(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    preprocess = getattr(keras.applications, PREPROCESS_MODULES[backbone]).preprocess_input
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # Random networks fade to ~0 by their last layer, so compare the first activation
    # (which sees the whole preprocessing) and then every weight.
    first = FIRST_ACTIVATION[backbone]
    ours = np.asarray(keras.Model(model.inputs, model.get_layer(first).output)(images))
    theirs = np.asarray(
        keras.Model(reference.inputs, reference.get_layer(first).output)(preprocess(images.copy()))
    )
    scale = np.abs(theirs).max()
    assert scale > 0.1
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)
    for layer in donor.layers:
        if layer.weights and not isinstance(layer, keras.layers.Normalization):
            for expected, loaded in zip(
                layer.get_weights(), model.get_layer(layer.name).get_weights(), strict=True
            ):
                np.testing.assert_array_equal(loaded, expected)
