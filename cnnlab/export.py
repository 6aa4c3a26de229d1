"""Export a run's model for other tools, and prove the export predicts as the app does.

Formats (:data:`FORMATS`):

* ``keras``: the run's ``.keras`` file itself (Keras 3 ``keras.models.load_model``);
* ``savedmodel``: a TensorFlow SavedModel (inference mode, training-only layers left out) with a
  ``serving_default`` signature taking ``pixels``: float32 ``(batch, height, width,
  channels)`` raw 0-255 pixels of any size;
* ``tflite``: a TensorFlow Lite flatbuffer converted from that SavedModel, same input.

Every artifact carries the model's own resizing and rescaling layers, so a user of
another tool feeds raw pixels and gets the same answer; :func:`check_export` proves it
by running the artifact over the run's test images and comparing its probabilities
with the in-app model's (label agreement and the largest absolute difference).

Artifacts are written under the run folder in ``export/`` (atomically: a half-written
export is never visible) and reused while they are newer than the model file. Beside
them, ``labels.txt`` holds the class names as the user wrote them, one per line in the
model's output order (line ``i`` names output ``i``); a SavedModel carries its own copy,
so the zip offered for download is complete.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import uuid
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnnlab import runs, workspace
from cnnlab.errors import CnnlabError
from cnnlab.predict import Predictor

FORMATS = ("keras", "savedmodel", "tflite")
FORMAT_TITLES = {"keras": "Keras (.keras)", "savedmodel": "SavedModel", "tflite": "TFLite"}
EXPORT_DIR = "export"
INPUT_NAME = "pixels"
LABELS_FILE = "labels.txt"
# Probabilities may differ by float rounding between runtimes; more means a real drift.
PARITY_TOLERANCE = 1e-4
_CHECK_BATCH = 64


@dataclass(frozen=True)
class ExportResult:
    """An exported artifact.

    Attributes:
        run_id: the run it was exported from.
        format: one of :data:`FORMATS`.
        path: the file (keras, tflite) or folder (savedmodel).
        size_bytes: its size on disk (a folder's files added up).
        seconds: how long the export took (0 when an up-to-date export was reused).
        labels_path: ``labels.txt``: the class names, one per line, in output order.
    """

    run_id: str
    format: str
    path: Path
    size_bytes: int
    seconds: float
    labels_path: Path | None = None

    def to_dict(self) -> dict:
        labels = str(self.labels_path) if self.labels_path else None
        return {**asdict(self), "path": str(self.path), "labels_path": labels}


@dataclass(frozen=True)
class ParityReport:
    """How the exported model's predictions compare with the in-app model's.

    Attributes:
        format: the exported format checked.
        images: test images compared.
        agreement: fraction of images with the same top label (1.0 = all).
        disagreements: images whose top label differs.
        max_abs_diff: the largest |p_export - p_app| over all images and classes.
        mean_abs_diff: the mean of |p_export - p_app|.
        skipped: test images that could not be read (counted, not compared).
        seconds: time taken by the check.
    """

    run_id: str
    format: str
    images: int
    agreement: float
    disagreements: int
    max_abs_diff: float
    mean_abs_diff: float
    skipped: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.disagreements == 0 and self.max_abs_diff <= PARITY_TOLERANCE

    def summary(self) -> str:
        verdict = "parity holds" if self.passed else "PARITY BROKEN"
        return (
            f"{FORMAT_TITLES[self.format]}: {verdict}: labels agree on "
            f"{self.images - self.disagreements}/{self.images} test images "
            f"({self.agreement:.1%}), largest probability difference {self.max_abs_diff:.2e}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise CnnlabError(f"`format` must be one of {', '.join(FORMATS)}. Received: format={fmt!r}")
    return fmt


def export_dir(run: runs.Run | str) -> Path:
    return runs.as_run(run).path / EXPORT_DIR


def labels_text(class_names: list[str]) -> str:
    """The class names as written, one per line, in the model's output order."""
    return "".join(f"{name}\n" for name in class_names)


def write_labels(run: runs.Run | str) -> Path:
    """Write the run's ``export/labels.txt`` (atomically) and return its path."""
    info = runs.as_run(run)
    path = export_dir(info) / LABELS_FILE
    workspace.atomic_write_text(path, labels_text(list(info.class_names)))
    return path


def artifact_path(run: runs.Run | str, fmt: str, checkpoint: str = "best") -> Path:
    """Where the ``fmt`` export of a run's ``checkpoint`` lives (whether or not it exists
    yet); each checkpoint has its own, so exporting ``last`` never reuses ``best``."""
    check_format(fmt)
    name = {"keras": "model.keras", "savedmodel": "savedmodel", "tflite": "model.tflite"}[fmt]
    return export_dir(run) / f"{checkpoint}-{name}"


def export_model(
    run: runs.Run | str, fmt: str, checkpoint: str = "best", force: bool = False
) -> ExportResult:
    """Export the run's (a Run or its id) model as ``fmt``; an export newer than the
    model is reused.

    Raises:
        CnnlabError: for an unknown format, a run without a usable model, or a
            conversion failure (with the converter's reason).
    """
    check_format(fmt)
    info = runs.as_run(run)
    source = info.model_path(checkpoint)
    target = artifact_path(info, fmt, checkpoint)
    labels = write_labels(info)
    if not force and target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return ExportResult(info.run_id, fmt, target, _size(target), 0.0, labels)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scratch = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if fmt == "keras":
            shutil.copyfile(source, scratch)
        else:
            _export_tensorflow(info, source, checkpoint, fmt, scratch)
        if fmt == "savedmodel":
            shutil.copyfile(labels, scratch / LABELS_FILE)
        _replace(scratch, target)
    finally:
        if scratch.is_dir():
            shutil.rmtree(scratch, ignore_errors=True)
        elif scratch.exists():
            scratch.unlink()
    seconds = time.perf_counter() - start
    return ExportResult(info.run_id, fmt, target, _size(target), seconds, labels)


def _export_tensorflow(info, source: Path, checkpoint: str, fmt: str, scratch: Path) -> None:
    import tensorflow as tf

    from cnnlab.predict import load_keras_model

    model = inference_model(load_keras_model(source, info.run_id))
    channels = int(model.inputs[0].shape[-1])
    signature = [tf.TensorSpec((None, None, None, channels), tf.float32, name=INPUT_NAME)]
    saved = scratch if fmt == "savedmodel" else scratch.with_name(scratch.name + ".sm")
    try:
        try:
            _write_saved_model(model, saved, signature)
        except Exception as error:
            raise CnnlabError(
                f"Exporting run {info.run_id} as a SavedModel failed ({_short(error)})."
            ) from error
        if fmt == "tflite":
            try:
                converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
                scratch.write_bytes(converter.convert())
            except Exception as error:
                raise CnnlabError(
                    f"Converting run {info.run_id} to TFLite failed ({_short(error)}); "
                    "the SavedModel and .keras exports still work."
                ) from error
    finally:
        if fmt == "tflite":
            shutil.rmtree(saved, ignore_errors=True)


def _write_saved_model(model, path: Path, signature) -> None:
    """A SavedModel whose ``serve``/``serving_default`` runs the model in inference mode.

    ``model.export()`` calls the model without ``training=False``, which leaves batch
    normalisation in training mode (batch statistics) in the exported graph; the
    parity check caught exactly that. The endpoint here says ``training=False``.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda pixels: model(pixels, training=False),
        input_signature=signature,
    )
    archive.write_out(str(path), verbose=False)


def inference_model(model):
    """The model without its training-only random layers (the augmentation stack,
    dropout), sharing every other layer and weight.

    Keras skips these layers at inference, but an exported graph would still carry
    their random ops, which TFLite cannot convert. Non-random layers inside the
    augmentation stack (its float cast and 0-255 clip) are kept, so the outputs are
    unchanged; :func:`check_export` proves it on the test images.
    """
    import keras

    if not any(_has_random(layer) for layer in model.layers):
        return model

    def strip(layer):
        if _is_random(layer):
            return None
        if isinstance(layer, keras.Sequential):
            kept = [child for child in map(strip, layer.layers) if child is not None]
            if kept == list(layer.layers):
                return layer
            return keras.Sequential(kept, name=layer.name) if kept else _PassThrough(layer.name)
        return layer

    return keras.models.clone_model(
        model, clone_function=lambda layer: strip(layer) or _PassThrough(layer.name)
    )


def _is_random(layer) -> bool:
    """A layer drawing random numbers (augmentation, noise, dropout) holds a seed
    generator; at inference it passes its input through."""
    import keras

    return any(isinstance(value, keras.random.SeedGenerator) for value in vars(layer).values())


def _has_random(layer) -> bool:
    import keras

    if isinstance(layer, keras.Sequential):
        return any(_has_random(child) for child in layer.layers)
    return _is_random(layer)


def _PassThrough(name: str):  # noqa: N802 - behaves as a layer class to its callers
    """An identity layer that accepts the ``mask``/``training`` arguments Keras passes."""
    import keras

    class PassThrough(keras.layers.Layer):
        def call(self, inputs, mask=None, training=None):
            return inputs

        def compute_output_shape(self, input_shape):
            return input_shape

    return PassThrough(name=name)


def _replace(scratch: Path, target: Path) -> None:
    """Put ``scratch`` where ``target`` is, so readers see the old or the new, never half."""
    if scratch.is_dir():
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(target, old)
        os.replace(scratch, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(scratch, target)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _short(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def download_name(result: ExportResult) -> tuple[str, str]:
    """``(file name, MIME type)`` under which :func:`download` offers ``result``."""
    if result.format == "savedmodel":
        return f"{result.run_id}-savedmodel.zip", "application/zip"
    return f"{result.run_id}.{result.format}", "application/octet-stream"


def download(result: ExportResult) -> tuple[str, bytes, str]:
    """``(file name, bytes, MIME type)`` to offer for download; a SavedModel is zipped."""
    name, mime = download_name(result)
    if result.format != "savedmodel":
        return name, result.path.read_bytes(), mime
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(result.path.rglob("*")):
            if file.is_file():
                relative = file.relative_to(result.path).as_posix()
                archive.write(file, f"{result.run_id}-savedmodel/{relative}")
    return name, buffer.getvalue(), mime


# --------------------------------------------------------------------- parity


class _Runner:
    """Runs an exported artifact on prepared pixels, as its users would."""

    def __init__(self, fmt: str, path: Path, run_id: str):
        self.fmt = fmt
        if fmt == "keras":
            from cnnlab.predict import load_keras_model

            self.model = load_keras_model(path, run_id)
        elif fmt == "savedmodel":
            import tensorflow as tf

            try:
                loaded = tf.saved_model.load(str(path))
                self.signature = loaded.signatures["serving_default"]
            except Exception as error:
                raise CnnlabError(
                    f"The SavedModel at {path} could not be loaded ({_short(error)}); "
                    "export it again."
                ) from error
            self._keep = loaded  # the signature needs its object alive
            self.input_name = next(iter(self.signature.structured_input_signature[1]))
        else:
            import tensorflow as tf

            with warnings.catch_warnings():
                # tf.lite.Interpreter warns that it moves to ai_edge_litert; it still works.
                warnings.simplefilter("ignore")
                try:
                    self.interpreter = tf.lite.Interpreter(model_path=str(path))
                except Exception as error:
                    raise CnnlabError(
                        f"The TFLite model at {path} could not be loaded ({_short(error)}); "
                        "export it again."
                    ) from error
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.shape = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype="float32")
        if self.fmt == "keras":
            return np.asarray(self.model(batch, training=False))
        if self.fmt == "savedmodel":
            import tensorflow as tf

            outputs = self.signature(**{self.input_name: tf.constant(batch)})
            return np.asarray(next(iter(outputs.values())))
        if self.shape != batch.shape:
            self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output["index"]))


def parity_images(predictor: Predictor, limit: int | None = None) -> tuple[np.ndarray, int]:
    """The run's test images prepared as the app prepares uploads (decoded from their
    bytes), so the check covers what users of the export feed it; and how many failed.

    Raises:
        CnnlabError: when the run's dataset is gone or its test split is empty.
    """
    from cnnlab.data.dataset import list_datasets, load_dataset

    name = predictor.run_.dataset
    if name not in list_datasets():
        raise CnnlabError(
            f"The parity check needs the test images of dataset {name!r}, which no longer "
            "exists. Re-ingest it under the same name, or check another run."
        )
    files, _ = load_dataset(name).files_and_labels("test")
    if limit is not None:
        files = files[:limit]
    if not files:
        raise CnnlabError(
            f"Dataset {name!r} has no test images to compare on; add images or re-split it."
        )
    pixels, skipped = [], 0
    for file in files:
        try:
            pixels.append(predictor.prepare(predictor.decode(Path(file).read_bytes())))
        except (CnnlabError, OSError):
            skipped += 1
    if not pixels:
        raise CnnlabError(f"None of the {len(files)} test images of {name!r} could be read.")
    return np.stack(pixels), skipped


def check_export(
    run: runs.Run | str,
    fmt: str,
    checkpoint: str = "best",
    limit: int | None = None,
    predictor: Predictor | None = None,
) -> ParityReport:
    """Run the ``fmt`` export (made first if needed) over the run's test images and
    compare with the in-app model.

    Both models score the same batches through :func:`cnnlab.scoring.score_batches`,
    the loop that scores every test split.

    Args:
        run: the run (a Run or its id).
        fmt: one of :data:`FORMATS`.
        checkpoint: the checkpoint exported and compared.
        limit: compare at most this many test images (all by default).
        predictor: an already loaded in-app predictor of the run, to reuse.
    """
    from cnnlab.scoring import chunks, score_batches

    check_format(fmt)
    start = time.perf_counter()
    run_id = run.run_id if isinstance(run, runs.Run) else run
    if predictor is None or predictor.run_id != run_id or predictor.checkpoint != checkpoint:
        predictor = Predictor(run, checkpoint).load()
    result = export_model(predictor.run_, fmt, checkpoint)
    pixels, skipped = parity_images(predictor, limit)
    runner = _Runner(fmt, result.path, predictor.run_.run_id)
    classes = len(predictor.class_names_)

    def both(batch: np.ndarray) -> np.ndarray:
        app, exported = predictor.probabilities(batch), np.asarray(runner(batch))
        if exported.shape != app.shape:
            raise CnnlabError(
                f"The {fmt} export gives outputs of shape {exported.shape[1:]}, the app "
                f"model {app.shape[1:]}; export it again."
            )
        return np.concatenate([app, exported], axis=1)

    rows = score_batches(both, chunks(pixels, _CHECK_BATCH))
    app_p, export_p = rows[:, :classes], rows[:, classes:]
    same = app_p.argmax(axis=1) == export_p.argmax(axis=1)
    difference = np.abs(app_p - export_p)
    return ParityReport(
        run_id=predictor.run_.run_id,
        format=fmt,
        images=len(pixels),
        agreement=float(same.mean()),
        disagreements=int((~same).sum()),
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )
