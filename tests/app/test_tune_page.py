"""The Tune page under AppTest: the start form's limits and space editor, a study with
three real trial runs (made without a driver), its charts, the roles, and the ways from
a trial to Evaluate and Experiments."""

from __future__ import annotations

import json

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cnnlab import access, devices, runs
from cnnlab.tune import study as tuning
from cnnlab.tune.space import DEFAULT_SPACE, SPACES
from cnnlab.tune.study import (
    BUDGET_MINUTES,
    EPOCHS,
    MAX_TRIALS,
    OBJECTIVE_TITLES,
    OBJECTIVES,
    SEED,
    TUNERS,
    new_study,
)
from pages._ui import ROLE_KEY
from tests.conftest import REPO, make_dataset_on_disk, widget_keys
from tests.runs_fixture import make_trained_run

PAGE = str(REPO / "pages" / "7_tune.py")
APP = str(REPO / "app.py")
TIMEOUT = 120
SPACE = {
    "learning_rate": {"low": 0.001, "high": 0.1, "log": True},
    "optimizer": {"values": ["adam", "sgd"]},
}
# trial -> (learning rate, optimizer); each trains a real run with those settings.
TRIALS = {"0": (0.01, "adam"), "1": (0.05, "sgd"), "2": (0.002, "adam")}

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fake_devices(monkeypatch):
    monkeypatch.setattr(devices, "describe_devices_apart", lambda: {"device": "CPU (no GPU found)"})


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A completed study with three real trial runs, and an interrupted one (no driver,
    no trial yet). Returns (completed id, interrupted id, {trial: run id})."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("tune-page")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        done = new_study("tiny", SPACE, max_trials=3, epochs=1)
        trial_runs = {}
        for trial, (rate, optimizer) in TRIALS.items():
            tune = {"study": done, "trial": trial, "objective": "val_accuracy",
                    "params": {"learning_rate": rate, "optimizer": optimizer}}  # fmt: skip
            trial_runs[trial] = make_trained_run(
                "tiny", epochs=1, learning_rate=rate, optimizer=optimizer, tune=tune
            )
        tuning._update(done, status="completed")
        waiting = new_study("tiny", DEFAULT_SPACE, max_trials=2, epochs=1)
        yield done, waiting, trial_runs


@pytest.fixture
def protected(monkeypatch, tmp_path):
    monkeypatch.setattr(access, "SECRETS_FILES", (tmp_path / "none.toml",))
    monkeypatch.setenv(access.EDITOR_PASSWORD, "editor-secret")


def page(**state) -> AppTest:
    st.cache_data.clear()  # the page shares study reads between sessions for a second
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def table(at: AppTest):
    return next(frame.value for frame in at.dataframe if "trial" in frame.value.columns)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_form_takes_its_limits_from_the_core(studies):
    at = page(dataset="tiny")
    assert not at.exception, at.exception
    for key, limits in (
        ("tune_max_trials", MAX_TRIALS),
        ("tune_budget", BUDGET_MINUTES),
        ("tune_epochs", EPOCHS),
        ("tune_seed", SEED),
    ):
        widget = at.number_input(key=key)
        assert (widget.min, widget.max) == (limits.low, limits.high), key
    assert at.number_input(key="tune_epochs").value is None  # the recipe's
    assert at.selectbox(key="tune_tuner").options == list(TUNERS)
    assert at.selectbox(key="tune_objective").options == [OBJECTIVE_TITLES[o] for o in OBJECTIVES]
    assert at.selectbox(key="tune_space").value == DEFAULT_SPACE
    space = next(f.value for f in at.dataframe if "parameter" in f.value.columns)
    assert list(space["parameter"]) == list(SPACES[DEFAULT_SPACE]["space"])
    assert "(log scale)" in space.set_index("parameter").loc["learning_rate", "values or range"]


