"""Turn uploads into datasets: zips, folders, loose files, directory uploads, samples.

Every file is examined on its own; a bad one is rejected with a reason and never costs
the good ones. Zips are never extracted to disk: members are read one at a time, in
chunks, under limits on member count, total size and compression ratio, so a hostile
archive can neither write outside the workspace nor exhaust memory.

The public functions (the Data page and the CLI call exactly these):

- :func:`ingest` creates a dataset from a zip, folder, uploaded zip or sample.
- :func:`add_source` / :func:`add_files` add images or classes to a dataset.
- :func:`delete_images`, :func:`delete_class`, :func:`delete_dataset` edit it.
- :func:`remove_duplicates`, :func:`fix_label_conflicts`, :func:`fix_leaks` are the
  health report's one-click fixes (from :mod:`cnnlab.data.health`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cnnlab import workspace
from cnnlab.data import decode as decoding
from cnnlab.data import samples
from cnnlab.data.dataset import SPLITS, Dataset, Record, list_datasets
from cnnlab.data.decode import Decoded, Rejected
from cnnlab.data.health import (
    dataset_lock,
    fix_label_conflicts,
    fix_leaks,
    remove_duplicates,
    rewrite,
    save_state,
)
from cnnlab.data.splits import DEFAULT_SPLIT, assign_splits, check_fractions, split_from_folder
from cnnlab.errors import CnnlabError

__all__ = [
    "IngestReport",
    "ingest",
    "add_source",
    "add_files",
    "delete_images",
    "delete_class",
    "delete_dataset",
    "remove_duplicates",
    "fix_label_conflicts",
    "fix_leaks",
]

# Archive limits, checked while streaming (module constants so tests can lower them).
MAX_MEMBERS = 200_000  # entries in one zip
MAX_TOTAL_BYTES = 8 * 1024**3  # bytes a zip may expand to, all members together
MAX_RATIO = 200  # uncompressed / compressed size of one member ...
RATIO_FLOOR = 1024 * 1024  # ... checked once a member has expanded past 1 MiB
CHUNK = 1024 * 1024
# How many rejections dataset.json keeps (the report of each call has them all).
MAX_REJECTED_KEPT = 1000

JUNK_NAMES = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"}
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


# -- what a source yields ---------------------------------------------------------------


@dataclass
class _Entry:
    """One file of a source: where it goes, and how to get its content."""

    source: str  # the name the file had in the upload
    label: str | None = None  # class (None: rejected or ignored)
    split: str | None = None  # split given by the upload's folders, if any
    read: Callable[[], bytes] | None = None  # the file's bytes
    image: Any = None  # a ready PIL image (samples)
    reason: str | None = None  # set: rejected before reading
    ignored: bool = False  # OS junk


@dataclass
class _Source:
    entries: Iterator[_Entry]
    total: int  # entries expected, for progress (0 when unknown)
    description: str  # stored as dataset.json "source"
    orientation_matters: bool = False  # stored in a new dataset.json; photos by default


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
    opened = _open_source(source, options, seed)
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
    return _add(dataset.name, _open_source(source, None, 0), progress=progress)


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
        label: the class of every file; ``None`` for a directory upload, where each
            file name is a relative path (``"root/cat/1.png"``) and the class is the
            parent folder. A split folder above it (``"train/cat/1.png"``) is kept.
        progress: called with ``(done, total)``.

    Raises:
        CnnlabError: a label with no usable characters, or nothing usable.
    """
    safe = workspace.safe_name(name, "dataset name")
    fixed_label = workspace.safe_name(label, "class name") if label is not None else None
    total = len(files) if hasattr(files, "__len__") else 0  # type: ignore[arg-type]
    description = f"files (class {fixed_label})" if fixed_label else "directory upload"
    opened = _Source(_file_entries(files, fixed_label), total, description)
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


