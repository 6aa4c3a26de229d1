"""Writing a dataset to disk: its lock, its index and metadata, and the store of new images.

- :func:`dataset_lock` lets one writer at a time change a dataset, across processes.
- :func:`save_state` writes the index, ``dataset.json`` and ``health.json``.
- :func:`rewrite` changes a stored dataset's records under its lock.
- :class:`Store` writes accepted images and builds their records; a new dataset is built
  under :func:`staging_root` and renamed into ``datasets/`` when complete.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from cnnlab import workspace
from cnnlab.data import decode as decoding
from cnnlab.data import versions
from cnnlab.data.classes import ClassKeys
from cnnlab.data.dataset import SPLITS, Dataset, Record, write_index
from cnnlab.data.decode import Decoded
from cnnlab.data.splits import DEFAULT_SPLIT, assign_splits

# -- changing a stored dataset ----------------------------------------------------------


@contextlib.contextmanager
def dataset_lock(name: str) -> Iterator[None]:
    """Hold the workspace-wide lock for dataset ``name`` (one writer at a time)."""
    safe = workspace.safe_name(name, "dataset name")
    folder = workspace.datasets_root() / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / f"{safe}.lock"):
        yield


def save_state(
    path: Path, meta: dict[str, Any], records: list[Record], previous: list[Record] = ()
) -> dict[str, Any]:
    """Write index, metadata and health of the dataset at ``path``, keeping the index
    as a new version (``previous`` is the index it replaces); return the health."""
    from cnnlab.data.health import health_report  # health's fixes import this module

    meta = dict(meta)
    meta["version"] = versions.record(path, list(previous), records)
    meta["classes"] = sorted({record.label for record in records})
    # Which folder under images/ holds which class (the name as the user wrote it).
    meta["class_folders"] = ClassKeys.from_records(records).folders()
    split = tuple(meta.get("split", {}).get(name, 0.0) for name in SPLITS)
    report = health_report(records, split=split if sum(split) else DEFAULT_SPLIT, folder=path)
    write_index(path / "index.csv", records)
    workspace.atomic_write_json(path / "dataset.json", meta)
    workspace.atomic_write_json(path / "health.json", report)
    return report


def rewrite(
    name: str, change: Callable[[list[Record]], tuple[list[Record], int]]
) -> tuple[int, dict[str, Any]]:
    """Apply ``change`` to a stored dataset's records under its lock.

    ``change`` returns the new records and how many images it changed. The result is a
    new version (:mod:`cnnlab.data.versions`): files the new index no longer names stay,
    for the earlier versions (and the runs trained on them).
    """
    with dataset_lock(name):
        dataset = Dataset(name)
        new_records, changed = change(list(dataset.records))
        report = save_state(dataset.path, dataset.meta, new_records, dataset.records)
    return changed, report


# -- writing new images -----------------------------------------------------------------


def staging_root() -> Path:
    """Where new datasets are built before they appear (renamed) in ``datasets/``."""
    root = workspace.home() / ".staging"
    root.mkdir(parents=True, exist_ok=True)
    # Builds cut short by a crash are left behind; clear those older than a day.
    stale = time.time() - 86400
    for leftover in root.iterdir():
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < stale:
                shutil.rmtree(leftover, ignore_errors=True)
    return root


class Store:
    """Writes accepted images under ``root/images/<key>/`` and builds their records.

    ``key`` is the class's folder (:class:`cnnlab.data.classes.ClassKeys`): an existing
    class keeps its folder, a new one gets a folder no other class of the dataset has.

    A dataset is grayscale (1 channel) while every image in it is grayscale; the first
    colour image makes it RGB, and its gray images are then rewritten as RGB (their
    hashes do not change, see :func:`decode.pixel_sha`), so every file of a dataset has
    the dataset's mode.
    """

    def __init__(self, root: Path, existing: list[Record], channels: int | None):
        self.root = root
        self.existing = list(existing)
        self.channels = channels if existing else None
        self.pending: list[dict[str, Any]] = []
        self.written: list[Path] = []
        self.obsolete: list[Path] = []
        self.used = {record.file for record in existing}
        self.keys = ClassKeys.from_records(existing)

    @property
    def accepted(self) -> int:
        return len(self.pending)

    def put(self, decoded: Decoded, label: str, source: str, split: str | None) -> None:
        mode = "RGB" if self.channels == 3 and decoded.grayscale else None
        data, ext = decoded.encoded(mode)
        file = self._write(self.keys.key(label), decoded.sha, ext, data)
        self.pending.append(
            {
                "file": file,
                "label": label,
                "split": split,
                "sha": decoded.sha,
                "width": decoded.width,
                "height": decoded.height,
                "source": source,
                "gray": decoded.grayscale and mode is None,
            }
        )

    def _write(self, key: str, sha: str, ext: str, data: bytes) -> str:
        folder = f"images/{key}"
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        stem = sha[:16]
        file = f"{folder}/{stem}.{ext}"
        counter = 1
        while file in self.used or (self.root / file).exists():
            file = f"{folder}/{stem}-{counter}.{ext}"
            counter += 1
        path = self.root / file
        with open(path, "xb") as handle:
            handle.write(data)
        self.used.add(file)
        self.written.append(path)
        return file

    def finish(self, fractions: tuple[float, float, float], seed: int) -> list[Record]:
        """Settle the dataset's mode and the new images' splits; return all records."""
        colour = self.channels == 3 or any(not item["gray"] for item in self.pending)
        existing = self.existing
        if colour:
            if self.channels == 1:
                existing = [self._to_rgb(record) for record in existing]
            for item in self.pending:
                if item["gray"]:
                    item["file"] = self._to_rgb_file(item["file"])
                    item["gray"] = False
        self.channels = 3 if colour else 1

        unsplit = [i for i, item in enumerate(self.pending) if item["split"] is None]
        chosen = assign_splits(
            [(self.pending[i]["label"], self.pending[i]["sha"]) for i in unsplit],
            [(r.label, r.sha, r.split) for r in existing]
            + [(p["label"], p["sha"], p["split"]) for p in self.pending if p["split"]],
            split=fractions,
            seed=seed,
        )
        for i, where in zip(unsplit, chosen, strict=True):
            self.pending[i]["split"] = where
        new = [
            Record(**{key: value for key, value in item.items() if key != "gray"})
            for item in self.pending
        ]
        return existing + new

    def _to_rgb(self, record: Record) -> Record:
        file = self._to_rgb_file(record.file)
        return record if file == record.file else Record(**{**record.__dict__, "file": file})

    def _to_rgb_file(self, file: str) -> str:
        """Rewrite a gray image as an RGB PNG; return its (possibly new) file name."""
        from PIL import Image

        old = self.root / file
        with Image.open(old) as image:
            data = decoding.encode_png(image.convert("RGB"))
        if file.endswith(".png"):
            workspace.atomic_write_bytes(old, data)  # same pixels, R=G=B: safe in place
            return file
        label_folder, stem = file.rsplit("/", 1)
        new = self._write(label_folder.split("/", 1)[1], stem.rsplit(".", 1)[0], "png", data)
        self.obsolete.append(old)
        return new

    def discard(self) -> None:
        """Undo: delete every file this store wrote (the index never named them)."""
        for path in self.written:
            path.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """After the index is written: delete files it no longer names."""
        for path in self.obsolete:
            path.unlink(missing_ok=True)
