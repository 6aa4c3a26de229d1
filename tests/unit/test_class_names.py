"""Class names kept as the user wrote them (any script, spaces, punctuation) with a safe
folder on disk, and findings that name files as they were uploaded."""

from __future__ import annotations

import io
import json
import shutil
import unicodedata
import zipfile

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import classes
from cnnlab.data.dataset import Dataset, list_datasets
from cnnlab.data.health import finding_rows, remove_duplicates
from cnnlab.data.ingest import add_files, add_source, delete_class, ingest
from cnnlab.errors import CnnlabError
from tests.conftest import make_dataset_on_disk, write_image_folders


def png(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def folders_of(dataset: Dataset) -> dict[str, set[str]]:
    """Class name -> the folders under images/ holding its files."""
    found: dict[str, set[str]] = {}
    for record in dataset.records:
        found.setdefault(record.label, set()).add(record.file.split("/")[1])
    return found


# -- names and keys -----------------------------------------------------------------------


def test_names_that_share_a_slug_are_two_classes(workspace, tmp_path):
    upload = write_image_folders(tmp_path / "up", {"cat!": 12, "cat?": 12})
    report = ingest(upload, "punct")
    assert report.classes == {"cat!": 12, "cat?": 12}
    dataset = Dataset("punct")
    assert dataset.class_names == ["cat!", "cat?"]
    folders = folders_of(dataset)
    assert folders == {"cat!": {"cat"}, "cat?": {"cat-2"}}
    assert dataset.meta["class_folders"] == {"cat": "cat!", "cat-2": "cat?"}
    # Kept apart, and the report says so in case they were meant as one.
    assert any("'cat!' and 'cat?' differ only in" in w for w in report.health["warnings"])


def test_any_script_and_spaces_are_kept(workspace, tmp_path):
    upload = write_image_folders(tmp_path / "up", {"猫": 6, "golden retriever": 6, "chien": 6})
    report = ingest(upload, "scripts")
    assert set(report.classes) == {"猫", "golden retriever", "chien"}
    folders = folders_of(Dataset("scripts"))
    assert folders["golden retriever"] == {"golden-retriever"}
    (cjk,) = folders["猫"]
    assert cjk.startswith("class-") and cjk.isascii() and len(cjk) == len("class-") + 8
    assert cjk == classes.base_key("猫")  # stable: the same name gets the same folder
    assert report.health["classes"]["golden retriever"]["total"] == 6


def test_case_differs_so_classes_and_folders_differ(workspace, tmp_path):
    upload = write_image_folders(tmp_path / "up", {"Cat": 6, "cat": 6})
    ingest(upload, "case")
    folders = folders_of(Dataset("case"))
    assert set(folders) == {"Cat", "cat"}
    keys = [next(iter(keys)) for keys in folders.values()]
    # Distinct even on a case-insensitive file system.
    assert len({key.casefold() for key in keys}) == 2


def test_the_same_name_written_twice_is_one_class(workspace):
    decomposed = unicodedata.normalize("NFD", "café")
    add_files("cafe", [(f"{decomposed}/{i}.png", png(i)) for i in range(4)], None)
    report = add_files("cafe", [(f"n{i}.png", png(10 + i)) for i in range(3)], "  café ")
    assert report.classes == {"café": 7}
    assert folders_of(Dataset("cafe")) == {"café": {"cafe"}}


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("cats/dogs", r"path separator \('/'\); write it without, e.g. 'cats - dogs'"),
        ("cats\\dogs", "path separator"),
        ("cat\tdog", r"control character \(U\+0009\)"),
        ("line\nbreak", r"control character \(U\+000A\)"),
        ("   ", "it is empty"),
        ("..", "names a folder, not a class"),
        ("x" * 101, "it has 101 characters; shorten it to at most 100"),
    ],
)
def test_unusable_label_is_refused_with_the_reason(workspace, label, why):
    with pytest.raises(CnnlabError, match=rf"`label` \(a class name\) must be 1 to 100 .*{why}"):
        add_files("loose", [("a.png", png(1))], label)
    assert list_datasets() == []


