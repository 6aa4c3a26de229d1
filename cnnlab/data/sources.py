"""Where an upload's files come from: a zip, a folder, uploaded files or a built-in sample.

Each source yields one :class:`Entry` per file, placed in a class and split by
:mod:`cnnlab.data.layout`, with a way to read its bytes. Zips are never extracted to
disk: members are read one at a time, in chunks, under limits on member count, total
size and compression ratio, so a hostile archive can neither write outside the
workspace nor exhaust memory. The member count is read from the zip's end records
before :class:`zipfile.ZipFile` parses its whole directory, and the count and total
size are the workspace's :mod:`cnnlab.limits` (``zip_max_entries``, ``zip_max_gb``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cnnlab import limits
from cnnlab.data import decode as decoding
from cnnlab.data import samples
from cnnlab.data.decode import Rejected
from cnnlab.data.layout import class_from_folder, clean_parts, in_split_folder, place_all
from cnnlab.data.splits import split_from_folder
from cnnlab.errors import CnnlabError

# Per-member checks while streaming (the count and total size are cnnlab.limits).
MAX_RATIO = 200  # uncompressed / compressed size of one member ...
RATIO_FLOOR = 1024 * 1024  # ... checked once a member has expanded past 1 MiB
CHUNK = 1024 * 1024
GB = 1024**3

# The zip format's end records (APPNOTE 4.3.14-4.3.16), as zipfile reads them.
END = struct.Struct("<4s4H2LH")  # disks, entries here / in all, directory size, offset
END64 = struct.Struct("<4sQ2H2L4Q")  # size, versions, disks, entries, size, offset
END64_LOCATOR = struct.Struct("<4sLQL")  # disk, offset of the ZIP64 record, disks
END_SIGNATURE, END64_SIGNATURE, END64_LOCATOR_SIGNATURE = b"PK\5\6", b"PK\6\6", b"PK\6\7"
CENTRAL_HEADER = b"PK\1\2"  # starts each entry of the central directory
MAX_COMMENT = 1 << 16


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
    size: int = 0  # bytes of the upload when known, to check free disk before storing


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
    limit = limits.current()
    try:
        if isinstance(source, Path):
            size = source.stat().st_size
            with source.open("rb") as handle:
                count = _entry_count(handle, limit.zip_max_entries)
        else:
            size = source.seek(0, os.SEEK_END)
            count = _entry_count(source, limit.zip_max_entries)
        if count is not None and count > limit.zip_max_entries:
            # Refused before ZipFile builds an object per entry of the whole directory.
            raise CnnlabError(
                f"{shown} has {count:,} entries; the limit is {limit.zip_max_entries:,} "
                f"({limits.env_name('zip_max_entries')}). Split it into several zips."
            )
        archive = zipfile.ZipFile(source)
        infos = archive.infolist()
    except CnnlabError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise CnnlabError(
            f"{shown} is not a readable zip archive ({decoding.short_reason(error)}). "
            "Upload a .zip with one folder per class, or add single images as files."
        ) from None
    budget = _Budget(shown, limit.zip_max_gb)
    declared = sum(info.file_size for info in infos)
    if declared > budget.allowed:
        archive.close()
        raise CnnlabError(budget.message(declared))
    files = sorted((info for info in infos if not info.is_dir()), key=lambda i: i.filename)
    placed = place_all([member_name(info) for info in files])

    def entries() -> Iterator[Entry]:
        with archive:
            for info, (parts, label, split, reason, ignored) in zip(files, placed, strict=True):
                shown_name = "/".join(parts) or member_name(info)
                entry = Entry(shown_name, label, split, reason=reason, ignored=ignored)
                if entry.reason is None and not ignored:
                    entry.read = lambda info=info: _read_member(archive, info, budget)
                yield entry

    return Source(entries(), len(files), f"zip {shown}", size=size)


def member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its author wrote it.

    A zip marks UTF-8 names with a flag; without it :mod:`zipfile` reads them as CP437.
    Many zippers (macOS's Finder among them) write UTF-8 without the flag, so a folder
    ``猫`` would come out as mojibake: such a name is read as UTF-8 when it is valid
    UTF-8, which CP437 text other than plain ASCII practically never is.
    """
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _entry_count(handle: BinaryIO, stop_after: int) -> int | None:
    """How many entries a zip has, from its end records and its directory's headers.

    The end records are found as ZipFile finds them (so both read the same ones). They
    state the count, which a hostile zip may understate, so the headers in the
    directory span ZipFile will parse are counted too, in chunks (memory stays flat),
    stopping once past ``stop_after``. Returns the larger, or None when there is no end
    record (ZipFile then says what is wrong).
    """
    file_size = handle.seek(0, os.SEEK_END)
    tail_size = min(file_size, END.size + MAX_COMMENT)
    handle.seek(file_size - tail_size)
    tail = handle.read(tail_size)
    if tail[-END.size :].startswith(END_SIGNATURE) and tail.endswith(b"\0\0"):
        at = len(tail) - END.size  # no archive comment
    else:
        at = tail.rfind(END_SIGNATURE)
    if at < 0 or at + END.size > len(tail):
        return None
    end = END.unpack_from(tail, at)
    count, directory_size = end[4], end[5]
    directory_end = file_size - tail_size + at
    if directory_end >= END64_LOCATOR.size + END64.size:
        handle.seek(directory_end - END64_LOCATOR.size - END64.size)
        records = handle.read(END64.size + END64_LOCATOR.size)
        if records.startswith(END64_SIGNATURE) and records[END64.size :].startswith(
            END64_LOCATOR_SIGNATURE
        ):
            end64 = END64.unpack_from(records)
            count, directory_size = end64[7], end64[8]
            directory_end -= END64_LOCATOR.size + END64.size
    if count > stop_after:
        return count
    start = directory_end - directory_size
    return max(count, _count_headers(handle, start, directory_size, stop_after))


def _count_headers(handle: BinaryIO, start: int, size: int, stop_after: int) -> int:
    """Central-directory signatures in ``size`` bytes from ``start`` (an upper bound)."""
    handle.seek(max(start, 0))
    found, left, carry = 0, size, b""
    while left > 0 and found <= stop_after:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        data = carry + chunk
        found += data.count(CENTRAL_HEADER)
        carry = data[-(len(CENTRAL_HEADER) - 1) :]  # a signature split across chunks
    return found


class _Budget:
    """Counts bytes actually decompressed from one archive against ``zip_max_gb``."""

    def __init__(self, shown: str, max_gb: float):
        self.shown = shown
        self.max_gb = max_gb
        self.allowed = int(max_gb * GB)
        self.spent = 0

    def spend(self, count: int) -> None:
        self.spent += count
        if self.spent > self.allowed:
            raise CnnlabError(self.message(self.spent))

    def message(self, size: int) -> str:
        return (
            f"{self.shown} expands to more than the limit of {self.max_gb:g} GB "
            f"({limits.env_name('zip_max_gb')}): {size / GB:.1f} GB or more. It was refused "
            "as a possible zip bomb; split it into smaller zips."
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
    size = 0
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for file_name in sorted(names):
            path = os.path.join(folder, file_name)
            paths.append(os.path.relpath(path, root))
            with contextlib.suppress(OSError):
                size += os.stat(path).st_size
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

    return Source(entries(), len(relative), f"folder {root.name}", size=size)


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
