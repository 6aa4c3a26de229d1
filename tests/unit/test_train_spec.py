"""TrainSpec limits and messages, the auto recipe, class weights and the schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range
from cnnlab.train import TrainSpec, auto_recipe
from cnnlab.train.spec import OPTIMIZERS, SCHEDULES


def test_defaults_round_trip_through_json():
    spec = TrainSpec(custom_class_weights={"dog": 2.0, "cat": 0.5}, class_weight="custom")
    data = spec.to_dict()
    assert data["custom_class_weights"] == [["cat", 0.5], ["dog", 2.0]]
    again = TrainSpec.from_dict(data)
    assert again == spec
    assert again.custom_weights == {"cat": 0.5, "dog": 2.0}


def test_limits_are_data_for_the_widgets():
    assert TrainSpec.limits("optimizer") == Choice(OPTIMIZERS)
    assert set(OPTIMIZERS) == {"adam", "adamw", "sgd", "rmsprop"}
    assert set(SCHEDULES) == {"constant", "cosine", "step", "plateau"}
    limits = TrainSpec.limits("batch_size")
    assert isinstance(limits, Range) and limits.integer and limits.low == 1
    assert TrainSpec.help("label_smoothing")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"learning_rate": 2.0},
            r"`learning_rate` must be in \[1e-06, 1\]. Received: learning_rate=2.0",
        ),
        (
            {"optimizer": "lion"},
            r"`optimizer` must be one of 'adam', .* Received: optimizer='lion'",
        ),
        ({"batch_size": 0}, r"`batch_size` must be in \[1, 1024\]"),
        ({"epochs": 2.5}, r"`epochs` must be a whole number"),
        ({"early_stopping": "yes"}, r"`early_stopping` must be true or false"),
        (
            {"warmup_epochs": 5, "epochs": 3},
            r"`warmup_epochs` \(5\) must be less than `epochs` \(3\)",
        ),
        ({"class_weight": "custom"}, r"custom_class_weights` is empty"),
        ({"custom_class_weights": {"cat": -1}}, r"class 'cat' must be in \[0.001, 1000\]"),
        ({"custom_class_weights": [["cat"]]}, r"must be \(label, weight\) pairs"),
        ({"augmentation": "strong"}, r"`augmentation` must be 'dataset', 'none' or"),
        (
            {"schedule": "cosine", "min_learning_rate": 0.01, "learning_rate": 0.001},
            r"`min_learning_rate` \(0.01\) must be below",
        ),
    ],
)
def test_bad_values_name_the_field_and_what_was_received(changes, message):
    with pytest.raises(CnnlabError, match=message):
        TrainSpec(**changes)


def test_unknown_field_lists_the_valid_ones():
    with pytest.raises(CnnlabError, match=r"Unknown training spec field\(s\): lr\. Valid fields:"):
        TrainSpec.from_dict({"lr": 0.1})
    with pytest.raises(CnnlabError, match=r"Unknown training spec field\(s\): nope"):
        TrainSpec().with_changes(nope=1)


def test_auto_recipe_follows_the_dataset(tiny_dataset):
    arch, spec = auto_recipe(tiny_dataset)
    # 24x24 images: the smallest recipe size and the simple preset.
    assert spec.image_size == 32
    assert arch.preset_name == "simple"
    assert spec.early_stopping and spec.epochs >= 10
    assert isinstance(spec.augmentation, dict)  # no saved one: the recommended mild one
    assert spec.augmentation["horizontal_flip"] is True  # colour images may be mirrored
    arch, spec = auto_recipe(tiny_dataset, image_size=64, epochs=3)
    assert (spec.image_size, spec.epochs) == (64, 3)
    assert arch.preset_name == "vgg_small"


def test_auto_recipe_uses_the_saved_augmentation(tiny_dataset):
    from cnnlab.data.augment import AugmentSpec, save_augment

    save_augment(tiny_dataset, AugmentSpec(rotation=0.2))
    _, spec = auto_recipe(tiny_dataset)
    assert spec.augmentation["rotation"] == 0.2
    assert spec.augmentation["horizontal_flip"] is False


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    from cnnlab.train.trainer import class_weights_for

    labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
    weights = class_weights_for(TrainSpec(class_weight="balanced"), labels, ["a", "b", "c", "d"])
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=labels)
    assert [weights[i] for i in range(3)] == pytest.approx(list(expected))
    assert weights[3] == 1.0  # absent from the training split: left alone
    assert weights[2] == pytest.approx(45 / (3 * 5))
    assert class_weights_for(TrainSpec(), labels, ["a", "b", "c"]) is None


def test_custom_class_weights_by_label():
    from cnnlab.train.trainer import class_weights_for

    spec = TrainSpec(class_weight="custom", custom_class_weights={"b": 3.0})
    assert class_weights_for(spec, np.array([0, 1]), ["a", "b"]) == {0: 1.0, 1: 3.0}
    with pytest.raises(CnnlabError, match=r"names class\(es\) 'b' that the dataset does not"):
        class_weights_for(spec, np.array([0, 1]), ["a", "c"])


def test_schedules():
    from cnnlab.train.callbacks import learning_rate_at

    warm = TrainSpec(learning_rate=0.1, warmup_epochs=3, epochs=10)
    assert [learning_rate_at(warm, e) for e in range(5)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1]
    )
    cosine = TrainSpec(learning_rate=0.1, schedule="cosine", epochs=4)
    assert [learning_rate_at(cosine, e) for e in range(4)] == pytest.approx(
        [0.1, 0.05 * (1 + math.cos(math.pi / 4)), 0.05, 0.05 * (1 + math.cos(3 * math.pi / 4))]
    )
    step = TrainSpec(learning_rate=0.1, schedule="step", step_epochs=2, lr_factor=0.5)
    assert [learning_rate_at(step, e) for e in range(5)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025]
    )
    plateau = TrainSpec(learning_rate=0.1, schedule="plateau", warmup_epochs=1)
    assert learning_rate_at(plateau, 0) == pytest.approx(0.05)
    assert learning_rate_at(plateau, 1) == pytest.approx(0.1)
    assert learning_rate_at(plateau, 2) is None  # ReduceLROnPlateau decides from here


def test_best_in_history():
    from cnnlab.train.callbacks import best_in_history

    history = {"val_loss": [0.9, 0.5, 0.7], "val_accuracy": [0.2, 0.8, 0.9]}
    assert best_in_history(history, "val_loss") == (1, 0.5)
    assert best_in_history(history, "val_accuracy") == (2, 0.9)
    assert best_in_history({}, "val_loss") is None
