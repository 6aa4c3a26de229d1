"""Parity on a really trained run: the Predictor, fed the test images' files, gives the
labels (and confidences) that evaluation stored in predictions.csv, and the TFLite
export agrees with both."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab import export, runs
from cnnlab.predict import Predictor
from tests.conftest import make_dataset_on_disk
from tests.runs_fixture import make_trained_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One run trained for both tests, in its own workspace (as ``tiny_dataset``)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("parity-home")))
    name = make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    yield make_trained_run(name, epochs=3)
    mp.undo()


def test_predict_agrees_with_stored_evaluation(trained_run):
    stored = runs.read_predictions(trained_run)
    assert len(stored) == 6
    predictor = Predictor(trained_run).load()
    results = predictor.predict_files([row["file"] for row in stored], top_k=3)
    for row, result in zip(stored, results, strict=True):
        assert result.ok, result.error
        assert Path(result.file) == Path(row["file"])
        assert result.label == row["pred"], (row, result.top)
        assert result.confidence == pytest.approx(row["confidence"], abs=1e-4)
    # One at a time, from bytes, gives the same answers as the batch.
    for row, result in zip(stored, results, strict=True):
        single = predictor.predict_bytes(Path(row["file"]).read_bytes())
        assert single.label == result.label
        assert single.confidence == pytest.approx(result.confidence, abs=1e-5)


def test_tflite_export_of_a_trained_run_keeps_parity(trained_run):
    report = export.check_export(trained_run, "tflite")
    assert report.images == 6 and report.passed, report.summary()
