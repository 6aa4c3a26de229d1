"""Predictions on the test split -> metrics (scikit-learn), confusion, and the errors.

:func:`evaluate_predictions` is pure: true labels and softmax rows in, an
:class:`Evaluation` out. :func:`evaluate_run` does the same for a stored :class:`Run`,
reading ``predictions.csv`` and the full probabilities (``probabilities.npy``, computed
once from ``best.keras`` and cached in the run folder, so a page rerun does no model
work); when they must be recomputed, :mod:`cnnlab.scoring` does it, as it does for
the trainer and the export parity check.

Every metric comes from scikit-learn with ``labels=`` given and ``zero_division=0``, so
a class that is never predicted, a class absent from the test split, or a two-class
problem gives numbers, not warnings. Where a metric is undefined (the ROC curve of a
class with no test image) it is ``None``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab import runs
from cnnlab.errors import CnnlabError
from cnnlab.run import Run
from cnnlab.scoring import chunks, score_batches, score_split

PROBABILITIES_FILE = runs.PROBABILITIES_FILE
# Top-k accuracies reported besides plain accuracy (only those with k < classes).
DEFAULT_TOP_K = (2, 3, 5)
CALIBRATION_BINS = 10
SORT_KEYS = ("loss", "confidence")
# Cross-entropy of a probability of 0 would be infinite; clip like Keras does.
EPSILON = 1e-7


@dataclass(frozen=True)
class Prediction:
    """One test image as the model saw it."""

    index: int  # row in the test split (and in predictions.csv)
    file: str  # absolute path of the image
    true: str  # its label
    pred: str  # the predicted label
    confidence: float  # probability of the predicted label
    true_probability: float  # probability the model gave the true label
    loss: float  # cross-entropy, -log(true_probability): how wrong it is
    source: str = ""  # the image's name in the user's upload ("" when unknown)

    @property
    def correct(self) -> bool:
        return self.true == self.pred

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "file": self.file,
            "true": self.true,
            "pred": self.pred,
            "confidence": self.confidence,
            "true_probability": self.true_probability,
            "loss": self.loss,
            "source": self.source,
        }


@dataclass
class Evaluation:
    """Every metric of one set of predictions.

    Attributes:
        labels: class names, in the model's output order (rows/columns of matrices).
        y_true: true class index per image.
        y_prob: softmax rows, ``[images, classes]``.
        files: image paths (empty strings when evaluating bare arrays).
        confusion: counts, rows true and columns predicted, in ``labels`` order.
        per_class: label -> precision, recall, f1, support.
        macro, weighted: averaged precision, recall and f1.
        top_k: k -> top-k accuracy, for 1 < k < classes.
        roc: label -> {fpr, tpr, auc} one-vs-rest, None when the class has no test
            image (or only test images).
        pr: label -> {precision, recall, average_precision}, None likewise.
        calibration: {bins: [{low, high, count, confidence, accuracy}], ece}.
        sources: each image's name in the user's upload, when known (else empty).
    """

    labels: list[str]
    y_true: np.ndarray
    y_prob: np.ndarray
    files: list[str]
    accuracy: float
    balanced_accuracy: float
    per_class: dict[str, dict[str, float]]
    macro: dict[str, float]
    weighted: dict[str, float]
    top_k: dict[int, float]
    confusion: np.ndarray
    roc: dict[str, dict[str, Any] | None]
    pr: dict[str, dict[str, Any] | None]
    calibration: dict[str, Any]
    run_id: str | None = None
    predictions_csv: str | None = None
    sources: list[str] | None = None

    @property
    def y_pred(self) -> np.ndarray:
        return self.y_prob.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.y_prob.max(axis=1)

    @property
    def losses(self) -> np.ndarray:
        picked = self.y_prob[np.arange(len(self.y_true)), self.y_true]
        return -np.log(np.clip(picked, EPSILON, 1.0))

    @property
    def macro_f1(self) -> float:
        return self.macro["f1"]

    @property
    def confusion_normalised(self) -> np.ndarray:
        """Rows divided by their totals (recall on the diagonal); empty rows stay 0."""
        totals = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(
            self.confusion, totals, out=np.zeros(self.confusion.shape), where=totals > 0
        )

    @property
    def errors(self) -> int:
        return int((self.y_pred != self.y_true).sum())

    @property
    def roc_auc(self) -> dict[str, float | None]:
        return {label: (curve or {}).get("auc") for label, curve in self.roc.items()}

    @property
    def macro_roc_auc(self) -> float | None:
        """Mean one-vs-rest AUC over the classes where it is defined."""
        values = [value for value in self.roc_auc.values() if value is not None]
        return float(np.mean(values)) if values else None

    @property
    def average_precision(self) -> dict[str, float | None]:
        return {label: (curve or {}).get("average_precision") for label, curve in self.pr.items()}

    def prediction(self, index: int) -> Prediction:
        truth = int(self.y_true[index])
        pred = int(self.y_pred[index])
        probability = float(self.y_prob[index, truth])
        return Prediction(
            index=int(index),
            file=self.files[index] if self.files else "",
            true=self.labels[truth],
            pred=self.labels[pred],
            confidence=float(self.y_prob[index, pred]),
            true_probability=probability,
            loss=float(-math.log(min(max(probability, EPSILON), 1.0))),
            source=self.sources[index] if self.sources else "",
        )

    def predictions(self) -> list[Prediction]:
        return [self.prediction(i) for i in range(len(self.y_true))]

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per class (label, precision, recall, f1, support, AUC, AP), for tables."""
        return [
            {
                "class": label,
                **self.per_class[label],
                "roc_auc": self.roc_auc[label],
                "average_precision": self.average_precision[label],
            }
            for label in self.labels
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the keys of ``python -m cnnlab evaluate --json`` come first."""
        return {
            "run_id": self.run_id,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "labels": list(self.labels),
            "per_class": self.per_class,
            "confusion_matrix": self.confusion.tolist(),
            "predictions_csv": self.predictions_csv,
            "images": int(len(self.y_true)),
            "errors": self.errors,
            "weighted_f1": self.weighted["f1"],
            "macro": self.macro,
            "weighted": self.weighted,
            "top_k_accuracy": {str(k): value for k, value in self.top_k.items()},
            "confusion_matrix_normalised": self.confusion_normalised.round(6).tolist(),
            "roc_auc": self.roc_auc,
            "macro_roc_auc": self.macro_roc_auc,
            "average_precision": self.average_precision,
            "expected_calibration_error": self.calibration["ece"],
            "calibration_bins": self.calibration["bins"],
            "most_confused": [
                {"true": t, "pred": p, "count": c} for t, p, c in most_confused(self, 10)
            ],
        }


# --------------------------------------------------------------------------- metrics


def _check_inputs(y_true: Any, y_prob: Any, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    labels = [str(label) for label in labels]
    if len(labels) < 2:
        raise CnnlabError(f"`labels` must name at least 2 classes. Received: labels={labels!r}")
    if len(set(labels)) != len(labels):
        raise CnnlabError(f"`labels` must be unique. Received: labels={labels!r}")
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim != 2 or y_prob.shape[1] != len(labels):
        raise CnnlabError(
            f"`y_prob` must have one column per class ({len(labels)}): shape [images, "
            f"{len(labels)}]. Received: shape {list(y_prob.shape)}"
        )
    if len(y_prob) == 0:
        raise CnnlabError("There are no predictions to evaluate: the test split is empty.")
    if not np.all(np.isfinite(y_prob)) or (y_prob < 0).any():
        raise CnnlabError(
            "`y_prob` must hold probabilities (finite, not negative); the model produced "
            "NaN or negative outputs. Retrain with a lower learning rate."
        )
    raw = np.asarray(y_true)
    if raw.ndim != 1 or len(raw) != len(y_prob):
        raise CnnlabError(
            f"`y_true` must have one label per row of `y_prob` ({len(y_prob)}). "
            f"Received: {raw.size} label(s)"
        )
    if raw.dtype.kind in "iu":
        bad = sorted({int(v) for v in raw if not 0 <= v < len(labels)})
        if bad:
            raise CnnlabError(
                f"`y_true` class indices must be in [0, {len(labels) - 1}]. Received: {bad[:5]}"
            )
        return raw.astype(np.int64), y_prob
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(v) for v in raw} - set(index))
    if unknown:
        raise CnnlabError(
            f"`y_true` has label(s) {unknown[:5]} that are not among the classes "
            f"{labels}; evaluate with the run's class names."
        )
    return np.asarray([index[str(v)] for v in raw], dtype=np.int64), y_prob


def evaluate_predictions(
    y_true: Any,
    y_prob: Any,
    labels: Sequence[str],
    k: int | Sequence[int] = DEFAULT_TOP_K,
    *,
    files: Sequence[str] | None = None,
    bins: int = CALIBRATION_BINS,
) -> Evaluation:
    """All metrics of ``y_prob`` against ``y_true``.

    Args:
        y_true: the true class of each image, as indices into ``labels`` or as labels.
        y_prob: softmax rows ``[images, classes]`` in ``labels`` order.
        labels: the class names, in the model's output order.
        k: the k (or ks) of top-k accuracy; only 1 < k < classes are reported.
        files: the image of each row, for the error gallery.
        bins: bins of the reliability diagram.

    Raises:
        CnnlabError: on mismatched shapes, unknown labels or an empty split.
    """
    from sklearn import metrics

    labels = [str(label) for label in labels]
    y_true, y_prob = _check_inputs(y_true, y_prob, labels)
    y_pred = y_prob.argmax(axis=1)
    indices = list(range(len(labels)))
    with warnings.catch_warnings():
        # sklearn says "y_pred contains classes not in y_true" for a class absent from
        # the test split; balanced accuracy is then the mean recall over present ones.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(metrics.balanced_accuracy_score(y_true, y_pred))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=indices, zero_division=0
    )
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=indices, average=average, zero_division=0
        )
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    top_k = {
        int(value): float(
            metrics.top_k_accuracy_score(y_true, y_prob, k=int(value), labels=indices)
        )
        for value in sorted(set(ks))
        if 1 < value < len(labels)
    }
    files = [str(f) for f in files] if files is not None else []
    if files and len(files) != len(y_true):
        raise CnnlabError(
            f"`files` must name one image per prediction ({len(y_true)}). "
            f"Received: {len(files)} file(s)"
        )
    return Evaluation(
        labels=labels,
        y_true=y_true,
        y_prob=y_prob,
        files=files,
        accuracy=float(metrics.accuracy_score(y_true, y_pred)),
        balanced_accuracy=balanced,
        per_class={
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        macro=averages["macro"],
        weighted=averages["weighted"],
        top_k=top_k,
        confusion=metrics.confusion_matrix(y_true, y_pred, labels=indices),
        roc=_roc_curves(y_true, y_prob, labels),
        pr=_pr_curves(y_true, y_prob, labels),
        calibration=calibration(y_true, y_prob, bins=bins),
    )


def _one_vs_rest(y_true: np.ndarray, labels: list[str]):
    """(label, binary truth, column) for each class with positives and negatives."""
    for i, label in enumerate(labels):
        truth = y_true == i
        yield label, i, truth, bool(truth.any() and not truth.all())


def _roc_curves(y_true, y_prob, labels) -> dict[str, dict[str, Any] | None]:
    from sklearn import metrics

    curves: dict[str, dict[str, Any] | None] = {}
    for label, i, truth, defined in _one_vs_rest(y_true, labels):
        if not defined:
            curves[label] = None
            continue
        fpr, tpr, _ = metrics.roc_curve(truth, y_prob[:, i])
        curves[label] = {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "auc": float(metrics.roc_auc_score(truth, y_prob[:, i])),
        }
    return curves


def _pr_curves(y_true, y_prob, labels) -> dict[str, dict[str, Any] | None]:
    from sklearn import metrics

    curves: dict[str, dict[str, Any] | None] = {}
    for label, i, truth, defined in _one_vs_rest(y_true, labels):
        if not defined:
            curves[label] = None
            continue
        precision, recall, _ = metrics.precision_recall_curve(truth, y_prob[:, i])
        curves[label] = {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "average_precision": float(metrics.average_precision_score(truth, y_prob[:, i])),
            "prevalence": float(truth.mean()),
        }
    return curves


def calibration(y_true: np.ndarray, y_prob: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Top-label calibration: per confidence bin, mean confidence against accuracy.

    The expected calibration error is the count-weighted mean gap between the two
    (Guo et al., 2017). Bins are equal-width over [0, 1]; empty bins are left out.
    """
    if not isinstance(bins, int) or not 1 <= bins <= 100:
        raise CnnlabError(f"`bins` must be a whole number in [1, 100]. Received: bins={bins!r}")
    confidence = y_prob.max(axis=1)
    correct = (y_prob.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins so a confidence of exactly 1 falls in the last one.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if not count:
            continue
        mean_confidence = float(confidence[mask].mean())
        accuracy = float(correct[mask].mean())
        ece += count / len(y_true) * abs(accuracy - mean_confidence)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "confidence": mean_confidence,
                "accuracy": accuracy,
            }
        )
    return {"bins": rows, "ece": float(ece)}


