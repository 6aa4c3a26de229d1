"""The analysis against hand computation, its messages and warnings, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, analyze, list_presets, save_arch
from cnnlab.models.analysis import training_memory_bytes

# The seeds' model on 28x28 grayscale digits, 10 classes, worked out by hand:
#   conv_1: 3*3*1*32 + 32 = 320 params; 26*26*32 outputs, each 3*3*1 MACs
#   pool_1: 13x13x32; receptive field 3 + (2-1)*1 = 4, jump 2
#   conv_2: 3*3*32*64 + 64 = 18,496 params; 11*11*64 outputs, each 3*3*32 MACs; RF 4 + 2*2 = 8
#   pool_2: 5x5x64 (floor 11/2); RF 8 + 1*2 = 10, jump 4
#   predictions: 5*5*64 = 1600 inputs -> 1600*10 + 10 = 16,010 params
SIMPLE_28 = [
    # name, output shape, params, MACs, float32 outputs, receptive field, jump
    ("input", [28, 28, 1], 0, 0, 2 * 28 * 28, 1, 1),
    ("conv_1", [26, 26, 32], 320, 26 * 26 * 32 * 9, 26 * 26 * 32, 3, 1),
    ("pool_1", [13, 13, 32], 0, 0, 13 * 13 * 32, 4, 2),
    ("conv_2", [11, 11, 64], 18_496, 11 * 11 * 64 * 9 * 32, 11 * 11 * 64, 8, 2),
    ("pool_2", [5, 5, 64], 0, 0, 5 * 5 * 64, 10, 4),
    ("flatten_1", [1600], 0, 0, 1600, None, None),
    ("predictions", [10], 16_010, 16_000, 10, None, None),
]


def test_simple_matches_hand_computation():
    result = analyze(ArchSpec.preset("simple"), 28, 1, 10, batch_size=32)
    table = [
        (
            r["name"],
            r["output_shape"],
            r["params"],
            r["macs"],
            r["activation_bytes"] // 4,
            r["receptive_field"],
            r["jump"],
        )
        for r in result.rows
    ]
    assert table == SIMPLE_28
    assert [r["type"] for r in result.rows][1:3] == ["Convolution", "Pooling"]
    totals = result.totals
    assert totals["params"] == totals["trainable_params"] == 34_826
    assert totals["macs"] == 194_688 + 2_230_272 + 16_000
    activation_bytes = 4 * sum(row[4] for row in SIMPLE_28)
    assert totals["activation_bytes"] == activation_bytes
    # weights (4 B) + gradients and two Adam moments (12 B), then activations and grads
    assert totals["training_memory_bytes"] == 16 * 34_826 + 2 * 32 * activation_bytes
    assert training_memory_bytes(10, 4, 100, 2) == 4 * (10 + 12) + 400
    assert result.warnings == []


def test_simple_on_larger_images_warns_with_fixes():
    warnings = analyze(ArchSpec.preset("simple"), 64, 3, 10).warnings
    assert len(warnings) == 2
    assert "`pool_2`) sees only 10x10 pixels of the 64x64 image" in warnings[0]
    assert "lower `image_size`" in warnings[0]
    # 14*14*64*10 + 10 = 125,450 of 125,450 + 896 + 18,496 parameters
    assert warnings[1].startswith("`flatten_1` → `predictions` holds 87% of the parameters")
    assert "(125,450 of 144,842)" in warnings[1] and "use `global_pool`" in warnings[1]


def test_flatten_dense_warning_skips_dropout_and_names_hidden_dense():
    arch = ArchSpec.from_dict(
        {
            "blocks": [
                {"type": "conv", "filters": 8, "padding": "same"},
                {"type": "flatten"},
                {"type": "dropout"},
                {"type": "dense", "units": 64},
            ]
        }
    )
    warnings = analyze(arch, 32, 3, 3).warnings
    assert any(w.startswith("`flatten_1` → `dense_1` holds 100%") for w in warnings)


@pytest.mark.parametrize(
    "blocks, size, message",
    [
        (
            [{"type": "pool"}] * 4 + [{"type": "flatten"}],
            8,
            r"^4 pooling layers shrink an 8x8 input below 1x1 at layer `pool_4`; remove a pooling "
            r"layer or raise `image_size` to at least 16\.$",
        ),
        (
            [{"type": "conv", "stride": 2, "padding": "same"}] * 5
            + [{"type": "conv", "kernel": 3}, {"type": "flatten"}],
            16,
            r"^5 strided convolutions and 1 'valid' convolution shrink a 16x16 input below 1x1 at "
            r"layer `conv_6`; use stride 1 in a convolution or raise `image_size` to at least "
            r"65\.$",
        ),
        (
            [{"type": "conv", "kernel": 15}, {"type": "flatten"}],
            8,
            r"^1 'valid' convolution shrinks an 8x8 input below 1x1 at layer `conv_1`; use padding "
            r"'same' or raise `image_size` to at least 15\.$",
        ),
    ],
)
def test_spatial_collapse_names_layer_and_fix(blocks, size, message):
    with pytest.raises(CnnlabError, match=message):
        analyze({"blocks": blocks}, size, 3, 3)


def test_simple_too_small_for_its_pooling():
    with pytest.raises(
        CnnlabError,
        match=r"shrink an 8x8 input below 1x1 at layer `pool_2`.*"
        r"at least 10\.",
    ):
        analyze(ArchSpec.preset("simple"), 8, 1, 10)
    assert analyze(ArchSpec.preset("simple"), 10, 1, 10).rows[4]["output_shape"] == [1, 1, 64]


@pytest.mark.parametrize(
    "blocks, message",
    [
        (
            [{"type": "dense"}],
            r"Block 1 \(`dense_1`\): `dense` needs a flat vector but gets a "
            r"16x16x3 feature map; put `flatten` or `global_pool` before it\.",
        ),
        (
            [{"type": "flatten"}, {"type": "conv"}],
            r"Block 2 \(`conv_1`\): `conv` needs a "
            r"feature map .* move it before",
        ),
        (
            [{"type": "conv"}],
            r"blocks end with a 14x14x32 feature map.*add `flatten` or `global_pool`",
        ),
    ],
)
def test_shape_mistakes_say_where_and_how(blocks, message):
    with pytest.raises(CnnlabError, match=message):
        analyze({"blocks": blocks}, 16, 3, 3)


@pytest.mark.parametrize(
    "size, channels, classes, batch, message",
    [
        (4, 3, 3, 32, r"`image_size` must be in \[8, 1024\]. Received: image_size=4"),
        (32, 2, 3, 32, r"`channels` must be one of 1, 3. Received: channels=2"),
        (32, 3, 1, 32, r"`num_classes` must be in \[2, 10000\]. Received: num_classes=1"),
        (32, 3, 3, 0, r"`batch_size` must be in \[1, 4096\]. Received: batch_size=0"),
    ],
)
def test_input_limits(size, channels, classes, batch, message):
    with pytest.raises(CnnlabError, match=message):
        analyze(ArchSpec.preset("simple"), size, channels, classes, batch)


@pytest.mark.parametrize("name", [name for name in list_presets() if name != "transfer"])
def test_every_small_preset_analyses_with_json_output(name):
    result = analyze(ArchSpec.preset(name), 32, 3, 5)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["arch"] == {"preset": name, "options": dict(ArchSpec.preset(name).options)}
    assert set(data["rows"][0]) >= {
        "name",
        "type",
        "output_shape",
        "params",
        "macs",
        "activation_bytes",
        "receptive_field",
        "jump",
    }
    assert data["rows"][-1]["name"] == "predictions" and data["rows"][-1]["output_shape"] == [5]
    assert data["totals"]["params"] == sum(row["params"] for row in data["rows"])


def test_training_memory_warning():
    arch = ArchSpec.preset("vgg_small", width=256, stages=3)
    warnings = analyze(arch, 1024, 3, 10, batch_size=256).warnings
    assert any("lower `batch_size` or `image_size`" in warning for warning in warnings)


def test_analysis_does_not_import_tensorflow():
    code = (
        "import sys; from cnnlab.models import ArchSpec, analyze, list_presets\n"
        "for name in list_presets()[:-1]: analyze(ArchSpec.preset(name), 32, 3, 4)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- command line ----------------------------------------------------------------------


def test_cli_arch_json(capsys, workspace):
    assert (
        main(
            ["arch", "simple", "--image-size", "28", "--classes", "10", "--channels", "1", "--json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 34_826
    assert [row["name"] for row in data["rows"]][1:3] == ["conv_1", "pool_1"]
    assert data["warnings"] == []


def test_cli_arch_table_options_file_and_errors(capsys, workspace, tmp_path):
    assert (
        main(
            [
                "arch",
                "vgg_small",
                "--set",
                "width=8",
                "--set",
                "stages=2",
                "--image-size",
                "32",
                "--classes",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("vgg_small: 32x32x3 -> 3 classes")
    assert "conv_4" in out and "conv_5" not in out and "training memory" in out
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"blocks": [{"type": "conv"}, {"type": "global_pool"}]}))
    save_arch("mine", json.loads(path.read_text()))
    for reference in (str(path), "mine"):
        assert main(["arch", reference, "--classes", "3", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["totals"]["params"] == 896 + 99
    assert main(["arch", "simple", "--image-size", "8", "--classes", "3"]) == 2
    assert "remove a pooling layer" in capsys.readouterr().err
    assert main(["arch", "nope", "--classes", "3"]) == 2
    err = capsys.readouterr().err
    assert "Presets: simple" in err and "Saved: mine." in err
    assert main(["arch", "simple", "--set", "width=8", "--classes", "3"]) == 2
    assert "Unknown `simple` option" in capsys.readouterr().err


def test_cli_presets(capsys, workspace):
    save_arch("mine", ArchSpec.preset("simple"))
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in data["presets"]] == list_presets() and data["saved"] == ["mine"]
    assert data["presets"][1]["options"]["width"] == {
        "default": 32,
        "allowed": [4, 256],
        "help": "filters of the first stage; doubled at each stage",
    }
    assert main(["presets"]) == 0
    assert "gated_small" in capsys.readouterr().out


def test_diagram_has_one_bar_per_row_with_shapes():
    from cnnlab.models.diagram import arch_figure

    result = analyze(ArchSpec.preset("gated_small"), 32, 3, 4)
    figure = arch_figure(result)
    bar = figure.data[0]
    assert list(bar.x) == [row["name"] for row in result.rows]
    assert bar.text[1] == "32x32x32" and bar.text[-1] == "4"
    assert "gated_1" in bar.hovertext[3] and "params" in bar.hovertext[3]
    # Bars shrink with the feature map: pooling halves the side.
    assert bar.y[2] == pytest.approx(bar.y[1] / 2)
    assert "gated_small" in figure.layout.title.text
