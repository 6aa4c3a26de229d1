"""Transfer presets: keras.applications backbones and EfficientNet-Lite0, offline, with
random or local weights."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, analyze

BACKBONES = ["mobilenetv2", "efficientnetb0", "resnet50", "efficientnetlite0"]


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _pixels(batch=2, size=40, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, channels))


def _trainable_count(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_transfer_builds_offline_with_random_weights(backbone, keras):
    from cnnlab.models import build_model, conv_layer_names

    arch = ArchSpec.preset("transfer", backbone=backbone, weights="none", fine_tune_last=8)
    model = build_model(arch, 32, 1, 4)  # grayscale: repeated to 3 channels inside
    probabilities = np.asarray(model(_pixels(channels=1), training=False))
    assert probabilities.shape == (2, 4) and not np.isnan(probabilities).any()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("gray_to_rgb").output.shape[-1] == 3
    result = analyze(arch, 32, 1, 4)
    assert result.totals["params"] == model.count_params()
    assert result.totals["trainable_params"] == _trainable_count(model)
    names = conv_layer_names(model)
    assert names[-1] == "backbone_features" and len(names) > 10
    # Frozen batch norm even among the fine-tuned layers.
    assert not any(
        layer.trainable
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_frozen_backbone_trains_only_the_classifier(keras):
    from cnnlab.models import build_model

    arch = ArchSpec.preset("transfer", weights="none", fine_tune_last=0)
    model = build_model(arch, 32, 3, 5)
    assert _trainable_count(model) == 1280 * 5 + 5
    assert analyze(arch, 32, 3, 5).totals["trainable_params"] == 1280 * 5 + 5


def test_imagenet_offline_says_what_to_do(monkeypatch, keras):
    from keras.src.utils import file_utils

    from cnnlab.models import build_model

    def no_network(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(
        CnnlabError,
        match=r"ImageNet weights for MobileNetV2 could not be downloaded \(.*Name or service"
        r".*\)\. Pass a local weights file \(weights=PATH\) or use random initialisation",
    ):
        build_model(ArchSpec.preset("transfer", backbone="mobilenetv2"), 32, 3, 3)
    # The default backbone needs no download: its ImageNet weights are installed.
    model = build_model(ArchSpec.preset("transfer"), 32, 3, 3)
    assert model.get_layer("top_activation").output.shape[-1] == 1280


def test_backbone_size_and_weights_messages(keras, workspace):
    from cnnlab.models import build_model

    with pytest.raises(CnnlabError, match=r"`image_size` must be at least 32 for the ResNet50"):
        analyze(ArchSpec.preset("transfer", backbone="resnet50"), 24, 3, 3)
    with pytest.raises(CnnlabError, match=r"existing weights file.*nothing.h5"):
        build_model(ArchSpec.preset("transfer", weights=str(workspace / "nothing.h5")), 32, 3, 3)
    with pytest.raises(CnnlabError, match=r"`backbone` must be one of 'mobilenetv2'"):
        ArchSpec.preset("transfer", backbone="vgg16")
    assert "image_size` 96 or more" in analyze(ArchSpec.preset("transfer"), 32, 3, 3).warnings[0]


def test_local_weights_file(keras, workspace):
    from cnnlab.models import build_model

    donor = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    donor.set_weights(
        [w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in donor.get_weights()]
    )
    workspace.mkdir(parents=True)  # weights files must lie in the workspace or Keras's cache
    path = workspace / "mobilenet.weights.h5"
    donor.save_weights(path)
    mobilenet = {"backbone": "mobilenetv2"}
    model = build_model(ArchSpec.preset("transfer", weights=str(path), **mobilenet), 32, 3, 3)
    for layer in (layer for layer in donor.layers if layer.weights):
        for expected, loaded in zip(
            layer.get_weights(), model.get_layer(layer.name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(loaded, expected)
    other = workspace / "simple.weights.h5"
    build_model(ArchSpec.preset("simple"), 32, 3, 3).save_weights(other)
    with pytest.raises(CnnlabError, match="does not fit MobileNetV2 without its top"):
        build_model(ArchSpec.preset("transfer", weights=str(other), **mobilenet), 32, 3, 3)
