"""Export: .keras, SavedModel and TFLite artifacts, written atomically and reused, that
predict like the in-app model on the run's test images (the parity check)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from cnnlab import export, runs
from cnnlab.errors import CnnlabError
from cnnlab.predict import Predictor
from tests.conftest import make_dataset_on_disk
from tests.unit.test_predict import save_model_run


def decisive_model(channels=3, classes=3, size=24):
    """An untrained model whose outputs are far from uniform, so label ties cannot occur."""
    import keras

    from cnnlab.models import ArchSpec, build_model

    keras.utils.set_random_seed(3)
    model = build_model(ArchSpec.from_dict({"preset": "simple"}), size, channels, classes)
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 30, bias])
    return model


@pytest.fixture(scope="module")
def run_home(tmp_path_factory):
    """A workspace with dataset ``tiny`` (6 test images) and a run on it."""
    home = tmp_path_factory.mktemp("export-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_HOME", str(home))
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    run_id = save_model_run(model=decisive_model())
    yield run_id
    mp.undo()


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_and_parity(run_home, fmt):
    run_id = run_home
    result = export.export_model(run_id, fmt)
    assert result.path == runs.run_path(run_id) / "export" / result.path.name
    assert result.path.exists() and result.size_bytes > 1000
    # labels.txt names output i on line i, as the run's class names are written.
    labels = result.labels_path.read_text("utf-8")
    assert labels.splitlines() == list(runs.load_run(run_id).class_names)
    if fmt == "savedmodel":  # the downloaded zip carries its own copy
        zipped = zipfile.ZipFile(io.BytesIO(export.download(result)[1]))
        assert zipped.read(f"{run_id}-savedmodel/labels.txt").decode() == labels
    report = export.check_export(run_id, fmt)
    assert report.images == 6 and report.skipped == 0
    assert report.agreement == 1.0 and report.disagreements == 0
    assert report.max_abs_diff <= export.PARITY_TOLERANCE
    assert report.passed
    assert "parity holds" in report.summary() and "6/6 test images" in report.summary()
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True
    # An up-to-date export is reused, not redone.
    again = export.export_model(run_id, fmt)
    assert again.seconds == 0.0 and again.path == result.path
    # Nothing half-written is left behind.
    leftovers = [p.name for p in result.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_parity_check_catches_a_drifted_export(run_home):
    """A broken export (here: a different model) must fail the check, not pass it."""
    run_id = run_home
    other = decisive_model()
    head = other.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([-kernel, bias])
    path = export.artifact_path(run_id, "keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    other.save(path)
    report = export.check_export(run_id, "keras")
    assert not report.passed
    assert report.max_abs_diff > 0.01
    assert "PARITY BROKEN" in report.summary()
    export.export_model(run_id, "keras", force=True)
    assert export.check_export(run_id, "keras").passed


def test_savedmodel_takes_raw_pixels_of_any_size(run_home):
    import tensorflow as tf

    run_id = run_home
    result = export.export_model(run_id, "savedmodel")
    signature = tf.saved_model.load(str(result.path)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["pixels"] and inputs["pixels"].shape.as_list() == [None, None, None, 3]
    raw = np.random.default_rng(0).integers(0, 256, (2, 40, 31, 3)).astype("float32")
    exported = next(iter(signature(pixels=tf.constant(raw)).values())).numpy()
    model = Predictor(run_id).load().model_
    np.testing.assert_allclose(exported, model(raw, training=False), atol=1e-5)


def test_download_bytes(run_home):
    run_id = run_home
    name, data, mime = export.download(export.export_model(run_id, "savedmodel"))
    assert name == f"{run_id}-savedmodel.zip" and mime == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert f"{run_id}-savedmodel/saved_model.pb" in archive.namelist()
    name, data, _ = export.download(export.export_model(run_id, "tflite"))
    assert name == f"{run_id}.tflite" and data[4:8] == b"TFL3"
    name, data, _ = export.download(export.export_model(run_id, "keras"))
    assert name == f"{run_id}.keras" and data[:2] == b"PK"


def test_limit_and_unreadable_test_images(run_home):
    run_id = run_home
    report = export.check_export(run_id, "keras", limit=2)
    assert report.images == 2
    from cnnlab.data.dataset import load_dataset

    test_file = load_dataset("tiny").files_and_labels("test")[0][0]
    original = open(test_file, "rb").read()
    try:
        open(test_file, "wb").write(b"damaged")
        report = export.check_export(run_id, "keras")
        assert report.skipped == 1 and report.images == 5
    finally:
        open(test_file, "wb").write(original)


def test_errors(workspace):
    with pytest.raises(CnnlabError, match="`format` must be one of keras, savedmodel, tflite"):
        export.export_model("x", "onnx")
    with pytest.raises(CnnlabError, match="There is no run 'nope'"):
        export.export_model("nope", "keras")
    failed = save_model_run("20260101-000000-tiny-simple-ffff", status="failed", checkpoints=())
    with pytest.raises(CnnlabError, match="has no usable model"):
        export.export_model(failed, "tflite")
    orphan = save_model_run("20260101-000000-gone-simple-eeee")  # dataset "tiny" not there
    with pytest.raises(CnnlabError, match="needs the test images of dataset 'tiny'"):
        export.check_export(orphan, "keras")


def test_model_with_augmentation_exports_to_tflite_with_parity(workspace):
    """Training-only random layers inside the model (augmentation, noise, dropout) are
    left out of the exported graph: TFLite cannot convert their ops."""
    import keras

    from cnnlab.data.augment import AugmentSpec, build_augmentation
    from cnnlab.models import ArchSpec, build_model

    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    spec = AugmentSpec.from_dict(
        {"horizontal_flip": True, "rotation": 0.1, "zoom": 0.1, "contrast": 0.2,
         "brightness": 0.2, "gaussian_noise": 0.05}
    )  # fmt: skip
    keras.utils.set_random_seed(4)
    model = build_model(
        ArchSpec.from_dict({"preset": "vgg_small"}), 24, 3, 3,
        augmentation=build_augmentation(spec, 3, seed=0),
    )  # fmt: skip
    inference = export.inference_model(model)
    assert not any(export._has_random(layer) for layer in inference.layers)
    assert any(export._has_random(layer) for layer in model.layers)
    assert inference.get_layer("conv_1") is model.get_layer("conv_1")  # weights shared
    raw = np.random.default_rng(1).integers(0, 256, (2, 30, 20, 3)).astype("float32")
    expected = model(raw, training=False)
    np.testing.assert_allclose(inference(raw, training=False), expected, atol=1e-6)

    run_id = save_model_run(model=model)
    report = export.check_export(run_id, "tflite")
    assert report.passed, report.summary()