# ---------------------------------------------------------------------------- errors


def _label_index(evaluation: Evaluation, label: str, what: str) -> int:
    if label not in evaluation.labels:
        raise CnnlabError(
            f"`{what}` must be one of {', '.join(evaluation.labels)}. Received: {what}={label!r}"
        )
    return evaluation.labels.index(label)


def _sorted(evaluation: Evaluation, indices: np.ndarray, sort: str) -> list[Prediction]:
    if sort not in SORT_KEYS:
        raise CnnlabError(
            f"`sort` must be one of {', '.join(map(repr, SORT_KEYS))}. Received: sort={sort!r}"
        )
    key = evaluation.losses if sort == "loss" else evaluation.confidence
    # Stable, descending: the worst (or most confident) first; ties keep split order.
    order = sorted(indices.tolist(), key=lambda i: -key[i])
    return [evaluation.prediction(i) for i in order]


def errors_for_cell(
    evaluation: Evaluation, true_label: str, pred_label: str, sort: str = "loss"
) -> list[Prediction]:
    """The test images of one confusion-matrix cell, most wrong (or confident) first.

    Args:
        true_label: the cell's row.
        pred_label: the cell's column (equal to ``true_label`` for the diagonal).
        sort: ``"loss"`` (cross-entropy, highest first) or ``"confidence"``.
    """
    truth = _label_index(evaluation, true_label, "true_label")
    pred = _label_index(evaluation, pred_label, "pred_label")
    indices = np.flatnonzero((evaluation.y_true == truth) & (evaluation.y_pred == pred))
    return _sorted(evaluation, indices, sort)


