"""The Architecture page under streamlit's AppTest: pick, edit, analyse, save, import."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.data import ingest
from cnnlab.models import ArchSpec, list_saved_archs, save_arch
from tests.conftest import REPO

PAGE = str(REPO / "pages" / "2_architecture.py")
TIMEOUT = 120


def page(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def metrics(at) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def analysis_table(at):
    return next(frame.value for frame in at.dataframe if "layer" in frame.value.columns)


def layer_names(at) -> list[str]:
    return list(analysis_table(at)["layer"])


def set_inputs(at, size=28, channels=1, classes=10):
    at.number_input(key="arch_image_size_input").set_value(size)
    at.selectbox(key="arch_channels").set_value(channels)
    at.number_input(key="arch_classes").set_value(classes)
    return at.run()


def test_default_is_the_seeds_model_with_hand_checked_numbers(workspace):
    at = set_inputs(page())
    assert not at.exception
    assert at.session_state["arch"] == {"preset": "simple", "options": {}}
    assert metrics(at)["Parameters"] == "34,826"
    assert layer_names(at) == [
        "input",
        "conv_1",
        "pool_1",
        "conv_2",
        "pool_2",
        "flatten_1",
        "predictions",
    ]
    assert at.session_state["arch_image_size"] == 28
    assert "No dataset chosen" in " ".join(caption.value for caption in at.caption)


def test_larger_images_bring_actionable_warnings(workspace):
    at = set_inputs(page(), size=64, channels=3)
    warnings = [warning.value for warning in at.warning]
    assert any("holds 87% of the parameters" in warning for warning in warnings)
    assert any("sees only 10x10 pixels" in warning for warning in warnings)


def test_pick_preset_and_change_an_option(workspace):
    at = set_inputs(page(), size=32, channels=3, classes=5)
    at.selectbox(key="arch_preset").set_value("vgg_small").run()
    assert at.session_state["arch"]["preset"] == "vgg_small"
    assert "conv_6" in layer_names(at)
    at.slider(key="arch_opt_vgg_small_stages").set_value(2).run()
    assert not at.exception
    assert at.session_state["arch"]["options"]["stages"] == 2
    assert "conv_4" in layer_names(at) and "conv_5" not in layer_names(at)
    at.selectbox(key="arch_preset").set_value("gated_small").run()
    assert "gated_1" in layer_names(at)


def test_edit_blocks_as_json_and_a_bad_edit_keeps_the_last_good_one(workspace):
    at = set_inputs(page(), size=32, channels=3, classes=4)
    at.button(key="arch_customise").click().run()
    assert at.radio(key="arch_mode").value == "Custom blocks"
    assert at.data_editor[0].value["type"].tolist() == ["conv", "pool", "conv", "pool", "flatten"]
    at.radio(key="arch_editor").set_value("JSON").run()
    blocks = json.loads(at.text_area[0].value)["blocks"]
    blocks.insert(4, {"type": "gated", "filters": 16, "kernels": [1, 3]})
    at.text_area[0].set_value(json.dumps({"blocks": blocks})).run()
    assert not at.exception and not at.error
    assert "gated_1" in layer_names(at)
    good = at.session_state["arch"]
    assert good["blocks"][4]["type"] == "gated"

    blocks[0]["filters"] = 0
    at.text_area[0].set_value(json.dumps({"blocks": blocks})).run()
    assert not at.exception
    assert (
        "Block 1 (conv): `filters` must be in [1, 2048]. Received: filters=0" in at.error[0].value
    )
    assert at.session_state["arch"] == good  # the last valid architecture stays chosen
    assert "gated_1" in layer_names(at)

    at.text_area[0].set_value('{"blocks": [').run()
    assert "not valid JSON: Expecting value at line 1, column 13" in at.error[0].value
    assert not at.exception

    pools = {"blocks": [{"type": "pool"}] * 6 + [{"type": "flatten"}]}
    at.text_area[0].set_value(json.dumps(pools)).run()
    assert "remove a pooling layer or raise `image_size` to at least 64" in at.error[0].value
    assert at.session_state["arch"] == good


def test_table_editor_round_trips_the_blocks(workspace):
    arch = ArchSpec.preset("gated_small", width=8, gated_blocks=1)
    at = page(arch=arch.to_blocks().to_dict())
    assert at.radio(key="arch_mode").value == "Custom blocks"
    table = at.data_editor[0].value
    assert table["type"].tolist() == ["conv", "pool", "gated", "pool", "global_pool", "dropout"]
    assert table["kernels"].tolist()[2] == "1,3,5"
    assert at.session_state["arch"] == arch.to_blocks().to_dict()
    assert not at.error


def test_dataset_sets_channels_and_classes(workspace, image_folders):
    ingest.ingest(image_folders, "pets")
    at = page(dataset="pets")
    assert not at.exception
    assert metrics(at)["Classes"] == "3" and metrics(at)["Channels"] == "3"
    assert analysis_table(at)["output"].tolist()[-1] == "3"


def test_save_load_and_import(workspace):
    at = set_inputs(page(), size=32, channels=3, classes=3)
    at.selectbox(key="arch_preset").set_value("resnet_small").run()
    at.text_input(key="arch_save_name").set_value("my resnet").run()
    at.button(key="arch_save").click().run()
    assert list_saved_archs() == ["my-resnet"]
    assert "Saved as my-resnet." in at.success[0].value

    at.selectbox(key="arch_preset").set_value("simple").run()
    at.button(key="arch_load").click().run()
    assert at.session_state["arch"]["preset"] == "resnet_small"
    assert at.selectbox(key="arch_preset").value == "resnet_small"

    custom = {"blocks": [{"type": "conv", "filters": 4}, {"type": "global_pool"}]}
    at.file_uploader(key="arch_import").set_value(
        ("net.json", json.dumps(custom).encode(), "application/json")
    ).run()
    assert not at.exception
    assert at.session_state["arch"]["blocks"][0]["filters"] == 4
    assert layer_names(at) == ["input", "conv_1", "global_pool_1", "predictions"]

    at.file_uploader(key="arch_import").set_value(
        ("bad.json", b'{"preset": "vgg"}', "application/json")
    ).run()
    assert "Unknown architecture preset 'vgg'" in at.error[0].value
    assert at.session_state["arch"]["blocks"][0]["filters"] == 4


def test_saving_under_a_preset_name_is_refused(workspace):
    save_arch("kept", ArchSpec.preset("simple"))
    at = page()
    at.text_input(key="arch_save_name").set_value("simple").run()
    at.button(key="arch_save").click().run()
    assert "name of a preset" in at.error[0].value
    assert list_saved_archs() == ["kept"]


@pytest.mark.slow
def test_transfer_preset_offline(workspace):
    at = set_inputs(page(), size=32, channels=3, classes=3)
    at.selectbox(key="arch_preset").set_value("transfer").run()
    assert not at.exception
    assert "backbone_1" in layer_names(at)
    assert any("image_size` 96 or more" in warning.value for warning in at.warning)
