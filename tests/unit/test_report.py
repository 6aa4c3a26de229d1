"""Experiments table, comparison, imbalance study, HTML report and bundle, on real runs."""

from __future__ import annotations

import io
import zipfile

import pytest

from cnnlab import report, runs
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_run, update_run_meta
from cnnlab.study import list_studies, load_study, start_imbalance_study
from tests.conftest import make_dataset_on_disk
from tests.runs_fixture import make_trained_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """An imbalanced dataset (cat 16, dog 6, fox 6) and one run on it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("report")))
        make_dataset_on_disk("skewed", {"cat": 16, "dog": 6, "fox": 6})
        run_id = make_trained_run("skewed", epochs=2, name="base", tags=["demo"])
        yield run_id


def train_in_process(dataset, arch, spec, **extra):
    """start_run's contract (create the run, return its id), trained in this process."""
    from cnnlab.train import prepare_run
    from cnnlab.train.trainer import Trainer

    run_id = runs.create_run(prepare_run(dataset, arch, spec, **extra)).run_id
    Trainer(dataset, run_id=run_id).fit()
    return run_id


def test_experiment_row(skewed):
    row = report.experiment_row(runs.load_run(skewed))
    assert row["run_id"] == skewed and row["name"] == "base" and row["tags"] == "demo"
    assert row["status"] == "completed" and row["dataset"] == "skewed"
    assert row["arch"] == "simple"
    assert row["epochs"] == 2 and row["epochs_run"] == 2
    history = runs.read_history(skewed)
    assert row["best_val_accuracy"] == pytest.approx(max(history["val_accuracy"]))
    evaluation = evaluate_run(skewed)
    assert row["test_accuracy"] == pytest.approx(evaluation.accuracy)
    assert row["macro_f1"] == pytest.approx(evaluation.macro_f1)
    assert row["duration_s"] is not None and row["duration_s"] >= 0
    assert row["device"].startswith("CPU")


def test_filter_rows():
    rows = [
        {"run_id": "r1", "name": "baseline", "tags": "demo", "arch": "simple",
         "status": "completed", "dataset": "digits"},
        {"run_id": "r2", "name": "", "tags": "", "arch": "resnet",
         "status": "failed", "dataset": "shapes"},
    ]  # fmt: skip
    assert [r["run_id"] for r in report.filter_rows(rows, "DEMO")] == ["r1"]
    assert [r["run_id"] for r in report.filter_rows(rows, "resnet")] == ["r2"]
    assert [r["run_id"] for r in report.filter_rows(rows, statuses=["failed"])] == ["r2"]
    assert [r["run_id"] for r in report.filter_rows(rows, datasets=["digits"])] == ["r1"]
    assert len(report.filter_rows(rows)) == 2


def test_config_diff_needs_two_runs(skewed):
    with pytest.raises(CnnlabError, match="at least 2 runs. Received: 1"):
        report.config_diff([skewed])
    with pytest.raises(CnnlabError, match="There is no run 'ghost'"):
        report.config_diff([skewed, "ghost"])


def test_update_run_meta(skewed):
    meta = update_run_meta(skewed, name="  renamed ", tags="b, a,, b")
    assert meta["name"] == "renamed" and meta["tags"] == ["a", "b"]
    assert runs.load_run(skewed).meta["tags"] == ["a", "b"]
    with pytest.raises(CnnlabError, match="Only name, tags.* Received: status"):
        update_run_meta(skewed, status="completed")
    with pytest.raises(CnnlabError, match="at most 80 characters"):
        update_run_meta(skewed, name="x" * 81)
    update_run_meta(skewed, name="base", tags=["demo"])


def test_html_report_and_bundle(skewed, tmp_path):
    text = report.html_report(skewed)
    assert text.startswith("<!DOCTYPE html>")
    assert "<script src=" not in text and text.count("Plotly.newPlot") == 6
    for section in ("Confusion matrix", "Per-class metrics", "Calibration", "Learning curves",
                    "Configuration", "learning_rate"):  # fmt: skip
        assert section in text
    evaluation = evaluate_run(skewed)
    assert f"{evaluation.accuracy:.4g}" in text
    path = report.write_report(skewed, tmp_path / "shared.html")
    assert path.exists() and "cnnlab report: base" in path.read_text()
    bundle = zipfile.ZipFile(io.BytesIO(report.run_bundle(skewed)))
    names = set(bundle.namelist())
    for name in ("run.json", "best.keras", "history.json", "metrics.json", "predictions.csv",
                 "report.html"):  # fmt: skip
        assert f"{skewed}/{name}" in names
    logs = {name.split("/")[2] for name in names if name.startswith(f"{skewed}/tensorboard/")}
    assert logs == {"train", "validation"}  # TensorBoard reads the unzipped folder
    import keras

    (tmp_path / "best.keras").write_bytes(bundle.read(f"{skewed}/best.keras"))
    model = keras.models.load_model(tmp_path / "best.keras", compile=False)
    assert model.output_shape[-1] == 3


def test_imbalance_study(skewed, monkeypatch):
    import cnnlab.train

    monkeypatch.setattr(cnnlab.train, "start_run", train_in_process)
    with pytest.raises(CnnlabError, match="`variants` must be among none, balanced, oversample"):
        start_imbalance_study(skewed, variants=["smote"])
    study_id = start_imbalance_study(skewed)
    assert list_studies(source=skewed) == [study_id]
    study = load_study(study_id)
    # The source run (class_weight none) is the "none" variant; two runs were queued.
    assert study.runs["none"] == skewed
    assert set(study.runs) == {"none", "balanced", "oversample"}
    assert study.complete and not study.active
    source = runs.load_run(skewed)
    for variant in ("balanced", "oversample"):
        info = runs.load_run(study.runs[variant])
        assert info.meta["study"] == study_id and info.meta["study_variant"] == variant
        assert info.arch == source.arch
        changed = {k for k in info.train if info.train[k] != source.train[k]}
        assert changed <= {"class_weight", "oversample"}
    balanced = runs.load_run(study.runs["balanced"])
    assert balanced.train["class_weight"] == "balanced"
    assert balanced.meta["class_weights"]["cat"] < balanced.meta["class_weights"]["dog"]
    assert runs.load_run(study.runs["oversample"]).train["oversample"] is True
    # Recall and F1 per variant are the runs' own, deltas against "none".
    for variant, run_id in study.runs.items():
        evaluation = evaluate_run(run_id)
        assert study.f1[variant] == {c: evaluation.per_class[c]["f1"] for c in study.classes}
        assert study.recall[variant]["dog"] == evaluation.per_class["dog"]["recall"]
    deltas = study.deltas("recall")
    assert set(deltas) == {"balanced", "oversample"}
    assert deltas["balanced"]["dog"] == pytest.approx(
        study.recall["balanced"]["dog"] - study.recall["none"]["dog"]
    )
    table = study.table()
    assert [row["class"] for row in table] == ["cat", "dog", "fox"]
    assert "Δ F1 balanced" in table[0]
    with pytest.raises(CnnlabError, match="no imbalance study 'nope'"):
        load_study("nope")
