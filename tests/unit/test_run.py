"""One owner for a run: RunRecord (what run.json records) and Run (the folder)."""

from __future__ import annotations

import json
import os
import time

import pytest

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec
from cnnlab.run import Run, RunRecord
from cnnlab.train.spec import TrainSpec

# A run.json as prepare_run writes it today, state fields included.
TODAY = {
    "run_id": "20260101-000000-tiny-simple-abcd",
    "dataset": "tiny",
    "status": "completed",
    "created": "2026-01-01T00:00:00+00:00",
    "queued_at": 1.0,
    "started": "2026-01-01T00:00:01+00:00",
    "finished": "2026-01-01T00:01:01+00:00",
    "error": None,
    "arch": ArchSpec.from_dict({"preset": "simple"}).to_dict(),
    "arch_label": "simple (3 conv)",
    "train": TrainSpec(epochs=2, image_size=24).to_dict(),
    "class_names": ["cat", "dog"],
    "channels": 3,
    "image_size": 24,
    "device": {"device": "CPU", "strategy": "default"},
    "versions": {"python": "3.12"},
    "worker": {"pid": 1, "host": "h"},
    "name": None,
    "tags": ["a"],
    "study": "imbalance-1",
    "study_variant": "balanced",
    "study_source": "20251231-000000-tiny-simple-0000",
    "class_weights": {"cat": 1.0, "dog": 2.0},
    "resumes": 1,
    "someday_a_new_field": 42,
}


def _make_run(**meta):
    return runs.create_run({**TODAY, **meta})


def test_record_reads_todays_run_json_and_round_trips():
    record = RunRecord.from_dict(TODAY)
    assert isinstance(record.arch, ArchSpec) and isinstance(record.train, TrainSpec)
    assert record.train.epochs == 2 and record.class_names == ("cat", "dog")
    assert record.study == "imbalance-1" and record.tags == ("a",)
    data = record.to_dict()
    assert "status" not in data and "someday_a_new_field" not in data  # state stays out
    assert data["arch"] == TODAY["arch"] and data["train"] == TODAY["train"]
    assert RunRecord.from_dict(data) == record


def test_record_of_an_old_run_json_takes_defaults():
    record = RunRecord.from_dict({"run_id": "x", "dataset": "tiny", "class_names": ["a", "b"]})
    assert record.arch is None and record.train is None and record.tags == ()
    assert record.parent is None and record.name is None


def test_a_fork_keeps_the_model_not_the_name_or_study():
    record = RunRecord.from_dict({**TODAY, "name": "mine"})
    fork = record.forked("new-id", record.train.with_changes(epochs=5), {"run_id": "x"})
    assert fork.run_id == "new-id" and fork.train.epochs == 5
    assert fork.arch == record.arch and fork.class_names == record.class_names
    assert fork.tags == record.tags and fork.parent == {"run_id": "x"}
    assert fork.name is None and fork.study is None and fork.study_source is None


def test_run_reads_the_folder(workspace):
    info = _make_run()
    assert isinstance(info, Run) and runs.RunInfo is Run
    assert info.arch_label == "simple (3 conv)" and info.label == info.run_id
    assert info.device_name == "CPU" and info.class_weights == {"cat": 1.0, "dog": 2.0}
    assert info.resumes == 1 and info.tags == ["a"]
    assert info.best_model_path == info.path / "best.keras"
    assert info.saved_models() == [] and not info.has_model
    (info.path / "last.keras").write_bytes(b"x")
    assert info.saved_models() == ["last"] and info.has_model
    with pytest.raises(CnnlabError, match=r"no usable model \(best.keras\): it has a last"):
        info.model_path("best")
    assert info.model_path("last") == info.last_model_path
    assert info.history() == {} and info.metrics() == {} and info.probabilities() is None
    assert info.events() == []


def test_arch_label_falls_back_one_way(workspace):
    info = _make_run(arch_label=None, arch={"preset": "simple"})
    assert info.arch_label == "simple"
    assert runs.load_run(info.run_id).summary()["arch"] == "simple"
    info = _make_run(run_id="20260101-000000-tiny-x-0002", arch_label=None, arch={})
    assert info.arch_label == "custom"


def test_summary_keeps_the_runs_json_fields(workspace):
    info = _make_run()
    (info.path / runs.METRICS_FILE).write_text(
        json.dumps({"test_accuracy": 0.5, "epochs_run": 2, "duration_s": 60.0})
    )
    summary = runs.load_run(info.run_id).summary()
    for key in ("run_id", "status", "dataset", "arch", "created", "started", "finished",
                "epochs", "epochs_run", "test_accuracy", "error"):  # fmt: skip
        assert key in summary
    assert summary["test_accuracy"] == 0.5 and summary["duration_s"] == 60.0
    assert summary["epochs"] == 2 and summary["study"] == "imbalance-1"


def test_update_merges_under_the_lock_and_refreshes(workspace):
    info = _make_run()
    info.update(name="renamed", status="failed")
    assert info.name == "renamed" and info.status == "failed"
    again = runs.load_run(info.run_id)
    assert again.name == "renamed" and again.meta["someday_a_new_field"] == 42


def test_version_follows_the_files_that_change(workspace):
    info = _make_run()
    before = runs.load_run(info.run_id).version()
    model_before = info.version("best")
    path = info.path / runs.PREDICTIONS_FILE
    path.write_text("file,true,pred,confidence\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    assert runs.load_run(info.run_id).version() != before
    assert info.version("best") == model_before  # the model did not change
    info.best_model_path.write_bytes(b"x")
    assert info.version("best") != model_before


def test_default_run_prefers_live_then_completed_then_newest(workspace):
    assert runs.default_run() is None
    old = _make_run(run_id="20260101-000000-a", created="2026-01-01T00:00:00+00:00")
    failed = _make_run(run_id="20260102-000000-b", created="2026-01-02T00:00:00+00:00",
                       status="failed")  # fmt: skip
    assert runs.default_run().run_id == old.run_id
    assert runs.default_run([failed]).run_id == failed.run_id
    live = _make_run(run_id="20260100-000000-c", created="2025-12-31T00:00:00+00:00",
                     status="running", worker=None)  # fmt: skip
    runs.touch_heartbeat(live.run_id)
    assert runs.default_run().run_id == live.run_id


def test_jobs_and_trainer_do_not_import_each_other():
    import ast
    from pathlib import Path

    import cnnlab

    root = Path(cnnlab.__file__).parent / "train"
    jobs = ast.unparse(ast.parse((root / "jobs.py").read_text()))
    assert "cnnlab.train.trainer" not in jobs
