"""The embedding map's core: features of a real trained run, projections, neighbours,
outliers, the run-folder cache, and the map's figure."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cnnlab import embedding as emb
from cnnlab.embedding import Embedding
from cnnlab.embedding_plots import embedding_figure, point_from_selection
from cnnlab.errors import CnnlabError
from tests.conftest import make_dataset_on_disk
from tests.runs_fixture import make_trained_run

WHITE = "images/cat/white.png"
COPY = "images/dog/copy.png"


def add_odd_and_copy(name: str) -> tuple[str, str]:
    """Give dataset ``name`` a flat white image among its dark noisy cats and an exact
    copy of a dog under another name; returns (the white file, the copied file)."""
    from PIL import Image

    from cnnlab import workspace
    from cnnlab.data.dataset import Record, read_index, write_index

    folder = workspace.dataset_dir(name)
    records = read_index(folder / "index.csv")
    Image.new("RGB", (24, 24), (255, 255, 255)).save(folder / WHITE)
    original = next(r for r in records if r.label == "dog" and r.split == "train")
    (folder / COPY).write_bytes((folder / original.file).read_bytes())
    records += [
        Record(WHITE, "cat", "train", "f" * 64, 24, 24, source="cat/white.png"),
        Record(COPY, "dog", "train", original.sha, 24, 24, source="dog/copy.png"),
    ]
    write_index(folder / "index.csv", records)
    return WHITE, original.file


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with the tiny dataset plus an odd cat and a copied dog, and a run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_HOME", str(tmp_path_factory.mktemp("embedding")))
        make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
        white, copied = add_odd_and_copy("tiny")
        run_id = make_trained_run("tiny", epochs=2)
        yield run_id, white, copied


def synthetic(features, labels, predictions=None) -> Embedding:
    features = np.asarray(features, dtype=np.float32)
    classes = sorted(set(labels))
    predictions = predictions or labels
    probabilities = np.eye(len(classes), dtype=np.float32)[[classes.index(p) for p in predictions]]
    count = len(labels)
    return Embedding(
        run_id="r",
        root="/nowhere",
        class_names=classes,
        files=[f"images/{label}/{i}.png" for i, label in enumerate(labels)],
        sources=[f"{label}/{i}.png" for i, label in enumerate(labels)],
        labels=list(labels),
        splits=["train"] * count,
        features=features,
        probabilities=probabilities,
    )


# --------------------------------------------------------------- on a trained run


@pytest.mark.slow
def test_features_cover_every_image_with_the_penultimate_width(trained):
    from cnnlab import runs
    from cnnlab.data.dataset import load_dataset
    from cnnlab.predict import Predictor

    run_id, _, _ = trained
    embedding = emb.features(run_id)
    dataset = load_dataset("tiny")
    assert len(embedding) == len(dataset.records) == 32
    model = Predictor(run_id).load().model_
    width = int(model.get_layer("predictions").input.shape[-1])
    assert embedding.features.shape == (32, width)
    assert embedding.probabilities.shape == (32, 3)
    assert sorted(embedding.files) == sorted(r.file for r in dataset.records)
    by_file = {r.file: r for r in dataset.records}
    assert embedding.sources == [by_file[f].upload_name for f in embedding.files]
    assert embedding.labels == [by_file[f].label for f in embedding.files]
    # The test split scores exactly as the trainer scored it.
    test = [i for i, split in enumerate(embedding.splits) if split == "test"]
    rows = runs.load_run(run_id).predictions()
    assert [str(dataset.path / embedding.files[i]) for i in test] == [r["file"] for r in rows]
    assert [embedding.predictions[i] for i in test] == [r["pred"] for r in rows]
    stored = runs.load_run(run_id).probabilities()
    np.testing.assert_allclose(embedding.probabilities[test], stored, atol=1e-5)


@pytest.mark.slow
def test_one_split_and_bad_splits(trained):
    run_id, _, _ = trained
    test = emb.features(run_id, splits=("test",))
    assert set(test.splits) == {"test"} and len(test) == 6
    with pytest.raises(CnnlabError, match="`splits` must be some of train, val, test"):
        emb.features(run_id, splits=("holdout",))


@pytest.mark.slow
def test_projections_and_neighbours_on_the_run(trained):
    run_id, _, copied = trained
    embedding = emb.features(run_id)
    for method in emb.METHODS:
        points = emb.project(embedding, method)
        assert points.shape == (len(embedding), 2) and np.isfinite(points).all()
    index = embedding.files.index(copied)
    near = emb.neighbours(embedding, index, k=3)
    assert len(near) == 3 and index not in [i for i, _ in near]
    assert embedding.files[near[0][0]] == COPY
    assert near[0][1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_the_odd_image_is_its_class_s_first_outlier(trained):
    run_id, white, _ = trained
    ranked = emb.outliers(run_id, top=40)
    assert len(ranked) == 32
    assert set(ranked[0]) == {"file", "source", "label", "split", "score"}
    cats = [row for row in ranked if row["label"] == "cat"]
    assert cats[0]["file"] == white and cats[0]["source"] == "cat/white.png"
    assert cats[0]["split"] == "train"
    scores = [row["score"] for row in ranked]
    assert scores == sorted(scores, reverse=True)
    flagged = emb.outliers(run_id)
    assert all(row["score"] > emb.OUTLIER_Z for row in flagged)


@pytest.mark.slow
def test_the_cache_is_reused_then_invalidated(trained, monkeypatch):
    from cnnlab import runs

    run_id, _, _ = trained
    first = emb.features(run_id)
    path = runs.load_run(run_id).path / emb.EMBEDDING_FILE
    assert path.exists()
    computed = []
    original = emb._compute
    monkeypatch.setattr(emb, "_compute", lambda *a: computed.append(1) or original(*a))
    again = emb.features(run_id)
    assert not computed
    np.testing.assert_array_equal(again.features, first.features)
    assert again.files == first.files and again.sources == first.sources
    # A newer model file makes it stale.
    model = runs.load_run(run_id).best_model_path
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    emb.features(run_id)
    assert computed == [1]
    # So does a relabelled image.
    from cnnlab.data.dataset import load_dataset, write_index

    dataset = load_dataset("tiny")
    records = list(dataset.records)
    backup = list(records)
    records[0] = type(records[0])(**{**records[0].__dict__, "label": "dog"})
    write_index(dataset.path / "index.csv", records)
    try:
        assert emb.features(run_id).labels[0] == "dog"
        assert computed == [1, 1]
    finally:
        write_index(dataset.path / "index.csv", backup)
    # A damaged file is recomputed, not fatal.
    path.write_bytes(b"not an npz")
    assert len(emb.features(run_id)) == 32


# ---------------------------------------------------------------- synthetic features


def test_outlier_scores_rank_the_odd_vector_first_per_class():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0, 0]) + rng.normal(0, 0.05, (20, 3))
    b = np.array([0, 1.0, 0]) + rng.normal(0, 0.05, (20, 3))
    a[7] = [0, 0, 1.0]  # unlike the rest of class a
    embedding = synthetic(np.vstack([a, b]), ["a"] * 20 + ["b"] * 20)
    found = emb.find_outliers(embedding)
    assert [row["file"] for row in found] == ["images/a/7.png"]
    assert found[0]["score"] > emb.OUTLIER_Z
    assert len(emb.find_outliers(embedding, top=5)) == 5
    with pytest.raises(CnnlabError, match="`top` must be a whole number"):
        emb.find_outliers(embedding, top=-1)


def test_small_classes_and_identical_classes_flag_nothing():
    embedding = synthetic(np.ones((7, 4)), ["a"] * 3 + ["b"] * 4)
    assert emb.find_outliers(embedding) == []
    assert np.isnan(emb.outlier_scores(embedding)).all()
    same = synthetic(np.ones((6, 4)), ["a"] * 6)
    assert emb.outlier_scores(same).tolist() == [0.0] * 6


def test_project_shapes_and_edge_cases():
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(80, 64))
    assert emb.project(wide, "pca").shape == (80, 2)
    assert emb.project(wide, "tsne", seed=3).shape == (80, 2)
    np.testing.assert_allclose(emb.project(wide, "tsne", seed=3), emb.project(wide, "tsne", seed=3))
    assert emb.project(rng.normal(size=(4, 1)), "pca").shape == (4, 2)
    assert emb.project(rng.normal(size=(4, 5)), "tsne").shape == (4, 2)
    assert emb.project(np.zeros((1, 5)), "tsne").tolist() == [[0.0, 0.0]]
    with pytest.raises(CnnlabError, match="`method` must be one of pca, tsne"):
        emb.project(wide, "umap")


def test_neighbours_by_cosine_similarity():
    features = [[1, 0], [2, 0.01], [0, 1], [0.7, 0.7]]
    embedding = synthetic(features, ["a", "a", "b", "b"])
    near = emb.neighbours(embedding, 0, k=2)
    assert [i for i, _ in near] == [1, 3]
    assert near[0][1] == pytest.approx(1.0, abs=1e-3)
    assert len(emb.neighbours(embedding, 0, k=10)) == 3
    with pytest.raises(CnnlabError, match=r"`index` must be in \[0, 3\]"):
        emb.neighbours(embedding, 4)


def test_stratified_sample_keeps_each_class():
    labels = ["a"] * 900 + ["b"] * 90 + ["c"] * 10
    picked = emb.stratified_sample(labels, 100, seed=0)
    counts = {label: sum(labels[i] == label for i in picked) for label in "abc"}
    assert counts == {"a": 90, "b": 9, "c": 1}
    assert list(picked) == sorted(set(picked))
    assert list(emb.stratified_sample(labels[:50], 100)) == list(range(50))


def test_subset_and_correctness():
    embedding = synthetic(np.eye(3), ["a", "b", "b"], predictions=["a", "a", "b"])
    assert embedding.correct.tolist() == [True, False, True]
    part = embedding.subset([2, 0])
    assert part.labels == ["b", "a"] and part.features.tolist() == [[0, 0, 1], [1, 0, 0]]


# -------------------------------------------------------------------------- figures


def map_figure(colour_by="label", **kwargs):
    points = np.array([[0, 0], [1, 1], [2, 0], [3, 3]], dtype=float)
    return embedding_figure(
        points,
        labels=["cat", "cat", "<b>dog</b>", "<b>dog</b>"],
        predictions=["cat", "<b>dog</b>", "<b>dog</b>", "cat"],
        sources=["a.png", "<i>b</i>.png", "c.png", "d.png"],
        files=["f0", "f1", "f2", "f3"],
        colour_by=colour_by,
        **kwargs,
    )


def test_map_is_coloured_by_label_prediction_or_correctness():
    by_label = map_figure("label")
    assert [t.name for t in by_label.data] == ["&lt;b&gt;dog&lt;/b&gt;", "cat"]
    assert [c[0] for c in by_label.data[1].customdata] == [0, 1]
    by_prediction = map_figure("prediction")
    assert [c[0] for c in by_prediction.data[1].customdata] == [0, 3]
    correct = map_figure("correct")
    assert [t.name for t in correct.data] == ["right", "wrong"]
    assert [c[0] for c in correct.data[1].customdata] == [1, 3]
    with pytest.raises(CnnlabError, match="`colour_by` must be one of"):
        map_figure("size")


def test_hover_names_the_upload_label_and_prediction_escaped():
    figure = map_figure()
    hover = " ".join(text for trace in figure.data for text in trace.hovertext)
    assert "&lt;i&gt;b&lt;/i&gt;.png<br>label cat · predicted &lt;b&gt;dog&lt;/b&gt;" in hover
    assert "<i>" not in hover


def test_outliers_and_label_issues_are_highlighted():
    figure = map_figure(outliers={"f2"}, label_issues={"f1", "f3", "elsewhere"})
    names = [trace.name for trace in figure.data]
    assert names[-2:] == ["outliers (1)", "label issues (2)"]
    assert [c[0] for c in figure.data[-2].customdata] == [2]
    assert [c[0] for c in figure.data[-1].customdata] == [1, 3]
    assert figure.data[-2].marker.symbol == "circle-open"
    assert all("outlier" not in trace.name for trace in map_figure().data)


def test_large_maps_use_webgl():
    count = 3001
    figure = embedding_figure(
        np.zeros((count, 2)), ["a"] * count, ["a"] * count, ["s"] * count, ["f"] * count
    )
    assert figure.data[0].type == "scattergl"


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (None, None),
        ({}, None),
        ({"points": []}, None),
        ({"points": [{"customdata": [2]}]}, 2),
        ({"selection": {"points": [{"customdata": [1]}, {"customdata": [3]}]}}, 3),
        ({"points": [{"customdata": 1}]}, 1),
        ({"points": [{"customdata": [9]}]}, None),
        ({"points": [{"x": 1, "y": 2}]}, None),
    ],
)
def test_point_from_selection(selection, expected):
    assert point_from_selection(selection, 4) == expected
