"""The Evaluate page under AppTest, on a real trained run in a temp workspace."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.evaluate import errors_for_cell, evaluate_run, most_confused
from tests.conftest import REPO, make_dataset_on_disk
from tests.runs_fixture import make_trained_run

PAGE = str(REPO / "pages" / "4_evaluate.py")
TIMEOUT = 120
CAPTION = re.compile(r"true \*\*(\w+)\*\* · pred \*\*(\w+)\*\* · (\d+)%")
CONFIDENCES = re.compile(r"pred \*\*\w+\*\* · (\d+)%")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One workspace with the tiny dataset and one trained run, shared by the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("evaluate-page")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        run_id = make_trained_run("tiny", epochs=2)
        yield run_id


def page(run_id=None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if run_id:
        at.session_state["run"] = run_id
    return at.run()


def gallery_cells(at) -> list[tuple[str, str]]:
    found = []
    for element in at.markdown:
        match = CAPTION.search(element.value)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def test_without_runs_the_page_says_what_to_do(workspace):
    at = page()
    assert not at.exception
    assert any("No completed run yet" in info.value for info in at.info)


@pytest.mark.slow
def test_headline_and_default_cell(trained):
    at = page(trained)
    assert not at.exception, at.exception
    evaluation = evaluate_run(trained)
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Accuracy"] == f"{evaluation.accuracy:.1%}"
    assert metrics["Macro F1"] == f"{evaluation.macro_f1:.3f}"
    # The cell shown first is the most confused pair (or the first diagonal cell).
    pairs = most_confused(evaluation, 1)
    expected = pairs[0][:2] if pairs else (evaluation.labels[0], evaluation.labels[0])
    assert (at.selectbox(key="ev_true").value, at.selectbox(key="ev_pred").value) == expected
    assert at.selectbox(key="ev_run").value == trained


@pytest.mark.slow
def test_picking_a_cell_shows_exactly_its_images(trained):
    evaluation = evaluate_run(trained)
    at = page(trained)
    cells = [(t, p) for t in evaluation.labels for p in evaluation.labels]
    for number, (true_label, pred_label) in enumerate(cells):
        sort = ("loss", "confidence")[number % 2]
        at.radio(key="ev_sort").set_value(sort)
        at.selectbox(key="ev_true").set_value(true_label)
        at.selectbox(key="ev_pred").set_value(pred_label)
        at.run()
        assert not at.exception
        expected = errors_for_cell(evaluation, true_label, pred_label, sort=sort)
        header = f"**{true_label} → {pred_label}**"
        assert any(
            header in m.value and f"{len(expected)} image(s)" in m.value for m in at.markdown
        )
        # The cell gallery comes before the top-losses gallery on the page.
        shown = gallery_cells(at)[: len(expected)]
        assert shown == [(p.true, p.pred) for p in expected]
        confidences = [int(c) for c in CONFIDENCES.findall(" ".join(m.value for m in at.markdown))]
        assert confidences[: len(expected)] == [round(p.confidence * 100) for p in expected]


@pytest.mark.slow
def test_top_losses_lists_every_error(trained):
    evaluation = evaluate_run(trained)
    at = page(trained)
    # Pick an empty cell so only the top-losses gallery shows images.
    empty = [
        (evaluation.labels[t], evaluation.labels[p])
        for t in range(len(evaluation.labels))
        for p in range(len(evaluation.labels))
        if evaluation.confusion[t, p] == 0
    ]
    if not empty:
        pytest.skip("every cell of this run's matrix has images")
    at.selectbox(key="ev_true").set_value(empty[0][0])
    at.selectbox(key="ev_pred").set_value(empty[0][1]).run()
    errors = [cell for cell in gallery_cells(at) if cell[0] != cell[1]]
    assert len(errors) == evaluation.errors


@pytest.mark.slow
def test_gallery_names_images_as_uploaded(trained):
    at = page(trained)
    # The test images (the last two of each class) by their upload names, not hashes.
    uploads = {f"{label}\\_{i}\\.png" for label in ("cat", "dog", "fox") for i in (8, 9)}
    captions = [caption.value for caption in at.caption]
    assert uploads & set(captions)
    stored = [caption.help for caption in at.caption if caption.value in uploads]
    assert stored and all(text.startswith("Stored as ") for text in stored)


@pytest.mark.slow
def test_normalised_toggle_and_other_tabs_render(trained):
    at = page(trained)
    at.radio(key="ev_cm_mode").set_value("row-normalised").run()
    assert not at.exception
    assert len(at.tabs) == 6
    labels = [df.value for df in at.dataframe]
    per_class = next(
        frame for frame in labels if "class" in frame.columns and "f1" in frame.columns
    )
    assert list(per_class["class"]) == ["cat", "dog", "fox"]
    assert any("class weighting **none**" in m.value for m in at.markdown)


@pytest.mark.slow
def test_unknown_current_run_falls_back_to_latest_completed(trained):
    at = page("no-such-run")
    assert not at.exception
    assert at.selectbox(key="ev_run").value == trained
    assert any(metric.label == "Accuracy" for metric in at.metric)


def give_predictions(run_id: str, predicted: list[str]) -> None:
    """Make a run's test predictions ``predicted`` (predictions.csv and the softmax rows)."""
    import numpy as np

    from cnnlab import runs

    info = runs.load_run(run_id)
    rows = runs.read_predictions(run_id)
    assert len(predicted) == len(rows)
    probabilities = np.full((len(rows), len(info.class_names)), 0.1)
    for probability, label in zip(probabilities, predicted, strict=True):
        probability[info.class_names.index(label)] = 0.8
    pairs = zip(rows, predicted, strict=True)
    runs.write_predictions(info.path, [(r["file"], r["true"], label, 0.8) for r, label in pairs])
    runs.write_probabilities(info.path, probabilities)


