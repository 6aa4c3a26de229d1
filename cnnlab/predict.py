"""Predict with a trained run: load its model once, decode any image as ingest does, top-k.

A :class:`Predictor` loads a run's ``best`` (or ``last``) model once and wraps the
forward pass in one ``tf.function`` with a fixed input signature at the model's image
size, so every call after the first runs the same compiled graph (``model.predict``
builds a data pipeline per call and is tens of times slower for one image).

Images go through exactly the steps training used: decoded by content and normalised
by :func:`cnnlab.data.decode.decode` (the ingest decoder), converted to the run's
channels (``L`` or ``RGB``), then resized to the run's image size the way the training
pipeline does (:func:`resize_pixels`). The model carries its own rescaling, so nothing
else is done to the pixels.

A file that cannot be read becomes a :class:`Prediction` whose ``error`` says why;
the other files of the batch are still predicted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnlab import runs
from cnnlab.data import decode as decoding
from cnnlab.errors import CnnlabError

# Images per forward pass in batch mode: large enough to amortise the call, small
# enough that a batch of 224x224 RGB images stays well under 100 MB.
DEFAULT_BATCH_SIZE = 64
DEFAULT_TOP_K = 3
# Most decoded pixels held while waiting for a batch (large photos flush early).
PENDING_BYTES = 64 * 2**20
# Loads thrown away because Keras was reset meanwhile, before giving up (see load).
LOAD_ATTEMPTS = 5
# Files whose names start with these are system junk, skipped when a folder is expanded.
_HIDDEN_PREFIXES = (".", "__MACOSX", "Thumbs.db", "desktop.ini")


@dataclass
class Prediction:
    """What the model thinks of one image, or why the image could not be read.

    Attributes:
        file: the file's name or path as given.
        top: ``(label, probability)`` pairs, most probable first (empty on error).
        probabilities: the full softmax row in ``class_names`` order (None on error).
        latency_ms: time from the file's bytes to the probabilities, in milliseconds;
            in batch mode the batch's forward pass is shared equally among its images.
        error: why the file could not be predicted, or None.
        image: the decoded, normalised picture (kept when asked, for display).
        pixels: the model's input, ``(image_size, image_size, channels)`` uint8
            (kept when asked, for Grad-CAM and feature maps).
    """

    file: str
    top: list[tuple[str, float]] = field(default_factory=list)
    probabilities: np.ndarray | None = field(default=None, repr=False)
    latency_ms: float = 0.0
    error: str | None = None
    image: Image.Image | None = field(default=None, repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        """The most probable label (None on error)."""
        return self.top[0][0] if self.top else None

    @property
    def confidence(self) -> float | None:
        """The probability of :attr:`label` (None on error)."""
        return self.top[0][1] if self.top else None

    @property
    def class_index(self) -> int | None:
        """Index of :attr:`label` in the model's output (None on error)."""
        return int(np.argmax(self.probabilities)) if self.probabilities is not None else None

    def unsure(self, threshold: float) -> bool:
        """Whether the top probability is under ``threshold`` (errors are never unsure)."""
        return self.ok and float(self.confidence) < threshold

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the command line prints for one file."""
        if not self.ok:
            return {"file": self.file, "error": self.error}
        return {
            "file": self.file,
            "top": [{"label": label, "probability": round(p, 6)} for label, p in self.top],
            "latency_ms": round(self.latency_ms, 3),
        }


class Predictor:
    """A run's model, loaded once, predicting raw image bytes.

    Use as ``Predictor(run_id).load().predict_bytes(data)``. Learned state (after
    :meth:`load`) ends in ``_``: ``model_``, ``class_names_``, ``image_size_``,
    ``channels_``, ``run_``.

    Args:
        run: the run whose model to use (a :class:`~cnnlab.run.Run` or its id).
        checkpoint: ``best`` (the best epoch, default) or ``last``.
        batch_size: images per forward pass in :meth:`predict_many`.
    """

    def __init__(
        self, run: runs.Run | str, checkpoint: str = "best", batch_size: int = DEFAULT_BATCH_SIZE
    ):
        self.run = run
        self.run_id = run.run_id if isinstance(run, runs.Run) else run
        self.checkpoint = checkpoint
        self.batch_size = batch_size

    # ------------------------------------------------------------------ loading

    def load(self) -> Predictor:
        """Load the model and compile its forward pass.

        Streamlit runs ``keras.backend.clear_session()`` after every script run of every
        session, from that session's thread. One that lands while a model is being
        built wipes the Keras scopes the building thread is inside (a layer can end up
        without its variables). So a clear waits for loads in progress (see
        :func:`keras_in_use`), and a load that saw one all the same (a clear not made
        through ``keras.backend``) is thrown away and done again.

        Raises:
            CnnlabError: when the run does not exist, has no model (failed, cancelled
                or still before its first epoch), or its model file cannot be read.
        """
        runs.check_checkpoint(self.checkpoint)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise CnnlabError(
                f"`batch_size` must be a whole number of at least 1. "
                f"Received: batch_size={self.batch_size!r}"
            )
        info = runs.as_run(self.run)
        path = info.model_path(self.checkpoint)
        for _ in range(LOAD_ATTEMPTS):
            with keras_in_use():
                state = _keras_state()
                try:
                    self._load(info, path)
                except Exception:
                    if _keras_state() is state:
                        raise
                    continue  # spoilt by a clear_session: try again
                if _keras_state() is state:
                    return self
        raise CnnlabError(
            f"The model of run {info.run_id} could not be loaded whole: other sessions of "
            f"the app reset Keras (`keras.backend.clear_session()`) during each of "
            f"{LOAD_ATTEMPTS} tries. Try again in a moment."
        )

    def _load(self, info: runs.Run, path: Path) -> None:
        model = load_keras_model(path, info.run_id)
        self.run_ = info
        self.model_path_ = path
        self.model_ = model
        self.image_size_, self.channels_ = model_input_size(model, info)
        self.class_names_ = _class_names(info, model)
        self._forward = _compiled_forward(model, self.image_size_, self.channels_)
        self.warm_up()  # traces the graph: Keras' scopes are in use until it returns

    def warm_up(self) -> Predictor:
        """Run the compiled graph once on a blank image, so the next call is steady-state.

        :meth:`load` does it (the first call traces the graph). Call it again after
        anything that empties TensorFlow's kernel cache, such as
        ``keras.backend.clear_session()``, which Streamlit runs after every script run.
        """
        self._check_loaded()
        # Both branches of the graph: images already at the model's size, and others.
        for side in (self.image_size_, self.image_size_ + 1):
            self._forward(np.zeros((1, side, side, self.channels_), "uint8"))
        return self

    def _check_loaded(self) -> None:
        if not hasattr(self, "model_"):
            raise CnnlabError("This Predictor is not loaded yet; call `.load()` first.")

    @property
    def mode_(self) -> str:
        """The Pillow mode of the model's input: ``L`` or ``RGB``."""
        return "L" if self.channels_ == 1 else "RGB"

    # ---------------------------------------------------------------- preprocessing

    def decode(self, data: bytes) -> Image.Image:
        """Decode one file's bytes exactly as ingest does, in the model's mode.

        Raises:
            CnnlabError: with the ingest decoder's reason when the bytes are no usable
                image (not an image, corrupt, truncated, too large, too small).
        """
        self._check_loaded()
        try:
            decoded = decoding.decode(data)
        except decoding.Rejected as rejected:
            raise CnnlabError(rejected.reason) from None
        image = decoded.image
        return image if image.mode == self.mode_ else image.convert(self.mode_)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """The model's input for a decoded image: ``(size, size, channels)`` uint8."""
        self._check_loaded()
        if image.mode != self.mode_:
            image = image.convert(self.mode_)
        return resize_pixels(image, self.image_size_)

    # ------------------------------------------------------------------ predicting

    def run_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resize and predict a batch of same-size uint8 images in one compiled call.

        Args:
            images: ``(n, height, width, channels)`` uint8, any height and width.

        Returns:
            ``(pixels, probabilities)``: the model inputs ``(n, size, size, channels)``
            uint8, resized exactly as the training pipeline does, and the softmax rows.
        """
        self._check_loaded()
        batch = np.asarray(images, dtype=np.uint8)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[-1] != self.channels_:
            raise CnnlabError(
                f"The model takes images of shape (height, width, {self.channels_}). "
                f"Received: {batch.shape[1:]}."
            )
        pixels, probabilities = self._forward(batch)
        return np.asarray(pixels), np.asarray(probabilities, dtype="float64")

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Softmax rows for prepared pixels ``(n, size, size, channels)`` (or one image)."""
        batch = np.asarray(pixels)
        if batch.ndim == 3:
            batch = batch[None]
        expected = (self.image_size_, self.image_size_, self.channels_)
        if batch.shape[1:] != expected:
            raise CnnlabError(
                f"The model takes images of shape {expected}. Received: {batch.shape[1:]}. "
                "Pass images through `prepare()` first."
            )
        return self.run_batch(batch)[1]

    def predict_bytes(
        self, data: bytes, top_k: int = DEFAULT_TOP_K, name: str = "image"
    ) -> Prediction:
        """Predict one image given as a file's bytes; keeps the image for display.

        Raises:
            CnnlabError: when the bytes are no usable image, or ``top_k`` is below 1.
        """
        top_k = check_top_k(top_k)
        start = time.perf_counter()
        image = self.decode(data)
        pixels, probabilities = self.run_batch(_array(image))
        latency_ms = (time.perf_counter() - start) * 1000
        return Prediction(
            file=name,
            top=self._top(probabilities[0], top_k),
            probabilities=probabilities[0],
            latency_ms=latency_ms,
            image=image,
            pixels=pixels[0],
        )

    def predict_many(
        self,
        named_files: Iterable[tuple[str, bytes | str]],
        top_k: int = DEFAULT_TOP_K,
        keep_images: bool = False,
    ) -> list[Prediction]:
        """Predict many images; a bad file gets its own error; results keep the order.

        Images of the same size are predicted together, up to ``batch_size`` at once
        (and at most :data:`PENDING_BYTES` of decoded pixels held), each group in one
        compiled call that resizes and predicts.

        Args:
            named_files: ``(name, bytes)`` pairs; instead of bytes, a string reports a
                file that could not even be read (its reason).
            top_k: how many labels to return per image (at most the number of classes).
            keep_images: keep each decoded image and model input (for display).
        """
        top_k = check_top_k(top_k)
        self._check_loaded()
        results: list[Prediction] = []
        # Same-size images waiting for their batch: shape -> [(prediction, array, seconds)]
        groups: dict[tuple[int, ...], list[tuple[Prediction, np.ndarray, float]]] = {}
        waiting = {"count": 0, "bytes": 0}

        def flush() -> None:
            for group in groups.values():
                start = time.perf_counter()
                pixels, rows = self.run_batch(np.stack([array for _, array, _ in group]))
                shared = (time.perf_counter() - start) / len(group)
                for (prediction, _, decode_s), row, model_input in zip(
                    group, rows, pixels, strict=True
                ):
                    prediction.probabilities = row
                    prediction.top = self._top(row, top_k)
                    prediction.latency_ms = (decode_s + shared) * 1000
                    prediction.pixels = model_input if keep_images else None
            groups.clear()
            waiting.update(count=0, bytes=0)

        for name, data in named_files:
            if isinstance(data, str):
                results.append(Prediction(file=name, error=data))
                continue
            start = time.perf_counter()
            try:
                image = self.decode(data)
            except CnnlabError as error:
                results.append(Prediction(file=name, error=str(error)))
                continue
            array = _array(image)
            prediction = Prediction(file=name, image=image if keep_images else None)
            results.append(prediction)
            groups.setdefault(array.shape, []).append(
                (prediction, array, time.perf_counter() - start)
            )
            waiting["count"] += 1
            waiting["bytes"] += array.nbytes
            if waiting["count"] >= self.batch_size or waiting["bytes"] >= PENDING_BYTES:
                flush()
        flush()
        return results

    def predict_files(
        self, paths: Sequence[str | os.PathLike], top_k: int = DEFAULT_TOP_K
    ) -> list[Prediction]:
        """Predict image files (folders are expanded); unreadable files get an error."""
        return self.predict_many(_read_files(expand_paths(paths)), top_k=top_k)

    def _top(self, probabilities: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        return [(self.class_names_[i], float(probabilities[i])) for i in order]

    def __repr__(self) -> str:
        state = "loaded" if hasattr(self, "model_") else "not loaded"
        return f"Predictor({self.run_id!r}, checkpoint={self.checkpoint!r}, {state})"


# ---------------------------------------------------------------------- helpers


def check_top_k(top_k: Any) -> int:
    """``top_k`` as an int of at least 1 (larger than the class count means all)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise CnnlabError(f"`top_k` must be a whole number of at least 1. Received: {top_k!r}")
    return int(top_k)


def resize_pixels(image: Image.Image, size: int) -> np.ndarray:
    """The model input for a decoded image: ``(size, size, channels)`` uint8, resized
    exactly as the training pipeline resizes (:func:`cnnlab.data.pipeline.resize_pixels`:
    bilinear with antialiasing, rounded; the aspect ratio is not kept, as in training).
    """
    from cnnlab.data.pipeline import resize_pixels as pipeline_resize

    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return pipeline_resize(pixels, size)


class _KerasInUse:
    """Counts threads building Keras objects, and holds ``clear_session`` back while any
    does: a clear resets Keras' scopes in every thread at once (its state is one
    ``threading.local``), which spoils a model half built in another thread.

    Builds never wait for clears: Streamlit clears after every script run of every
    session, so with a few sessions redrawing live panels a clear is nearly always
    waiting, and a build that gave way to them would never start (measured: a Predict
    page stuck for minutes beside ten watchers of a training run). A clear gives way to
    builds instead; a build that a clear spoils all the same is done again (``load``).

    Keras' clear also runs a full ``gc.collect()`` unless told ``free_memory=False``.
    In a server with TensorFlow loaded that held the interpreter for 50-100 ms after
    every script run: with ten sessions watching a run, over half the server's CPU
    (measured with py-spy). A clear asked without arguments (Streamlit's) collects only
    when a model was built since the last clear; Python's own collector frees the rest
    in its time.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._builds = 0
        self._built = False  # a build started since the last clear
        self._mine = threading.local()  # builds this thread is inside (they nest)

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        with self._changed:
            self._builds += 1
            self._built = True
        self._mine.depth = depth + 1
        try:
            yield
        finally:
            self._mine.depth = depth
            with self._changed:
                self._builds -= 1
                self._changed.notify_all()

    def clear_after_builds(self, clear_session, *args, **kwargs):
        with self._changed:
            built, self._built = self._built, False
        if not args and not kwargs:
            kwargs["free_memory"] = built
        if getattr(self._mine, "depth", 0):  # this thread's own build: waiting would hang
            return clear_session(*args, **kwargs)
        with self._changed:
            self._changed.wait_for(lambda: not self._builds)
        return clear_session(*args, **kwargs)


_KERAS_IN_USE = _KerasInUse()
_GATE_INSTALLED = threading.Lock()


def keras_in_use() -> contextlib.AbstractContextManager[None]:
    """Hold ``keras.backend.clear_session()`` (Streamlit's after every script run, or
    anyone's) back until the block ends: wrap whatever builds or loads a Keras model
    in a process that serves several sessions."""
    gate_clear_session()
    return _KERAS_IN_USE.building()


def gate_clear_session() -> None:
    """Route ``clear_session`` through :class:`_KerasInUse` from now on (once; cheap
    after that). A server calls it as soon as Keras is imported, so that its clears
    after script runs skip needless garbage collection from the first."""
    import keras

    with _GATE_INSTALLED:
        for namespace in (keras.backend, keras.utils):
            clear_session = namespace.clear_session
            if not getattr(clear_session, "waits_for_builds", False):

                def waiting_clear_session(*args, _clear=clear_session, **kwargs):
                    return _KERAS_IN_USE.clear_after_builds(_clear, *args, **kwargs)

                waiting_clear_session.waits_for_builds = True
                waiting_clear_session.__doc__ = clear_session.__doc__
                namespace.clear_session = waiting_clear_session


def _keras_state() -> object | None:
    """Keras' global state: a new object after every ``keras.backend.clear_session()``
    (None when this Keras keeps it elsewhere, and a reset cannot be seen)."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - another Keras layout
        return None
    return getattr(global_state, "GLOBAL_STATE_TRACKER", None)


def load_keras_model(path: Path, run_id: str):
    """Load a ``.keras`` file without its optimizer; a damaged file is a CnnlabError.
    Loads under :func:`keras_in_use` (evaluation and export load in the server too)."""
    import keras

    try:  # custom layers (the gated block) register themselves when cnnlab.models loads
        import cnnlab.models  # noqa: F401
    except ImportError:
        pass
    try:
        with keras_in_use():
            return keras.models.load_model(path, compile=False)
    except Exception as error:  # any reader failure means the same thing to the user
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise CnnlabError(
            f"The model of run {run_id} ({path.name}) could not be loaded "
            f"({type(error).__name__}: {text}). The file may be damaged or from an "
            "incompatible version; train the run again."
        ) from error


def model_input_size(model, info: runs.Run | None = None) -> tuple[int, int]:
    """``(image_size, channels)`` the model is fed at: its own fixed input size, else the
    run's ``image_size`` (models taking any size resize inside to that)."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise CnnlabError(
            f"The model takes inputs of shape {shape}; cnnlab needs images "
            "(batch, height, width, channels)."
        )
    _, height, width, channels = shape
    meta_size = info.image_size if info is not None else None
    meta_channels = info.channels if info is not None else None
    size = height if height is not None and height == width else meta_size
    channels = channels if channels is not None else meta_channels
    if not size or not channels:
        raise CnnlabError(
            "Cannot tell the image size of this model: its input has no fixed size and "
            "run.json has no `image_size`/`channels`."
        )
    return int(size), int(channels)


