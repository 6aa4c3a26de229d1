"""The Experiments page under AppTest, on two real trained runs in a temp workspace."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from sklearn.metrics import f1_score
from streamlit.testing.v1 import AppTest

from cnnlab import runs, workspace
from tests.conftest import REPO, make_dataset_on_disk
from tests.runs_fixture import make_trained_run

PAGE = str(REPO / "pages" / "6_experiments.py")
TIMEOUT = 120

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("experiments-page")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        first = make_trained_run("tiny", epochs=1)
        second = make_trained_run("tiny", epochs=2, class_weight="balanced", name="weighted")
        yield first, second


def clone_run(run_id: str, new_id: str) -> str:
    """A disposable copy of a run folder (for the delete test)."""
    source = runs.run_path(run_id)
    target = workspace.run_dir(new_id)
    shutil.copytree(source, target)
    meta = workspace.read_json(target / runs.RUN_FILE)
    workspace.atomic_write_json(target / runs.RUN_FILE, {**meta, "run_id": new_id})
    return new_id


def macro_f1_of(run_id: str) -> float:
    """Macro F1 of a run's predictions.csv by scikit-learn, over all of its classes."""
    frame = pd.read_csv(runs.run_path(run_id) / runs.PREDICTIONS_FILE)
    classes = runs.load_run(run_id).class_names
    return f1_score(frame["true"], frame["pred"], labels=classes, average="macro", zero_division=0)


def page(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def table(at):
    return next(frame.value for frame in at.dataframe if "run_id" in frame.value.columns)


def test_empty_workspace(workspace):
    at = page()
    assert not at.exception
    assert any("No runs yet" in info.value for info in at.info)


def test_table_lists_runs_and_filters(two_runs):
    first, second = two_runs
    at = page()
    assert not at.exception, at.exception
    frame = table(at)
    assert set(frame["run_id"]) == {first, second}
    row = frame.set_index("run_id").loc[second]
    assert row["status"] == "completed" and row["class_weight"] == "balanced"
    assert row["name"] == "weighted"
    for run_id in (first, second):
        assert frame.set_index("run_id").loc[run_id, "macro_f1"] == pytest.approx(
            macro_f1_of(run_id), abs=1e-12
        ), run_id
    assert row["epochs_run"] == 2
    at.text_input(key="ex_filter").set_value("weighted").run()
    assert list(table(at)["run_id"]) == [second]
    at.text_input(key="ex_filter").set_value("").run()
    at.multiselect(key="ex_status").set_value(["failed"]).run()
    assert any("No run matches" in info.value for info in at.info)


def test_comparison_shows_config_diff_and_f1(two_runs):
    first, second = two_runs
    at = page()
    at.multiselect(key="ex_selected").set_value([first, second]).run()
    assert not at.exception, at.exception
    frames = [frame.value for frame in at.dataframe]
    diff = next(frame for frame in frames if "setting" in frame.columns)
    settings = set(diff["setting"])
    assert {"train.class_weight", "train.epochs"} <= settings
    assert "train.batch_size" not in settings  # equal settings are left out
    f1 = next(frame for frame in frames if list(frame.columns) == [first, "weighted"])
    assert list(f1.index) == ["cat", "dog", "fox"]


def test_shows_the_command_that_opens_tensorboard(two_runs):
    first, second = two_runs
    at = page()
    assert not at.exception, at.exception
    command = f"CNNLAB_HOME={os.environ['CNNLAB_HOME']} python -m cnnlab tensorboard"
    assert [code.value for code in at.code] == [command]  # no selection: every run
    at.multiselect(key="ex_selected").set_value([second, first]).run()
    assert not at.exception, at.exception
    assert [code.value for code in at.code] == [f"{command} {second} {first}"]


def test_rename_and_tag(two_runs):
    first, _ = two_runs
    at = page()
    at.multiselect(key="ex_selected").set_value([first]).run()
    at.text_input(key=f"ex_name_{first}").set_value("baseline")
    at.text_input(key=f"ex_tags_{first}").set_value("demo, small ,demo")
    at.button(key="ex_save").click().run()
    assert not at.exception, at.exception
    meta = runs.load_run(first).meta
    assert meta["name"] == "baseline" and meta["tags"] == ["demo", "small"]
    assert any("Saved the name and tags" in s.value for s in at.success)
    assert table(at).set_index("run_id").loc[first, "name"] == "baseline"


def test_delete_asks_first(two_runs):
    first, _ = two_runs
    doomed = clone_run(first, "20000101-000000-tiny-simple-dead")
    at = page()
    at.multiselect(key="ex_selected").set_value([doomed]).run()
    at.button(key="ex_delete").click().run()
    assert any("for good" in w.value for w in at.warning)
    assert runs.run_path(doomed).exists()  # nothing deleted before the confirmation
    at.button(key="ex_delete_yes").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert not runs.run_path(doomed).exists()
    assert runs.run_path(first).exists()  # its twin by name is untouched
    assert doomed not in set(table(at)["run_id"])
    assert any(f"Deleted run {doomed}" in s.value for s in at.success)


def test_macro_f1_is_that_of_the_predictions(two_runs):
    """A run whose predictions are known: its macro F1 differs from its accuracy, from
    its weighted F1 and from 1, so showing any of those instead would fail."""
    first, _ = two_runs
    doctored = clone_run(first, "20000101-000000-tiny-simple-f1f1")
    try:
        path = runs.run_path(doctored) / runs.PREDICTIONS_FILE
        rows = pd.read_csv(path)
        assert list(rows["true"]) == ["cat", "cat", "dog", "dog", "fox", "fox"]
        # Keep 2 cats, 2 dogs and 1 fox; call both dogs cats. F1: cat 2/3, dog 0, fox 1:
        # macro 5/9, weighted (2 * 2/3 + 1) / 5 = 7/15, accuracy 3/5.
        rows = rows.iloc[:5].assign(pred=["cat", "cat", "cat", "cat", "fox"])
        rows.to_csv(path, index=False)
        at = page()
        assert not at.exception, at.exception
        shown = table(at).set_index("run_id").loc[doctored, "macro_f1"]
        assert shown == pytest.approx(5 / 9, abs=1e-12)
        assert macro_f1_of(doctored) == pytest.approx(5 / 9, abs=1e-12)
    finally:
        runs.delete_run(doctored)
