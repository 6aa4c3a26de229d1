"""Find what is wrong with a dataset: likely label errors, near-duplicates, outliers.

**Label issues** come from cleanlab on out-of-fold predicted probabilities: the
train+val images are split into ``folds`` stratified folds (scikit-learn's
``StratifiedKFold``); for each fold a model (the dataset's default run recipe, or a
run's architecture and training spec) trains on the other folds and predicts the
held-out one, so every train+val image is scored by a model that never saw it. With a
``budget_minutes``, each fold gets ``budget_minutes / folds``; without one, each trains
as the default run would (the folds take about ``folds`` times its estimate): the
audit finds as much as its models know, and on a small photo set a fold model fitted
into a fifth of a run's budget knows little (``bench/bench_audit.py`` on flowers-small
with 10% of labels changed, 3 seeds, from scratch: recall at N 0.30 with 5 minutes
for all folds, 0.43 with run-sized folds; run-sized from ImageNet weights: 0.67). Test
images are scored too, by the average of the ``folds`` models (none of which saw
them): a wrong label in the test split misjudges every run.
``cleanlab.filter.find_label_issues`` picks the issues from the out-of-fold
probabilities. They are ranked by a quality (0 = surely wrong, 1 = surely right): the
mean of two views of the given label's probability, the held-out model's and the
average of the ``folds - 1`` models that trained on the image. A model that trained on
an odd but rightly labelled photo (a sunflower in a kitchen) has learnt it; one that
trained on a wrong label has mostly not, so the second view moves hard, rightly labelled images
down the list and wrong labels up (flowers-small, 10% changed, seeds 0-2, the same fold models
ranked both ways: recall at N 0.70 / 0.63 / 0.63 by the held-out view alone, 0.77 /
0.67 / 0.67 by both; when the list is shorter than N, as on digits, the order cannot
change what the top N holds). Test images have only the folds' average. The suggested
label is the out-of-fold argmax.

**Near-duplicates** come from :func:`cnnlab.data.similar.near_duplicates`,
**outliers** from :func:`cnnlab.embedding.outliers` over a run (the one asked for, else
the dataset's newest completed run).

The result is kept in the dataset folder (``audit.json``) so the Data page shows it
without recomputing; images the user keeps (``audit-kept.json``), removes or relabels
are left out of the label issues from then on. ``version`` is the dataset version
audited (:mod:`cnnlab.data.versions`; a fix makes a new one), and ``fingerprint`` a
hash of every image's pixels, label and split, which says whether the audit is current.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab import runs, workspace
from cnnlab.data.dataset import Dataset, Record, load_dataset
from cnnlab.errors import CnnlabError

AUDIT_FILE = "audit.json"
KEPT_FILE = "audit-kept.json"
JOB_FILE = "audit-job.json"
LOG_FILE = "audit.log"
FOLDS_RANGE = (2, 10)
DEFAULT_FOLDS = 5
PREDICT_BATCH = 256
START_TIMEOUT_S = 60.0  # a job file without a pid this long after the request: failed
AUDITED_SPLITS = ("train", "val")  # k-fold; test is scored by the folds' average

ProgressFn = Callable[[str], None]


# --- the data audited --------------------------------------------------------------------


def fingerprint(dataset: Dataset) -> str:
    """A short hash of every image's pixels, label and split: the data audited."""
    rows = sorted((record.sha, record.label, record.split) for record in dataset.records)
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def check_folds(dataset: Dataset, folds: int) -> int:
    """``folds`` when it is in range and every class has that many train+val images.

    Raises:
        CnnlabError: naming the allowed range, or the classes with too few images.
    """
    low, high = FOLDS_RANGE
    if (
        isinstance(folds, bool)
        or not isinstance(folds, (int, np.integer))
        or not (low <= folds <= high)
    ):
        raise CnnlabError(f"`folds` must be in [{low}, {high}]. Received: folds={folds!r}")
    counts: dict[str, int] = dict.fromkeys(dataset.class_names, 0)
    for record in audited_records(dataset):
        counts[record.label] += 1
    small = {label: count for label, count in counts.items() if count < folds}
    if small:
        listed = ", ".join(f"{label!r} ({count})" for label, count in sorted(small.items()))
        raise CnnlabError(
            f"{folds} folds need at least {folds} train+val images in every class; "
            f"{listed} have fewer. Use fewer folds (--folds {max(low, min(small.values()))}) "
            "or add images to those classes."
        )
    return int(folds)