def top_losses(
    evaluation: Evaluation, n: int | None = None, errors_only: bool = True, sort: str = "loss"
) -> list[Prediction]:
    """The ``n`` images the model got most wrong (all of them when ``n`` is None)."""
    if errors_only:
        indices = np.flatnonzero(evaluation.y_pred != evaluation.y_true)
    else:
        indices = np.arange(len(evaluation.y_true))
    rows = _sorted(evaluation, indices, sort)
    return rows if n is None else rows[: max(0, int(n))]


def most_confused(evaluation: Evaluation, n: int = 10) -> list[tuple[str, str, int]]:
    """Off-diagonal cells by count: ``(true, predicted, count)``, largest first."""
    cells = [
        (evaluation.labels[t], evaluation.labels[p], int(count))
        for (t, p), count in np.ndenumerate(evaluation.confusion)
        if t != p and count > 0
    ]
    cells.sort(key=lambda cell: -cell[2])
    return cells[: max(0, int(n))]


# ------------------------------------------------------------------------------ runs


def _read_prediction_rows(info: Run) -> list[dict[str, Any]]:
    if not info.has_predictions and info.status == "completed":
        raise CnnlabError(
            f"Run {info.run_id} completed without test predictions: its dataset had no test "
            "split. Give the dataset a test split (re-ingest with a test fraction) and retrain."
        )
    if not info.has_predictions:
        raise CnnlabError(
            f"Run {info.run_id} has no test predictions (status: {info.status}); they are "
            "written when a run completes. Pick a completed run or wait for this one."
        )
    rows = info.predictions()
    if not rows:
        raise CnnlabError(
            f"Run {info.run_id} has no test predictions: its dataset's test split is empty. "
            "Give the dataset a test split (re-ingest with a test fraction) and retrain."
        )
    return rows


