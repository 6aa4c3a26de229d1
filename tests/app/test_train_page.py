"""The Train page under AppTest, against run folders prepared in a temp workspace.

Start, Continue, Resume and Fork launch real workers on the tiny dataset (marked slow),
and the run folders they leave must show a run trained, continued, resumed or forked.
"""

from __future__ import annotations

import os
import re
from html import unescape

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import runs
from cnnlab.train import wait_for_run
from tests.conftest import REPO
from tests.runs_fixture import last_start, make_trained_run, optimizer_steps, prepared_run

PAGE = str(REPO / "pages" / "3_train.py")
TIMEOUT = 60
# A real worker on the tiny dataset takes seconds; this only bounds a hang.
WORKER_WAIT_S = 180
BATCHES = 3  # optimizer steps per epoch: 18 train images of the tiny dataset, 8 a batch


@pytest.fixture(autouse=True)
def fake_devices(monkeypatch):
    """The page asks cnnlab.devices for the device; no TensorFlow needed here."""
    from cnnlab import devices

    cpu = {"gpus": [], "gpu_count": 0, "device": "CPU (no GPU found)", "cpu_count": 2}
    monkeypatch.setattr(devices, "describe_devices", lambda: cpu)
    monkeypatch.setattr(devices, "describe_devices_apart", lambda: cpu)  # the sidebar's