def audited_records(dataset: Dataset) -> list[Record]:
    """The images the folds are drawn from: train, then val, in index order."""
    return [record for split in AUDITED_SPLITS for record in dataset.split(split)]


def fold_indices(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """The held-out fold of each image (stratified by label, repeatable for a seed)."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for index, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[held] = index
    return fold


# --- out-of-fold probabilities ------------------------------------------------------------


def fold_recipe(
    dataset: Dataset, folds: int, budget_minutes: float | None, run: Any = None
) -> tuple[Any, Any]:
    """``(ArchSpec, TrainSpec)`` of each fold's model: the dataset's default run recipe
    (fitted into ``budget_minutes / folds`` when a budget is given), or ``run``'s
    architecture and spec (stopped on time by the same share of the budget)."""
    from cnnlab.train.recipe import plan_run

    per_fold = float(budget_minutes) / folds if budget_minutes else None
    if run is not None:
        info = runs.as_run(run)
        if list(info.class_names or dataset.class_names) != dataset.class_names:
            raise CnnlabError(
                f"Run {info.run_id} was trained on classes {info.class_names}, but dataset "
                f"{dataset.name!r} now has {dataset.class_names}; audit without --run."
            )
        record = info.record
        if per_fold is None:
            return record.arch, record.train
        return record.arch, record.train.with_changes(budget_minutes=per_fold)
    plan = plan_run(dataset, budget_minutes=per_fold)
    return plan.arch, plan.spec


def out_of_fold_probabilities(
    dataset: Dataset | str,
    folds: int = DEFAULT_FOLDS,
    budget_minutes: float | None = None,
    seed: int = 0,
    arch: Any = None,
    spec: Any = None,
    on_progress: ProgressFn | None = None,
    *,
    run: Any = None,
) -> tuple[list[Record], np.ndarray, np.ndarray, np.ndarray]:
    """Each image's class probabilities from models that did not train on it, and
    from the models that did.

    Args:
        dataset: the dataset (or its name).
        folds: how many models; each trains on the other ``folds - 1`` folds.
        budget_minutes: for all folds together (None: each fold trains as the default
            run, or ``run``, would).
        seed: the fold assignment's and the models' seed.
        arch, spec: the ArchSpec and TrainSpec of each model (default: :func:`fold_recipe`).
        on_progress: receives one line per step.
        run: a run whose architecture and spec to use instead of the recipe.

    Returns:
        ``(records, labels, probabilities, trained)``: the train+val images (train, then
        val) followed by the test images; labels index ``class_names``; probabilities are
        ``[N, classes]`` (test rows: the average of the fold models); ``trained`` the
        same from the average of the models that trained on each image (test rows: the
        same as ``probabilities``, as no model trained on them).

    Raises:
        CnnlabError: bad folds, or a class with fewer train+val images than folds.
    """
    from cnnlab.data.pipeline import load_arrays

    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    folds = check_folds(data, folds)
    if arch is None or spec is None:
        recipe_arch, recipe_spec = fold_recipe(data, folds, budget_minutes, run)
        arch, spec = arch or recipe_arch, spec or recipe_spec
    say = on_progress or (lambda line: None)
    index = {label: i for i, label in enumerate(data.class_names)}

    def arrays(splits: tuple[str, ...]) -> tuple[list[Record], np.ndarray, np.ndarray]:
        records, images = [], []
        for split in splits:
            if data.split(split):
                records += data.split(split)
                images.append(load_arrays(data, split, spec.image_size)[0])
        labels = np.array([index[record.label] for record in records], dtype=np.int32)
        shape = (0, spec.image_size, spec.image_size, data.channels)
        return records, np.concatenate(images) if images else np.zeros(shape, np.uint8), labels

    records, images, labels = arrays(AUDITED_SPLITS)
    test_records, test_images, test_labels = arrays(("test",))
    fold = fold_indices(labels, folds, seed)
    classes = len(data.class_names)
    probabilities = np.zeros((len(records), classes), dtype=np.float32)
    trained = np.zeros((len(records), classes), dtype=np.float32)
    test_probabilities = np.zeros((len(test_records), classes), dtype=np.float32)
    say(f"{folds} folds of {len(records)} train+val images, {spec.image_size}px, "
        f"up to {spec.epochs} epochs each")  # fmt: skip
    for k in range(folds):
        started = time.monotonic()
        held = fold == k
        seen = images[~held]
        predicted = _fit_predict(
            seen,
            labels[~held],
            [images[held], seen, test_images],
            arch=arch,
            spec=spec,
            classes=classes,
            channels=data.channels,
            seed=seed + k,
        )
        probabilities[held] = predicted[0]
        trained[~held] += predicted[1] / (folds - 1)
        test_probabilities += predicted[2] / folds
        say(f"fold {k + 1}/{folds}: {int(held.sum())} images scored "
            f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    return (
        records + test_records,
        np.concatenate([labels, test_labels]),
        np.concatenate([probabilities, test_probabilities]),
        np.concatenate([trained, test_probabilities]),
    )


def _fit_predict(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    predict: list[np.ndarray],
    *,
    arch: Any,
    spec: Any,
    classes: int,
    channels: int,
    seed: int,
) -> list[np.ndarray]:
    """Train one model on ``train_*`` (in this process, no run folder); return its
    softmax rows for each array of ``predict``."""
    import keras
    import tensorflow as tf

    from cnnlab.data.augment import AugmentSpec, build_augmentation
    from cnnlab.models.builder import build_model, fine_tune_backbone
    from cnnlab.models.spec import ArchSpec
    from cnnlab.train import callbacks as cb
    from cnnlab.train.trainer import _compile, _phases, class_weights_for, training_deadline

    keras.utils.set_random_seed(seed)
    augmentation = None
    if isinstance(spec.augmentation, dict):
        augment = AugmentSpec.from_dict(spec.augmentation)
        if not augment.is_neutral():
            augmentation = build_augmentation(augment, channels, seed=seed)
    arch = arch if isinstance(arch, ArchSpec) else ArchSpec.from_dict(arch)
    model = build_model(arch, spec.image_size, channels, classes, augmentation=augmentation)
    batches = math.ceil(len(train_labels) / spec.batch_size)
    _compile(model, spec, batches)
    data = tf.data.Dataset.from_tensor_slices((train_images, train_labels))
    data = data.shuffle(len(train_labels), seed=seed).batch(spec.batch_size)
    if spec.label_smoothing:  # the loss then takes one-hot labels (see trainer)
        data = data.map(lambda x, y: (x, tf.one_hot(y, classes)))
    data = data.prefetch(tf.data.AUTOTUNE)
    start = time.monotonic()
    deadline = training_deadline(start, spec.budget_minutes)

    def time_used() -> float:
        if not spec.budget_minutes or deadline is None:
            return 0.0
        return (time.monotonic() - start) / max(deadline - start, 1e-9)

    fit_callbacks = [cb.learning_rate_schedule(spec, time_used)]
    if deadline is not None:
        fit_callbacks.append(cb.TimeBudget(deadline))
    names = [str(i) for i in range(classes)]
    weights = (
        class_weights_for(spec, train_labels, names) if spec.class_weight != "custom" else None
    )
    for first, end in _phases(spec, 0):
        if first and first == spec.fine_tune_at:
            if not fine_tune_backbone(model, spec.fine_tune_last):
                end = spec.epochs
            _compile(model, spec, batches)
        model.fit(
            data,
            epochs=end,
            initial_epoch=first,
            class_weight=weights,
            callbacks=fit_callbacks,
            shuffle=False,  # the dataset shuffles
            verbose=0,
        )
        if model.stop_training:
            break
    # Direct calls in chunks: model.predict would retrace for every fold's new model.
    outputs = []
    for images in predict:
        rows = [np.zeros((0, classes), dtype=np.float32)]
        for first in range(0, len(images), PREDICT_BATCH):
            chunk = model(images[first : first + PREDICT_BATCH], training=False)
            rows.append(np.asarray(chunk, dtype=np.float32))
        outputs.append(np.concatenate(rows))
    keras.backend.clear_session()
    return outputs


# --- label issues -------------------------------------------------------------------------


def label_issues(
    records: list[Record],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    kept: set[str] | frozenset[str] = frozenset(),
    trained: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The images whose given label is likely wrong, most likely first.

    cleanlab picks them from the out-of-fold ``probabilities``; each one's quality
    (lower = more likely wrong) is the given label's probability there, averaged with
    the one in ``trained`` (the models that trained on it) when given.

    Each is ``{"file", "source", "given", "suggested", "quality", "split"}``: the stored
    file, the upload's name, the given and suggested class, and the quality. Files in
    ``kept`` are left out.
    """
    from cleanlab.filter import find_label_issues

    if not len(labels):
        return []
    # cleanlab wants rows summing to 1 and every class in the given labels.
    probabilities = np.clip(probabilities.astype(np.float64), 1e-9, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    picked = find_label_issues(labels, probabilities, n_jobs=1)
    rows = np.arange(len(labels))
    quality = probabilities[rows, labels]
    if trained is not None:
        quality = (quality + trained[rows, labels]) / 2
    ranked = np.flatnonzero(picked)
    ranked = ranked[np.argsort(quality[ranked], kind="stable")]
    suggested = probabilities.argmax(axis=1)
    issues = []
    for i in ranked:
        record = records[int(i)]
        if record.file in kept:
            continue
        issues.append(
            {
                "file": record.file,
                "source": record.upload_name,
                "given": class_names[int(labels[i])],
                "suggested": class_names[int(suggested[i])],
                "quality": round(float(quality[i]), 4),
                "split": record.split,
            }
        )
    return issues


# --- the whole audit ---------------------------------------------------------------------


def audit_dataset(
    name: str,
    run: str | None = None,
    folds: int = DEFAULT_FOLDS,
    budget_minutes: float | None = None,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
    save: bool = True,
) -> dict[str, Any]:
    """Audit dataset ``name``: label issues, near-duplicates and outliers.

    Args:
        run: a run whose architecture and spec train the fold models, and whose model
            finds outliers; None = the auto recipe, and the newest completed run.
        save: keep the result in the dataset folder (``audit.json``).

    Returns:
        ``{"dataset", "version", "label_issues", "near_duplicates", "outliers",
        "duration_s"}`` plus ``folds``, ``seed``, ``budget_minutes``, ``run``,
        ``finished``, ``notes``.

    Raises:
        CnnlabError: no such dataset or run, bad folds, a class with too few images.
    """
    started = time.monotonic()
    dataset = load_dataset(name)
    info = runs.load_run(run) if run else None
    if info is not None and info.dataset != dataset.name:
        raise CnnlabError(
            f"Run {info.run_id} was trained on dataset {info.dataset!r}, not {dataset.name!r}."
        )
    check_folds(dataset, folds)
    version = dataset.version
    notes: list[str] = ["Test images are scored by the average of the fold models."]
    records, labels, probabilities, trained = out_of_fold_probabilities(
        dataset, folds, budget_minutes, seed, on_progress=on_progress, run=info
    )
    issues = label_issues(
        records, labels, probabilities, dataset.class_names, kept_files(name), trained
    )
    duplicates, note = _near_duplicates(dataset)
    notes += [note] if note else []
    outlier_run = info or runs.default_run(
        [r for r in runs.list_runs(dataset.name) if r.status == "completed"]
    )
    outliers, note = _outliers(outlier_run)
    notes += [note] if note else []
    result = {
        "dataset": dataset.name,
        "version": version,
        "fingerprint": fingerprint(dataset),
        "label_issues": issues,
        "near_duplicates": duplicates,
        "outliers": outliers,
        "duration_s": round(time.monotonic() - started, 2),
        "folds": folds,
        "seed": seed,
        "budget_minutes": budget_minutes,
        "run": info.run_id if info else None,
        "outliers_run": outlier_run.run_id if outlier_run else None,
        "finished": runs.now_iso(),
        "notes": notes,
    }
    if save:
        workspace.atomic_write_json(dataset.path / AUDIT_FILE, result)
    return result


def _near_duplicates(dataset: Dataset) -> tuple[list[dict[str, Any]], str]:
    try:
        from cnnlab.data.similar import near_duplicates
    except ImportError:
        return [], "Near-duplicates are not available in this version."
    groups = near_duplicates(dataset)
    return [
        {"files": list(g["files"]), "sources": list(g["sources"]), "kind": g["kind"]}
        for g in groups
    ], ""


def _outliers(run: Any) -> tuple[list[dict[str, Any]], str]:
    if run is None:
        return [], "No completed run of this dataset: train one (or pass --run) for outliers."
    try:
        from cnnlab.embedding import outliers
    except ImportError:
        return [], "Outliers are not available in this version."
    found = outliers(run)
    return [{"file": o["file"], "source": o["source"], "score": o["score"]} for o in found], ""


# --- what the page shows and the user's decisions --------------------------------------


def kept_files(name: str) -> set[str]:
    """The images the user said are labelled right (left out of label issues)."""
    path = workspace.dataset_dir(name) / KEPT_FILE
    return set(workspace.read_json(path, default=[]) or [])


def keep(name: str, files: list[str]) -> None:
    """Mark ``files`` as fine as they are: not listed as label issues or outliers again."""
    from cnnlab.data.store import dataset_lock

    dataset = load_dataset(name)
    with dataset_lock(dataset.name):
        kept = kept_files(dataset.name) | set(files)
        workspace.atomic_write_json(dataset.path / KEPT_FILE, sorted(kept))


def relabel(name: str, file: str, label: str) -> None:
    """Give image ``file`` the class ``label`` (see :func:`ingest.relabel_images`)."""
    from cnnlab.data.ingest import relabel_images

    relabel_images(name, {file: label})


def remove(name: str, files: list[str]) -> None:
    """Remove images from the dataset (a new version; earlier ones keep them)."""
    from cnnlab.data.ingest import delete_images

    delete_images(name, files)


def load_audit(name: str) -> dict[str, Any] | None:
    """The last audit of dataset ``name`` as it stands now: label issues and outliers
    the user kept, removed or relabelled since are left out. None when it was never
    audited."""
    dataset = load_dataset(name)
    audit = workspace.read_json(dataset.path / AUDIT_FILE)
    if not isinstance(audit, dict):
        return None
    labels = {record.file: record.label for record in dataset.records}
    kept = kept_files(name)
    audit["label_issues"] = [
        issue
        for issue in audit.get("label_issues", [])
        if labels.get(issue["file"]) == issue["given"] and issue["file"] not in kept
    ]
    audit["outliers"] = [
        outlier
        for outlier in audit.get("outliers", [])
        if outlier["file"] in labels and outlier["file"] not in kept
    ]
    audit["current"] = audit.get("fingerprint") == fingerprint(dataset)
    return audit


# --- running it apart from the page -------------------------------------------------------


def start_audit(
    name: str, folds: int = DEFAULT_FOLDS, budget_minutes: float | None = None, seed: int = 0
) -> int:
    """Start an audit in a detached process (``python -m cnnlab.audit_worker NAME``);
    returns its pid. The page polls :func:`audit_status`.

    Raises:
        CnnlabError: bad folds, or an audit of this dataset is already running.
    """
    from cnnlab.data.store import dataset_lock

    dataset = load_dataset(name)
    check_folds(dataset, folds)
    with dataset_lock(dataset.name):
        if audit_status(dataset.name)["state"] == "running":
            raise CnnlabError(f"An audit of dataset {dataset.name!r} is already running.")
        job = {
            "folds": int(folds),
            "budget_minutes": budget_minutes,
            "seed": int(seed),
            "requested": runs.now_iso(),
            "requested_s": time.time(),
            "pid": None,
        }
        workspace.atomic_write_json(dataset.path / JOB_FILE, job)
    pid = runs.spawn_detached("cnnlab.audit_worker", dataset.name, dataset.path / LOG_FILE)
    job.update(runs.worker_info(pid))
    workspace.atomic_write_json(dataset.path / JOB_FILE, job)
    return pid


def audit_status(name: str) -> dict[str, Any]:
    """``{"state": "idle" | "running" | "failed", ...the job's fields}``."""
    path = workspace.dataset_dir(name) / JOB_FILE
    job = workspace.read_json(path, default=None)
    if not isinstance(job, dict):
        return {"state": "idle"}
    if job.get("error"):
        return {**job, "state": "failed"}
    if job.get("done"):
        return {**job, "state": "idle"}
    pid = job.get("pid")
    if pid is None:  # being started right now, unless that was long ago
        if time.time() - float(job.get("requested_s", 0)) > START_TIMEOUT_S:
            return {**job, "state": "failed", "error": "The audit process did not start."}
        return {**job, "state": "running"}
    alive = runs.pid_alive(int(pid), job.get("process_started"))
    if not alive:
        return {**job, "state": "failed", "error": "The audit process ended unexpectedly."}
    return {**job, "state": "running"}


def run_job(name: str) -> None:
    """The detached process's work: the audit its job file asks for; the outcome
    (done, or the error) is written back to the job file."""
    path = workspace.dataset_dir(name) / JOB_FILE
    job = workspace.read_json(path, default={}) or {}
    try:
        audit_dataset(
            name,
            folds=int(job.get("folds", DEFAULT_FOLDS)),
            budget_minutes=job.get("budget_minutes"),
            seed=int(job.get("seed", 0)),
            on_progress=lambda line: print(line, flush=True),
        )
    except Exception as error:  # noqa: BLE001 - any failure must reach the page
        job["error"] = str(error) if isinstance(error, CnnlabError) else repr(error)
        workspace.atomic_write_json(path, job)
        raise
    job["done"] = runs.now_iso()
    job["pid_finished"] = os.getpid()
    workspace.atomic_write_json(path, job)
