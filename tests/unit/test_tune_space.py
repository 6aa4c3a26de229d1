"""Search spaces: parsed, checked against the specs' limits, and turned into runs."""

from __future__ import annotations

import json

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models.spec import ArchSpec
from cnnlab.train.spec import TrainSpec
from cnnlab.tune.space import (
    SPACES,
    TUNABLE,
    SearchSpace,
    load_space,
    scaled_augmentation,
    trial_config,
)


@pytest.mark.parametrize("name", list(SPACES))
def test_every_named_space_is_valid_and_round_trips(name):
    space = SearchSpace.named(name)
    assert space.name == name
    assert SearchSpace.from_dict(space.to_dict()).to_dict() == space.to_dict()


def test_limits_come_from_the_specs_fields():
    assert TUNABLE["learning_rate"].limits == TrainSpec.limits("learning_rate")
    assert TUNABLE["optimizer"].limits == TrainSpec.limits("optimizer")
    assert TUNABLE["learning_rate"].log


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "at least one parameter"),
        ({"colour": [1, 2]}, "cannot vary 'colour'. Parameters it may vary: learning_rate"),
        ({"learning_rate": {"low": 1e-4, "high": 5.0}}, "`learning_rate` must be in [1e-06, 1]"),
        ({"learning_rate": {"low": 0.01, "high": 0.001}}, "`low` (0.01) must be below `high`"),
        ({"weight_decay": {"low": 0.0, "high": 0.01, "log": True}}, "log-scale range must start"),
        ({"optimizer": {"low": 0, "high": 1}}, "is a choice: list its values"),
        ({"optimizer": ["adam", "lion"]}, "`optimizer` must be one of"),
        ({"batch_size": [16, 16]}, "listed twice"),
        ({"batch_size": []}, "non-empty list"),
        ({"dropout": {"low": 0.1}}, "needs both `low` and `high`"),
        ({"dropout": {"low": 0.1, "high": 0.2, "step": 2}}, "unknown key(s) step"),
        ({"depth": ["3"]}, "`depth` must be a whole number"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_a_bad_space_gets_one_clear_message(space, message):
    with pytest.raises(CnnlabError) as caught:
        SearchSpace.from_dict(space)
    assert message in str(caught.value)


def test_load_space_takes_a_name_json_text_or_a_file(tmp_path):
    assert load_space("architecture-size").name == "architecture-size"
    assert load_space('{"dropout": [0.1, 0.3]}').names == ["dropout"]
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": {"low": 1e-4, "high": 1e-2}}))
    assert load_space(str(path)).names == ["learning_rate"]
    with pytest.raises(CnnlabError, match="line 2, column"):
        load_space('{"dropout":\n [0.1,, 0.3]}')
    with pytest.raises(CnnlabError, match="neither a named search space"):
        load_space(str(tmp_path / "missing.json"))


def test_grid_size_counts_every_combination():
    space = SearchSpace.from_dict(
        {
            "batch_size": [16, 32],
            "dropout": {"low": 0.1, "high": 0.5},
            "depth": {"low": 2, "high": 4},
        }
    )
    assert space.grid_size() == 2 * 3 * 3
    hp = space.hyperparameters(grid=True)
    assert {p.name for p in hp.space} == {"batch_size", "dropout", "depth"}


def _base():
    spec = TrainSpec(
        image_size=32,
        epochs=10,
        augmentation={"horizontal_flip": True, "contrast": 0.2, "rotation": 0.3},
        early_stopping=False,
    )
    return ArchSpec.preset("simple"), spec


def test_trial_config_applies_training_fields_and_lets_epoch_fields_follow(tiny_dataset):
    arch, spec = _base()
    new_arch, new_spec = trial_config(
        arch, spec, {"learning_rate": 0.003, "batch_size": 16}, tiny_dataset, epochs=3
    )
    assert new_arch == arch  # nothing about the network varies
    assert (new_spec.learning_rate, new_spec.batch_size, new_spec.epochs) == (0.003, 16, 3)
    assert new_spec.warmup_epochs < 3


def test_sizing_a_network_that_has_no_size_uses_the_sized_preset(tiny_dataset):
    arch, spec = _base()
    new_arch, _ = trial_config(arch, spec, {"width": 16, "depth": 2}, tiny_dataset)
    assert new_arch.preset_name == "vgg_small"
    assert (new_arch.options["width"], new_arch.options["stages"]) == (16, 2)
    gated, _ = trial_config(arch, spec, {"preset": "gated_small", "depth": 5}, tiny_dataset)
    assert gated.options["gated_blocks"] == 4  # clipped to the preset's own limit


def _transfer_recipe():
    """What the auto recipe plans for photos: pretrained, frozen then fine-tuned."""
    arch = ArchSpec.preset("transfer", backbone="efficientnetlite0", dropout=0.2)
    spec = TrainSpec(image_size=160, epochs=12, fine_tune_at=6, early_stopping=False)
    return arch, spec


def test_a_pretrained_recipe_stays_pretrained_when_dropout_varies(tiny_dataset):
    arch, spec = _transfer_recipe()
    new_arch, new_spec = trial_config(arch, spec, {"dropout": 0.4}, tiny_dataset)
    assert new_arch.preset_name == "transfer"
    assert new_arch.options["backbone"] == "efficientnetlite0"
    assert new_arch.options["dropout"] == 0.4
    assert new_spec.fine_tune_at == 6  # the frozen-then-fine-tuned plan is kept


def test_width_or_depth_on_a_pretrained_recipe_is_refused_with_the_way_out(tiny_dataset):
    arch, spec = _transfer_recipe()
    with pytest.raises(CnnlabError, match="no `width` or `depth` to vary.*add `preset`"):
        trial_config(arch, spec, {"width": 32}, tiny_dataset)


def test_trials_switch_between_pretrained_and_from_scratch_families(tiny_dataset):
    arch, spec = _transfer_recipe()
    scratch, scratch_spec = trial_config(
        arch, spec, {"preset": "vgg_small", "width": 24}, tiny_dataset
    )
    assert (scratch.preset_name, scratch.options["width"]) == ("vgg_small", 24)
    assert scratch_spec.fine_tune_at == 0  # nothing to unfreeze
    small_arch, small_spec = _base()  # 32 px, no backbone
    pretrained, pretrained_spec = trial_config(
        small_arch, small_spec, {"preset": "transfer", "width": 24, "image_size": 16}, tiny_dataset
    )
    assert pretrained.preset_name == "transfer" and "width" not in pretrained.options
    assert pretrained_spec.image_size == 32  # a backbone's smallest input
    assert "transfer" in SearchSpace.named("broad").to_dict()["preset"]["values"]


def test_augmentation_strength_scales_within_limits():
    augmentation = {"horizontal_flip": True, "contrast": 0.2, "rotation": 0.3}
    assert scaled_augmentation(augmentation, 0.0) == "none"
    doubled = scaled_augmentation(augmentation, 2.0)
    assert doubled["contrast"] == pytest.approx(0.4)
    assert doubled["rotation"] == 0.5  # the field's limit, not 0.6
    assert doubled["horizontal_flip"] is True
