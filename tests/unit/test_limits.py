"""The workspace's limits: declared once, set by the owner's variables, shown to users."""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from collections import namedtuple

import pytest

from cnnlab import limits
from cnnlab.data.dataset import list_datasets
from cnnlab.data.ingest import add_files, add_source, ingest
from cnnlab.errors import CnnlabError
from tests.conftest import write_image_folders

Usage = namedtuple("Usage", "total used free")
MB = limits.MB


def test_defaults_without_variables(monkeypatch):
    for field in dataclasses.fields(limits.Limits):
        monkeypatch.delenv(limits.env_name(field.name), raising=False)
    assert limits.current() == limits.Limits()
    assert limits.current().zip_max_entries == 200_000


def test_a_variable_overrides_its_limit_on_the_next_call(monkeypatch):
    monkeypatch.setenv("CNNLAB_LIMIT_MAX_ACTIVE_RUNS", " 8 ")
    monkeypatch.setenv("CNNLAB_LIMIT_ZIP_MAX_GB", "0.5")
    current = limits.current()
    assert current.max_active_runs == 8 and isinstance(current.max_active_runs, int)
    assert current.zip_max_gb == 0.5
    assert current.arch_json_max_depth == limits.Limits().arch_json_max_depth
    monkeypatch.setenv("CNNLAB_LIMIT_MAX_ACTIVE_RUNS", "9")
    assert limits.current().max_active_runs == 9  # read on every call, no restart
    monkeypatch.setenv("CNNLAB_LIMIT_MAX_ACTIVE_RUNS", "")
    assert limits.current().max_active_runs == 20  # empty means unset


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        (
            "CNNLAB_LIMIT_MAX_ACTIVE_RUNS",
            "lots",
            r"`CNNLAB_LIMIT_MAX_ACTIVE_RUNS` must be a whole number \(queued plus running runs "
            r"in the workspace\)\. Received: CNNLAB_LIMIT_MAX_ACTIVE_RUNS='lots'",
        ),
        (
            "CNNLAB_LIMIT_MAX_ACTIVE_RUNS",
            "2.5",
            r"`CNNLAB_LIMIT_MAX_ACTIVE_RUNS` must be a whole number .*Received: .*='2.5'",
        ),
        (
            "CNNLAB_LIMIT_ZIP_MAX_GB",
            "big",
            r"`CNNLAB_LIMIT_ZIP_MAX_GB` must be a number \(bytes a zip may expand to",
        ),
        (
            "CNNLAB_LIMIT_ARCH_JSON_MAX_DEPTH",
            "1",
            r"`CNNLAB_LIMIT_ARCH_JSON_MAX_DEPTH` must be in \[2, 1000\]\. "
            r"Received: CNNLAB_LIMIT_ARCH_JSON_MAX_DEPTH=1",
        ),
        (
            "CNNLAB_LIMIT_ZIP_MAX_GB",
            "nan",
            r"`CNNLAB_LIMIT_ZIP_MAX_GB` must be a finite number",
        ),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, variable, text, message):
    monkeypatch.setenv(variable, text)
    with pytest.raises(CnnlabError, match=message):
        limits.current()


def test_describe_has_one_row_per_limit(monkeypatch):
    monkeypatch.setenv("CNNLAB_LIMIT_PREDICT_MAX_FILES", "7")
    rows = limits.describe()
    assert [row["variable"] for row in rows] == [
        "CNNLAB_LIMIT_" + field.name.upper() for field in dataclasses.fields(limits.Limits)
    ]
    by_variable = {row["variable"]: row for row in rows}
    assert by_variable["CNNLAB_LIMIT_PREDICT_MAX_FILES"] == {
        "limit": "images in one Predict upload",
        "value": 7,
        "variable": "CNNLAB_LIMIT_PREDICT_MAX_FILES",
    }
    assert all(set(row) == {"limit", "value", "variable"} and row["limit"] for row in rows)
    given = limits.describe(limits.Limits(zip_max_entries=5))
    assert {row["variable"]: row["value"] for row in given}["CNNLAB_LIMIT_ZIP_MAX_ENTRIES"] == 5


