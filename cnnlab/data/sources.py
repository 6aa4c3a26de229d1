"""Where an upload's files come from: a zip, a folder, uploaded files or a built-in sample.

Each source yields one :class:`Entry` per file, placed in a class and split by
:mod:`cnnlab.data.layout`, with a way to read its bytes. Zips are never extracted to
disk: members are read one at a time, in chunks, under limits on member count, total
size and compression ratio, so a hostile archive can neither write outside the
workspace nor exhaust memory.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cnnlab.data import decode as decoding
from cnnlab.data import samples
from cnnlab.data.decode import Rejected
from cnnlab.data.layout import class_from_folder, clean_parts, in_split_folder, place_all
from cnnlab.data.splits import split_from_folder
from cnnlab.errors import CnnlabError

# Archive limits, checked while streaming (module constants so tests can lower them).
MAX_MEMBERS = 200_000  # entries in one zip
MAX_TOTAL_BYTES = 8 * 1024**3  # bytes a zip may expand to, all members together
MAX_RATIO = 200  # uncompressed / compressed size of one member ...
RATIO_FLOOR = 1024 * 1024  # ... checked once a member has expanded past 1 MiB
CHUNK = 1024 * 1024


@dataclass
class Entry:
    """One file of a source: where it goes, and how to get its content."""

    source: str  # the name the file had in the upload
    label: str | None = None  # class (None: rejected or ignored)
    split: str | None = None  # split given by the upload's folders, if any
    read: Callable[[], bytes] | None = None  # the file's bytes
    image: Any = None  # a ready PIL image (samples)
    reason: str | None = None  # set: rejected before reading
    ignored: bool = False  # OS junk


@dataclass
class Source:
    """An opened upload: its entries, one per file, and what the dataset records of it."""

    entries: Iterator[Entry]
    total: int  # entries expected, for progress (0 when unknown)
    description: str  # stored as dataset.json "source"
    orientation_matters: bool = False  # stored in a new dataset.json; photos by default


def open_source(source: Any, options: dict | None, seed: int) -> Source:
    if samples.is_sample(source):
        opts = dict(options or {})
        if source.strip().lower() == "sample:shapes":
            opts.setdefault("seed", seed)
        spec = samples.sample_spec(source, opts)
        entries = (
            Entry(source=file, label=label, image=image)
            for label, file, image in samples.sample_images(spec)
        )
        return Source(
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


def _zip_source(source: Path | BinaryIO, shown: str) -> Source:
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
    placed = place_all([info.filename for info in files])
    budget = _Budget(shown)

    def entries() -> Iterator[Entry]:
        with archive:
            for info, (parts, label, split, reason, ignored) in zip(files, placed, strict=True):
                shown_name = "/".join(parts) or info.filename
                entry = Entry(shown_name, label, split, reason=reason, ignored=ignored)
                if entry.reason is None and not ignored:
                    entry.read = lambda info=info: _read_member(archive, info, budget)
                yield entry

    return Source(entries(), len(files), f"zip {shown}")


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


def _folder_source(root: Path) -> Source:
    paths = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for file_name in sorted(names):
            paths.append(os.path.relpath(os.path.join(folder, file_name), root))
    relative = [path.replace(os.sep, "/") for path in paths]
    placed = place_all(relative)

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

    def entries() -> Iterator[Entry]:
        for name, (parts, label, split, reason, ignored) in zip(relative, placed, strict=True):
            entry = Entry("/".join(parts) or name, label, split, reason=reason, ignored=ignored)
            if reason is None and not ignored:
                entry.read = lambda path=root / name: read(path)
            yield entry

    return Source(entries(), len(relative), f"folder {root.name}")


def file_entries(files: Iterable[tuple[str, bytes]], label: str | None) -> Iterator[Entry]:
    for file_name, data in files:
        parts, problem = clean_parts(str(file_name))
        shown = "/".join(parts) or str(file_name)
        if problem == "ignored":
            yield Entry(shown, ignored=True)
            continue
        if label is not None:
            # Loose files: only the base name matters, so no path check is needed.
            yield Entry(parts[-1] if parts else shown, label, read=lambda d=data: d)
            continue
        if problem:
            yield Entry(shown, reason=problem)
            continue
        if len(parts) < 2:
            yield Entry(
                shown,
                reason="no folder to take the class from; upload a folder of class folders "
                "or choose a class for loose files",
            )
            continue
        if split_from_folder(parts[-2]):
            yield Entry(shown, reason=in_split_folder(parts[-2]))
            continue
        class_name, error = class_from_folder(parts[-2])
        split = split_from_folder(parts[-3]) if len(parts) >= 3 else None
        yield Entry(shown, class_name, split, read=lambda d=data: d, reason=error)