def page(dataset=None, run=None, **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if dataset:
        at.session_state["dataset"] = dataset
    if run:
        at.session_state["run"] = run
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def trained_run(dataset: str, epochs: int) -> str:
    """A real run trained in this process (quicker than a worker): tiny spec, no
    augmentation, so a worker can take it further."""
    return make_trained_run(dataset, epochs=epochs, augmentation="none")


def worker_finished(run_id: str) -> runs.RunInfo:
    """Wait for the run's worker; the run must have completed in another process."""
    info = wait_for_run(run_id, timeout=WORKER_WAIT_S)
    log = (info.path / runs.LOG_FILE).read_text() if (info.path / runs.LOG_FILE).exists() else ""
    assert info.status == "completed", (info.error, log)
    assert info.meta["worker"]["pid"] != os.getpid()
    return info


def panel_lines(at) -> list[str]:
    """The run panel's bars and numbers (its HTML, which the browser updates), one
    paragraph a line."""
    lines = []
    for element in at.get("html"):
        body = re.sub(r"<(style|script)>.*?</\1>", "", element.proto.body, flags=re.S)
        lines += [unescape(text) for text in re.findall(r"<p[^>]*>(.*?)</p>", body)]
    return lines


def text_of(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.info] + [e.value for e in at.error]
    parts += [e.value for e in at.warning]
    lines = panel_lines(at)
    parts += [f"{label}: {value}" for label, value in zip(lines, lines[1:], strict=False)]
    return "\n".join(str(part) for part in parts)


def test_without_a_dataset_the_page_says_what_to_do(workspace):
    at = page()
    assert not at.exception
    assert "pick one in the sidebar or create one on the Data page" in text_of(at)
    assert "Device: CPU (no GPU found)" in text_of(at)


def test_the_page_draws_its_form_before_the_device_is_known(tiny_dataset, device_not_detected_yet):
    """Detecting devices imports TensorFlow (many seconds on a cold start): a first
    visit to Train draws the form at once and says the device is being detected."""
    at = AppTest.from_file(PAGE, default_timeout=10)
    at.session_state["dataset"] = tiny_dataset
    at.run()
    assert not at.exception, at.exception
    assert "Device: detecting..." in text_of(at)
    assert at.button(key="train_start").label == "Start training"


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
    assert "of a 5 min budget" in text and "Small or grayscale images: trained from scratch" in text
    budget.set_value(0.25).run()
    assert not at.exception, at.exception
    text = text_of(at)
    assert "of a 0.25 min budget" in text
    # Opening the page measures nothing; the button probes this device once.
    assert "assumed speed on this device" in text
    at.button(key="train_measure").click().run()
    assert not at.exception, at.exception
    assert "measured speed on this device" in text_of(at)
    assert "train_measure" not in [button.key for button in at.button]


def test_the_form_reaches_start_run_and_the_live_run_shows(tiny_dataset, monkeypatch):
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
    assert "Epoch 1 of 5" in panel_lines(at)
    assert "running" in text and "Images/s: 345" in text


@pytest.mark.slow
def test_start_training_runs_a_worker_to_the_end(tiny_dataset):
    at = page(tiny_dataset)
    at.selectbox(key="train_arch").set_value("simple")
    at.number_input(key=f"train_image_size_{tiny_dataset}").set_value(24)
    at.number_input(key=f"train_epochs_{tiny_dataset}").set_value(2)
    at.number_input(key=f"train_batch_size_{tiny_dataset}").set_value(8)
    at.slider(key=f"train_warmup_epochs_{tiny_dataset}").set_value(0)
    at.radio(key="train_augmentation").set_value("none")
    at.button(key="train_start").click()
    at.run()
    assert not at.exception, at.exception
    run_id = at.session_state["run"]
    info = runs.load_run(run_id)
    assert info.dataset == tiny_dataset and info.arch["preset"] == "simple"
    assert {key: info.train[key] for key in ("image_size", "epochs", "batch_size")} == {
        "image_size": 24,
        "epochs": 2,
        "batch_size": 8,
    }
    assert info.train["augmentation"] == "none"

    info = worker_finished(run_id)
    assert len(runs.read_history(run_id)["loss"]) == 2
    assert last_start(run_id) == (0, [1, 2])
    metrics = runs.read_metrics(run_id)
    assert metrics["epochs_run"] == 2
    assert len(runs.read_predictions(run_id)) == 6  # the test split, scored
    at.run()  # the page now shows the finished run
    assert not at.exception, at.exception
    text = text_of(at)
    assert f"**{run_id}** · completed" in text
    assert f"Test accuracy: {metrics['test_accuracy']:.3f}" in text


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


def test_a_completed_run_shows_curves_metrics_and_offers_continue(tiny_dataset):
    run_id = prepared_run(tiny_dataset)
    at = page(tiny_dataset, run=run_id)
    assert not at.exception, at.exception
    text = text_of(at)
    assert run_id in text and "completed" in text
    assert "Test accuracy: 0.833" in text and "Val accuracy: 0.700" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    assert "best epoch 2" in charts[0].proto.spec
    assert at.button(key="train_continue").label == "Continue"
    assert at.number_input(key="train_more_epochs").value == 5


@pytest.mark.slow
def test_continue_trains_the_same_run_on_from_its_last_epoch(tiny_dataset):
    run_id = trained_run(tiny_dataset, epochs=1)
    before = runs.read_history(run_id)
    at = page(tiny_dataset, run=run_id)
    at.number_input(key="train_more_epochs").set_value(1)
    at.button(key="train_continue").click()
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["run"] == run_id  # the same run goes on, no new one

    info = worker_finished(run_id)
    assert info.train["epochs"] == 2 and info.meta["continued_from_epoch"] == 1
    history = runs.read_history(run_id)
    assert len(history["loss"]) == 2 and history["loss"][0] == before["loss"][0]
    assert last_start(run_id) == (1, [2])  # epoch 2 only, numbered on from the checkpoint
    # Its optimizer went on from the checkpoint's state: two epochs of steps in all.
    assert optimizer_steps(info.path / "last.keras") == 2 * BATCHES
    assert runs.read_metrics(run_id)["epochs_run"] == 2


def test_interrupted_and_failed_runs_offer_resume(tiny_dataset):
    failed = prepared_run(tiny_dataset, status="failed", epochs_done=2)
    at = page(tiny_dataset, run=failed)
    assert not at.exception
    assert "The loss became NaN at epoch 2" in text_of(at)
    assert at.button(key="train_resume").label == "Resume"

    dead = prepared_run(tiny_dataset, status="running", epochs_done=2)
    (runs.run_path(dead) / runs.HEARTBEAT_FILE).unlink()  # its worker died
    at = page(tiny_dataset, run=dead)
    assert not at.exception
    assert "interrupted" in text_of(at) and "Resume to go on" in text_of(at)
    assert at.button(key="train_resume").label == "Resume"


@pytest.mark.slow
def test_resume_goes_on_from_the_last_checkpoint(tiny_dataset):
    # A real run that failed in its second epoch: its checkpoint holds epoch 1 of 2.
    run_id = trained_run(tiny_dataset, epochs=1)
    info = runs.load_run(run_id)
    runs.update_run(
        run_id,
        status="failed",
        error="Killed by a test in epoch 2.",
        train={**info.train, "epochs": 2},
    )
    for name in (runs.METRICS_FILE, runs.PREDICTIONS_FILE, runs.PROBABILITIES_FILE):
        (info.path / name).unlink()
    before = runs.read_history(run_id)
    at = page(tiny_dataset, run=run_id)
    assert "Killed by a test in epoch 2." in text_of(at)
    at.button(key="train_resume").click()
    at.run()
    assert not at.exception, at.exception

    info = worker_finished(run_id)
    assert info.meta["resumes"] == 1 and info.error is None
    history = runs.read_history(run_id)
    assert len(history["loss"]) == 2 and history["loss"][0] == before["loss"][0]
    assert last_start(run_id) == (1, [2])  # not from epoch 0
    assert optimizer_steps(info.path / "last.keras") == 2 * BATCHES  # the checkpoint's state
    assert runs.read_metrics(run_id)["epochs_run"] == 2


def test_cancel_a_running_run_and_see_the_queue(tiny_dataset):
    run_id = prepared_run(tiny_dataset, status="running", epochs_done=2)
    at = page(tiny_dataset, run=run_id)
    assert not at.exception, at.exception
    frame = next(t.value for t in at.table if t.value.index.name == "run_id")
    assert list(frame.index) == [run_id] and list(frame["status"]) == ["running"]
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


@pytest.mark.slow
def test_fork_from_the_best_checkpoint(tiny_dataset):
    parent = trained_run(tiny_dataset, epochs=2)
    parent_info = runs.load_run(parent)
    best_epoch = runs.read_checkpoints(parent)["best"]["epoch"]
    best_model = (parent_info.path / "best.keras").read_bytes()
    at = page(tiny_dataset, run=parent)
    at.select_slider(key="train_fork_learning_rate").set_value(1e-4)
    at.number_input(key="train_fork_epochs").set_value(1)
    at.button(key="train_fork").click()
    at.run()
    assert not at.exception, at.exception
    child = at.session_state["run"]
    assert child != parent

    info = worker_finished(child)
    assert info.meta["parent"] == {"run_id": parent, "checkpoint": "best", "epoch": best_epoch}
    assert info.train["learning_rate"] == 1e-4 and info.train["epochs"] == 1
    assert info.train["schedule"] == parent_info.train["schedule"]
    # A new run from the parent's best weights, with its own epochs and a fresh optimizer.
    assert (info.path / "init.keras").read_bytes() == best_model
    assert len(runs.read_history(child)["loss"]) == 1
    assert last_start(child) == (0, [1])
    assert optimizer_steps(info.path / "last.keras") == BATCHES
    assert len(runs.read_history(parent)["loss"]) == 2  # the parent is left as it was


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


def test_live_curves_are_rebuilt_at_most_every_few_seconds_and_at_the_end(monkeypatch):
    """Watching sessions share one pair of figures: while the run trains a new epoch
    rebuilds them only once CURVES_REFRESH_S seconds have passed; when it ends, at once."""
    from pages import _train_live as live

    clock = [1000.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])

    def history(epochs: int) -> dict:
        return {"loss": [1.0 / (e + 1) for e in range(epochs)], "val_loss": [1.0] * epochs}

    curves = live.SharedCurves()
    first = curves.current(history(1), 1, live=True)
    assert set(first) == {"loss", "accuracy"}
    clock[0] += live.CURVES_REFRESH_S / 2
    assert curves.current(history(2), 2, live=True) is first  # too soon: the same figures
    clock[0] += live.CURVES_REFRESH_S / 2
    second = curves.current(history(3), 3, live=True)
    assert second is not first and len(second["loss"].data[0].y) == 3
    assert curves.current(history(4), 3, live=False)["loss"].data[0].y[-1] == 0.25
