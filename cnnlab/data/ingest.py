"""Turn uploads into datasets: zips, folders, loose files, directory uploads, samples.

Every file is examined on its own; a bad one is rejected with a reason and never costs
the good ones. Where the files come from (and the zip limits) is
:mod:`cnnlab.data.sources`, which class and split each belongs to is
:mod:`cnnlab.data.layout`, and how they are written is :mod:`cnnlab.data.store`; this
module ties them together.

The public functions (the Data page and the CLI call exactly these):

- :func:`ingest` creates a dataset from a zip, folder, uploaded zip or sample.
- :func:`add_source` / :func:`add_files` add images or classes to a dataset.
- :func:`delete_images`, :func:`relabel_images`, :func:`delete_class`,
  :func:`delete_dataset` edit it.

The health report's one-click fixes live with the report, in :mod:`cnnlab.data.health`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from cnnlab import limits, runs, workspace
from cnnlab.data import classes, samples
from cnnlab.data import decode as decoding
from cnnlab.data.dataset import SPLITS, Dataset, Record, list_datasets
from cnnlab.data.decode import Rejected
from cnnlab.data.sources import Source, file_entries, open_source
from cnnlab.data.splits import DEFAULT_SPLIT, check_fractions
from cnnlab.data.store import Store, dataset_lock, rewrite, save_state, staging_root
from cnnlab.errors import CnnlabError

__all__ = [
    "IngestReport",
    "ingest",
    "add_source",
    "add_files",
    "delete_images",
    "relabel_images",
    "delete_class",
    "delete_dataset",
]

# How many rejections dataset.json keeps (the report of each call has them all).
MAX_REJECTED_KEPT = 1000

ProgressFn = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What one ingest or add did."""

    dataset: str  # the dataset's safe name
    images: int  # images accepted by this call
    classes: dict[str, int]  # images per class in the whole dataset afterwards
    rejected: list[dict] = field(default_factory=list)  # [{"file", "reason"}] of this call
    ignored: int = 0  # OS junk skipped by this call (__MACOSX, .DS_Store, hidden files)
    health: dict = field(default_factory=dict)  # the dataset's health report afterwards

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "classes": dict(self.classes),
            "rejected": list(self.rejected),
            "ignored": self.ignored,
            "health": self.health,
        }


# -- public API -------------------------------------------------------------------------


def ingest(
    source: str | os.PathLike | BinaryIO,
    name: str,
    *,
    seed: int = 0,
    split: tuple[float, float, float] = DEFAULT_SPLIT,
    options: dict | None = None,
    progress: ProgressFn | None = None,
    replace: bool = False,
) -> IngestReport:
    """Create dataset ``name`` from a source.

    Args:
        source: a ``.zip`` path, a folder path, an uploaded zip (binary file-like),
            ``"sample:digits"`` or ``"sample:shapes"``.
        name: the new dataset's name (made safe with :func:`workspace.safe_name`).
        seed: seed of the stratified split.
        split: train/val/test fractions for images the upload gives no split folder.
        options: for ``sample:shapes``: ``count``, ``image_size``, ``imbalance``,
            ``seed``.
        progress: called with ``(done, total)`` as files are examined.
        replace: replace an existing dataset of that name.

    Returns:
        The report: images accepted, per-class totals, rejections, ignored junk, health.

    Raises:
        CnnlabError: the name is taken (without ``replace``), the source is unreadable
            or refused as a whole, or no file in it is a usable image. No dataset is
            left behind then.
    """
    safe = workspace.safe_name(name, "dataset name")
    fractions = check_fractions(split)
    if not replace and safe in list_datasets():
        raise CnnlabError(
            f"A dataset named {safe!r} already exists. Add images to it (add_source / "
            "add_files, or 'Add images' on the Data page), choose another name, or "
            "replace it (`--replace`)."
        )
    if options and not samples.is_sample(source):
        raise CnnlabError(
            f"`options` apply to samples only (sample:shapes). Received: options={options!r}"
        )
    opened = open_source(source, options, seed)
    return _create(safe, opened, seed=seed, fractions=fractions, progress=progress, replace=replace)


def add_source(
    name: str, source: str | os.PathLike | BinaryIO, *, progress: ProgressFn | None = None
) -> IngestReport:
    """Add a zip, folder or uploaded zip to existing dataset ``name``.

    New images get a split by the dataset's fractions (or their upload's split
    folders); no image already in the dataset moves.

    Raises:
        CnnlabError: no such dataset, an unreadable source, or nothing usable in it.
    """
    dataset = Dataset(name)
    if samples.is_sample(source):
        raise CnnlabError(
            f"Samples make their own dataset; use ingest({source!r}, name=...) instead."
        )
    return _add(dataset.name, open_source(source, None, 0), progress=progress)


