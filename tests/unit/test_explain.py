"""Explanations: Grad-CAM finds the object, feature maps have the layer's shape, gated
models show their gate weights, and the drawings are well-formed images."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from cnnlab import explain
from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, build_model

SIZE = 24


QUADRANTS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}


def blob_images(
    count: int, with_blob: bool, seed: int, quadrant: tuple[int, int] | None = None
) -> np.ndarray:
    """Dim noise; with a bright 6x6 square somewhere inside ``quadrant`` ((row, column),
    e.g. (0, 1) = top right), or inside a random quadrant per image when None."""
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(60, 20, (count, SIZE, SIZE, 1)), 0, 255)
    if with_blob:
        half = SIZE // 2
        for image in images:
            row, column = quadrant if quadrant is not None else rng.integers(0, 2, size=2)
            top, left = rng.integers(1, half - 6, size=2) + (row * half, column * half)
            image[top : top + 6, left : left + 6] = 240
    return images.astype(np.uint8)


@pytest.fixture(scope="module")
def blob_model():
    """A small conv net trained (a few seconds) to tell 'a blob anywhere' from none."""
    keras.utils.set_random_seed(1)
    arch = ArchSpec.from_dict(
        {
            "blocks": [
                {"type": "conv", "filters": 8, "padding": "same"},
                {"type": "pool"},
                {"type": "conv", "filters": 16, "padding": "same"},
                {"type": "global_pool"},
            ]
        }
    )
    model = build_model(arch, SIZE, 1, 2)
    x = np.concatenate([blob_images(96, False, 0), blob_images(96, True, 1)]).astype("float32")
    y = np.array([0] * 96 + [1] * 96)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=12, batch_size=32, verbose=0, shuffle=True)
    test = np.concatenate([blob_images(10, False, 5), blob_images(10, True, 6)])
    accuracy = model.predict(test.astype("float32"), verbose=0).argmax(1) == [0] * 10 + [1] * 10
    assert accuracy.mean() >= 0.9, "the tiny model should learn the blob"
    return model


# Every quadrant: a map that ignores the image (always hot in one corner, or the same
# for every picture) fails for at least three of them.
@pytest.mark.parametrize("where", list(QUADRANTS))
def test_grad_cam_puts_most_heat_on_the_object(blob_model, where):
    quadrant = QUADRANTS[where]
    assert explain.conv_layers(blob_model) == ["conv_1", "conv_2"]
    shares = []
    for image in blob_images(6, True, seed=11, quadrant=quadrant):
        heat = explain.grad_cam(blob_model, image, class_index=1)
        assert heat.shape == (12, 12) and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() == pytest.approx(1.0)
        quadrants = explain.heat_by_quadrant(heat)
        assert quadrants.sum() == pytest.approx(1.0)
        hottest = np.unravel_index(quadrants.argmax(), quadrants.shape)
        assert hottest == quadrant, f"heat by quadrant: {quadrants}"
        shares.append(quadrants[quadrant])
    assert np.mean(shares) > 0.6, shares


def test_grad_cam_defaults_to_the_last_conv_layer_and_the_predicted_class(blob_model):
    image = blob_images(1, True, seed=12)[0]
    default = explain.grad_cam(blob_model, image)
    np.testing.assert_allclose(default, explain.grad_cam(blob_model, image, "conv_2", 1))
    early = explain.grad_cam(blob_model, image, layer_name="conv_1")
    assert early.shape == (24, 24)  # conv_1 comes before the pooling
    with pytest.raises(CnnlabError, match=r"`class_index` must be in \[0, 1\]"):
        explain.grad_cam(blob_model, image, class_index=2)
    with pytest.raises(CnnlabError, match="no layer named 'conv_9'. Convolution layers: conv_1"):
        explain.grad_cam(blob_model, image, layer_name="conv_9")
    with pytest.raises(CnnlabError, match="not feature maps"):
        explain.grad_cam(blob_model, image, layer_name="global_pool_1")


def test_heat_by_quadrant_splits_odd_sizes_fairly():
    heat = np.zeros((5, 5))
    heat[2, 2] = 1.0  # the exact centre belongs to all four quadrants equally
    np.testing.assert_allclose(explain.heat_by_quadrant(heat), np.full((2, 2), 0.25))
    heat = np.zeros((4, 4))
    heat[3, 0] = 2.0
    np.testing.assert_allclose(explain.heat_by_quadrant(heat), [[0, 0], [1, 0]])
    np.testing.assert_allclose(explain.heat_by_quadrant(np.zeros((3, 3))), np.zeros((2, 2)))


def test_feature_maps_match_the_layer(blob_model):
    image = blob_images(1, True, seed=13)[0]
    for name in explain.conv_layers(blob_model):
        maps = explain.feature_maps(blob_model, image, name)
        expected = blob_model.get_layer(name).output.shape[1:]
        assert maps.shape == tuple(expected)
    reference = keras.Model(blob_model.inputs[0], blob_model.get_layer("conv_1").output)
    np.testing.assert_allclose(
        explain.feature_maps(blob_model, image, "conv_1"),
        reference(image[None].astype("float32"), training=False)[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_feature_map_grid_layout():
    maps = np.random.default_rng(0).normal(size=(6, 6, 20)).astype("float32")
    maps[..., 3] = 7.0  # a constant channel draws as the colour map's bottom, not NaN
    grid = explain.feature_map_grid(maps, max_channels=12, columns=5, gap=2)
    cell = 6 * 16  # 6 px maps enlarged x16 to reach at least MIN_CELL (96) px
    assert explain.MIN_CELL == 96
    assert grid.mode == "RGB"
    assert grid.size == (5 * cell + 4 * 2, 3 * cell + 2 * 2)
    pixels = np.asarray(grid)
    assert (pixels[:cell, cell : cell + 2] == 255).all()  # the gap between cells
    constant = pixels[:cell, 3 * (cell + 2) : 3 * (cell + 2) + cell]
    assert (constant == explain.apply_colormap(np.zeros(1), "even")[0]).all()
    # Fewer channels than columns: one row just wide enough.
    small = explain.feature_map_grid(maps[..., :2], columns=8)
    assert small.size == (2 * cell + 2, cell)
    with pytest.raises(CnnlabError, match="must be \\(height, width, channels\\)"):
        explain.feature_map_grid(np.zeros((4, 4)))
    with pytest.raises(CnnlabError, match="`max_channels` and `columns` must be at least 1"):
        explain.feature_map_grid(maps, max_channels=0)


def test_gate_weights_of_a_gated_model():
    keras.utils.set_random_seed(0)
    model = build_model(ArchSpec.from_dict({"preset": "gated_small"}), 24, 3, 4)
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    weights = explain.gate_weights(model, image)
    assert list(weights) == explain.gate_layers(model) and weights
    for name, values in weights.items():
        branches = model.get_layer(name).output.shape[-1]
        assert values.shape == (branches,)
        assert values.sum() == pytest.approx(1.0, abs=1e-5)
    from cnnlab.models import gate_values

    reference = gate_values(model, image[None])
    for name, values in weights.items():
        np.testing.assert_allclose(values, reference[name][0], atol=1e-6)
    # A gated layer is a feature map like any other: Grad-CAM works on it.
    labels = explain.gate_branch_labels(model, next(iter(weights)))
    assert labels == ["branch 1 (1x1)", "branch 2 (3x3)", "branch 3 (5x5)"]
    figure = explain.gate_weights_figure(weights, {name: labels for name in weights})
    assert len(figure.data) == len(weights) and list(figure.data[0].x) == labels
    gated = [name for name in explain.conv_layers(model) if name.startswith("gated_")]
    assert explain.grad_cam(model, image, gated[-1]).ndim == 2


def test_plain_model_has_no_gates(blob_model):
    assert explain.gate_weights(blob_model, blob_images(1, False, 0)[0]) == {}


def test_colormap_and_overlay():
    ramp = explain.apply_colormap(np.linspace(0, 1, 5), "heat")
    assert ramp.shape == (5, 3) and ramp.dtype == np.uint8
    assert tuple(ramp[0]) == (48, 18, 59) and tuple(ramp[-1]) == (180, 15, 10)
    assert tuple(explain.apply_colormap(np.array([np.nan, -1, 2]), "even")[2]) == (253, 231, 37)
    with pytest.raises(CnnlabError, match="`colormap` must be one of heat, even"):
        explain.apply_colormap(np.zeros(2), "jet")

    image = Image.fromarray(np.full((40, 80), 128, np.uint8), "L")
    heat = np.zeros((6, 6), "float32")
    heat[:3, :3] = 1.0
    overlay = explain.overlay_heatmap(image, heat, alpha=0.5, side=160)
    assert overlay.mode == "RGB" and overlay.size == (160, 80)
    pixels = np.asarray(overlay).astype(int)
    hot, cold = pixels[5, 5], pixels[75, 155]
    assert hot[0] > hot[2] and abs(hot[0] - 128) > 20  # reddish where the heat is
    assert np.abs(cold - 128).max() < np.abs(hot - 128).max()
    with pytest.raises(CnnlabError, match=r"`alpha` must be in \[0, 1\]"):
        explain.overlay_heatmap(image, heat, alpha=2)
    assert explain.display_image(Image.new("RGB", (8, 4)), side=64).size == (64, 32)
