"""The Train page under AppTest, against run folders prepared in a temp workspace."""

from __future__ import annotations

import os
import socket

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import runs, workspace
from tests.conftest import REPO

PAGE = str(REPO / "pages" / "3_train.py")
TIMEOUT = 60


@pytest.fixture(autouse=True)
def fake_devices(monkeypatch):
    """The page asks cnnlab.devices for the device; no TensorFlow needed here."""
    from cnnlab import devices

    monkeypatch.setattr(
        devices,
        "describe_devices",
        lambda: {"gpus": [], "gpu_count": 0, "device": "CPU (no GPU found)", "cpu_count": 2},
    )


def prepared_run(dataset: str, status: str = "completed", epochs_done: int = 3) -> str:
    """A run folder as a worker leaves it, written by hand (no training)."""
    run_id = runs.new_run_id(dataset, "simple")
    meta = {
        "run_id": run_id,
        "dataset": dataset,
        "status": status,
        "arch": {"preset": "simple", "options": {}},
        "arch_label": "simple",
        "train": {"epochs": 5, "image_size": 24, "batch_size": 8},
        "class_names": ["cat", "dog", "fox"],
        "device": {"device": "CPU (no GPU found)"},
        "worker": {"pid": os.getpid(), "host": socket.gethostname()},
        "error": "The loss became NaN at epoch 2" if status == "failed" else None,
    }
    info = runs.create_run(meta)
    history = {
        "loss": [1.0, 0.6, 0.4][:epochs_done],
        "accuracy": [0.4, 0.7, 0.8][:epochs_done],
        "val_loss": [0.9, 0.5, 0.55][:epochs_done],
        "val_accuracy": [0.5, 0.75, 0.7][:epochs_done],
    }
    workspace.atomic_write_json(info.path / runs.HISTORY_FILE, history)
    workspace.atomic_write_json(
        info.path / runs.CHECKPOINTS_FILE,
        {"last": {"epoch": epochs_done}, "best": {"epoch": 2, "monitor": "val_loss"}},
    )
    runs.append_event(info.path, {"type": "start", "epoch": 0, "epochs": 5, "batches": 4})
    for epoch in range(1, epochs_done + 1):
        runs.append_event(
            info.path,
            {
                "type": "epoch",
                "epoch": epoch,
                "epochs": 5,
                "batches": 4,
                "images_per_s": 321.0,
                "eta_s": 12.0,
            },
        )
    if status == "running":
        runs.append_event(
            info.path,
            {
                "type": "batch",
                "epoch": epochs_done + 1,
                "epochs": 5,
                "batch": 2,
                "batches": 4,
                "images_per_s": 345.0,
                "eta_s": 30.0,
            },
        )
    if status == "completed":
        workspace.atomic_write_json(
            info.path / runs.METRICS_FILE,
            {"test_accuracy": 0.8333, "epochs_run": epochs_done, "train_images_per_s": 300.0},
        )
    return run_id