def delete_class(name: str, label: str) -> dict[str, Any]:
    """Remove a class and all its images from a dataset; return the new health.

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

    report = rewrite(name, change)[1]
    folder = Dataset(name).path / "images" / workspace.safe_name(label, "class name")
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return report


def delete_dataset(name: str) -> None:
    """Delete a dataset and its images.

    Raises:
        CnnlabError: when there is no such dataset.
    """
    from cnnlab.data.pipeline import clear_cache

    dataset = Dataset(name)
    with dataset_lock(dataset.name):
        workspace.remove_tree(dataset.path)
    clear_cache(dataset.name)


# -- creating and adding ----------------------------------------------------------------


def _create(
    name: str,
    source: _Source,
    *,
    seed: int,
    fractions: tuple[float, float, float],
    progress: ProgressFn | None,
    replace: bool,
) -> IngestReport:
    staging = _staging_root() / f"{name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        store = _Store(staging, existing=[], channels=None)
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
                trash = _staging_root() / f"old-{name}-{uuid.uuid4().hex[:12]}"
                os.replace(final, trash)
            os.replace(staging, final)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return IngestReport(name, store.accepted, _class_totals(records), rejected, ignored, report)


def _add(name: str, source: _Source, *, progress: ProgressFn | None) -> IngestReport:
    with dataset_lock(name):
        dataset = Dataset(name)
        store = _Store(dataset.path, existing=dataset.records, channels=dataset.channels)
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
            report = save_state(dataset.path, meta, records)
        except BaseException:
            store.discard()
            raise
        store.cleanup()
    return IngestReport(name, store.accepted, _class_totals(records), rejected, ignored, report)


def _examine(source: _Source, store: _Store, progress: ProgressFn | None) -> tuple[list[dict], int]:
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


def _refuse_if_empty(store: _Store, rejected: list[dict], ignored: int) -> None:
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


def _staging_root() -> Path:
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


class _Store:
    """Writes accepted images under ``root/images/<label>/`` and builds their records.

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

    @property
    def accepted(self) -> int:
        return len(self.pending)

    def put(self, decoded: Decoded, label: str, source: str, split: str | None) -> None:
        mode = "RGB" if self.channels == 3 and decoded.grayscale else None
        data, ext = decoded.encoded(mode)
        file = self._write(label, decoded.sha, ext, data)
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

    def _write(self, label: str, sha: str, ext: str, data: bytes) -> str:
        folder = f"images/{label}"
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


# -- sources ----------------------------------------------------------------------------


def _open_source(source: Any, options: dict | None, seed: int) -> _Source:
    if samples.is_sample(source):
        opts = dict(options or {})
        if source.strip().lower() == "sample:shapes":
            opts.setdefault("seed", seed)
        spec = samples.sample_spec(source, opts)
        entries = (
            _Entry(source=file, label=label, image=image)
            for label, file, image in samples.sample_images(spec)
        )
        return _Source(
            entries, samples.sample_size(spec), samples.describe(spec), spec.orientation_matters
        )
    if hasattr(source, "read"):
        shown = os.path.basename(str(getattr(source, "name", "") or "upload.zip"))
        return _zip_source(_seekable(source), shown)
    if not isinstance(source, (str, os.PathLike)):
        raise CnnlabError(
            "`source` must be a zip or folder path, an uploaded zip, 'sample:digits' or "
            f"'sample:shapes'. Received: {type(source).__name__}"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder_source(path)
    if path.is_file():
        return _zip_source(path, path.name)
    raise CnnlabError(
        f"No such file or folder: {str(source)!r}. Pass a .zip, a folder of class "
        "folders, sample:digits or sample:shapes."
    )


def _seekable(handle: BinaryIO) -> BinaryIO:
    seekable = getattr(handle, "seekable", None)
    if seekable is not None and seekable():
        handle.seek(0)
        return handle
    # zipfile needs to seek; spool to disk beyond 64 MB so memory stays flat.
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024**2)
    shutil.copyfileobj(handle, spool, CHUNK)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def _zip_source(source: Path | BinaryIO, shown: str) -> _Source:
    try:
        archive = zipfile.ZipFile(source)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise CnnlabError(
            f"{shown} is not a readable zip archive ({decoding.short_reason(error)}). "
            "Upload a .zip with one folder per class, or add single images as files."
        ) from None
    if len(infos) > MAX_MEMBERS:
        archive.close()
        raise CnnlabError(
            f"{shown} has {len(infos):,} entries; the limit is {MAX_MEMBERS:,}. "
            "Split it into several zips."
        )
    declared = sum(info.file_size for info in infos)
    if declared > MAX_TOTAL_BYTES:
        archive.close()
        raise CnnlabError(_too_big_message(shown, declared))
    files = sorted((info for info in infos if not info.is_dir()), key=lambda i: i.filename)
    placed = _place_all([info.filename for info in files])
    budget = _Budget(shown)

    def entries() -> Iterator[_Entry]:
        with archive:
            for info, (parts, label, split, reason, ignored) in zip(files, placed, strict=True):
                shown_name = "/".join(parts) or info.filename
                entry = _Entry(shown_name, label, split, reason=reason, ignored=ignored)
                if entry.reason is None and not ignored:
                    entry.read = lambda info=info: _read_member(archive, info, budget)
                yield entry

    return _Source(entries(), len(files), f"zip {shown}")


