"""TensorBoard for every run: the event files a real run writes (epoch scalars with the
learning rate, the Keras graph, a tuning trial's hparams), a resumed run appending to
them, and the server started over runs (``start_tensorboard``, ``cnnlab tensorboard``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cnnlab import cli, runs
from cnnlab.errors import CnnlabError
from cnnlab.tensorboard import start_tensorboard, tensorboard_command, trial_hparams
from cnnlab.workspace import runs_root
from tests.conftest import REPO, make_dataset_on_disk
from tests.runs_fixture import make_trained_run

TUNE = {
    "study": "lr-sweep",
    "trial": "07",
    "params": {"learning_rate": 0.01, "optimizer": "adam", "augment": True},
    "objective": "val_accuracy",
}
# Warm-up makes each epoch's learning rate different: 0.01/3, 0.02/3, then 0.01.
TRIAL_SPEC = {"learning_rate": 0.01, "warmup_epochs": 2, "early_stopping": False}
# Straight to the local server, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def event_values(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every event file directly in ``folder``, in
    write order; a step logged twice appears twice."""
    import tensorflow as tf
    from tensorboard.util import tensor_util

    values: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.dtype == tf.float32.as_datatype_enum:
                    number = float(tensor_util.make_ndarray(value.tensor))
                    values.setdefault(value.tag, []).append((event.step, number))
    return values


def approx_series(values: list[float]) -> list[tuple[int, float]]:
    """``[(epoch index, value), ...]`` as TensorBoard's steps should hold them."""
    return [(step, pytest.approx(value, rel=1e-5)) for step, value in enumerate(values)]


def session_start(folder: Path):
    """The HParams plugin's session-start record written directly in ``folder``."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata

    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    content = value.metadata.plugin_data.content
                    return metadata.parse_session_start_info_plugin_data(content)
    return None


def get(url: str, data: dict | None = None) -> tuple[int, bytes]:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with DIRECT.open(request, timeout=30) as response:
        return response.status, response.read()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A plain run (1 epoch) and a tuning trial's run (3 epochs) that was cancelled in
    its second epoch and resumed; ``after_cancel`` holds its scalars at the cancel."""
    from cnnlab.train import callbacks, prepare_run
    from cnnlab.train.trainer import Trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("tensorboard")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        plain = make_trained_run("tiny", epochs=1)

        spec = {"image_size": 24, "batch_size": 8, "epochs": 3, **TRIAL_SPEC}
        trial = runs.create_run(prepare_run("tiny", "simple", spec, tune=TUNE)).run_id
        patch.setattr(callbacks, "CANCEL_CHECK_INTERVAL_S", 0.0)
        checks = []

        def cancel_in_second_epoch() -> bool:
            checks.append(1)
            # 3 batches and one check at the end of epoch 1: the 5th is in epoch 2.
            return len(checks) >= 5

        cancelled = Trainer("tiny", run_id=trial, cancel_check=cancel_in_second_epoch).fit()
        assert cancelled.status_ == "cancelled"
        after_cancel = event_values(runs.load_run(trial).tensorboard_path / "train")
        runs.update_run(trial, status="queued")
        assert Trainer("tiny", run_id=trial).fit().status_ == "completed"
        yield {"plain": plain, "trial": trial, "after_cancel": after_cancel}


@pytest.mark.slow
def test_a_run_logs_epoch_scalars_with_the_learning_rate_and_its_graph(trained):
    info = runs.load_run(trained["plain"])
    assert info.tensorboard_path == info.path / "tensorboard"
    train = event_values(info.tensorboard_path / "train")
    validation = event_values(info.tensorboard_path / "validation")
    history = info.history()
    assert train["epoch_loss"] == [(0, pytest.approx(history["loss"][0]))]
    assert train["epoch_learning_rate"] == [(0, pytest.approx(1e-2))]
    assert validation["epoch_accuracy"] == [(0, pytest.approx(history["val_accuracy"][0]))]
    assert not any("histogram" in tag for tag in train)  # histograms are off
    # The model's graph, as TensorBoard's Graphs tab reads it (the Keras model config).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(info.tensorboard_path / "train"))
    accumulator.Reload()
    assert "keras" in accumulator.Tags()["tensors"]
    # A run outside a tuning study records no hparams.
    assert session_start(info.tensorboard_path) is None