def page(dataset=None, run=None, **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if dataset:
        at.session_state["dataset"] = dataset
    if run:
        at.session_state["run"] = run
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def text_of(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.info] + [e.value for e in at.error]
    parts += [e.value for e in at.warning]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(str(part) for part in parts)


def test_without_a_dataset_the_page_says_what_to_do(workspace):
    at = page()
    assert not at.exception
    assert "pick one in the sidebar or create one on the Data page" in text_of(at)
    assert "Device: CPU (no GPU found)" in text_of(at)


def test_the_form_follows_the_spec_and_the_recipe(tiny_dataset):
    at = page(tiny_dataset)
    assert not at.exception, at.exception
    image_size = at.number_input(key=f"train_image_size_{tiny_dataset}")
    assert image_size.value == 32  # the auto recipe for 24x24 images
    assert image_size.min == 16 and image_size.max == 512  # TrainSpec's limits
    optimizer = at.selectbox(key=f"train_optimizer_{tiny_dataset}")
    assert optimizer.options == ["adam", "adamw", "sgd", "rmsprop"]
    assert at.selectbox(key="train_arch").value == "auto"


def test_the_budget_beside_start_changes_the_plan_and_its_estimate(tiny_dataset):
    at = page(tiny_dataset)
    assert not at.exception, at.exception
    budget = at.number_input(key=f"train_budget_{tiny_dataset}")
    assert budget.value == 5.0 and (budget.min, budget.max) == (0.0, 1440.0)
    text = text_of(at)
    assert "of a 5 min budget" in text and "No pretrained weights at hand" in text
    budget.set_value(0.25).run()
    assert not at.exception, at.exception
    text = text_of(at)
    assert "of a 0.25 min budget" in text


def test_start_training_launches_a_worker_and_watches_the_run(tiny_dataset, monkeypatch):
    from cnnlab import train

    launched = {}
    run_id = prepared_run(tiny_dataset, status="running", epochs_done=1)

    def fake_start(dataset, arch, spec, **extra):
        launched.update(dataset=dataset, arch=arch, spec=spec)
        return run_id

    monkeypatch.setattr(train, "start_run", fake_start)
    at = page(tiny_dataset)
    at.number_input(key=f"train_epochs_{tiny_dataset}").set_value(3)
    at.selectbox(key="train_arch").set_value("simple")
    at.button(key="train_start").click()
    at.run()
    assert not at.exception, at.exception
    assert launched["dataset"] == tiny_dataset and launched["arch"] == "simple"
    assert launched["spec"].epochs == 3 and launched["spec"].image_size == 32
    assert at.session_state["run"] == run_id
    text = text_of(at)
    assert "Epoch 1 of 5" in "\n".join(p.proto.text for p in at.get("progress"))
    assert "running" in text and "Images/s: 345" in text


def test_a_bad_combination_shows_the_spec_message_and_starts_nothing(tiny_dataset, monkeypatch):
    from cnnlab import train

    started = []
    monkeypatch.setattr(train, "start_run", lambda *a, **k: started.append(a) or "x")
    at = page(tiny_dataset)
    at.number_input(key=f"train_epochs_{tiny_dataset}").set_value(2)
    at.slider(key=f"train_warmup_epochs_{tiny_dataset}").set_value(3)
    at.button(key="train_start").click()
    at.run()
    assert not at.exception
    assert "`warmup_epochs` (3) must be less than `epochs` (2)" in text_of(at)
    assert started == []
    # The learning-rate choices stay inside TrainSpec's limits.
    rates = at.select_slider(key="train_learning_rate").options
    assert max(float(rate) for rate in rates) <= learning_rate_ceiling()


def learning_rate_ceiling() -> float:
    from cnnlab.train import TrainSpec

    return TrainSpec.limits("learning_rate").high


def test_a_completed_run_shows_curves_metrics_and_continue(tiny_dataset, monkeypatch):
    from cnnlab import train

    run_id = prepared_run(tiny_dataset)
    continued = {}
    monkeypatch.setattr(
        train, "continue_run", lambda run, epochs: continued.update(run=run, epochs=epochs)
    )
    at = page(tiny_dataset, run=run_id)
    assert not at.exception, at.exception
    text = text_of(at)
    assert run_id in text and "completed" in text
    assert "Test accuracy: 0.833" in text and "Val accuracy: 0.700" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    assert "best epoch 2" in charts[0].proto.spec
    at.number_input(key="train_more_epochs").set_value(4)
    at.button(key="train_continue").click()
    at.run()
    assert continued == {"run": run_id, "epochs": 4}


def test_interrupted_and_failed_runs_offer_resume(tiny_dataset, monkeypatch):
    from cnnlab import train

    failed = prepared_run(tiny_dataset, status="failed", epochs_done=2)
    at = page(tiny_dataset, run=failed)
    assert "The loss became NaN at epoch 2" in text_of(at)
    resumed = []
    monkeypatch.setattr(train, "resume_run", resumed.append)
    at.button(key="train_resume").click()
    at.run()
    assert resumed == [failed]

    dead = prepared_run(tiny_dataset, status="running", epochs_done=2)
    (runs.run_path(dead) / runs.HEARTBEAT_FILE).unlink()  # its worker died
    at = page(tiny_dataset, run=dead)
    assert not at.exception
    assert "interrupted" in text_of(at) and "Resume to go on" in text_of(at)


def test_cancel_a_running_run_and_see_the_queue(tiny_dataset):
    run_id = prepared_run(tiny_dataset, status="running", epochs_done=2)
    at = page(tiny_dataset, run=run_id)
    assert not at.exception, at.exception
    frame = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
    assert list(frame["run_id"]) == [run_id] and list(frame["status"]) == ["running"]
    at.button(key="train_cancel").click()
    at.run()
    assert (runs.run_path(run_id) / runs.CANCEL_FILE).exists()
    assert "Cancelling" in text_of(at)


def test_a_refreshed_or_second_browser_shows_the_live_run(tiny_dataset):
    older = prepared_run(tiny_dataset)
    live = prepared_run(tiny_dataset, status="running", epochs_done=1)
    at = page(tiny_dataset)  # a new session: nothing in session_state
    assert not at.exception, at.exception
    assert at.session_state["run"] == live
    assert live in text_of(at) and "running" in text_of(at)
    # Picking another run in the list shows that one.
    at.selectbox(key="train_pick_run").set_value(older)
    at.run()
    assert at.session_state["run"] == older
    assert "Test accuracy: 0.833" in text_of(at)


def test_fork_from_the_best_checkpoint(tiny_dataset, monkeypatch):
    from cnnlab import train

    parent = prepared_run(tiny_dataset)
    child = prepared_run(tiny_dataset, status="running", epochs_done=0)
    forked = {}

    def fake_fork(run_id, checkpoint, **changes):
        forked.update(run_id=run_id, checkpoint=checkpoint, **changes)
        return child

    monkeypatch.setattr(train, "fork_run", fake_fork)
    at = page(tiny_dataset, run=parent)
    at.select_slider(key="train_fork_learning_rate").set_value(1e-4)
    at.number_input(key="train_fork_epochs").set_value(2)
    at.button(key="train_fork").click()
    at.run()
    assert not at.exception, at.exception
    assert forked == {
        "run_id": parent,
        "checkpoint": "best",
        "learning_rate": 1e-4,
        "epochs": 2,
        "schedule": "constant",
    }
    assert at.session_state["run"] == child


def test_custom_class_weights_come_from_the_table(tiny_dataset, monkeypatch):
    from cnnlab import train

    launched = {}
    run_id = prepared_run(tiny_dataset, status="running", epochs_done=0)
    monkeypatch.setattr(
        train,
        "start_run",
        lambda dataset, arch, spec: launched.update(arch=arch, spec=spec) or run_id,
    )
    at = page(tiny_dataset)
    at.selectbox(key=f"train_class_weight_{tiny_dataset}").set_value("custom")
    at.button(key="train_start").click()
    at.run()
    assert not at.exception, at.exception
    spec = launched["spec"]
    assert spec.class_weight == "custom"
    assert spec.custom_weights == {"cat": 1.0, "dog": 1.0, "fox": 1.0}
    # "auto" at the plan's image size is the plan's own network.
    assert launched["arch"].preset_name == "simple"