def test_check_free_disk(monkeypatch, tmp_path):
    monkeypatch.setattr(limits.shutil, "disk_usage", lambda path: Usage(0, 0, 600 * MB))
    limits.check_free_disk(tmp_path / "not" / "yet", "store these images", 50 * MB)
    with pytest.raises(
        CnnlabError,
        match=r"Not enough free disk to store these images: 600 MB free, 200 MB needed, and "
        r"500 MB is kept free \(CNNLAB_LIMIT_MIN_FREE_DISK_MB\)\. Delete old runs or datasets",
    ):
        limits.check_free_disk(tmp_path, "store these images", 200 * MB)
    monkeypatch.setenv("CNNLAB_LIMIT_MIN_FREE_DISK_MB", "0")
    limits.check_free_disk(tmp_path, "store these images", 200 * MB)


# -- free disk, checked before anything is stored -----------------------------------------


@pytest.fixture
def disk(monkeypatch):
    """The free space the limits module sees, and the sizes it was asked to fit."""
    state = {"free": 10_000 * MB}
    monkeypatch.setattr(limits.shutil, "disk_usage", lambda path: Usage(0, 0, state["free"]))
    return state


def _refused(what):
    return pytest.raises(CnnlabError, match=rf"Not enough free disk to store these images: {what}")


def test_ingest_checks_free_disk_first(workspace, tmp_path, disk):
    upload = write_image_folders(tmp_path / "up", {"cat": 2, "dog": 2})
    disk["free"] = 400 * MB
    with _refused("400 MB free, and 500 MB is kept free"):
        ingest("sample:digits", "digits")
    assert list_datasets() == []
    assert not any((workspace / "datasets").glob("*/dataset.json"))
    disk["free"] = 10_000 * MB
    report = ingest(upload, "pets")
    assert report.images == 4


def test_the_upload_size_counts_as_needed(workspace, tmp_path, disk):
    path = tmp_path / "noise.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("cat/noise.bin", os.urandom(3 * MB))
    disk["free"] = 502 * MB
    with _refused(r"502 MB free, 3 MB needed, and 500 MB is kept free"):
        ingest(path, "noise")
    upload = io.BytesIO(path.read_bytes())
    with _refused(r"502 MB free, 3 MB needed"):
        ingest(upload, "noise")
    with _refused(r"502 MB free, 3 MB needed"):
        add_files("loose", [("a.png", b"\0" * (3 * MB))], "cat")
    assert list_datasets() == []


def test_adding_checks_free_disk(workspace, tmp_path, disk):
    ingest(write_image_folders(tmp_path / "up", {"cat": 2, "dog": 2}), "pets")
    more = write_image_folders(tmp_path / "more", {"fox": 2})
    before = sorted(p.name for p in (workspace / "datasets" / "pets").rglob("*.png"))
    disk["free"] = 100 * MB
    with _refused("100 MB free"):
        add_source("pets", more)
    with _refused("100 MB free"):
        add_files("pets", [("x.png", b"x")], "cat")
    after = sorted(p.name for p in (workspace / "datasets" / "pets").rglob("*.png"))
    assert after == before  # nothing that was stored is touched


def test_a_predict_upload_is_bounded_in_files_and_pixels(monkeypatch):
    import io

    from PIL import Image

    def png(side: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (side, side)).save(buffer, "PNG")
        return buffer.getvalue()

    files = [("a.png", png(1000)), ("b.png", png(1000)), ("junk.png", b"not an image")]
    assert limits.check_predict_upload(files) == 2_000_000  # the junk counts 0
    monkeypatch.setenv("CNNLAB_LIMIT_PREDICT_MAX_FILES", "2")
    with pytest.raises(CnnlabError, match=r"3 images at once is more than the limit of 2 "):
        limits.check_predict_upload(files)
    monkeypatch.setenv("CNNLAB_LIMIT_PREDICT_MAX_FILES", "10")
    monkeypatch.setenv("CNNLAB_LIMIT_PREDICT_MAX_MEGAPIXELS", "1.5")
    with pytest.raises(CnnlabError, match=r"2 megapixels together, more than the limit of 1.5 "):
        limits.check_predict_upload(files)