@pytest.mark.slow
def test_imbalance_study_shows_the_f1_change_of_each_variant(trained, monkeypatch):
    import shutil

    import cnnlab.train
    from cnnlab import runs, workspace
    from cnnlab.train import prepare_run

    # The study's source: a copy of the trained run, as if trained with balanced weights.
    source = "20000101-000000-tiny-simple-babe"
    shutil.copytree(runs.run_path(trained), workspace.run_dir(source))
    meta = runs.load_run(trained).meta
    workspace.atomic_write_json(
        workspace.run_dir(source) / runs.RUN_FILE,
        {
            **meta,
            "run_id": source,
            "created": "2000-01-01T00:00:00+00:00",
            "train": {**meta["train"], "class_weight": "balanced"},
        },
    )
    queued = {}

    def queue_only(dataset, arch, spec, **extra):
        """start_run without launching a worker: the runs stay queued."""
        run_id = runs.create_run(prepare_run(dataset, arch, spec, **extra)).run_id
        queued[extra["study_variant"]] = run_id
        return run_id

    monkeypatch.setattr(cnnlab.train, "start_run", queue_only)
    try:
        at = page(source)
        at.button(key="ev_study_start").click().run()
        assert not at.exception, at.exception
        assert any("Queued study imbalance-" in s.value for s in at.success)
        assert sorted(queued) == ["none", "oversample"]  # the source is "balanced"
        status = next(f.value for f in at.dataframe if "variant" in f.value.columns)
        assert dict(zip(status["variant"], status["status"], strict=True)) == {
            "none": "queued",
            "balanced": "completed",
            "oversample": "queued",
        }
        assert any("at least two variants have completed" in i.value for i in at.info)

        # The variants "finish" with predictions made up so that their per-class F1 are
        # known. (The worker's training is tested elsewhere; these runs take the files
        # of a real run.) The test split: cat, cat, dog, dog, fox, fox.
        for run_id in queued.values():
            for name in ("best.keras", "history.json", "metrics.json", "predictions.csv"):
                shutil.copy(runs.run_path(trained) / name, runs.run_path(run_id) / name)
            runs.update_run(run_id, status="completed", created="2000-01-01T00:00:00+00:00")
        truth = [row["true"] for row in runs.read_predictions(source)]
        assert truth == ["cat", "cat", "dog", "dog", "fox", "fox"]
        # none, the baseline: all right, F1 1, 1, 1.
        give_predictions(queued["none"], truth)
        # balanced: both dogs called cats. F1 cat 2/3, dog 0, fox 1.
        give_predictions(source, ["cat", "cat", "cat", "cat", "fox", "fox"])
        # oversample: one fox called a dog. F1 cat 1, dog 4/5, fox 2/3.
        give_predictions(queued["oversample"], ["cat", "cat", "dog", "dog", "dog", "fox"])
        at.run()
        assert not at.exception, at.exception
        table = next(f.value for f in at.dataframe if "Δ F1 balanced" in f.value.columns)
        assert list(table["class"]) == ["cat", "dog", "fox"]
        assert list(table["Δ F1 balanced"]) == pytest.approx([-1 / 3, -1, 0], abs=1e-9)
        assert list(table["Δ F1 oversample"]) == pytest.approx([0, -1 / 5, -1 / 3], abs=1e-9)
        assert list(table["F1 none"]) == pytest.approx([1, 1, 1], abs=1e-9)
    finally:
        for run_id in [*queued.values(), source]:
            runs.update_run(run_id, status="cancelled")
            runs.delete_run(run_id)


