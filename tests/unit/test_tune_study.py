"""Tuning studies with real KerasTuner oracles and real trial runs on a tiny dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.tune import study as tuning
from tests.conftest import REPO

FAST = {"space": {"learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}}, "epochs": 1}


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        **kwargs,
    )


def test_new_study_refuses_bad_settings(tiny_dataset):
    with pytest.raises(CnnlabError, match="`tuner` must be one of"):
        tuning.new_study(tiny_dataset, tuner="evolution")
    with pytest.raises(CnnlabError, match="`objective` must be one of"):
        tuning.new_study(tiny_dataset, objective="test_accuracy")
    with pytest.raises(CnnlabError, match="grid search over this space has 12 trials"):
        tuning.new_study(
            tiny_dataset,
            {"batch_size": [8, 16, 32, 64], "dropout": {"low": 0.1, "high": 0.5}},
            tuner="grid",
            max_trials=5,
        )
    with pytest.raises(CnnlabError, match="no dataset|not found|Unknown dataset|no such"):
        tuning.new_study("nothing-here")
    with pytest.raises(CnnlabError, match="There is no tuning study"):
        tuning.load_study("tune-missing")
    assert tuning.list_studies() == []


def test_a_grid_study_runs_its_trials_as_ordinary_runs(tiny_dataset, monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_CONCURRENT_RUNS", "2")  # two trials at a time
    study_id = tuning.new_study(
        tiny_dataset,
        {"learning_rate": [0.01, 0.003]},
        tuner="grid",
        objective="val_macro_f1",
        max_trials=5,
        epochs=1,
    )
    events: list[str] = []
    study = tuning.drive(study_id, on_event=events.append)

    assert study.status == "completed"
    # The grid has two points: both are tried, then the oracle stops (max_trials is 5).
    assert [t.trial for t in study.trials] == ["0", "1"]
    assert sorted(t.params["learning_rate"] for t in study.trials) == [0.003, 0.01]
    listed = {info.run_id: info for info in runs.list_runs()}
    for trial in study.trials:
        info = listed[trial.run_id]  # an ordinary run, listed like any other
        assert info.status == "completed"
        assert info.tune["study"] == study_id and info.tune["trial"] == trial.trial
        assert info.train["learning_rate"] == trial.params["learning_rate"]
        # Scored on the validation split, never the test split.
        assert trial.score == info.metrics()["val_macro_f1"]
        assert 0.0 <= trial.score <= 1.0
        assert info.summary()["study"] == study_id
        assert info.summary()["trial"] == trial.trial
    first, second = (runs.load_run(t.run_id) for t in study.trials)
    assert second.started < first.finished  # trained side by side
    best = study.best()
    assert best.score == max(t.score for t in study.trials)
    printed = study.to_json()
    assert {"study", "tuner", "objective", "trials", "best", "duration_s"} <= set(printed)
    assert set(printed["trials"][0]) >= {"run_id", "status", "params", "score"}
    assert set(printed["best"]) >= {"run_id", "params", "score"}
    assert any("val_macro_f1 =" in line for line in events)
    with pytest.raises(CnnlabError, match="is completed; only an interrupted"):
        tuning.resume_study(study_id)

    # Promoting tags the best trial, and retraining learns from train+val.
    from cnnlab.train.jobs import wait_for_run

    retrained = tuning.promote(study_id, retrain=True)
    assert "best" in runs.load_run(best.run_id).tags
    assert tuning.load_study(study_id).meta["promoted"] == retrained
    info = wait_for_run(retrained, timeout=120)
    assert info.status == "completed", info.error
    assert info.train["train_on"] == "train+val"
    assert info.train["learning_rate"] == best.params["learning_rate"]


def test_hyperband_trains_the_best_first_round_trial_further(tiny_dataset):
    study_id = tuning.new_study(
        tiny_dataset, FAST["space"], tuner="hyperband", max_trials=4, epochs=3
    )
    study = tuning.drive(study_id)
    assert study.status == "completed"
    assert len(study.trials) == 4
    first_round = [t for t in study.trials if t.epochs == 1]
    assert len(first_round) == 3
    # The fourth trial goes on from the best first-round trial's weights to 3 epochs.
    further = next(t for t in study.trials if t.continues)
    source = next(t for t in first_round if t.trial == further.continues)
    assert source.score == max(t.score for t in first_round)
    assert further.params == source.params
    info = runs.load_run(further.run_id)
    assert info.parent["run_id"] == source.run_id
    assert info.train["epochs"] == 2 and further.epochs == 3


def test_a_trial_that_cannot_start_is_recorded_as_failed(tiny_dataset, monkeypatch):
    from cnnlab.train import jobs

    def refuse(*args, **kwargs):
        raise CnnlabError("the disk is full")

    study_id = tuning.new_study(tiny_dataset, tuner="random", max_trials=1, **FAST)
    monkeypatch.setattr(jobs, "start_run", refuse)
    study = tuning.drive(study_id)
    assert study.status == "completed"
    assert [(t.status, t.error, t.run_id) for t in study.trials] == [
        ("failed", "the disk is full", None)
    ]
    assert study.best() is None
    with pytest.raises(CnnlabError, match="no completed trial"):
        tuning.promote(study_id)


def test_a_killed_study_resumes_without_losing_or_repeating_a_trial(tiny_dataset):
    """The driver and a trial's worker die mid-trial (a crash); resuming resumes that
    trial's run from its checkpoint and runs the rest, each trial once."""
    driver = _cli(
        "tune",
        "--dataset",
        tiny_dataset,
        "--max-trials",
        "3",
        "--epochs",
        "3",
        "--space",
        json.dumps(FAST["space"]),
    )
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = driver.stderr.readline()
        lines.append(line)
        if line.startswith("trial 1: run"):
            break
    else:
        driver.kill()
        pytest.fail("the study never started its second trial:\n" + "".join(lines))
    study_id = next(line.split()[1] for line in lines if line.startswith("study "))
    run_id = lines[-1].split()[3]
    # Let the trial reach a checkpoint, then kill both processes as a crash would.
    while time.monotonic() < deadline and not runs.load_run(run_id).checkpoint_epoch("last"):
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    worker = runs.load_run(run_id).worker["pid"]
    os.kill(worker, signal.SIGKILL)
    while runs.load_run(run_id).status != "interrupted":
        time.sleep(0.1)
    assert tuning.load_study(study_id).status == "interrupted"

    resumed = _cli("tune", "--resume", study_id, "--json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed["status"] == "completed"
    assert [t["trial"] for t in printed["trials"]] == ["0", "1", "2"]
    assert all(t["status"] == "completed" for t in printed["trials"])
    trial_1 = next(t for t in printed["trials"] if t["trial"] == "1")
    assert trial_1["run_id"] == run_id  # the same run, resumed, not a second one
    assert runs.load_run(run_id).resumes == 1
    in_study = [info for info in runs.list_runs() if info.tune.get("study") == study_id]
    assert len(in_study) == 3


def test_cancel_list_and_delete_a_study_from_the_command_line(tiny_dataset, capsys):
    from cnnlab.cli import main

    study_id = tuning.new_study(tiny_dataset, max_trials=2, **FAST)
    tuning._update(study_id, driver={"pid": 999999, "process_started": 1.0})  # a dead driver
    assert main(["tune", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["studies"]
    assert [(s["study"], s["status"]) for s in listed] == [(study_id, "interrupted")]
    assert main(["tune", "--delete", study_id]) == 2  # not while it may go on
    assert "cancel it first" in capsys.readouterr().err
    assert main(["tune", "--cancel", study_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert main(["tune", "--cancel", study_id]) == 2
    assert "already cancelled" in capsys.readouterr().err
    assert main(["tune", "--delete", study_id]) == 0
    assert tuning.list_studies() == []
    assert main(["tune", "--retrain", "--dataset", tiny_dataset]) == 2
    assert "add --promote" in capsys.readouterr().err


def test_a_second_driver_is_refused(tiny_dataset):
    study_id = tuning.new_study(tiny_dataset, max_trials=1, **FAST)
    with tuning._driving(study_id), pytest.raises(CnnlabError, match="already has a driver"):
        tuning.drive(study_id)


def test_hyperband_counts_in_rounds_of_a_ninth_of_the_epochs():
    # 40 epochs: its shortest trials train 4 epochs, not Hyperband's 1 epoch per unit.
    assert tuning.hyperband_rounds(40) == 9
    assert [tuning.epochs_of(rounds, 40) for rounds in (1, 3, 9)] == [4, 13, 40]
    # Short studies count in epochs.
    assert tuning.hyperband_rounds(3) == 3
    assert [tuning.epochs_of(rounds, 3) for rounds in (1, 2, 3)] == [1, 2, 3]
