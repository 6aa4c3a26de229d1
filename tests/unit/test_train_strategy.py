"""MirroredStrategy over two logical CPU devices, in a worker process (logical devices
must be configured before TensorFlow initialises, so never in the test process)."""

from __future__ import annotations

import pytest

from cnnlab import runs
from cnnlab.train import start_run, wait_for_run

pytestmark = pytest.mark.slow


def test_mirrored_strategy_on_two_logical_cpus(tiny_dataset, monkeypatch):
    monkeypatch.setenv("CNNLAB_LOGICAL_CPUS", "2")
    run_id = start_run(
        tiny_dataset,
        "simple",
        {"image_size": 24, "batch_size": 8, "epochs": 1, "augmentation": "none"},
    )
    info = wait_for_run(run_id, timeout=240)
    assert info.status == "completed", (info.error, (info.path / "worker.log").read_text())
    device = info.meta["device"]
    assert device["logical_cpus"] == 2
    assert device["replicas"] == 2
    assert device["strategy"].startswith("MirroredStrategy")
    assert runs.read_metrics(run_id)["test_images"] == 6
    # TensorBoard logs under the strategy too.
    assert list((info.tensorboard_path / "validation").glob("events.out.tfevents.*"))


def test_a_bad_logical_cpu_setting_fails_the_run_with_a_message(tiny_dataset, monkeypatch):
    monkeypatch.setenv("CNNLAB_LOGICAL_CPUS", "lots")
    run_id = start_run(tiny_dataset, "simple", {"image_size": 24, "epochs": 1})
    info = wait_for_run(run_id, timeout=240)
    assert info.status == "failed"
    assert "`CNNLAB_LOGICAL_CPUS` must be a whole number in [1, 64]" in info.error