def test_unusable_folder_is_a_rejected_file_not_a_failed_upload(workspace):
    files = [(f"cat/{i}.png", png(i)) for i in range(3)] + [("bad\x01name/x.png", png(9))]
    report = add_files("mixed", files, None)
    assert report.classes == {"cat": 3}
    (rejected,) = report.rejected
    assert "cannot be a class name: it contains a control character" in rejected["reason"]


def test_zip_names_written_as_utf8_without_the_flag(workspace, tmp_path):
    """macOS's Finder writes UTF-8 names without the zip's UTF-8 flag."""
    path = tmp_path / "mac.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(4):
            archive.writestr(f"QQQ/{i}.png", png(i))  # ASCII: written without the flag
        archive.writestr("dog/0.png", png(20))
    # Such a zipper's bytes: the folder's UTF-8 (3 bytes, as QQQ) with no flag set.
    path.write_bytes(path.read_bytes().replace(b"QQQ/", "猫/".encode()))
    with zipfile.ZipFile(path) as archive:
        assert not any(info.flag_bits & 0x800 for info in archive.infolist())
        assert "猫".encode().decode("cp437") + "/0.png" in archive.namelist()  # mojibake
    report = ingest(path, "mac")
    assert report.classes == {"dog": 1, "猫": 4}
    assert {r.source for r in Dataset("mac").records} >= {"猫/0.png", "猫/3.png"}


# -- older datasets and editing --------------------------------------------------------------


def test_old_datasets_load_unchanged_and_keep_their_folders(workspace, tmp_path):
    make_dataset_on_disk("old", {"cat": 5, "golden-retriever": 5})
    dataset = Dataset("old")
    assert "class_folders" not in dataset.meta
    assert dataset.class_names == ["cat", "golden-retriever"]
    assert folders_of(dataset) == {"cat": {"cat"}, "golden-retriever": {"golden-retriever"}}
    # Adding to a class goes into its folder; a new name that looks alike gets its own.
    upload = write_image_folders(tmp_path / "more", {"cat": 2, "cat!": 3}, seed=5)
    report = add_source("old", upload)
    assert report.classes == {"cat": 7, "cat!": 3, "golden-retriever": 5}
    dataset = Dataset("old")
    assert folders_of(dataset)["cat"] == {"cat"} and folders_of(dataset)["cat!"] == {"cat-2"}
    assert dataset.meta["class_folders"]["cat-2"] == "cat!"


def test_delete_class_removes_it_from_the_folder_map(workspace, tmp_path):
    upload = write_image_folders(tmp_path / "up", {"猫": 4, "cat?": 4, "cat": 4})
    ingest(upload, "del")
    dataset = Dataset("del")
    key = next(iter(folders_of(dataset)["猫"]))
    delete_class("del", "猫")
    assert Dataset("del").class_names == ["cat", "cat?"]
    assert key not in Dataset("del").meta["class_folders"]  # its files stay for version 1
    assert (dataset.path / "images" / "cat").is_dir()
    with pytest.raises(CnnlabError, match="has no class '猫'"):
        delete_class("del", "猫")


# -- findings name the user's files -----------------------------------------------------------


@pytest.fixture
def duplicated(workspace, tmp_path):
    upload = write_image_folders(tmp_path / "up", {"cats": 6, "dogs": 6})
    shutil.copy(upload / "cats" / "cats_0.png", upload / "cats" / "same.png")
    return upload


