"""ArchSpec, blocks, presets, the builder and the saved-architecture store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models import (
    ArchSpec,
    analyze,
    list_presets,
    list_saved_archs,
    load_saved_arch,
    resolve_arch,
    save_arch,
)
from cnnlab.models.blocks import BLOCK_TYPES, Conv, Gated, block_from_dict

SMALL_PRESETS = [name for name in list_presets() if name != "transfer"]

# One of every block type (but the backbone), in an order that builds.
EVERY_BLOCK = [
    {"type": "conv", "filters": 8, "kernel": 3, "padding": "same", "batch_norm": True},
    {"type": "conv", "filters": 8, "kernel": 5, "stride": 2, "activation": "gelu"},
    {"type": "separable_conv", "filters": 12, "batch_norm": False},
    {"type": "separable_conv", "filters": 12, "stride": 2},
    {"type": "pointwise_conv", "filters": 6, "batch_norm": True},
    {"type": "residual", "filters": 6},
    {"type": "residual", "filters": 10, "stride": 2, "batch_norm": False},
    {"type": "gated", "filters": 8, "kernels": [1, 3], "batch_norm": False},
    {"type": "gated", "filters": 8, "kernels": [3, 5, 7]},
    {"type": "pool", "mode": "average", "size": 2, "padding": "same"},
    {"type": "flatten"},
    {"type": "dense", "units": 16, "activation": "tanh"},
    {"type": "dropout", "rate": 0.5},
]


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _pixels(batch=2, height=40, width=37, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, channels))


# --- spec ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_presets())
def test_preset_json_round_trip(name):
    arch = ArchSpec.preset(name)
    text = arch.to_json()
    assert ArchSpec.from_json(text) == arch
    assert json.loads(text)["preset"] == name
    expanded = arch.to_blocks()
    assert ArchSpec.from_dict(json.loads(expanded.to_json())) == expanded
    assert expanded.resolved_blocks() == arch.resolved_blocks()


def test_block_list_round_trip_and_defaults():
    arch = ArchSpec.from_dict({"blocks": EVERY_BLOCK})
    again = ArchSpec.from_dict(json.loads(json.dumps(arch.to_dict())))
    assert again == arch and hash(again) == hash(arch)
    # global_pool and backbone are covered by the presets
    assert {block["type"] for block in arch.to_dict()["blocks"]} == set(BLOCK_TYPES) - {
        "backbone",
        "global_pool",
    }
    assert arch.blocks[7].kernels == (1, 3)
    assert arch.blocks[0].to_dict() == {
        "type": "conv",
        "filters": 8,
        "kernel": 3,
        "stride": 1,
        "padding": "same",
        "activation": "relu",
        "batch_norm": True,
    }


def test_preset_options_are_validated_and_completed():
    arch = ArchSpec.preset("vgg_small", width=16)
    assert arch.options["width"] == 16 and arch.options["stages"] == 3
    assert ArchSpec.preset("vgg_small", width=16, stages=3) == arch
    with pytest.raises(CnnlabError, match=r"`width` must be in \[4, 256\]. Received: width=2"):
        ArchSpec.preset("vgg_small", width=2)
    with pytest.raises(CnnlabError, match="Unknown `vgg_small` option field.*depth.*width"):
        ArchSpec.preset("vgg_small", depth=3)
    with pytest.raises(TypeError):
        arch.options["width"] = 8  # frozen


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(CnnlabError, match="Unknown architecture preset 'vgg'.*simple, vgg_small"):
        ArchSpec.preset("vgg")


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"blocks": [{"type": "conv", "filters": 0}]},
            r"Block 1 \(conv\): `filters` must be in \[1, 2048\]. Received: filters=0",
        ),
        (
            {"blocks": [{"type": "flatten"}, {"type": "conv", "padding": "full"}]},
            r"Block 2 \(conv\): `padding` must be one of 'valid', 'same'. Received: padding='full'",
        ),
        ({"blocks": [{"type": "convolution"}]}, r"`type` must be one of conv, separable_conv"),
        ({"blocks": [{"type": "conv", "size": 3}]}, r"Unknown block field.*size.*filters"),
        ({"blocks": [{"type": "conv", "batch_norm": "yes"}]}, r"`batch_norm` must be true or"),
        ({"blocks": [{"type": "gated", "kernels": [3]}]}, r"`kernels` must be a list of 2 to 6"),
        ({"blocks": [{"type": "gated", "kernels": [3, 99]}]}, r"`kernels` must be in \[1, 15\]"),
        ({"blocks": [{"type": "dropout", "rate": 1.5}]}, r"`rate` must be in \[0, 0.9\]"),
        ({"blocks": [{"type": "flatten"}, {"type": "backbone"}]}, r"must be the first block"),
        ({"blocks": []}, r"needs a preset or at least one block"),
        ({"preset": "simple", "blocks": [{"type": "flatten"}]}, r"not both"),
        ({"preset": "simple", "layers": []}, r"Unknown architecture field.*layers"),
        ({"blocks": ["conv"]}, r"Block 1 must be an object"),
        ([1, 2], r"must be a JSON object"),
    ],
)
def test_invalid_specs_say_what_and_where(data, message):
    with pytest.raises(CnnlabError, match=message):
        ArchSpec.from_dict(data)


def test_block_limits_are_data():
    assert Conv.limits("filters").high == 2048
    assert Conv.limits("padding").options == ("valid", "same")
    assert "branch" in Gated.help("kernels")
    assert block_from_dict({"type": "pool"}).size == 2


# --- store -----------------------------------------------------------------------------


def test_save_list_load_and_resolve(workspace, tmp_path):
    arch = ArchSpec.from_dict({"blocks": EVERY_BLOCK})
    assert save_arch("My net!", arch) == "My-net"
    assert list_saved_archs() == ["My-net"]
    assert load_saved_arch("My-net") == arch
    assert resolve_arch("My-net") == arch
    assert resolve_arch("simple") == ArchSpec.preset("simple")
    assert resolve_arch({"preset": "vgg_small"}) == ArchSpec.preset("vgg_small")
    assert resolve_arch(arch) is arch
    path = tmp_path / "net.json"
    path.write_text(arch.to_json())
    assert resolve_arch(str(path)) == arch
    with pytest.raises(CnnlabError, match="name of a preset"):
        save_arch("simple", arch)
    with pytest.raises(CnnlabError, match=r"Unknown architecture 'nope'.*Presets: simple.*My-net"):
        resolve_arch("nope")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(CnnlabError, match=r"bad.json: .* not valid JSON: .*line 1, column 2"):
        resolve_arch(str(tmp_path / "bad.json"))
    # A bare list of blocks is an architecture too (what a block editor exports).
    bare = json.dumps([block.to_dict() for block in arch.resolved_blocks()])
    assert ArchSpec.from_json(bare).resolved_blocks() == arch.resolved_blocks()
    with pytest.raises(CnnlabError, match="does not exist"):
        resolve_arch(str(tmp_path / "missing.json"))


# --- builder ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_every_preset_builds_and_predicts(name, keras):
    from cnnlab.models import build_model

    model = build_model(ArchSpec.preset(name), 32, 3, 5)
    probabilities = np.asarray(model(_pixels(), training=False))
    assert probabilities.shape == (2, 5)
    assert not np.isnan(probabilities).any()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.layers[1].name == "resize" and model.layers[2].name == "rescale"
    assert model.layers[-1].name == "predictions"
    assert model.count_params() == analyze(ArchSpec.preset(name), 32, 3, 5).totals["params"]


def test_grayscale_and_any_input_size(keras):
    from cnnlab.models import build_model

    model = build_model(ArchSpec.preset("simple"), 28, 1, 10)
    assert model.input_shape == (None, None, None, 1)
    for height, width in ((28, 28), (64, 50)):
        assert model(_pixels(2, height, width, 1), training=False).shape == (2, 10)
    # The seeds' model, layer for layer.
    body = [layer for layer in model.layers if layer.name not in ("pixels", "resize", "rescale")]
    assert [type(layer).__name__ for layer in body] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert [body[0].filters, body[0].kernel_size, body[2].filters] == [32, (3, 3), 64]
    assert body[-1].activation.__name__ == "softmax" and model.count_params() == 34826


def test_every_block_builds_with_params_matching_the_analysis(keras):
    from cnnlab.models import build_model

    arch = ArchSpec.from_dict({"blocks": EVERY_BLOCK})
    model = build_model(arch, 32, 3, 4)
    assert model(_pixels(), training=True).shape == (2, 4)
    result = analyze(arch, 32, 3, 4)
    by_block: dict[str, int] = {}
    trainable: dict[str, int] = {}
    for layer in model.layers:
        block = next(
            (
                row["name"]
                for row in result.rows
                if layer.name == row["name"] or layer.name.startswith(row["name"] + "_")
            ),
            None,
        )
        if block is not None:
            by_block[block] = by_block.get(block, 0) + layer.count_params()
            trainable[block] = trainable.get(block, 0) + sum(
                int(np.prod(weight.shape)) for weight in layer.trainable_weights
            )
    for row in result.rows[1:]:
        assert by_block.get(row["name"], 0) == row["params"], row["name"]
        assert trainable.get(row["name"], 0) == row["trainable_params"], row["name"]
        shape = model.get_layer(row["name"]).output.shape[1:]
        assert list(shape) == row["output_shape"], row["name"]
    assert result.totals["params"] == model.count_params()


def test_layer_names_for_explanations(keras):
    from cnnlab.models import build_model, conv_layer_names, gate_layer_names

    simple = build_model(ArchSpec.preset("simple"), 32, 3, 3)
    assert conv_layer_names(simple) == ["conv_1", "conv_2"]
    assert gate_layer_names(simple) == []
    gated = build_model(ArchSpec.from_dict({"blocks": EVERY_BLOCK}), 32, 3, 3)
    assert conv_layer_names(gated) == [
        "conv_1",
        "conv_2",
        "sepconv_1",
        "sepconv_2",
        "pointwise_1",
        "res_1",
        "res_2",
        "gated_1",
        "gated_2",
    ]
    assert gate_layer_names(gated) == ["gated_1_gate", "gated_2_gate"]


def test_gate_is_input_dependent_and_sums_to_one(keras):
    from cnnlab.models import build_model, gate_values

    arch = ArchSpec.from_dict(
        {"blocks": [{"type": "gated", "filters": 4, "kernels": [1, 3, 5]}, {"type": "flatten"}]}
    )
    model = build_model(arch, 16, 3, 2)
    gate = model.get_layer("gated_1_gate")
    kernel, bias = gate.get_weights()
    gate.set_weights([np.random.default_rng(1).normal(0, 5, kernel.shape), bias])
    images = np.concatenate([_pixels(2, 16, 16, seed=2), np.zeros((1, 16, 16, 3))])
    values = gate_values(model, images)["gated_1_gate"]
    assert values.shape == (3, 3)
    np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(values[0], values[2])  # a different image, a different mix
    # The block's output is exactly the gate-weighted sum of its branches.
    names = [f"gated_1_branch_{i}" for i in (1, 2, 3)] + ["gated_1_gate", "gated_1"]
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    *branches, weights, mixed = probe.predict(images, verbose=0)
    expected = sum(weights[:, i, None, None, None] * branches[i] for i in range(3))
    np.testing.assert_allclose(mixed, expected, rtol=1e-4, atol=1e-5)


def test_saved_model_loads_without_custom_objects(tmp_path, keras):
    from cnnlab.models import build_model

    model = build_model(ArchSpec.preset("gated_small", width=8, gated_blocks=1), 24, 3, 3)
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.models.load_model(path)
    images = _pixels(2, 30, 20)
    np.testing.assert_allclose(
        again.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5
    )


def test_augmentation_runs_on_raw_pixels_before_rescaling(keras):
    from cnnlab.models import build_model

    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augment")
    model = build_model(ArchSpec.preset("simple"), 32, 3, 3, augmentation=augmentation)
    assert [layer.name for layer in model.layers[:4]] == ["pixels", "resize", "augment", "rescale"]


def test_mixed_precision_keeps_float32_predictions(keras):
    from cnnlab.models import build_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(ArchSpec.preset("gated_small", width=8, gated_blocks=1), 24, 3, 3)
        assert model.get_layer("conv_1_conv").compute_dtype == "float16"
        output = model(_pixels(2, 24, 24), training=False)
        assert "float32" in str(output.dtype)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_builder_reports_bad_sizes_and_shapes(keras):
    from cnnlab.models import build_model

    with pytest.raises(CnnlabError, match=r"`channels` must be one of 1, 3. Received: channels=4"):
        build_model(ArchSpec.preset("simple"), 32, 4, 3)
    with pytest.raises(CnnlabError, match=r"`num_classes` must be in \[2, 10000\]"):
        build_model(ArchSpec.preset("simple"), 32, 3, 1)
    with pytest.raises(CnnlabError, match=r"shrink an 8x8 input below 1x1 at layer `pool_2`"):
        build_model(ArchSpec.preset("simple"), 8, 3, 3)


def test_weights_file_warm_start(tmp_path, keras):
    from cnnlab.models import build_model

    first = build_model(ArchSpec.preset("simple"), 24, 3, 3)
    first.save_weights(tmp_path / "simple.weights.h5")
    second = build_model(
        ArchSpec.preset("simple"), 24, 3, 3, weights=str(tmp_path / "simple.weights.h5")
    )
    images = _pixels(2, 24, 24)
    np.testing.assert_allclose(second.predict(images, verbose=0), first.predict(images, verbose=0))
    with pytest.raises(CnnlabError, match="do not fit this architecture"):
        build_model(
            ArchSpec.preset("simple"), 32, 3, 3, weights=str(tmp_path / "simple.weights.h5")
        )
    with pytest.raises(CnnlabError, match="existing weights file"):
        build_model(ArchSpec.preset("simple"), 24, 3, 3, weights=str(tmp_path / "none.h5"))


def test_block_table_rows_round_trip_and_forgive_gaps():
    from cnnlab.models.table import blocks_to_rows, rows_to_blocks

    arch = ArchSpec.from_dict({"blocks": EVERY_BLOCK})
    rows = blocks_to_rows(arch.blocks)
    assert rows[7]["kernels"] == "1,3" and rows[10]["filters"] is None
    assert ArchSpec.from_blocks(rows_to_blocks(rows)) == arch
    # What a table hands back: NaN gaps, floats in integer columns, a fresh empty row,
    # and a row whose type changed (its old fields are ignored).
    table = [
        {"type": "conv", "filters": 16.0, "kernel": float("nan"), "padding": None},
        {"type": None, "filters": None, "kernel": None},
        {"type": "pool", "filters": 16.0, "size": 3.0, "kernels": ""},
        {"type": "gated", "kernels": " 1, 3 ,5"},
        {"type": "flatten"},
    ]
    assert rows_to_blocks(table) == [
        {"type": "conv", "filters": 16},
        {"type": "pool", "size": 3},
        {"type": "gated", "kernels": (1, 3, 5)},
        {"type": "flatten"},
    ]
    with pytest.raises(CnnlabError, match=r"Block 1 \(gated\): `kernels` must be whole numbers"):
        rows_to_blocks([{"type": "gated", "kernels": "3x3"}])
    with pytest.raises(CnnlabError, match=r"Block 1: `type` must be one of conv"):
        rows_to_blocks([{"type": None, "filters": 3}])
