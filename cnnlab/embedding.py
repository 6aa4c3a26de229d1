"""What the model has learned, as a map: penultimate-layer features of a dataset's images.

:func:`features` runs a run's ``best`` model over a dataset's images once, the way the
trainer scores a split (:func:`cnnlab.scoring.score_split` over the training pipeline),
through a sub-model that returns both the input of the final Dense softmax layer (the
*features*) and the softmax rows, so one forward pass gives the map and the
predictions. The result is kept in the run folder (``embedding.npz``) and reused until
the run's model or the dataset's records change.

On top of the features: a 2-D projection (:func:`project`, PCA or t-SNE from
scikit-learn), nearest neighbours by cosine similarity (:func:`neighbours`), and
outliers, images unlike the rest of their class (:func:`outliers`).

Nothing here imports TensorFlow until features have to be computed.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import runs, workspace
from cnnlab.data.dataset import SPLITS
from cnnlab.errors import CnnlabError

EMBEDDING_FILE = "embedding.npz"
# Bumped when what the cache holds changes, so old files are recomputed.
CACHE_FORMAT = 1
METHODS = ("pca", "tsne")
# t-SNE's usual perplexity; clipped below the number of images for tiny sets.
TSNE_PERPLEXITY = 30.0
# Features wider than this are reduced by PCA before t-SNE (van der Maaten's advice).
TSNE_PCA_DIMS = 50
# An image is an outlier of its class when its modified z-score is above this
# (Iglewicz & Hoaglin's cut-off for the median/MAD score: 3.5).
OUTLIER_Z = 3.5
# Classes with fewer images than this have no meaningful spread: never flagged.
OUTLIER_MIN_CLASS = 5
# Distances below this count as this (exact copies), so their log stays finite.
LOG_FLOOR = 1e-6
# MAD -> standard deviation for normal data, so the score reads like a z-score.
MAD_TO_SD = 1.4826
# Below this norm a feature vector counts as zero (a ReLU layer that stayed silent).
_EPS = 1e-12


@dataclass
class Embedding:
    """Penultimate-layer features of a dataset's images under one run's model.

    Attributes:
        run_id: the run whose model made them.
        root: the dataset folder (``files`` are relative to it).
        class_names: the model's outputs, in order.
        files: each image's stored name (``images/<key>/<sha16>.png``).
        sources: the name each image had in the upload (the stored name when unknown).
        labels: each image's given class.
        splits: each image's split.
        features: ``[images, width]`` float32, the input of the softmax layer.
        probabilities: ``[images, classes]`` float32 softmax rows.
    """

    run_id: str
    root: str
    class_names: list[str]
    files: list[str]
    sources: list[str]
    labels: list[str]
    splits: list[str]
    features: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def predictions(self) -> list[str]:
        """The predicted class of each image."""
        return [self.class_names[i] for i in self.probabilities.argmax(axis=1)]

    @property
    def confidence(self) -> np.ndarray:
        """The probability of each image's predicted class."""
        return self.probabilities.max(axis=1) if len(self) else np.zeros(0)

    @property
    def correct(self) -> np.ndarray:
        """Whether each image's prediction is its given label."""
        return np.array([p == t for p, t in zip(self.predictions, self.labels, strict=True)])

    def path(self, index: int) -> Path:
        """Where image ``index`` is on disk."""
        return Path(self.root) / self.files[index]

    def subset(self, indices) -> Embedding:
        """The images at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        pick = [int(i) for i in indices]
        return Embedding(
            run_id=self.run_id,
            root=self.root,
            class_names=list(self.class_names),
            files=[self.files[i] for i in pick],
            sources=[self.sources[i] for i in pick],
            labels=[self.labels[i] for i in pick],
            splits=[self.splits[i] for i in pick],
            features=self.features[indices],
            probabilities=self.probabilities[indices],
        )


# ------------------------------------------------------------------------- features


def features(run: runs.Run | str, splits: tuple[str, ...] = SPLITS) -> Embedding:
    """The penultimate-layer features and predictions of every image of ``splits``.

    Read from the run's ``embedding.npz`` when it was made by the same model file from
    the same records (files, labels, splits); otherwise computed in one batched pass
    and stored there.

    Raises:
        CnnlabError: for an unknown split, a run without a model, a dataset that is
            gone, or an unreadable image.
    """
    from cnnlab.data.dataset import load_dataset

    info = runs.as_run(run)
    splits = _check_splits(splits)
    dataset = load_dataset(info.dataset, info.record.dataset_version)
    records = [record for split in splits for record in dataset.split(split)]
    model_path = info.model_path("best")
    key = _cache_key(model_path, records, info)
    cached = _read_cache(info.path / EMBEDDING_FILE, key)
    if cached is not None:
        return cached
    embedding = _compute(info, dataset, splits)
    _write_cache(info.path / EMBEDDING_FILE, key, embedding)
    return embedding


def _check_splits(splits) -> tuple[str, ...]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [split for split in splits if split not in SPLITS]
    if bad or not splits:
        raise CnnlabError(
            f"`splits` must be some of {', '.join(SPLITS)}. Received: splits={splits!r}"
        )
    return tuple(dict.fromkeys(splits))


def _cache_key(model_path: Path, records, info: runs.Run) -> str:
    """Changes when the model file or the images' names, labels or splits do."""
    digest = hashlib.sha256()
    stat = model_path.stat()
    digest.update(f"{CACHE_FORMAT}|{stat.st_mtime_ns}|{stat.st_size}|{info.image_size}".encode())
    for record in records:
        digest.update(f"\n{record.file}|{record.label}|{record.split}|{record.sha}".encode())
    return digest.hexdigest()