def test_a_bad_custom_space_shows_why_and_keeps_the_text(studies):
    at = page(dataset="tiny")
    at.selectbox(key="tune_space").set_value("architecture-size").run()
    at.selectbox(key="tune_space").set_value("custom").run()
    editor = at.text_area(key="tune_space_json")
    assert json.loads(editor.value) == SPACES["architecture-size"]["space"]  # prefilled
    bad = '{"learning_rate": {"low": 0.001, "high": 0.1,}'
    editor.input(bad).run()
    assert not at.exception, at.exception
    assert "not valid JSON" in at.error[0].value and "line 1" in at.error[0].value
    assert at.text_area(key="tune_space_json").value == bad
    assert at.button(key="tune_start").disabled
    at.text_area(key="tune_space_json").input('{"momentum": {"low": 0, "high": 1}}').run()
    assert "cannot vary 'momentum'" in at.error[0].value
    at.text_area(key="tune_space_json").input("/etc/hostname").run()  # never read as a file
    assert "must be a JSON object" in at.error[0].value
    good = '{"dropout": {"values": [0.1, 0.3]}}'
    at.text_area(key="tune_space_json").input(good).run()
    assert not at.error and not at.button(key="tune_start").disabled
    space = next(f.value for f in at.dataframe if "parameter" in f.value.columns)
    assert list(space["values or range"]) == ["0.1, 0.3"]


