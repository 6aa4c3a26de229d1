"""evaluate_run on a real trained run: probabilities from best.keras, cached once; the
``evaluate``, ``compare`` and ``report`` commands."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from cnnlab import evaluate, runs, workspace
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_predictions, evaluate_run, run_probabilities
from tests.conftest import make_dataset_on_disk
from tests.runs_fixture import make_trained_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("evaluate-run")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        first = make_trained_run("tiny", epochs=2)
        second = make_trained_run("tiny", epochs=1, learning_rate=0.005, name="short")
        yield first, second


def copy_run(run_id: str, new_id: str, **meta) -> str:
    target = workspace.run_dir(new_id)
    shutil.copytree(runs.run_path(run_id), target)
    data = workspace.read_json(target / runs.RUN_FILE)
    workspace.atomic_write_json(target / runs.RUN_FILE, {**data, "run_id": new_id, **meta})
    return new_id


def prediction_rows(run_id):
    with open(runs.run_path(run_id) / runs.PREDICTIONS_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def test_probabilities_agree_with_the_training_predictions(trained):
    run_id = trained[0]
    (runs.run_path(run_id) / evaluate.PROBABILITIES_FILE).unlink(missing_ok=True)
    evaluation = evaluate_run(run_id)
    rows = prediction_rows(run_id)
    assert [evaluation.labels[i] for i in evaluation.y_pred] == [row["pred"] for row in rows]
    np.testing.assert_allclose(
        evaluation.confidence, [float(row["confidence"]) for row in rows], atol=1e-4
    )
    assert evaluation.files == [row["file"] for row in rows]
    assert evaluation.run_id == run_id
    # A Run is taken as well as its id, and the stored rows are the ones just computed.
    again = evaluate_run(runs.load_run(run_id))
    np.testing.assert_array_equal(again.y_prob, evaluation.y_prob)
    # The same numbers as the pure function on the same arrays.
    again = evaluate_predictions([row["true"] for row in rows], evaluation.y_prob,
                                 evaluation.labels)  # fmt: skip
    assert again.to_dict()["confusion_matrix"] == evaluation.to_dict()["confusion_matrix"]
    assert np.allclose(evaluation.y_prob.sum(axis=1), 1.0, atol=1e-4)


def test_probabilities_are_cached_and_a_bad_cache_is_recomputed(trained, monkeypatch):
    run_id = trained[0]
    first = run_probabilities(run_id)
    cache = runs.run_path(run_id) / evaluate.PROBABILITIES_FILE
    assert cache.exists()

    def no_model_work(*args):
        raise AssertionError("the model ran although the probabilities were cached")

    monkeypatch.setattr(evaluate, "_compute_probabilities", no_model_work)
    np.testing.assert_array_equal(run_probabilities(run_id), first)
    monkeypatch.undo()
    np.save(cache, np.zeros((2, 2)))  # wrong shape: recomputed, not trusted
    np.testing.assert_allclose(run_probabilities(run_id), first, atol=1e-6)
    cache.write_bytes(b"garbage")
    np.testing.assert_allclose(run_probabilities(run_id), first, atol=1e-6)


def test_reading_listed_files_equals_the_training_pipeline(trained):
    from cnnlab.data.dataset import load_dataset
    from cnnlab.data.pipeline import load_arrays

    info = runs.load_run(trained[0])
    files = [row["file"] for row in prediction_rows(info.run_id)]
    from_pipeline = load_arrays(load_dataset("tiny"), "test", info.image_size)[0]
    # Reversed order is not the dataset's order, so the files are read one by one.
    one_by_one = evaluate._load_test_pixels(info, files[::-1])
    assert one_by_one.shape == from_pipeline.shape
    assert np.abs(one_by_one.astype(int) - from_pipeline[::-1].astype(int)).max() <= 1


def test_run_without_predictions_is_explained(trained):
    runs.create_run({"run_id": "20000101-000000-tiny-x-0001", "dataset": "tiny",
                     "status": "failed", "class_names": ["cat", "dog", "fox"]})  # fmt: skip
    with pytest.raises(CnnlabError, match="has no test predictions .*status: failed"):
        evaluate_run("20000101-000000-tiny-x-0001")
    with pytest.raises(CnnlabError, match="There is no run 'nope'"):
        evaluate_run("nope")
    runs.create_run({"run_id": "20000101-000000-tiny-x-0003", "dataset": "tiny",
                     "status": "completed", "class_names": ["cat", "dog", "fox"]})  # fmt: skip
    with pytest.raises(CnnlabError, match="completed without test predictions: .*no test split"):
        evaluate_run("20000101-000000-tiny-x-0003")


def test_gone_images_are_explained(trained):
    run_id = copy_run(trained[0], "20000101-000000-tiny-x-0002", dataset="deleted")
    path = runs.run_path(run_id)
    (path / evaluate.PROBABILITIES_FILE).unlink(missing_ok=True)
    rows = prediction_rows(run_id)
    runs.write_predictions(
        path, [(r["file"] + ".gone", r["true"], r["pred"], float(r["confidence"])) for r in rows]
    )
    with pytest.raises(CnnlabError, match="Cannot read test image .*changed or deleted"):
        evaluate_run(run_id)


def test_cli_evaluate_json(trained, capsys):
    run_id = trained[0]
    assert main(["evaluate", run_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    evaluation = evaluate_run(run_id)
    assert data["run_id"] == run_id
    assert data["labels"] == ["cat", "dog", "fox"]
    assert data["confusion_matrix"] == evaluation.confusion.tolist()
    assert data["accuracy"] == pytest.approx(evaluation.accuracy)
    assert set(data["per_class"]["dog"]) >= {"precision", "recall", "f1", "support"}
    assert sum(row["support"] for row in data["per_class"].values()) == 6
    with open(data["predictions_csv"], newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["file", "true", "pred", "confidence"]
        rows = list(reader)
    from PIL import Image

    for row in rows:
        with Image.open(row["file"]) as image:  # a path `predict` can read
            assert image.size == (24, 24)


def test_cli_evaluate_text_and_errors(trained, capsys):
    assert main(["evaluate", trained[0]]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix (rows true, columns predicted)" in out
    assert main(["evaluate", "no-such-run"]) == 2
    assert "There is no run 'no-such-run'" in capsys.readouterr().err


def test_cli_compare(trained, capsys):
    first, second = trained
    assert main(["compare", first, second, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_ids"] == [first, second]
    assert data["labels"] == [first, "short"]
    settings = {row["setting"] for row in data["config_diff"]}
    assert {"train.epochs", "train.learning_rate"} <= settings
    assert set(data["f1_deltas"]["short"]) == {"cat", "dog", "fox"}
    assert main(["compare", first, second]) == 0
    assert "train.learning_rate" in capsys.readouterr().out
    assert main(["compare", first]) == 2
    assert "at least 2 runs" in capsys.readouterr().err


def test_cli_report_is_self_contained(trained, tmp_path, capsys):
    assert main(["report", trained[0]]) == 0
    path = runs.run_path(trained[0]) / "report.html"
    assert f"wrote {path}" in capsys.readouterr().out
    text = path.read_text()
    assert "<script src=" not in text  # plotly.js is inlined, so it opens offline
    assert "Plotly.newPlot" in text and "Confusion matrix" in text
    assert main(["report", trained[0], "--output", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["report"].startswith(str(tmp_path))