def _compute(info: runs.Run, dataset, splits: tuple[str, ...]) -> Embedding:
    """One pass of the run's best model over ``splits``, as the trainer scores a split."""
    from cnnlab.predict import Predictor, keras_in_use
    from cnnlab.scoring import SCORE_BATCH, score_split

    predictor = Predictor(info).load()
    model = predictor.model_
    with keras_in_use():
        probe = _feature_model(model)
    width = int(probe.outputs[0].shape[-1])

    def forward(images):
        # Features and softmax rows side by side, so the one scoring loop carries both.
        hidden, probabilities = probe(images, training=False)
        hidden = np.asarray(hidden, dtype=np.float32).reshape(len(probabilities), -1)
        return np.concatenate([hidden, np.asarray(probabilities, dtype=np.float32)], axis=1)

    rows, records = [], []
    for split in splits:
        split_records = dataset.split(split)
        if not split_records:
            continue
        _, _, scored = score_split(forward, dataset, predictor.image_size_, SCORE_BATCH, split)
        rows.append(scored)
        records.extend(split_records)
    classes = len(predictor.class_names_)
    table = np.concatenate(rows) if rows else np.zeros((0, width + classes))
    return Embedding(
        run_id=info.run_id,
        root=str(dataset.path),
        class_names=list(predictor.class_names_),
        files=[record.file for record in records],
        sources=[record.upload_name for record in records],
        labels=[record.label for record in records],
        splits=[record.split for record in records],
        features=table[:, :width].astype(np.float32),
        probabilities=table[:, width:].astype(np.float32),
    )


def _feature_model(model):
    """A model from the same inputs to [the softmax layer's input, the softmax rows]."""
    import keras

    from cnnlab.explain import _head

    head = _head(model)
    if head is None:
        raise CnnlabError(
            "This model does not end in a Dense softmax layer, so it has no penultimate "
            "features to map."
        )
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [head.input, model.outputs[0]])


_TEXT_FIELDS = ("files", "sources", "labels", "splits", "class_names")


def _write_cache(path: Path, key: str, embedding: Embedding) -> None:
    buffer = io.BytesIO()
    texts = {name: np.asarray(getattr(embedding, name), dtype=str) for name in _TEXT_FIELDS}
    np.savez(
        buffer,
        key=np.asarray(key),
        root=np.asarray(embedding.root),
        features=embedding.features,
        probabilities=embedding.probabilities,
        **texts,
    )
    workspace.atomic_write_bytes(path, buffer.getvalue())


def _read_cache(path: Path, key: str) -> Embedding | None:
    """The stored embedding when it was made under ``key``; None when stale or damaged."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            texts = {name: [str(v) for v in stored[name]] for name in _TEXT_FIELDS}
            return Embedding(
                run_id=path.parent.name,
                root=str(stored["root"]),
                features=stored["features"],
                probabilities=stored["probabilities"],
                **texts,
            )
    except (OSError, ValueError, KeyError):
        return None


# ------------------------------------------------------------------------ projection


def project(embedding: Embedding | np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """The images as points in 2-D: ``[images, 2]``.

    Args:
        embedding: an :class:`Embedding` or a ``[images, width]`` feature array.
        method: ``pca`` (linear, quick, keeps global distances) or ``tsne`` (keeps
            neighbourhoods; slower: sample large sets first, see :func:`stratified_sample`).
        seed: makes t-SNE repeatable.
    """
    if method not in METHODS:
        raise CnnlabError(f"`method` must be one of {', '.join(METHODS)}. Received: {method!r}")
    data = np.asarray(getattr(embedding, "features", embedding), dtype=np.float64)
    count = len(data)
    data = data.reshape(count, -1)
    points = np.zeros((count, 2))
    if count < 2 or np.allclose(data, data[0]):
        return points  # nothing to spread out
    from sklearn.decomposition import PCA

    if method == "pca":
        width = min(2, count, data.shape[1])
        points[:, :width] = PCA(n_components=width, random_state=seed).fit_transform(data)
        return points
    from sklearn.manifold import TSNE

    if count < 3:
        return project(data, "pca", seed)
    if data.shape[1] > TSNE_PCA_DIMS and count > TSNE_PCA_DIMS:
        data = PCA(n_components=TSNE_PCA_DIMS, random_state=seed).fit_transform(data)
    perplexity = min(TSNE_PERPLEXITY, count - 1)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(data)


def stratified_sample(labels, limit: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` images keeping each class's share (every class keeps
    at least one image), sorted; all indices when there are no more than ``limit``."""
    labels = np.asarray(labels)
    count = len(labels)
    if count <= limit:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        share = max(1, round(limit * len(members) / count))
        picked.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------- neighbours, outliers