def test_duplicates_name_both_uploads(duplicated):
    report = ingest(duplicated, "dups")
    (duplicate,) = report.health["duplicates"]
    assert sorted(duplicate["sources"]) == ["cats/cats_0.png", "cats/same.png"]
    # The stored names stay beside them, in the same order.
    for file, source in zip(duplicate["files"], duplicate["sources"], strict=True):
        (record,) = [r for r in Dataset("dups").records if r.file == file]
        assert record.source == source
    assert "(e.g. cats/cats_0.png and cats/same.png)" in " ".join(report.health["warnings"])
    (row,) = finding_rows(report.health, "duplicates")
    assert row["images"] == "cats/cats_0.png, cats/same.png" and row["label"] == "cats"
    assert row["stored as"].startswith("images/cats/")
    assert remove_duplicates("dups") == 1


def test_cli_names_uploads_in_text_and_json(duplicated, capsys):
    assert main(["ingest", str(duplicated), "--name", "text", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Exact duplicates within a class" in out
    assert "cats: cats/cats_0.png, cats/same.png" in out
    assert main(["ingest", str(duplicated), "--name", "j", "--no-progress", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)["health"]
    (duplicate,) = health["duplicates"]
    assert set(duplicate) == {"sha", "label", "files", "sources"}  # files kept, sources added
    assert sorted(duplicate["sources"]) == ["cats/cats_0.png", "cats/same.png"]


def test_findings_of_older_reports_fall_back_to_stored_names():
    report = {"duplicates": [{"sha": "A", "label": "cat", "files": ["images/cat/a.png"] * 2}]}
    (row,) = finding_rows(report, "duplicates")
    assert row["images"] == "images/cat/a.png, images/cat/a.png"
    with pytest.raises(CnnlabError, match="`kind` must be one of"):
        finding_rows(report, "nope")


def test_figures_show_markup_in_names_as_text():
    from cnnlab import eval_plots, plots
    from cnnlab.evaluate import evaluate_predictions

    names = ["<b>bold</b>", "猫"]
    evaluation = evaluate_predictions([0, 1], [[0.9, 0.1], [0.2, 0.8]], names)
    figure = eval_plots.confusion_figure(evaluation)
    # Ticks show the text; the values (what a click hands back) stay the names.
    assert list(figure.layout.xaxis.tickvals) == names
    assert list(figure.layout.yaxis.ticktext) == ["&lt;b&gt;bold&lt;/b&gt;", "猫"]
    assert all("<b>" not in text for text in figure.data[1].hovertext)
    selection = {"points": [{"customdata": names}]}
    assert eval_plots.cell_from_selection(selection, names) == tuple(names)
    health = {"classes": {name: {"train": 1, "val": 0, "test": 0} for name in names}}
    balance = plots.class_balance_figure(health)
    assert balance.layout.xaxis.ticktext[0] == "&lt;b&gt;bold&lt;/b&gt;"


# -- names as written through training, prediction and export --------------------------------


@pytest.mark.slow
def test_names_round_trip_through_train_predict_and_export(workspace, tmp_path):
    from cnnlab import export, report
    from cnnlab.evaluate import evaluate_run
    from cnnlab.predict import Predictor
    from tests.runs_fixture import make_trained_run

    names = ["cat!", "cat?", "golden retriever", "猫"]
    upload = write_image_folders(tmp_path / "up", dict.fromkeys(names, 10))
    ingest(upload, "named")
    run_id = make_trained_run("named", epochs=1)

    predictor = Predictor(run_id).load()
    assert predictor.class_names_ == sorted(names)
    (prediction,) = predictor.predict_files([upload / "猫" / "猫_0.png"], top_k=4)
    assert {label for label, _ in prediction.top} == set(names)

    evaluation = evaluate_run(run_id)
    assert evaluation.labels == sorted(names)
    shown = evaluation.prediction(0)
    assert shown.source.split("/")[0] in names and shown.source != shown.file

    page = report.html_report(run_id)
    assert "<td>golden retriever</td>" in page and "<td>猫</td>" in page

    result = export.export_model(run_id, "keras")
    assert result.labels_path.read_text("utf-8").splitlines() == sorted(names)
    assert result.to_dict()["labels_path"] == str(result.labels_path)