def open_map(run_id) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["run"] = run_id
    at.session_state["ev_tab"] = "Embedding map"
    return at.run()


@pytest.mark.slow
def test_the_map_waits_for_its_tab(trained, monkeypatch):
    import cnnlab.embedding

    called = []
    monkeypatch.setattr(cnnlab.embedding, "features", lambda *a: called.append(a))
    at = page(trained)
    assert not at.exception, at.exception
    assert not called
    assert "ev_map_method" not in [radio.key for radio in at.radio]


@pytest.mark.slow
def test_the_map_draws_every_image_and_shows_a_picked_image_s_neighbours(trained):
    from cnnlab import embedding
    from pages._embedding_parts import NEIGHBOURS
    from pages._ui import plain

    at = open_map(trained)
    assert not at.exception, at.exception
    features = embedding.features(trained)
    chart = next(c for c in at.get("plotly_chart") if "Embedding map" in c.proto.spec)
    traces = json.loads(chart.proto.spec)["data"]
    drawn = [c[0] for t in traces if t["name"] in ("cat", "dog", "fox") for c in t["customdata"]]
    assert sorted(drawn) == list(range(len(features)))
    assert at.selectbox(key="ev_map_point").value is None
    at.radio(key="ev_map_colour").set_value("correct")
    at.radio(key="ev_map_method").set_value("tsne").run()
    assert not at.exception, at.exception
    # Picking an image (what a click on its point does) shows it and its neighbours.
    at.selectbox(key="ev_map_point").set_value(0).run()
    assert not at.exception, at.exception
    assert any("Nearest neighbours" in m.value for m in at.markdown)
    near = embedding.neighbours(features, 0, NEIGHBOURS)
    captions = [c.value for c in at.caption]
    for other, _ in near:
        assert any(caption.startswith(plain(features.sources[other])) for caption in captions)
    assert any(plain(features.sources[0]) in m.value for m in at.markdown)


def test_a_click_on_the_map_picks_the_image_drawn_there():
    # AppTest cannot click a plotly point, so the handler the click goes through is
    # tested on the selection Streamlit would hand over.
    from pages._embedding_parts import selected_index

    shown = [4, 9, 17]
    assert selected_index({"selection": {"points": [{"customdata": [1]}]}}, shown) == 9
    assert selected_index({"points": [{"customdata": [2]}]}, shown) == 17
    assert selected_index({"points": [{"customdata": [3]}]}, shown) is None
    assert selected_index(None, shown) is None


@pytest.mark.slow
def test_the_map_marks_the_datasets_audited_label_issues(trained):
    from cnnlab import audit, runs, workspace
    from cnnlab.data.dataset import load_dataset

    dataset = load_dataset(runs.load_run(trained).dataset)
    record = dataset.records[0]
    issue = {"file": record.file, "source": record.upload_name, "given": record.label,
             "suggested": record.label, "quality": 0.01}  # fmt: skip
    path = dataset.path / audit.AUDIT_FILE
    workspace.atomic_write_json(
        path, {"fingerprint": audit.fingerprint(dataset), "label_issues": [issue]}
    )
    try:
        at = open_map(trained)
        assert not at.exception, at.exception
        chart = next(c for c in at.get("plotly_chart") if "Embedding map" in c.proto.spec)
        traces = json.loads(chart.proto.spec)["data"]
        assert any(t["name"] == "label issues (1)" for t in traces)
    finally:
        path.unlink()
