"""Dataset versions: a change never edits history, and a run keeps its version."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import runs
from cnnlab.data import ingest
from cnnlab.data.dataset import load_dataset
from cnnlab.data.versions import dataset_versions
from cnnlab.errors import CnnlabError
from tests.conftest import REPO, write_image_folders


@pytest.fixture
def pets(workspace, tmp_path) -> str:
    folders = write_image_folders(tmp_path / "upload", {"cat": 10, "dog": 10, "fox": 10})
    ingest.ingest(folders, "pets")
    return "pets"


def test_every_change_is_a_new_version_and_earlier_ones_stay(pets):
    first = load_dataset(pets)
    assert first.version == 1
    assert [row["change"] for row in dataset_versions(pets)] == ["created"]
    cat = next(record for record in first.records if record.label == "cat")
    dog = next(record for record in first.records if record.label == "dog")

    ingest.delete_images(pets, [cat.file])
    ingest.relabel_images(pets, {dog.file: "fox"})

    now = load_dataset(pets)
    assert now.version == 3
    rows = dataset_versions(pets)
    assert [(r["version"], r["images"], r["change"]) for r in rows] == [
        (1, 30, "created"),
        (2, 29, "-1 image(s)"),
        (3, 29, "1 relabelled"),
    ]
    assert cat.file not in {record.file for record in now.records}
    # History is not edited: version 1 still lists the removed image, whose file stays,
    # and the relabelled image with its old label.
    old = load_dataset(pets, 1)
    assert {record.file: record.label for record in old.records}[cat.file] == "cat"
    assert (old.path / cat.file).exists()
    assert {record.file: record.label for record in old.records}[dog.file] == "dog"
    assert {r.sha: r.label for r in now.records}[dog.sha] == "fox"
    with pytest.raises(CnnlabError, match="has no version 9 \\(versions: 1, 2, 3\\)"):
        load_dataset(pets, 9)


def test_a_run_trains_and_is_scored_on_the_version_it_was_queued_on(pets):
    from cnnlab.train import prepare_run
    from cnnlab.train.trainer import Trainer
    from tests.runs_fixture import FAST_SPEC

    meta = prepare_run(pets, "simple", {**FAST_SPEC, "epochs": 1})
    run_id = runs.create_run(meta).run_id
    assert runs.load_run(run_id).record.dataset_version == 1
    test_dog = next(r for r in load_dataset(pets).split("test") if r.label == "dog")
    ingest.relabel_images(pets, {test_dog.file: "cat"})  # a fix made while it waits

    Trainer(pets, run_id=run_id).fit()
    info = runs.load_run(run_id)
    assert info.status == "completed", info.error
    truth = {row["file"]: row["true"] for row in info.predictions()}
    # Scored on version 1's test split: the dog is still a dog there.
    assert truth[str(load_dataset(pets, 1).path / test_dog.file)] == "dog"
    assert [row["runs"] for row in dataset_versions(pets)] == [1, 0]


def test_a_dataset_from_before_versions_gets_its_old_state_kept(workspace):
    from tests.conftest import make_dataset_on_disk

    name = make_dataset_on_disk("old", {"a": 5, "b": 5})
    dataset = load_dataset(name)
    assert dataset.version is None and dataset_versions(name) == []
    ingest.delete_images(name, [dataset.records[0].file])
    rows = dataset_versions(name)
    assert [(r["version"], r["images"]) for r in rows] == [(1, 10), (2, 9)]
    assert rows[0]["change"] == "as it was when versions began to be kept"
    assert len(load_dataset(name, 1).records) == 10


def test_the_data_page_lists_the_versions(pets):
    ingest.delete_images(pets, [load_dataset(pets).records[0].file])
    at = AppTest.from_file(str(REPO / "pages" / "1_data.py"), default_timeout=60)
    at.session_state["dataset"] = pets
    at.session_state["data_tab"] = "Versions"
    at.run()
    assert not at.exception, at.exception
    table = next(frame.value for frame in at.dataframe if "version" in frame.value.columns)
    assert list(table["version"]) == [2, 1]
    assert list(table["change"]) == ["-1 image(s)", "created"]
