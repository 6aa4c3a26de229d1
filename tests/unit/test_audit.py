"""The label-error audit: out-of-fold probabilities, cleanlab's ranking, the user's
decisions (keep, relabel, remove) and the CLI's JSON."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from cnnlab import audit, cli, workspace
from cnnlab.data import ingest
from cnnlab.data.dataset import load_dataset
from cnnlab.errors import CnnlabError
from tests.conftest import make_dataset_on_disk

JSON_KEYS = {"dataset", "version", "label_issues", "near_duplicates", "outliers", "duration_s"}


@pytest.fixture
def flipped(workspace):
    """Classes whose mean colours differ (write_image_folders), 8 train + 2 val + 2 test
    each, with one training cat relabelled dog. Returns (name, the flipped file)."""
    name = make_dataset_on_disk("pets", {"cat": 12, "dog": 12, "fox": 12}, splits=(8, 2, 2))
    cat = next(r for r in load_dataset(name).split("train") if r.label == "cat")
    ingest.relabel_images(name, {cat.file: "dog"})
    moved = next(r for r in load_dataset(name).records if r.sha == cat.sha)
    return name, moved.file


def by_colour(train_images, train_labels, predict, *, classes, **_):
    """A stand-in for the fold models: the class of an image's mean colour (the classes
    of write_image_folders are 0, 80 and 160 on average), whatever its label."""
    outputs = []
    for images in predict:
        guess = np.clip(np.rint(images.reshape(len(images), -1).mean(axis=1) / 80), 0, classes - 1)
        rows = np.full((len(images), classes), 0.05, dtype=np.float32)
        rows[np.arange(len(images)), guess.astype(int)] = 0.9
        outputs.append(rows)
    return outputs


@pytest.fixture
def quick(monkeypatch):
    """Fold models replaced by the colour rule, so audits take a second."""
    monkeypatch.setattr(audit, "_fit_predict", by_colour)


def test_each_image_is_scored_by_a_model_that_did_not_see_it(flipped, monkeypatch):
    name, _ = flipped
    seen_by_fold, held_by_fold = [], []

    def digest(image):
        return hashlib.sha256(image.tobytes()).hexdigest()

    def record(train_images, train_labels, predict, **options):
        seen_by_fold.append({digest(image) for image in train_images})
        held_by_fold.append([digest(image) for image in predict[0]])
        assert [digest(image) for image in predict[1]] == [digest(i) for i in train_images]
        return by_colour(train_images, train_labels, predict, **options)

    monkeypatch.setattr(audit, "_fit_predict", record)
    records, labels, probabilities, trained = audit.out_of_fold_probabilities(name, folds=3)
    dataset = load_dataset(name)
    audited = len(dataset.split("train")) + len(dataset.split("val"))
    assert len(records) == len(labels) == len(probabilities) == len(dataset.records)
    assert [r.split for r in records[:audited]] == ["train"] * 24 + ["val"] * 6
    assert len(seen_by_fold) == 3
    held_all = [h for held in held_by_fold for h in held]
    assert len(held_all) == len(set(held_all)) == audited  # each image held out once
    for seen, held in zip(seen_by_fold, held_by_fold, strict=True):
        assert not seen & set(held)
        assert len(seen) + len(held) == audited
    folds = audit.fold_indices(labels[:audited], 3)
    assert np.bincount(folds).tolist() == [10, 10, 10]
    # The models that trained on an image see it too; no model trained on a test image.
    assert trained.shape == probabilities.shape
    np.testing.assert_array_equal(trained[audited:], probabilities[audited:])
    np.testing.assert_allclose(trained[:audited].sum(axis=1), 1.0, atol=1e-5)


def test_issues_the_training_models_also_doubt_come_first():
    """Two images the held-out models find about as doubtful: the one the models that
    trained on it could not fit either ranks first, its quality the mean of both views."""
    records = [
        SimpleNamespace(file=f"images/cat/{i}.png", upload_name=f"cat/{i}.png", split="train")
        for i in range(12)
    ]
    labels = np.array([0] * 6 + [1] * 6)
    held_out = np.array([[0.9, 0.1]] * 6 + [[0.1, 0.9]] * 6)
    held_out[0] = [0.04, 0.96]  # both look like dogs to the held-out models,
    held_out[1] = [0.05, 0.95]  # the first a little more
    trained = held_out.copy()
    trained[0] = [0.9, 0.1]  # the models that trained on it learnt it: a hard cat
    trained[1] = [0.1, 0.9]  # they could not fit this one: a dog called cat
    issues = audit.label_issues(records, labels, held_out, ["cat", "dog"], trained=trained)
    assert [issue["file"] for issue in issues] == ["images/cat/1.png", "images/cat/0.png"]
    assert [issue["quality"] for issue in issues] == [0.075, 0.47]
    assert {issue["suggested"] for issue in issues} == {"dog"}
    plain = audit.label_issues(records, labels, held_out, ["cat", "dog"])
    assert [issue["file"] for issue in plain] == ["images/cat/0.png", "images/cat/1.png"]


def test_a_flipped_label_tops_the_list_with_real_models(flipped):
    from cnnlab.models.spec import ArchSpec
    from cnnlab.train.spec import TrainSpec

    name, file = flipped
    spec = TrainSpec(
        image_size=24, batch_size=8, epochs=12, learning_rate=3e-3, augmentation="none"
    )
    records, labels, probabilities, trained = audit.out_of_fold_probabilities(
        name, folds=2, arch=ArchSpec.preset("simple"), spec=spec
    )
    assert probabilities.shape == (36, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    issues = audit.label_issues(
        records, labels, probabilities, ["cat", "dog", "fox"], trained=trained
    )
    assert [issue["file"] for issue in issues[:3]].count(file) == 1
    top = next(issue for issue in issues if issue["file"] == file)
    assert (top["given"], top["suggested"], top["source"]) == ("dog", "cat", "cat_0.png")


def test_audit_is_saved_and_kept_images_are_not_listed_again(flipped, quick):
    name, file = flipped
    result = audit.audit_dataset(name, folds=2)
    assert JSON_KEYS <= set(result)
    assert [issue["file"] for issue in result["label_issues"]] == [file]
    issue = result["label_issues"][0]
    assert (issue["source"], issue["given"], issue["suggested"]) == ("cat_0.png", "dog", "cat")
    assert 0 <= issue["quality"] < 0.5
    assert result["version"] == load_dataset(name).version
    assert result["fingerprint"] == audit.fingerprint(load_dataset(name))
    assert result["outliers"] == [] and any("outliers" in n for n in result["notes"])
    saved = workspace.read_json(load_dataset(name).path / audit.AUDIT_FILE)
    assert saved["label_issues"] == result["label_issues"]

    audit.keep(name, [file])
    assert audit.load_audit(name)["label_issues"] == []
    assert audit.audit_dataset(name, folds=2)["label_issues"] == []


def test_relabel_and_remove_change_the_dataset(flipped, quick):
    name, file = flipped
    audit.audit_dataset(name, folds=2)
    audit.relabel(name, file, "cat")
    dataset = load_dataset(name)
    fixed = next(r for r in dataset.records if r.source == "cat_0.png")
    assert fixed.label == "cat" and fixed.file.startswith("images/cat/")
    # The old file stays: the dataset's earlier versions list it.
    assert (dataset.path / fixed.file).exists() and (dataset.path / file).exists()
    assert file not in {record.file for record in dataset.records}
    assert audit.load_audit(name)["label_issues"] == []  # relabelled: no longer listed
    assert dataset.meta["class_folders"] == {"cat": "cat", "dog": "dog", "fox": "fox"}

    audit.remove(name, [fixed.file])
    assert fixed.file not in {r.file for r in load_dataset(name).records}
    with pytest.raises(CnnlabError, match="has no class 'wolf'"):
        audit.relabel(name, load_dataset(name).records[0].file, "wolf")


def test_cli_prints_one_object_with_the_issue_keys(flipped, quick, capsys):
    name, file = flipped
    assert cli.main(["audit", name, "--folds", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == JSON_KEYS
    assert set(result["label_issues"][0]) >= {"file", "source", "given", "suggested", "quality"}
    assert result["label_issues"][0]["file"] == file
    assert cli.main(["audit", name, "--folds", "2"]) == 0
    assert "dog -> cat" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "nope"], "There is no dataset named 'nope'"),
        (["audit", "pets", "--folds", "11"], r"`folds` must be in \[2, 10\]. Received: folds=11"),
        (["audit", "pets", "--folds", "10"], r"10 folds need .* 'cat' \(9\)"),
        (["audit", "pets", "--run", "no-such-run"], "no-such-run"),
        (["audit", "pets", "--budget", "0"], "`--budget` must be more than 0"),
    ],
)
def test_bad_input_gives_one_message(flipped, quick, capsys, argv, message):
    import re

    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert re.search(message, error) and error.count("\n") == 1


def test_start_audit_records_the_job(flipped, monkeypatch):
    name, _ = flipped
    started = []
    monkeypatch.setattr(audit.runs, "spawn_detached", lambda *args: started.append(args) or 4242424)
    monkeypatch.setattr(audit.runs, "pid_alive", lambda pid, started=None: True)
    audit.start_audit(name, folds=2, budget_minutes=1.0)
    assert started[0][:2] == ("cnnlab.audit_worker", name)
    assert audit.audit_status(name)["state"] == "running"
    with pytest.raises(CnnlabError, match="already running"):
        audit.start_audit(name, folds=2)
    monkeypatch.setattr(audit.runs, "pid_alive", lambda pid, started=None: False)
    assert audit.audit_status(name)["state"] == "failed"


def test_the_background_job_records_its_outcome(flipped, quick, monkeypatch):
    name, file = flipped
    monkeypatch.setattr(audit.runs, "spawn_detached", lambda *args: 4242424)
    monkeypatch.setattr(audit.runs, "pid_alive", lambda pid, started=None: True)
    audit.start_audit(name, folds=2)
    audit.run_job(name)  # what `python -m cnnlab.audit_worker NAME` does
    assert audit.audit_status(name)["state"] == "idle"
    assert [issue["file"] for issue in audit.load_audit(name)["label_issues"]] == [file]

    job = load_dataset(name).path / audit.JOB_FILE
    workspace.atomic_write_json(job, {"folds": 99, "pid": 1})
    with pytest.raises(CnnlabError):
        audit.run_job(name)
    status = audit.audit_status(name)
    assert status["state"] == "failed" and "`folds` must be in [2, 10]" in status["error"]


def test_fold_models_train_like_the_default_run_unless_a_budget_is_given(flipped, monkeypatch):
    """Without a budget each fold trains the dataset's default run recipe as planned for
    its own budget; with one, each fold's recipe is planned for its share."""
    from cnnlab.train import recipe

    name, _ = flipped
    asked: list = []

    def plan(dataset, budget_minutes=None, **_):
        asked.append(budget_minutes)
        return SimpleNamespace(arch="arch", spec="spec")

    monkeypatch.setattr(recipe, "plan_run", plan)
    dataset = load_dataset(name)
    assert audit.fold_recipe(dataset, 5, None) == ("arch", "spec")
    assert audit.fold_recipe(dataset, 5, 10.0) == ("arch", "spec")
    assert asked == [None, 2.0]