def _load_test_pixels(info: Run, files: list[str]) -> np.ndarray:
    """The test images decoded and resized exactly as training did."""
    from cnnlab.data import pipeline
    from cnnlab.data.dataset import load_dataset

    image_size = _image_size(info)
    try:
        dataset = load_dataset(info.dataset, info.record.dataset_version)
        if dataset.files_and_labels("test")[0] == files:
            return pipeline.load_arrays(dataset, "test", image_size)[0]
    except CnnlabError:
        pass  # the dataset changed or is gone: read the files the run listed
    from PIL import Image

    mode = "L" if int(info.channels or 3) == 1 else "RGB"
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert(mode))
        except OSError as error:
            raise CnnlabError(
                f"Cannot read test image {file} of run {info.run_id} ({error}); the "
                f"dataset {info.dataset!r} was changed or deleted since the run."
            ) from error
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        images.append(pipeline.resize_pixels(pixels, image_size))
    return np.stack(images)


def _image_size(info: Run) -> int:
    return int(info.image_size or info.train.get("image_size") or 64)


def _compute_probabilities(info: Run, files: list[str]) -> np.ndarray:
    """Softmax rows of ``best.keras`` over the test images, in one batched pass: through
    the training pipeline while the dataset still lists these files, else read one by one."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cnnlab.data.dataset import load_dataset
    from cnnlab.predict import load_keras_model

    model = load_keras_model(info.checkpoint("best"), info.run_id)

    def forward(images):
        return model(images, training=False)

    try:
        dataset = load_dataset(info.dataset, info.record.dataset_version)
        same_files = dataset.files_and_labels("test")[0] == files
    except CnnlabError:
        same_files = False  # the dataset is gone
    if same_files:
        probabilities = score_split(forward, dataset, _image_size(info))[2]
    else:
        probabilities = score_batches(forward, chunks(_load_test_pixels(info, files)))
    return probabilities.astype(np.float32)


def run_probabilities(run: Run | str, rows: list[dict[str, Any]] | None = None) -> np.ndarray:
    """The full softmax rows of a run's test predictions (``predictions.csv`` order).

    Read from ``probabilities.npy`` when present and matching, otherwise computed once
    from ``best.keras`` and cached there atomically.
    """
    info = runs.as_run(run)
    rows = rows if rows is not None else _read_prediction_rows(info)
    classes = len(info.class_names)
    cached = info.probabilities()  # a damaged cache is recomputed, not fatal
    if cached is not None and cached.shape == (len(rows), classes):
        return cached
    probabilities = _compute_probabilities(info, [row["file"] for row in rows])
    if probabilities.shape != (len(rows), classes):
        raise CnnlabError(
            f"The model of run {info.run_id} gives {probabilities.shape[1]} outputs for "
            f"{classes} classes; its run.json and best.keras disagree."
        )
    info.write_probabilities(probabilities)
    return probabilities


def evaluate_run(run: Run | str, k: int | Sequence[int] = DEFAULT_TOP_K) -> Evaluation:
    """All metrics of a completed run (a Run or its id) on its test split.

    Raises:
        CnnlabError: for an unknown run, a run without predictions yet, or test images
            that are gone when the probabilities still have to be computed.
    """
    info = runs.as_run(run)
    rows = _read_prediction_rows(info)
    labels = info.class_names
    if not labels:
        raise CnnlabError(f"Run {info.run_id} has no class_names in run.json; it is damaged.")
    probabilities = run_probabilities(info, rows)
    evaluation = evaluate_predictions(
        [row["true"] for row in rows],
        probabilities,
        labels,
        k=k,
        files=[row["file"] for row in rows],
    )
    evaluation.run_id = info.run_id
    evaluation.predictions_csv = str(info.path / runs.PREDICTIONS_FILE)
    evaluation.sources = _upload_names(info.dataset, evaluation.files)
    return evaluation


def _upload_names(dataset_name: str, files: list[str]) -> list[str] | None:
    """The upload name of each test image, or None when the dataset is gone."""
    from cnnlab.data.dataset import load_dataset

    try:
        return load_dataset(dataset_name).upload_names(files)
    except CnnlabError:
        return None


def evaluate_run_labels(run: Run | str) -> Evaluation | None:
    """Metrics from ``predictions.csv`` alone (no model, no probabilities), or None.

    For listings of many runs: accuracy, per-class metrics and the confusion matrix are
    exact; curves and calibration use one-hot probabilities and are not meaningful.
    """
    info = runs.as_run(run)
    labels = info.class_names
    if not info.has_predictions or not labels:
        return None
    rows = info.predictions()
    if not rows:
        return None
    index = {label: i for i, label in enumerate(labels)}
    try:
        predicted = np.asarray([index[row["pred"]] for row in rows])
        one_hot = np.eye(len(labels))[predicted]
        return evaluate_predictions([row["true"] for row in rows], one_hot, labels, k=())
    except (KeyError, CnnlabError):
        return None


def update_run_meta(run_id: str, **fields: Any) -> dict[str, Any]:
    """Rename or tag a run (``name=``, ``tags=``): merged into ``run.json`` atomically."""
    allowed = ("name", "tags", "note", "study")
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise CnnlabError(
            f"Only {', '.join(allowed)} can be changed here. Received: {', '.join(unknown)}"
        )
    if "name" in fields and fields["name"] is not None:
        name = str(fields["name"]).strip()
        if len(name) > 80:
            raise CnnlabError(
                f"`name` must be at most 80 characters. Received: {len(name)} characters"
            )
        fields["name"] = name or None
    if "tags" in fields:
        tags = fields["tags"] or []
        if isinstance(tags, str):
            tags = tags.split(",")
        fields["tags"] = sorted({str(tag).strip() for tag in tags if str(tag).strip()})
    return runs.update_run(run_id, **fields)