@pytest.mark.slow
def test_a_resumed_run_appends_each_epoch_once_with_its_learning_rate(trained):
    info = runs.load_run(trained["trial"])
    # Cancelled in epoch 2: only the whole first epoch was logged, as it was checkpointed.
    assert [step for step, _ in trained["after_cancel"]["epoch_loss"]] == [0]
    train = event_values(info.tensorboard_path / "train")
    validation = event_values(info.tensorboard_path / "validation")
    assert len(list((info.tensorboard_path / "train").glob("events.out.tfevents.*"))) >= 2
    history = info.history()
    assert train["epoch_loss"] == approx_series(history["loss"])
    assert validation["epoch_loss"] == approx_series(history["val_loss"])
    # The rate each epoch trained with: warm-up, so all three differ.
    rates = [0.01 / 3, 0.02 / 3, 0.01]
    assert history["learning_rate"] == pytest.approx(rates)
    assert train["epoch_learning_rate"] == approx_series(rates)


@pytest.mark.slow
def test_a_tuning_trial_records_its_hparams(trained):
    start = session_start(runs.load_run(trained["trial"]).tensorboard_path)
    assert start is not None
    assert start.group_name == "lr-sweep/07"
    assert start.hparams["learning_rate"].number_value == pytest.approx(0.01)
    assert start.hparams["optimizer"].string_value == "adam"
    assert start.hparams["augment"].bool_value is True
    assert start.hparams["study"].string_value == "lr-sweep"


def test_trial_hparams_write_other_values_as_text():
    import numpy as np

    hparams, trial_id = trial_hparams(
        {"trial": "3", "params": {"size": np.int64(32), "layers": [16, 32], "decay": None}}
    )
    assert hparams == {"size": 32, "layers": "[16, 32]", "decay": "None"}
    assert type(hparams["size"]) is int and trial_id == "3"


@pytest.mark.slow
def test_start_tensorboard_serves_the_runs_and_the_hparams_of_trials(trained):
    plain, trial = trained["plain"], trained["trial"]
    server = start_tensorboard([plain, trial, plain], port=None, timeout=180)
    try:
        assert server.process.poll() is None
        assert server.runs == [plain, trial]
        assert server.logdir == f"{plain}:{runs.run_path(plain)},{trial}:{runs.run_path(trial)}"
        status, _ = get(server.url)
        assert status == 200
        status, body = get(server.url + "data/runs")
        assert {f"{plain}/tensorboard/train", f"{trial}/tensorboard/validation"} <= set(
            json.loads(body)
        )
        # The HParams tab: the trial's parameters as columns, its scalars as metrics.
        status, body = get(server.url + "data/plugin/hparams/experiment", {"experimentName": ""})
        experiment = json.loads(body)
        names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"learning_rate", "optimizer", "augment", "study"} <= names
        metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
        assert ("validation", "epoch_accuracy") in metrics
    finally:
        server.stop()
    assert server.process.poll() is not None


@pytest.mark.slow
def test_the_cli_serves_the_workspace_until_stopped(trained):
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "tensorboard", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        shown = json.loads(process.stdout.readline())
        assert set(shown) == {"url", "pid", "logdir", "runs"}
        assert shown["logdir"] == str(runs_root())
        assert sorted(shown["runs"]) == sorted([trained["plain"], trained["trial"]])
        assert get(shown["url"])[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with pytest.raises(OSError):  # the TensorBoard child is gone too
        os.kill(shown["pid"], 0)


def test_importing_it_does_not_import_tensorflow():
    code = (
        "import sys, cnnlab.tensorboard; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_an_unknown_run_is_refused_with_a_message(workspace, capsys):
    with pytest.raises(CnnlabError, match="There is no run 'nope'"):
        start_tensorboard(["nope"])
    assert cli.main(["tensorboard", "nope"]) == 2
    assert "There is no run 'nope'" in capsys.readouterr().err


def test_a_port_in_use_is_refused_with_a_message(workspace):
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CnnlabError, match=f"Port {port} is already in use"):
            start_tensorboard(port=port)


def test_the_command_names_the_runs_and_the_workspace(workspace):
    assert tensorboard_command() == f"CNNLAB_HOME={workspace} python -m cnnlab tensorboard"
    assert tensorboard_command(["a-1", "b_2"]).endswith("python -m cnnlab tensorboard a-1 b_2")