def _class_names(info: runs.Run, model) -> list[str]:
    names = info.class_names
    outputs = int(model.outputs[0].shape[-1])
    if len(names) != outputs:
        raise CnnlabError(
            f"Run {info.run_id} lists {len(names)} class names but its model has {outputs} "
            "outputs; the run folder is inconsistent. Train it again."
        )
    return names


def _compiled_forward(model, size: int, channels: int):
    """One graph for every call: uint8 images of any size in, resized as the training
    pipeline resizes, then the model; returns ``(pixels, probabilities)``.

    Resizing inside the graph makes one call (one hand-over to TensorFlow) per batch,
    which keeps single-image latency low even while other threads hold the GIL.
    """
    import tensorflow as tf

    from cnnlab.data.pipeline import _resize  # the pipeline's own resize, op for op

    @tf.function(
        input_signature=[tf.TensorSpec((None, None, None, channels), tf.uint8, name="images")],
        reduce_retracing=True,
    )
    def forward(images):
        shape = tf.shape(images)
        already = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
        pixels = tf.cond(already, lambda: images, lambda: _resize(images, size))
        pixels = tf.ensure_shape(pixels, (None, size, size, channels))
        return pixels, model(tf.cast(pixels, tf.float32), training=False)

    return forward


def _array(image: Image.Image) -> np.ndarray:
    """A decoded image as ``(height, width, channels)`` uint8."""
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders replaced by the files inside them (sorted, recursive).

    Hidden and system files inside folders are skipped; a path that does not exist is
    kept so that it is reported as such.
    """
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if child.is_file() and not any(p.startswith(_HIDDEN_PREFIXES) for p in relative):
                    files.append(child)
        else:
            files.append(path)
    return files


def _read_files(paths: Iterable[Path]) -> Iterable[tuple[str, bytes | str]]:
    """``(name, bytes)`` per file, or ``(name, reason)`` when it cannot be read."""
    for path in paths:
        name = str(path)
        try:
            size = path.stat().st_size
            if size > decoding.MAX_FILE_BYTES:
                yield (
                    name,
                    (
                        f"file too large ({size / 2**20:.0f} MB); the limit is "
                        f"{decoding.MAX_FILE_BYTES // 2**20} MB per image"
                    ),
                )
                continue
            yield name, path.read_bytes()
        except FileNotFoundError:
            yield name, "no such file"
        except IsADirectoryError:
            yield name, "is a folder"
        except OSError as error:
            yield name, f"cannot read the file ({error.strerror or error})"


def has_model(info: runs.Run) -> bool:
    """Whether the run has saved a model (best or last) that prediction can use."""
    return info.has_model


def runs_with_model(run_list: Sequence[runs.Run] | None = None) -> list[runs.Run]:
    """The runs (newest first) that have a saved model."""
    run_list = runs.list_runs() if run_list is None else run_list
    return [info for info in run_list if info.has_model]


def images_per_second(predictions: Sequence[Prediction], seconds: float) -> float:
    """Predicted images (errors not counted) per second of wall time."""
    done = sum(1 for prediction in predictions if prediction.ok)
    return done / seconds if seconds > 0 else 0.0


def predictions_table(predictions: Sequence[Prediction], threshold: float = 0.0) -> list[dict]:
    """One row per file for a table or CSV: label, confidence, verdict, top-k, latency."""
    rows = []
    for prediction in predictions:
        if not prediction.ok:
            rows.append({"file": prediction.file, "label": "", "confidence": None,
                         "verdict": "error", "top_k": "", "latency_ms": None,
                         "error": prediction.error})  # fmt: skip
            continue
        rows.append(
            {
                "file": prediction.file,
                "label": prediction.label,
                "confidence": round(float(prediction.confidence), 6),
                "verdict": "unsure" if prediction.unsure(threshold) else "sure",
                "top_k": "; ".join(f"{label} {p:.3f}" for label, p in prediction.top),
                "latency_ms": round(prediction.latency_ms, 3),
                "error": "",
            }
        )
    return rows


# What a spreadsheet reads as the start of a formula in a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value):
    """``value`` for a CSV cell that people open in a spreadsheet: text that would
    start a formula gets a leading quote (OWASP's advice), so it shows as text; other
    values are kept as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def predictions_csv(predictions: Sequence[Prediction], threshold: float = 0.0) -> str:
    """:func:`predictions_table` as CSV text (header included), for a spreadsheet: file
    names come from whoever uploaded them, so none can be a formula."""
    rows = predictions_table(predictions, threshold)
    buffer = io.StringIO()
    fields = ["file", "label", "confidence", "verdict", "top_k", "latency_ms", "error"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_text(row[key]) for key in fields})
    return buffer.getvalue()


def top_k_figure(prediction: Prediction, threshold: float | None = None):
    """Horizontal bars of the top-k probabilities, the most probable on top."""
    import plotly.graph_objects as go

    labels = [label for label, _ in prediction.top][::-1]
    values = [p for _, p in prediction.top][::-1]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in values],
            textposition="auto",
            marker_color=["#3366CC"] * (len(values) - 1) + ["#F58518"] if values else [],
        )
    )
    if threshold is not None and threshold > 0:
        figure.add_vline(x=threshold, line_dash="dash", line_color="#888",
                         annotation_text="unsure below", annotation_position="top")  # fmt: skip
    figure.update_layout(
        height=60 + 36 * max(len(values), 1),
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        yaxis=dict(type="category"),
        title=f"Top {len(values)}",
    )
    return figure
