"""A zip's entries are counted from its end records before ZipFile reads its directory."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from cnnlab.data import sources
from cnnlab.data.dataset import list_datasets
from cnnlab.data.ingest import add_source, ingest
from cnnlab.errors import CnnlabError
from tests.conftest import write_image_folders


def craft_zip(count: int, stated: int | None = None) -> bytes:
    """A zip of ``count`` empty entries named "a", saying it has ``stated`` (ZIP64 above
    65,535, as zip writers do); built from bytes, as writing it entry by entry is slow."""
    stated = count if stated is None else stated
    name = b"a"
    local = struct.pack("<4s2B4HL2L2H", b"PK\3\4", 20, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0) + name
    central = (
        struct.pack(
            "<4s4B4HL2L5H2L", b"PK\1\2", 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0
        )
        + name
    )
    directory = central * count
    end64 = b""
    if stated > 0xFFFF:
        end64 = struct.pack(
            "<4sQ2H2L4Q", b"PK\6\6", 44, 45, 45, 0, 0, stated, stated, len(directory), len(local)
        ) + struct.pack("<4sLQL", b"PK\6\7", 0, len(local) + len(directory), 1)
    short = min(stated, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\5\6", 0, 0, short, short, len(directory), len(local), 0)
    return local + directory + end64 + end


@pytest.fixture
def no_zipfile(monkeypatch):
    """Fail the test if ZipFile is constructed (it would parse the whole directory)."""

    def refuse(*args, **kwargs):
        raise AssertionError("ZipFile was constructed before the entry count was checked")

    monkeypatch.setattr(sources.zipfile, "ZipFile", refuse)


@pytest.mark.parametrize("count", [3, 1000, 70_000])
def test_crafted_zips_are_real_zips_and_counted_alike(count):
    """The stand-in zips (ZIP64 end records at 70,000) read as ZipFile reads them."""
    data = craft_zip(count)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == count
    assert sources._entry_count(io.BytesIO(data), 10**7) == count


def test_entry_count_of_a_zip_with_a_comment(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(10):
            archive.writestr(f"cat/{i}.png", b"x")
        archive.comment = b"made by hand " * 500
    assert sources._entry_count(io.BytesIO(buffer.getvalue()), 100) == 10
    assert sources._entry_count(io.BytesIO(b"not a zip at all"), 100) is None


def test_a_million_entries_are_refused_before_the_directory_is_read(
    workspace, tmp_path, no_zipfile
):
    path = tmp_path / "million.zip"
    path.write_bytes(craft_zip(1_000_000))  # 47 MB of central directory
    started = time.perf_counter()
    with pytest.raises(
        CnnlabError,
        match=r"million.zip has 1,000,000 entries; the limit is 200,000 "
        r"\(CNNLAB_LIMIT_ZIP_MAX_ENTRIES\)\. Split it into several zips\.",
    ):
        ingest(path, "million")
    # Only the end records were read; ZipFile would have built a million ZipInfo objects.
    assert time.perf_counter() - started < 5
    assert list_datasets() == []


def test_uploaded_zip_is_counted_too(workspace, monkeypatch, no_zipfile):
    monkeypatch.setenv("CNNLAB_LIMIT_ZIP_MAX_ENTRIES", "1000")
    upload = io.BytesIO(craft_zip(300_000))
    upload.name = "upload.zip"
    with pytest.raises(CnnlabError, match=r"upload.zip has 300,000 entries; the limit is 1,000"):
        ingest(upload, "up")


def test_an_understated_count_is_caught_by_counting_headers(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_LIMIT_ZIP_MAX_ENTRIES", "100")
    path = tmp_path / "liar.zip"
    path.write_bytes(craft_zip(5000, stated=3))
    with pytest.raises(CnnlabError, match=r"liar.zip has 5,000 entries; the limit is 100"):
        ingest(path, "liar")


def test_adding_a_zip_is_counted_too(workspace, tmp_path, monkeypatch):
    ingest(write_image_folders(tmp_path / "up", {"cat": 2, "dog": 2}), "pets")
    monkeypatch.setenv("CNNLAB_LIMIT_ZIP_MAX_ENTRIES", "10")
    path = tmp_path / "more.zip"
    path.write_bytes(craft_zip(11))
    with pytest.raises(CnnlabError, match=r"more.zip has 11 entries; the limit is 10"):
        add_source("pets", path)