def add_files(
    name: str,
    files: Iterable[tuple[str, bytes]],
    label: str | None,
    *,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Add loose files to dataset ``name``, creating it when it does not exist.

    Args:
        name: the dataset.
        files: ``(file name, content)`` pairs.
        label: the class of every file, kept as written (see
            :mod:`cnnlab.data.classes`); ``None`` for a directory upload, where each
            file name is a relative path (``"root/cat/1.png"``) and the class is the
            parent folder. A split folder above it (``"train/cat/1.png"``) is kept.
        progress: called with ``(done, total)``.

    Raises:
        CnnlabError: a label that cannot be a class name (empty, too long, with a path
            separator or control character), or nothing usable.
    """
    safe = workspace.safe_name(name, "dataset name")
    fixed_label = classes.class_name(label, "label") if label is not None else None
    total = len(files) if hasattr(files, "__len__") else 0  # type: ignore[arg-type]
    description = f"files (class {fixed_label!r})" if fixed_label else "directory upload"
    # A list's size is known without reading it twice; a generator's is not (0).
    size = sum(len(data) for _, data in files) if isinstance(files, (list, tuple)) else 0
    opened = Source(file_entries(files, fixed_label), total, description, size=size)
    if safe in list_datasets():
        return _add(safe, opened, progress=progress)
    return _create(safe, opened, seed=0, fractions=DEFAULT_SPLIT, progress=progress, replace=False)


def delete_images(name: str, files: list[str]) -> dict[str, Any]:
    """Remove images (index ``file`` paths) from a dataset; return the new health.

    Raises:
        CnnlabError: when a file is not in the dataset (nothing is removed then).
    """
    wanted = set(files)

    def change(records: list[Record]) -> tuple[list[Record], int]:
        unknown = sorted(wanted - {record.file for record in records})
        if unknown:
            raise CnnlabError(
                f"Not in dataset {name!r}: {', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''}. Nothing was deleted; "
                "pass `file` values from the dataset's index."
            )
        kept = [record for record in records if record.file not in wanted]
        return kept, len(records) - len(kept)

    return rewrite(name, change)[1]


def relabel_images(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Give images (index ``file`` -> class name) another existing class; return the
    new health. Each image moves into its new class's folder. It is a new version of
    the dataset: runs keep the version they train on.

    Raises:
        CnnlabError: when a file is not in the dataset or a class is not one of its
            classes (nothing changes then).
    """

    def change(records: list[Record]) -> tuple[list[Record], int]:
        known = {record.file for record in records}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise CnnlabError(
                f"Not in dataset {name!r}: {', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''}. Nothing was relabelled; "
                "pass `file` values from the dataset's index."
            )
        names = sorted({record.label for record in records})
        wrong = sorted(set(labels.values()) - set(names))
        if wrong:
            raise CnnlabError(
                f"Dataset {name!r} has no class {', '.join(map(repr, wrong))}. "
                f"Classes: {', '.join(names)}."
            )
        keys = classes.ClassKeys.from_records(r for r in records if r.file not in labels)
        root = workspace.dataset_dir(name)
        out, changed = [], 0
        for record in records:
            label = labels.get(record.file, record.label)
            if label != record.label:
                # A copy in the new class's folder first: the old file goes only once the
                # new index no longer names it (see store.rewrite).
                moved = _copy_into(root, record, keys.key(label))
                record = replace(record, label=label, file=moved)
                changed += 1
            out.append(record)
        return out, changed

    return rewrite(name, change)[1]


def _copy_into(root, record: Record, key: str) -> str:
    stem, _, ext = record.file.rsplit("/", 1)[-1].rpartition(".")
    folder = workspace.inside(root, "images", key)
    folder.mkdir(parents=True, exist_ok=True)
    file, counter = f"images/{key}/{stem}.{ext}", 1
    while (root / file).exists():
        file = f"images/{key}/{stem}-{counter}.{ext}"
        counter += 1
    shutil.copyfile(workspace.inside(root, record.file), workspace.inside(root, file))
    return file


def delete_class(name: str, label: str) -> dict[str, Any]:
    """Remove a class and all its images from a dataset (a new version: earlier ones
    keep them); return the new health.

    Raises:
        CnnlabError: when the dataset has no such class.
    """

    def change(records: list[Record]) -> tuple[list[Record], int]:
        labels = sorted({record.label for record in records})
        if label not in labels:
            raise CnnlabError(
                f"Dataset {name!r} has no class {label!r}. Classes: {', '.join(labels)}."
            )
        kept = [record for record in records if record.label != label]
        return kept, len(records) - len(kept)

    dataset = Dataset(name)
    key = classes.ClassKeys.from_records(dataset.records).keys.get(label)
    report = rewrite(name, change)[1]
    if key is not None:
        folder = workspace.inside(dataset.path, "images", key)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return report


def delete_dataset(name: str) -> None:
    """Delete a dataset and its images.

    Raises:
        CnnlabError: when there is no such dataset, or a queued or running run trains
            on it.
    """
    from cnnlab.data.pipeline import clear_cache

    dataset = Dataset(name)
    # Runs join the queue under this lock too (cnnlab.train.jobs.admitting): a run
    # started meanwhile is either seen here or finds the dataset gone.
    with dataset_lock(dataset.name):
        runs.check_dataset_unused(dataset.name, "delete")
        workspace.remove_tree(dataset.path)
    clear_cache(dataset.name)


# -- creating and adding ----------------------------------------------------------------


def _create(
    name: str,
    source: Source,
    *,
    seed: int,
    fractions: tuple[float, float, float],
    progress: ProgressFn | None,
    replace: bool,
) -> IngestReport:
    _check_free_disk(source)
    staging = staging_root() / f"{name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        store = Store(staging, existing=[], channels=None)
        rejected, ignored = _examine(source, store, progress)
        _refuse_if_empty(store, rejected, ignored)
        records = store.finish(fractions, seed)
        meta = {
            "name": name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source.description,
            "channels": store.channels,
            "classes": [],
            "split": dict(zip(SPLITS, fractions, strict=True)),
            "seed": seed,
            "augment": {},
            "orientation_matters": source.orientation_matters,
            "rejected": rejected[:MAX_REJECTED_KEPT],
            "ignored": ignored,
        }
        report = save_state(staging, meta, records)
        store.cleanup()
        with dataset_lock(name):
            final = workspace.dataset_dir(name)
            if (final / "dataset.json").exists() and not replace:
                raise CnnlabError(
                    f"A dataset named {name!r} was created meanwhile; choose another name."
                )
            trash = None
            if final.exists():
                trash = staging_root() / f"old-{name}-{uuid.uuid4().hex[:12]}"
                os.replace(final, trash)
            os.replace(staging, final)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return IngestReport(name, store.accepted, _class_totals(records), rejected, ignored, report)


def _add(name: str, source: Source, *, progress: ProgressFn | None) -> IngestReport:
    _check_free_disk(source)
    with dataset_lock(name):
        dataset = Dataset(name)
        store = Store(dataset.path, existing=dataset.records, channels=dataset.channels)
        try:
            rejected, ignored = _examine(source, store, progress)
            _refuse_if_empty(store, rejected, ignored)
            split = dataset.meta.get("split") or dict(zip(SPLITS, DEFAULT_SPLIT, strict=True))
            fractions = check_fractions([split.get(s, 0.0) for s in SPLITS])
            records = store.finish(fractions, int(dataset.meta.get("seed", 0)))
            meta = dict(dataset.meta)
            meta["channels"] = store.channels
            meta["rejected"] = (list(meta.get("rejected", [])) + rejected)[:MAX_REJECTED_KEPT]
            meta["ignored"] = int(meta.get("ignored", 0)) + ignored
            report = save_state(dataset.path, meta, records, dataset.records)
        except BaseException:
            store.discard()
            raise
        store.cleanup()
    return IngestReport(name, store.accepted, _class_totals(records), rejected, ignored, report)


def _check_free_disk(source: Source) -> None:
    """Refuse before writing anything when the images would eat the disk's reserve.

    The upload's size (0 when unknown, e.g. samples) estimates what its images take
    once stored; a zip counts compressed, so it is a floor, not a bound.
    """
    limits.check_free_disk(workspace.datasets_root(), "store these images", source.size)


def _examine(source: Source, store: Store, progress: ProgressFn | None) -> tuple[list[dict], int]:
    """Decode and store every entry; return (rejections, ignored count)."""
    rejected: list[dict] = []
    ignored = 0
    done = 0
    for entry in source.entries:
        done += 1
        if entry.ignored:
            ignored += 1
        elif entry.reason is not None:
            rejected.append({"file": entry.source, "reason": entry.reason})
        else:
            try:
                if entry.image is not None:
                    decoded = decoding.from_image(entry.image)
                else:
                    decoded = decoding.decode(
                        entry.read(),
                        max_pixels=decoding.MAX_PIXELS,
                        min_side=decoding.MIN_SIDE,
                    )
                store.put(decoded, entry.label, entry.source, entry.split)
            except Rejected as problem:
                rejected.append({"file": entry.source, "reason": problem.reason})
        if progress is not None:
            progress(done, max(source.total, done))
    return rejected, ignored


def _refuse_if_empty(store: Store, rejected: list[dict], ignored: int) -> None:
    if store.accepted:
        return
    if rejected:
        shown = "; ".join(f"{item['file']}: {item['reason']}" for item in rejected[:3])
        more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
        raise CnnlabError(f"no usable images: {shown}{more}.")
    junk = f" ({ignored} system file(s) ignored)" if ignored else ""
    raise CnnlabError(
        f"no usable images: the upload holds no image files{junk}. Put each class's "
        "images in a folder named after the class."
    )


def _class_totals(records: list[Record]) -> dict[str, int]:
    return dict(sorted(Counter(record.label for record in records).items()))