def test_start_passes_the_form_to_the_core_and_shows_the_new_study(studies, monkeypatch):
    """Start as the page calls it, with the driver left out (new_study only)."""
    from pages import _tune_parts

    calls, started = [], []

    def start_without_driver(*args, **kwargs):
        calls.append((args, kwargs))
        started.append(new_study(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(_tune_parts, "start_study", start_without_driver)
    at = page(dataset="tiny")
    at.selectbox(key="tune_tuner").set_value("bayesian")
    at.number_input(key="tune_max_trials").set_value(200)
    at.number_input(key="tune_epochs").set_value(2)
    at.button(key="tune_start").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    (args, kwargs), = calls  # fmt: skip
    assert args == ("tiny", DEFAULT_SPACE)
    assert kwargs == {"tuner": "bayesian", "objective": "val_accuracy", "max_trials": 200,
                      "budget_minutes": 0.0, "epochs": 2, "seed": 0}  # fmt: skip
    assert at.selectbox(key="tune_study").value == started[0]
    assert tuning.load_study(started[0]).tuner == "bayesian"
    tuning.cancel_study(started[0])  # it has no driver: it is not ours to watch
    tuning.delete_study(started[0])


def test_a_study_shows_its_trials_best_and_charts(studies):
    done, _, trial_runs = studies
    study = tuning.load_study(done)
    best = study.best()
    at = page(tune_study=done)
    assert not at.exception, at.exception
    frame = table(at)
    assert list(frame.columns[:4]) == ["trial", "status", "learning_rate", "optimizer"]
    assert list(frame["trial"]) == list(TRIALS)
    assert list(frame["run_id"]) == list(trial_runs.values())
    assert list(frame["learning_rate"]) == [rate for rate, _ in TRIALS.values()]
    assert list(frame["score"]) == pytest.approx([t.score for t in study.trials])
    assert at.metric[0].label == "Best validation accuracy"
    assert at.metric[0].value == f"{best.score:.4f}"
    assert f"trial {best.trial}" in " ".join(m.value for m in at.markdown)
    parallel, scatter = charts(at)
    axes = parallel["data"][0]["dimensions"]
    assert [axis["label"] for axis in axes] == [
        "learning_rate (log)", "optimizer", "validation accuracy"
    ]  # fmt: skip
    assert axes[1]["ticktext"] == ["adam", "sgd"] and axes[1]["values"] == [0, 1, 0]
    assert scatter["layout"]["xaxis"]["type"] == "log"
    assert scatter["layout"]["xaxis2"]["type"] == "category"
    # The best trial is picked for Evaluate.
    assert at.selectbox(key="tune_trial").value == best.run_id


def test_a_study_without_completed_trials_explains_the_charts(studies):
    _, waiting, _ = studies
    at = page(tune_study=waiting)
    assert not at.exception, at.exception
    assert any(f"**{waiting}** · interrupted" in m.value for m in at.markdown)
    assert any("Resume to continue" in w.value for w in at.warning)
    assert any("charts appear once 2 trials" in info.value for info in at.info)
    assert not at.get("plotly_chart")
    assert "tune_open_evaluate" not in widget_keys(at)


def test_viewers_see_no_control_that_changes_studies(studies, protected):
    done, waiting, _ = studies
    changes = {"tune_start", "tune_cancel", "tune_resume", "tune_promote", "tune_retrain"}
    for study_id in (done, waiting):
        viewer = page(tune_study=study_id, dataset="tiny")
        assert not viewer.exception
        assert not changes & widget_keys(viewer)
        assert "tune_study" in widget_keys(viewer)
    assert {"tune_open_evaluate", "tune_compare_go"} <= widget_keys(page(tune_study=done))
    editor = page(tune_study=waiting, dataset="tiny", **{ROLE_KEY: access.EDITOR})
    assert {"tune_start", "tune_cancel", "tune_resume"} <= widget_keys(editor)
    editor = page(tune_study=done, **{ROLE_KEY: access.EDITOR})
    assert {"tune_promote", "tune_retrain"} <= widget_keys(editor)
    assert not {"tune_cancel", "tune_resume"} & widget_keys(editor)  # it has ended


def test_promote_tags_the_best_trial(studies):
    done, _, _ = studies
    best = tuning.load_study(done).best()
    at = page(tune_study=done)
    at.button(key="tune_promote").click().run()
    assert not at.exception and not at.error, at.exception
    assert "best" in runs.load_run(best.run_id).tags
    assert tuning.load_study(done).meta["promoted"] == best.run_id
    assert f"Promoted: run {best.run_id}" in " ".join(c.value for c in at.caption)


def test_cancel_an_interrupted_study(studies):
    doomed = new_study("tiny", DEFAULT_SPACE, max_trials=2, epochs=1)
    at = page(tune_study=doomed)
    at.button(key="tune_cancel").click().run()
    assert not at.exception and not at.error, at.exception
    assert tuning.load_study(doomed).status == "cancelled"
    assert "tune_cancel" not in widget_keys(at)


def test_a_running_study_is_watched_live_and_can_be_cancelled(studies):
    """A study whose driver is alive (this process stands in for it): the live panel
    draws it, and Cancel asks its driver to stop."""
    running = new_study("tiny", DEFAULT_SPACE, max_trials=2, epochs=1)
    tuning._update(running, driver=runs.worker_info())
    try:
        at = page(tune_study=running)
        assert not at.exception, at.exception
        assert any(f"**{running}** · running" in m.value for m in at.markdown)
        assert "tune_resume" not in widget_keys(at)
        at.button(key="tune_cancel").click().run()
        assert not at.exception and not at.error, at.exception
        assert (tuning.study_path(running) / tuning.CANCEL_FILE).exists()
    finally:
        tuning._update(running, status="cancelled", driver=None)


def app_on_tune_page(**state) -> AppTest:
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    return at.switch_page("pages/7_tune.py").run()


def test_open_a_trial_in_evaluate(studies):
    done, _, trial_runs = studies
    chosen = trial_runs["1"]
    at = app_on_tune_page(tune_study=done)
    assert not at.exception, at.exception
    at.selectbox(key="tune_trial").set_value(chosen)
    at.button(key="tune_open_evaluate").click().run()
    assert not at.exception, at.exception
    assert at.session_state["run"] == chosen and at.session_state["dataset"] == "tiny"
    assert at.title[0].value == "Evaluate"
    assert at.selectbox(key="ev_run").value == chosen


def test_compare_two_trials_in_experiments(studies):
    done, _, trial_runs = studies
    pair = [trial_runs["0"], trial_runs["2"]]
    at = app_on_tune_page(tune_study=done)
    assert at.button(key="tune_compare_go").disabled
    at.multiselect(key="tune_compare").set_value(pair).run()
    at.button(key="tune_compare_go").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Experiments"
    assert at.multiselect(key="ex_selected").value == pair
    assert any("Settings that differ" in m.value for m in at.markdown)
