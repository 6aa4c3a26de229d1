"""Predictor: loading a run's model once, decoding any image as ingest does, top-k,
batches with bad files, and clear messages for runs without a usable model.

Fast tests use a run folder holding an untrained model built by cnnlab's own builder
(:func:`save_model_run`); the parity test with a trained run is in
``test_predict_parity.py``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from cnnlab import predict, runs, workspace
from cnnlab.data import decode as decoding
from cnnlab.errors import CnnlabError
from cnnlab.predict import Prediction, Predictor

CLASSES = ("cat", "dog", "fox")


def save_model_run(
    run_id: str = "20260101-000000-tiny-simple-aaaa",
    *,
    classes=CLASSES,
    channels: int = 3,
    image_size: int = 24,
    preset: str = "simple",
    status: str = "completed",
    checkpoints=("best", "last"),
    created: str = "2026-01-01T00:00:00+00:00",
    seed: int = 0,
    model=None,
) -> str:
    """A run folder in the current workspace holding an (untrained) cnnlab model."""
    import keras

    from cnnlab.models import ArchSpec, build_model

    if model is None:
        keras.utils.set_random_seed(seed)
        model = build_model(
            ArchSpec.from_dict({"preset": preset}), image_size, channels, len(classes)
        )
    folder = workspace.run_dir(run_id)
    folder.mkdir(parents=True)
    for which in checkpoints:
        model.save(folder / f"{which}.keras")
    workspace.atomic_write_json(
        folder / "run.json",
        {
            "run_id": run_id,
            "dataset": "tiny",
            "status": status,
            "created": created,
            "error": "out of memory" if status == "failed" else None,
            "arch": {"preset": preset},
            "class_names": list(classes),
            "channels": channels,
            "image_size": image_size,
        },
    )
    return run_id


def png_bytes(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, fmt, **save)
    return buffer.getvalue()


def random_pixels(height=30, width=40, channels=3, seed=0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    return tmp_path_factory.mktemp("predict-home")


@pytest.fixture(scope="module")
def loaded(module_home):
    """One loaded Predictor on a run in a module-wide workspace (loading costs ~1 s)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_HOME", str(module_home))
    run_id = save_model_run()
    predictor = Predictor(run_id).load()
    yield predictor
    mp.undo()


def direct_probabilities(predictor: Predictor, data: bytes) -> np.ndarray:
    """What the model says when called by hand on the image decoded as ingest does."""
    image = decoding.decode(data).image.convert(predictor.mode_)
    pixels = np.asarray(image, dtype=np.uint8)
    from cnnlab.data.pipeline import resize_pixels

    resized = resize_pixels(pixels, predictor.image_size_)
    return np.asarray(predictor.model_(resized[None].astype("float32"), training=False))[0]


def test_load_sets_learned_state(loaded):
    assert loaded.class_names_ == list(CLASSES)
    assert (loaded.image_size_, loaded.channels_) == (24, 3)
    assert loaded.model_.output_shape == (None, 3)
    assert loaded.model_path_.name == "best.keras"
    assert "loaded" in repr(loaded)