def _unit(features: np.ndarray) -> np.ndarray:
    rows = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, _EPS)


def neighbours(embedding: Embedding, index: int, k: int = 8) -> list[tuple[int, float]]:
    """The ``k`` images most like image ``index`` (itself left out), most similar first.

    Returns:
        ``(index, cosine similarity)`` pairs; an exact copy has similarity 1.
    """
    count = len(embedding)
    if not 0 <= int(index) < count:
        raise CnnlabError(f"`index` must be in [0, {count - 1}]. Received: index={index}")
    unit = _unit(embedding.features)
    similarity = unit @ unit[int(index)]
    similarity[int(index)] = -np.inf
    order = np.argsort(-similarity, kind="stable")[: max(0, min(int(k), count - 1))]
    return [(int(i), float(similarity[i])) for i in order]


def outlier_scores(embedding: Embedding) -> np.ndarray:
    """How unlike the rest of its class each image is: a robust z-score, per class.

    An image's distance is the cosine distance between its features and the mean
    direction of the *other* images of its class (so an odd image does not pull the
    centre towards itself). The score is the log of that distance standardised within
    the class by the median and the median absolute deviation (Iglewicz & Hoaglin's
    modified z-score), which a few odd images cannot inflate the way they inflate a
    standard deviation. The log makes the skewed distances near-symmetric: on raw
    distances the cut-off ``OUTLIER_Z`` flagged 9% of flowers-small (450 photos), on
    their logs 0.7%. Images of classes under ``OUTLIER_MIN_CLASS`` images score NaN.
    """
    unit = _unit(embedding.features)
    labels = np.asarray(embedding.labels)
    scores = np.full(len(labels), np.nan)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < OUTLIER_MIN_CLASS:
            continue
        vectors = unit[members]
        others = vectors.sum(axis=0) - vectors  # each image's class without it
        distance = 1.0 - np.sum(vectors * _unit(others), axis=1)
        # Distances are positive and skewed right (a long tail of ordinary images):
        # on a log scale they are near-symmetric, so the normal-based cut-off holds.
        distance = np.log(np.maximum(distance, LOG_FLOOR))
        centre = np.median(distance)
        spread = MAD_TO_SD * np.median(np.abs(distance - centre))
        if spread <= _EPS:  # most of the class identical: fall back to the deviation
            spread = distance.std()
        scores[members] = (distance - centre) / spread if spread > _EPS else 0.0
    return scores


def find_outliers(embedding: Embedding, top: int | None = None) -> list[dict[str, Any]]:
    """Images unlike the rest of their class, the most unlike first.

    Args:
        top: the ``top`` highest-scoring images whatever their score; by default every
            image whose score is above ``OUTLIER_Z``.

    Returns:
        ``{"file", "source", "label", "split", "score"}`` per image.
    """
    if top is not None and (not isinstance(top, int) or top < 0):
        raise CnnlabError(f"`top` must be a whole number of at least 0. Received: top={top!r}")
    scores = outlier_scores(embedding)
    ranked = [int(i) for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")]
    ranked = [i for i in ranked if not np.isnan(scores[i])]
    chosen = ranked[:top] if top is not None else [i for i in ranked if scores[i] > OUTLIER_Z]
    return [
        {
            "file": embedding.files[i],
            "source": embedding.sources[i],
            "label": embedding.labels[i],
            "split": embedding.splits[i],
            "score": round(float(scores[i]), 4),
        }
        for i in chosen
    ]


def outliers(run: runs.Run | str, top: int | None = None) -> list[dict[str, Any]]:
    """Images of the run's dataset unlike the rest of their class, the most unlike first.

    Scored in the feature space of the run's best model (see :func:`outlier_scores`);
    by default only images with a score above ``OUTLIER_Z``, else the ``top`` highest.

    Returns:
        ``{"file", "source", "label", "split", "score"}`` per image: the stored name,
        the upload name, the given class, the split and the score.
    """
    return find_outliers(features(run), top)