class _Budget:
    """Counts bytes actually decompressed from one archive against MAX_TOTAL_BYTES."""

    def __init__(self, shown: str):
        self.shown = shown
        self.spent = 0

    def spend(self, count: int) -> None:
        self.spent += count
        if self.spent > MAX_TOTAL_BYTES:
            raise CnnlabError(_too_big_message(self.shown, self.spent))


def _too_big_message(shown: str, size: int) -> str:
    return (
        f"{shown} expands to more than {MAX_TOTAL_BYTES / 2**30:g} GB "
        f"({size / 2**30:.1f} GB or more); it was refused as a possible zip bomb. "
        "Split it into smaller zips."
    )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """One member's bytes, read in chunks under the size and ratio limits."""
    if info.flag_bits & 0x1:
        raise Rejected("encrypted (password-protected) entry; re-zip it without a password")
    if info.file_size > decoding.MAX_FILE_BYTES:
        raise Rejected(_file_too_large(info.file_size))
    chunks = []
    size = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                size += len(chunk)
                budget.spend(len(chunk))
                if size > decoding.MAX_FILE_BYTES:
                    raise Rejected(_file_too_large(size))
                if size > RATIO_FLOOR and size > MAX_RATIO * max(info.compress_size, 1):
                    raise Rejected(
                        f"refused as a possible zip bomb: it expands more than {MAX_RATIO}x "
                        "its compressed size"
                    )
                chunks.append(chunk)
    except NotImplementedError:
        raise Rejected(
            "compressed with a method that cannot be read; re-zip with standard compression"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise Rejected(f"damaged inside the zip: {decoding.short_reason(error)}") from None
    return b"".join(chunks)


def _file_too_large(size: int) -> str:
    return (
        f"file too large ({size / 2**20:.0f} MB or more); the limit is "
        f"{decoding.MAX_FILE_BYTES // 2**20} MB per image"
    )


def _folder_source(root: Path) -> _Source:
    paths = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for file_name in sorted(names):
            paths.append(os.path.relpath(os.path.join(folder, file_name), root))
    relative = [path.replace(os.sep, "/") for path in paths]
    placed = _place_all(relative)

    def read(path: Path) -> bytes:
        try:
            info = path.stat()
        except OSError as error:
            raise Rejected(f"cannot be read: {decoding.short_reason(error)}") from None
        if not stat.S_ISREG(info.st_mode):
            raise Rejected("not a regular file")
        if info.st_size > decoding.MAX_FILE_BYTES:
            raise Rejected(_file_too_large(info.st_size))
        try:
            return path.read_bytes()
        except OSError as error:
            raise Rejected(f"cannot be read: {decoding.short_reason(error)}") from None

    def entries() -> Iterator[_Entry]:
        for name, (parts, label, split, reason, ignored) in zip(relative, placed, strict=True):
            entry = _Entry("/".join(parts) or name, label, split, reason=reason, ignored=ignored)
            if reason is None and not ignored:
                entry.read = lambda path=root / name: read(path)
            yield entry

    return _Source(entries(), len(relative), f"folder {root.name}")


def _file_entries(files: Iterable[tuple[str, bytes]], label: str | None) -> Iterator[_Entry]:
    for file_name, data in files:
        parts, problem = _clean_parts(str(file_name))
        shown = "/".join(parts) or str(file_name)
        if problem == "ignored":
            yield _Entry(shown, ignored=True)
            continue
        if label is not None:
            # Loose files: only the base name matters, so no path check is needed.
            yield _Entry(parts[-1] if parts else shown, label, read=lambda d=data: d)
            continue
        if problem:
            yield _Entry(shown, reason=problem)
            continue
        if len(parts) < 2:
            yield _Entry(
                shown,
                reason="no folder to take the class from; upload a folder of class folders "
                "or choose a class for loose files",
            )
            continue
        if split_from_folder(parts[-2]):
            yield _Entry(shown, reason=_in_split_folder(parts[-2]))
            continue
        class_name, error = _class_name(parts[-2])
        split = split_from_folder(parts[-3]) if len(parts) >= 3 else None
        yield _Entry(shown, class_name, split, read=lambda d=data: d, reason=error)


# -- where a file of an upload belongs -------------------------------------------------


def _clean_parts(name: str) -> tuple[list[str], str | None]:
    """Split an archive or upload path; say "ignored" for junk, a reason for unsafe."""
    text = name.replace("\\", "/")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    for part in parts:
        if part.startswith(".") and part != ".." or part.lower() == "__macosx":
            return parts, "ignored"
    if parts and parts[-1].lower() in JUNK_NAMES:
        return parts, "ignored"
    if text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in parts:
        return parts, "unsafe path (absolute or containing '..'); it was skipped"
    return parts, None


def _place_all(
    names: list[str],
) -> list[tuple[list[str], str | None, str | None, str | None, bool]]:
    """Decide each file's class and split from the layout of the whole upload.

    Layouts: ``class/file``, ``root/class/file``, and either of those with ``train/``,
    ``val/``, ``test/`` folders above the class folders. Returns, per name,
    ``(parts, label, split, reason, ignored)``.
    """
    cleaned = [_clean_parts(name) for name in names]
    usable = [parts for parts, problem in cleaned if problem is None]
    strip = 0
    while True:
        in_folders = [p for p in usable if len(p) >= strip + 2]
        tops = {p[strip] for p in in_folders}
        if len(tops) != 1:
            break
        deep = sum(len(p) >= strip + 3 for p in in_folders)
        # A lone top folder is a root (not a class) when most files sit in folders
        # below it; a stray README beside the class folders does not change that.
        if split_from_folder(tops.pop()) or deep * 2 <= len(in_folders):
            break
        strip += 1
    # Split folders hold class folders; a "train" folder holding images is a class.
    split_layout = any(len(p) >= strip + 3 and split_from_folder(p[strip]) for p in usable)

    out = []
    for parts, problem in cleaned:
        shown = parts
        if problem == "ignored":
            out.append((shown, None, None, None, True))
            continue
        if problem:
            out.append((shown, None, None, problem, False))
            continue
        rest = parts[strip:]
        split = None
        if split_layout:
            split = split_from_folder(rest[0]) if len(rest) > 1 else None
            if split is None:
                out.append((shown, None, None, _outside_split_folders(rest), False))
                continue
            rest = rest[1:]
            if len(rest) < 2:
                out.append((shown, None, None, _in_split_folder(parts[strip]), False))
                continue
        if len(rest) < 2:
            out.append((shown, None, None, _not_in_class_folder(), False))
            continue
        label, error = _class_name(rest[0])
        out.append((shown, label, split, error, False))
    return out


def _class_name(folder: str) -> tuple[str | None, str | None]:
    try:
        return workspace.safe_name(folder, "class name"), None
    except CnnlabError:
        return None, f"the folder name {folder!r} cannot be a class name; rename it"


def _not_in_class_folder() -> str:
    return "not inside a class folder; put each image in a folder named after its class"


def _in_split_folder(folder: str) -> str:
    return (
        f"directly inside the split folder {folder!r}; put it in a class folder inside it "
        f"({folder}/<class>/image)"
    )


def _outside_split_folders(rest: list[str]) -> str:
    where = f"folder {rest[0]!r}" if len(rest) > 1 else "top level"
    return (
        f"in the {where}, outside the train/, val/ and test/ folders; in a zip with split "
        "folders every class folder must sit inside one of them"
    )