def test_predict_bytes_top_k_matches_the_model(loaded):
    data = png_bytes(random_pixels(50, 37))
    prediction = loaded.predict_bytes(data, top_k=2, name="x.png")
    expected = direct_probabilities(loaded, data)
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-6)
    assert len(prediction.top) == 2
    order = np.argsort(-expected)
    assert [label for label, _ in prediction.top] == [CLASSES[i] for i in order[:2]]
    assert prediction.top[0][1] >= prediction.top[1][1]
    assert prediction.label == CLASSES[order[0]] and prediction.class_index == order[0]
    assert abs(prediction.probabilities.sum() - 1) < 1e-5
    assert prediction.latency_ms > 0
    assert prediction.pixels.shape == (24, 24, 3) and prediction.image.size == (37, 50)
    # More than the number of classes means all of them.
    assert len(loaded.predict_bytes(data, top_k=10).top) == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: png_bytes(random_pixels(31, 29, 1), "L"),
        lambda: png_bytes(np.dstack([random_pixels(20, 20), np.full((20, 20), 90, np.uint8)])),
        lambda: png_bytes(random_pixels(64, 48), fmt="JPEG", quality=80),
        lambda: png_bytes(random_pixels(24, 24), fmt="WEBP"),
        lambda: png_bytes(random_pixels(16, 16, 1).astype(np.uint16) * 257),
        lambda: png_bytes(random_pixels(20, 30), fmt="BMP"),
    ],
    ids=["gray-png", "rgba-png", "jpeg", "webp", "16bit-png", "bmp"],
)
def test_any_format_and_mode_is_decoded_as_ingest_does(loaded, make):
    data = make()
    prediction = loaded.predict_bytes(data, top_k=3)
    np.testing.assert_allclose(
        prediction.probabilities, direct_probabilities(loaded, data), atol=1e-6
    )
    assert prediction.image.mode == "RGB"


def test_batch_equals_single_and_keeps_order_with_bad_files(loaded, tmp_path):
    good = [png_bytes(random_pixels(20 + i, 30, seed=i)) for i in range(5)]
    truncated = good[0][: len(good[0]) // 2]
    files = {
        "a.png": good[0],
        "notes.png": b"just some text, not an image",
        "b.png": good[1],
        "cut.png": truncated,
        "c.png": good[2],
        "empty.png": b"",
        "tiny.png": png_bytes(random_pixels(4, 4)),
        "d.png": good[3],
        "e.png": good[4],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    loaded.batch_size = 2  # several batches, one left over
    try:
        results = loaded.predict_files(
            [tmp_path / name for name in files] + [tmp_path / "missing.png"], top_k=2
        )
    finally:
        loaded.batch_size = predict.DEFAULT_BATCH_SIZE
    assert [r.file.split("/")[-1] for r in results] == [*files, "missing.png"]
    errors = {r.file.split("/")[-1]: r.error for r in results if not r.ok}
    assert set(errors) == {"notes.png", "cut.png", "empty.png", "tiny.png", "missing.png"}
    assert "not an image" in errors["notes.png"]
    assert "truncated" in errors["cut.png"] or "corrupt" in errors["cut.png"]
    assert "empty file" in errors["empty.png"]
    assert "too small" in errors["tiny.png"]
    assert errors["missing.png"] == "no such file"
    for result in results:
        if result.ok:
            single = loaded.predict_bytes(files[result.file.split("/")[-1]], top_k=2)
            np.testing.assert_allclose(result.probabilities, single.probabilities, atol=1e-5)
            assert result.top[0][0] == single.top[0][0]
            assert result.image is None and result.pixels is None  # not kept by default
            assert result.latency_ms > 0


def test_too_large_file_is_refused_without_costing_the_others(loaded, tmp_path, monkeypatch):
    small = png_bytes(random_pixels(20, 20))
    big = png_bytes(random_pixels(200, 200))
    (tmp_path / "small.png").write_bytes(small)
    (tmp_path / "big.png").write_bytes(big)
    monkeypatch.setattr(decoding, "MAX_FILE_BYTES", len(small) + 10)
    results = loaded.predict_files([tmp_path / "big.png", tmp_path / "small.png"])
    assert "too large" in results[0].error
    assert results[1].ok
    with pytest.raises(CnnlabError, match="too large"):
        loaded.predict_bytes(big)


def test_single_bad_image_raises_with_the_reason(loaded):
    with pytest.raises(CnnlabError, match="not an image: the file holds text"):
        loaded.predict_bytes(b"hello, this is text")
    with pytest.raises(CnnlabError, match="vector image"):
        loaded.predict_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')


def test_one_compiled_graph_serves_every_size_and_batch(loaded):
    before = loaded._forward.experimental_get_tracing_count()
    for size in (10, 24, 57, 200):
        loaded.predict_bytes(png_bytes(random_pixels(size, size + 3)))
    loaded.predict_many([(f"{i}", png_bytes(random_pixels(30, 30, seed=i))) for i in range(7)])
    assert loaded._forward.experimental_get_tracing_count() == before == 1


def test_top_k_must_be_positive(loaded):
    data = png_bytes(random_pixels())
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(CnnlabError, match="`top_k` must be a whole number of at least 1"):
            loaded.predict_bytes(data, top_k=bad)


def test_wrong_input_shape_is_explained(loaded):
    with pytest.raises(CnnlabError, match=r"takes images of shape \(24, 24, 3\)"):
        loaded.probabilities(np.zeros((2, 10, 10, 3), np.uint8))


def test_grayscale_run_converts_colour_uploads(workspace):
    run_id = save_model_run(channels=1, image_size=16)
    predictor = Predictor(run_id).load()
    assert predictor.mode_ == "L"
    data = png_bytes(random_pixels(20, 20))
    prediction = predictor.predict_bytes(data)
    assert prediction.pixels.shape == (16, 16, 1)
    expected = np.asarray(decoding.decode(data).image.convert("L"))
    assert prediction.image.mode == "L"
    np.testing.assert_array_equal(np.asarray(prediction.image), expected)


def test_last_checkpoint_and_missing_model_messages(workspace):
    run_id = save_model_run(checkpoints=("last",), status="running")
    assert Predictor(run_id, checkpoint="last").load().model_path_.name == "last.keras"
    with pytest.raises(CnnlabError, match="has no usable model .*checkpoint='last'"):
        Predictor(run_id).load()

    failed = save_model_run("20260101-000001-tiny-simple-bbbb", status="failed", checkpoints=())
    with pytest.raises(CnnlabError, match="no usable model.*failed before saving one: out of"):
        Predictor(failed).load()

    with pytest.raises(CnnlabError, match="There is no run 'nope'"):
        Predictor("nope").load()
    with pytest.raises(CnnlabError, match="`checkpoint` must be one of 'best', 'last'"):
        Predictor(run_id, checkpoint="first").load()
    with pytest.raises(CnnlabError, match="not loaded yet"):
        Predictor(run_id).predict_bytes(b"x")


def test_damaged_model_file_is_a_clear_message(workspace):
    run_id = save_model_run()
    (runs.run_path(run_id) / "best.keras").write_bytes(b"not a zip at all")
    with pytest.raises(CnnlabError, match="could not be loaded.*train the run again"):
        Predictor(run_id).load()


def test_class_names_must_fit_the_model(workspace):
    run_id = save_model_run()
    path = runs.run_path(run_id) / "run.json"
    meta = json.loads(path.read_text())
    meta["class_names"] = ["cat", "dog"]
    path.write_text(json.dumps(meta))
    with pytest.raises(CnnlabError, match="lists 2 class names but its model has 3 outputs"):
        Predictor(run_id).load()


def default_run_id(run_list=None) -> str | None:
    """What the Predict page shows first: the default run among those with a model."""
    run = runs.default_run(predict.runs_with_model(run_list))
    return run.run_id if run else None


def test_default_run_is_the_newest_completed_with_a_model(workspace):
    assert default_run_id() is None
    save_model_run("20260101-000000-a", created="2026-01-01T00:00:00+00:00")
    save_model_run("20260102-000000-b", created="2026-01-02T00:00:00+00:00", status="failed",
                   checkpoints=())  # fmt: skip
    save_model_run("20260103-000000-c", created="2026-01-03T00:00:00+00:00", status="cancelled",
                   checkpoints=("last",))  # fmt: skip
    assert default_run_id() == "20260101-000000-a"
    workspace_runs = [info for info in runs.list_runs() if info.run_id != "20260101-000000-a"]
    assert default_run_id(workspace_runs) == "20260103-000000-c"


def test_folders_expand_and_skip_hidden_files(tmp_path):
    (tmp_path / "set" / "sub").mkdir(parents=True)
    for name in ("b.png", "a.png", "sub/c.jpg", ".DS_Store", "sub/.hidden.png"):
        (tmp_path / "set" / name).write_bytes(b"x")
    (tmp_path / "set" / "__MACOSX").mkdir()
    (tmp_path / "set" / "__MACOSX" / "a.png").write_bytes(b"x")
    found = predict.expand_paths([tmp_path / "set", tmp_path / "loose.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "set/a.png", "set/b.png", "set/sub/c.jpg", "loose.png",
    ]  # fmt: skip


def test_json_table_csv_and_verdict():
    good = Prediction("a.png", top=[("cat", 0.55), ("dog", 0.3)],
                      probabilities=np.array([0.55, 0.3, 0.15]), latency_ms=1.23456)  # fmt: skip
    bad = Prediction("b.png", error="not an image: the file holds text")
    assert good.to_dict() == {
        "file": "a.png",
        "top": [{"label": "cat", "probability": 0.55}, {"label": "dog", "probability": 0.3}],
        "latency_ms": 1.235,
    }
    assert bad.to_dict() == {"file": "b.png", "error": "not an image: the file holds text"}
    assert good.unsure(0.6) and not good.unsure(0.5) and not bad.unsure(0.9)
    rows = predict.predictions_table([good, bad], threshold=0.6)
    assert rows[0]["verdict"] == "unsure" and rows[0]["top_k"] == "cat 0.550; dog 0.300"
    assert rows[1]["verdict"] == "error" and rows[1]["error"].startswith("not an image")
    text = predict.predictions_csv([good, bad], threshold=0.5)
    lines = text.splitlines()
    assert lines[0] == "file,label,confidence,verdict,top_k,latency_ms,error"
    assert lines[1].startswith("a.png,cat,0.55,sure,")
    assert lines[2].startswith("b.png,,,error,,,not an image")
    assert predict.images_per_second([good, bad], 0.5) == 2.0


def test_top_k_figure_draws_the_most_probable_on_top():
    prediction = Prediction("a.png", top=[("cat", 0.7), ("dog", 0.2), ("fox", 0.1)],
                            probabilities=np.array([0.7, 0.2, 0.1]))  # fmt: skip
    figure = predict.top_k_figure(prediction, threshold=0.5)
    bar = figure.data[0]
    assert list(bar.y) == ["fox", "dog", "cat"] and list(bar.x) == [0.1, 0.2, 0.7]
    assert figure.layout.xaxis.range == (0, 1)


def test_the_predictions_csv_cannot_run_formulas_in_a_spreadsheet():
    """A shared Predict page takes uploads from anyone: a file named like a formula
    must reach the CSV's reader as text (OWASP: a leading quote), not as a formula a
    spreadsheet would run when an editor opens the download."""
    formula = '=HYPERLINK("http://example.com/x","open").png'
    rows = [
        Prediction(file=formula, top=[("+cat", 0.9), ("dog", 0.1)], latency_ms=1.0),
        Prediction(file="@sum.png", error="-not an image"),
        Prediction(file="plain.png", top=[("dog", 0.8)], latency_ms=1.0),
    ]
    import csv

    read = list(csv.DictReader(io.StringIO(predict.predictions_csv(rows))))
    assert read[0]["file"] == "'" + formula and read[0]["label"] == "'+cat"
    assert read[0]["top_k"] == "'+cat 0.900; dog 0.100"
    assert read[1]["file"] == "'@sum.png" and read[1]["error"] == "'-not an image"
    assert read[2]["file"] == "plain.png" and read[2]["label"] == "dog"
    assert read[2]["confidence"] == "0.8"  # numbers stay numbers
