"""Ingest from zips, folders, uploads and loose files, including hostile archives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import workspace
from cnnlab.data import sources
from cnnlab.data.dataset import Dataset, list_datasets
from cnnlab.data.ingest import (
    IngestReport,
    add_files,
    add_source,
    delete_class,
    delete_dataset,
    delete_images,
    ingest,
)
from cnnlab.data.layout import place_all
from cnnlab.errors import CnnlabError


def png(seed: int = 0, size: int = 24, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(seed: int = 0, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def classes_zip(path: Path, prefix: str = "", counts=None) -> Path:
    counts = counts or {"cat": 6, "dog": 6}
    members = {}
    seed = 0
    for label, count in counts.items():
        for i in range(count):
            seed += 1
            members[f"{prefix}{label}/{i}.png"] = png(seed)
    return make_zip(path, members)


def reasons(report: IngestReport) -> dict[str, str]:
    return {item["file"]: item["reason"] for item in report.rejected}


# -- layouts ----------------------------------------------------------------------------


def test_folder_of_class_folders(workspace, image_folders):
    report = ingest(image_folders, "pets", seed=3)
    assert report.to_dict().keys() == {
        "dataset",
        "images",
        "classes",
        "rejected",
        "ignored",
        "health",
    }
    assert report.dataset == "pets" and report.images == 24
    assert report.classes == {"cat": 8, "dog": 8, "fox": 8}
    assert report.rejected == [] and report.ignored == 0
    dataset = Dataset("pets")
    assert dataset.channels == 3
    assert dataset.meta["classes"] == ["cat", "dog", "fox"]
    assert dataset.meta["split"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    assert dataset.meta["seed"] == 3 and dataset.meta["augment"] == {}
    assert set(dataset.meta) >= {"name", "created", "source", "rejected", "ignored"}
    for record in dataset.records:
        path = dataset.path / record.file
        assert path.is_file()
        assert record.file == f"images/{record.label}/{record.sha[:16]}.png"
        assert record.source.startswith(f"{record.label}/")
    assert report.health == dataset.health()


def test_zip_with_classes_at_the_top(workspace, tmp_path):
    report = ingest(classes_zip(tmp_path / "a.zip"), "a")
    assert report.classes == {"cat": 6, "dog": 6}
    assert Dataset("a").meta["source"] == "zip a.zip"


def test_zip_with_one_root_folder(workspace, tmp_path):
    report = ingest(classes_zip(tmp_path / "r.zip", prefix="animals/"), "r")
    assert report.classes == {"cat": 6, "dog": 6}


def test_zip_with_split_folders_keeps_the_split(workspace, tmp_path):
    members = {}
    for i, (split, label) in enumerate(
        [(s, c) for s in ("train", "val", "test") for c in ("cat", "dog") for _ in range(2)]
    ):
        members[f"data/{split}/{label}/{i}.png"] = png(i)
    members["data/train/stray.png"] = png(99)  # not in a class folder
    members["data/notes/readme.png"] = png(98)  # outside the split folders
    report = ingest(make_zip(tmp_path / "s.zip", members), "s")
    assert report.classes == {"cat": 6, "dog": 6}
    for record in Dataset("s").records:
        assert record.source.split("/")[1] == record.split
    why = reasons(report)
    assert "split folder 'train'" in why["data/train/stray.png"]
    assert "outside the train/, val/ and test/" in why["data/notes/readme.png"]


def test_validation_folder_name_means_val(workspace, tmp_path):
    members = {
        f"{split}/{c}/{i}.png": png(i + 10 * j)
        for j, split in enumerate(("training", "validation"))
        for c in ("a", "b")
        for i in range(3)
    }
    ingest(make_zip(tmp_path / "v.zip", members), "v")
    assert {r.split for r in Dataset("v").records} == {"train", "val"}


def test_os_junk_is_ignored_and_never_a_class(workspace, tmp_path):
    path = classes_zip(tmp_path / "j.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("__MACOSX/cat/._0.png", b"\x00\x05\x16\x07junk")
        archive.writestr(".DS_Store", b"junk")
        archive.writestr("cat/Thumbs.db", b"junk")
        archive.writestr("dog/desktop.ini", b"junk")
        archive.writestr(".hidden/x.png", png(50))
        archive.writestr("cat/.secret.png", png(51))
    report = ingest(path, "j")
    assert report.ignored == 6
    assert report.rejected == []
    assert set(report.classes) == {"cat", "dog"}


def test_uploaded_zip_file_like(workspace, tmp_path):
    data = classes_zip(tmp_path / "u.zip").read_bytes()
    upload = io.BytesIO(data)
    upload.name = "holiday.zip"
    report = ingest(upload, "up")
    assert report.images == 12
    assert Dataset("up").meta["source"] == "zip holiday.zip"


def test_unseekable_upload_is_spooled(workspace, tmp_path):
    data = classes_zip(tmp_path / "u.zip").read_bytes()

    class Stream(io.RawIOBase):
        def __init__(self):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, buffer):
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert ingest(Stream(), "stream").images == 12


# -- one bad file never costs the good ones ----------------------------------------------


def test_bad_files_are_rejected_and_good_ones_kept(workspace, tmp_path):
    members = {f"cat/{i}.png": png(i) for i in range(4)}
    members.update({f"dog/{i}.jpg": jpeg(i + 10) for i in range(4)})
    good = jpeg(77, size=64)
    members.update(
        {
            "cat/empty.png": b"",
            "cat/notes.png": b"this is text, not a picture",
            "cat/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
            "dog/cut.jpg": good[: len(good) // 2],
            "dog/tiny.png": png(5, size=4),
            "readme.png": png(6),
        }
    )
    report = ingest(make_zip(tmp_path / "bad.zip", members), "mixed")
    assert report.images == 8
    why = reasons(report)
    assert why["cat/empty.png"] == "empty file (0 bytes)"
    assert why["cat/notes.png"] == "not an image: the file holds text"
    assert "vector images are not supported; export it as PNG or JPEG" in why["cat/logo.svg"]
    assert why["dog/cut.jpg"].startswith("truncated")
    assert why["dog/tiny.png"] == "too small: 4x4 pixels; the minimum is 8x8"
    assert "not inside a class folder" in why["readme.png"]
    assert Dataset("mixed").meta["rejected"] == report.rejected


def test_pixel_limit_rejects_cleanly(workspace, tmp_path, monkeypatch):
    from cnnlab.data import decode

    monkeypatch.setattr(decode, "MAX_PIXELS", 30 * 30)
    members = {f"cat/{i}.png": png(i) for i in range(3)}
    members["cat/big.png"] = png(9, size=40)
    report = ingest(make_zip(tmp_path / "p.zip", members), "p")
    assert report.images == 3
    assert reasons(report)["cat/big.png"].startswith("too large: 40x40 pixels")


def test_every_layout_problem_at_once_leaves_no_dataset(workspace, tmp_path):
    members = {"a.txt": b"hello", "cat/x.png": b"", "cat/y.png": b"nope"}
    with pytest.raises(CnnlabError, match=r"no usable images: .*empty file"):
        ingest(make_zip(tmp_path / "bad.zip", members), "nothing")
    assert list_datasets() == []
    assert not workspace.joinpath("datasets", "nothing").exists()
    assert list((workspace / ".staging").iterdir()) == []


def test_empty_zip(workspace, tmp_path):
    with pytest.raises(CnnlabError, match="no usable images: the upload holds no image files"):
        ingest(make_zip(tmp_path / "e.zip", {}), "empty")
    assert list_datasets() == []


def test_not_a_zip_is_one_line(workspace, tmp_path):
    path = tmp_path / "fake.zip"
    path.write_bytes(b"definitely not a zip")
    with pytest.raises(CnnlabError, match="fake.zip is not a readable zip archive") as caught:
        ingest(path, "fake")
    assert "\n" not in str(caught.value)
    with pytest.raises(CnnlabError, match="No such file or folder"):
        ingest(tmp_path / "missing.zip", "fake")


# -- hostile archives -------------------------------------------------------------------


def test_zip_slip_entries_are_never_written_outside(workspace, tmp_path):
    members = {f"cat/{i}.png": png(i) for i in range(3)}
    members["../../evil/x.png"] = png(20)
    members["/etc/evil.png"] = png(21)
    members["cat/../../escape.png"] = png(22)
    members["C:\\windows\\evil.png"] = png(23)
    report = ingest(make_zip(tmp_path / "slip.zip", members), "slip")
    assert report.images == 3
    unsafe = [r for r in report.rejected if r["reason"].startswith("unsafe path")]
    assert len(unsafe) == 4
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil.png").exists()
    written = {p.name for p in workspace.rglob("*.png")}
    assert len(written) == 3


def test_class_named_like_a_path_is_refused_and_cannot_escape(workspace):
    # Class names are kept as written, so one holding a path is refused, not cleaned.
    with pytest.raises(CnnlabError, match="path separator"):
        add_files("esc", [("a.png", png(1)), ("b.png", png(2))], "../../outside")
    assert list_datasets() == []
    # A name that only looks like one is stored under a safe folder inside the dataset.
    report = add_files("esc", [("a.png", png(1)), ("b.png", png(2))], "..outside..")
    assert report.classes == {"..outside..": 2}
    dataset = Dataset("esc")
    for record in dataset.records:
        resolved = (dataset.path / record.file).resolve()
        assert dataset.path.resolve() in resolved.parents


def test_zip_bomb_member_is_refused_while_streaming(workspace, tmp_path):
    members = {f"cat/{i}.png": png(i) for i in range(3)}
    members["cat/bomb.bmp"] = b"BM" + b"\x00" * (6 * 1024 * 1024)  # ~1000:1 compressible
    report = ingest(make_zip(tmp_path / "bomb.zip", members), "bomb")
    assert report.images == 3
    assert "zip bomb" in reasons(report)["cat/bomb.bmp"]


def test_zip_expanding_past_the_total_limit_is_refused(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_LIMIT_ZIP_MAX_GB", "0.01")
    members = {"cat/0.png": png(0), "cat/big.bmp": b"BM" + b"\x00" * (11 * 1024 * 1024)}
    path = make_zip(tmp_path / "big.zip", members)
    with pytest.raises(CnnlabError, match="expands to more than the limit of 0.01 GB .* zip bomb"):
        ingest(path, "big")
    assert list_datasets() == []


def test_streaming_budget_does_not_trust_headers():
    budget = sources._Budget("x.zip", max_gb=0.01)
    budget.spend(6 * 1024 * 1024)
    with pytest.raises(CnnlabError, match="x.zip expands to more than"):
        budget.spend(6 * 1024 * 1024)


def test_lying_size_header_is_caught(workspace, tmp_path):
    members = {f"cat/{i}.png": png(i) for i in range(3)}
    members["cat/liar.png"] = png(40)
    path = make_zip(tmp_path / "liar.zip", members, compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    # Shrink the liar's declared size in its local and central headers.
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("cat/liar.png")
    real = info.file_size.to_bytes(4, "little")
    small = (100).to_bytes(4, "little")
    data = data.replace(
        info.CRC.to_bytes(4, "little") + info.compress_size.to_bytes(4, "little") + real,
        info.CRC.to_bytes(4, "little") + info.compress_size.to_bytes(4, "little") + small,
    )
    path.write_bytes(bytes(data))
    report = ingest(path, "liar")
    assert report.images == 3
    assert list(reasons(report)) == ["cat/liar.png"]


def test_too_many_members(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_LIMIT_ZIP_MAX_ENTRIES", "5")
    path = classes_zip(tmp_path / "many.zip", counts={"cat": 6})
    with pytest.raises(CnnlabError, match="many.zip has 6 entries; the limit is 5"):
        ingest(path, "many")


def test_encrypted_member_is_rejected(workspace, tmp_path):
    path = classes_zip(tmp_path / "enc.zip")
    data = bytearray(path.read_bytes())
    # Set the "encrypted" flag bit on the first entry (local + central header).
    local = data.find(b"PK\x03\x04")
    data[local + 6] |= 1
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1
    path.write_bytes(bytes(data))
    report = ingest(path, "enc")
    assert report.images == 11
    assert "encrypted" in report.rejected[0]["reason"]


# -- names, replace, adding -------------------------------------------------------------


def test_existing_name_needs_replace(workspace, tmp_path, image_folders):
    ingest(image_folders, "pets")
    with pytest.raises(CnnlabError, match="already exists.*add_source.*replace"):
        ingest(image_folders, "pets")
    report = ingest(classes_zip(tmp_path / "z.zip"), "pets", replace=True)
    assert report.classes == {"cat": 6, "dog": 6}
    assert len(Dataset("pets").records) == 12
    assert list_datasets() == ["pets"]


def test_add_source_adds_images_and_classes_without_moving_splits(
    workspace, tmp_path, image_folders
):
    ingest(image_folders, "pets", seed=1)
    before = {r.file: r.split for r in Dataset("pets").records}
    more = classes_zip(tmp_path / "more.zip", counts={"cat": 6, "owl": 6})
    report = add_source("pets", more)
    assert report.images == 12
    assert report.classes == {"cat": 14, "dog": 8, "fox": 8, "owl": 6}
    after = Dataset("pets")
    for record in after.records:
        if record.file in before:
            assert record.split == before[record.file]
    owl = [r.split for r in after.records if r.label == "owl"]
    assert sorted(set(owl)) == ["test", "train", "val"]


def test_add_files_with_a_label_creates_then_adds(workspace):
    report = add_files("loose", [(f"p{i}.png", png(i)) for i in range(4)], "cat")
    assert report.classes == {"cat": 4} and report.images == 4
    report = add_files("loose", [("a/b/c.png", png(9)), (".DS_Store", b"x")], "dog")
    assert report.classes == {"cat": 4, "dog": 1}
    assert report.ignored == 1
    assert Dataset("loose").records[-1].source == "c.png"


def test_directory_upload_takes_the_class_from_the_parent_folder(workspace):
    files = [(f"photos/cat/{i}.png", png(i)) for i in range(3)]
    files += [(f"photos/dog/{i}.png", png(i + 10)) for i in range(3)]
    files += [("photos/train/bird/0.png", png(30)), ("photos/train/bird/1.png", png(31))]
    files += [("lonely.png", png(40)), ("photos/__MACOSX/cat/._0.png", b"junk")]
    report = add_files("dirs", files, None)
    assert report.classes == {"bird": 2, "cat": 3, "dog": 3}
    assert report.ignored == 1
    assert "no folder to take the class from" in reasons(report)["lonely.png"]
    birds = [r.split for r in Dataset("dirs").records if r.label == "bird"]
    assert birds == ["train", "train"]


def test_gray_dataset_stays_gray_until_colour_arrives(workspace):
    add_files("g", [(f"{i}.png", png(i, mode="L")) for i in range(3)], "a")
    dataset = Dataset("g")
    assert dataset.channels == 1
    assert {Image.open(dataset.path / r.file).mode for r in dataset.records} == {"L"}
    shas = {r.sha for r in dataset.records}
    add_files("g", [("c.jpg", jpeg(5))], "b")
    dataset = Dataset("g")
    assert dataset.channels == 3
    assert {Image.open(dataset.path / r.file).mode for r in dataset.records} == {"RGB"}
    assert shas <= {r.sha for r in dataset.records}  # hashes survive the conversion


def test_mixed_upload_is_rgb_with_every_file_rgb(workspace):
    files = [("a/0.png", png(0, mode="L")), ("a/1.jpg", jpeg(1)), ("b/2.png", png(2, mode="L"))]
    files.append(("b/3.jpg", _gray_jpeg()))
    add_files("mix", files, None)
    dataset = Dataset("mix")
    assert dataset.channels == 3
    assert {Image.open(dataset.path / r.file).mode for r in dataset.records} == {"RGB"}
    # The colour JPEG keeps its bytes; the gray one was rewritten as an RGB PNG.
    assert [p.parent.name for p in (dataset.path / "images").rglob("*.jpg")] == ["a"]
    assert len(list((dataset.path / "images").rglob("*.*"))) == 4


def _gray_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (24, 24), 90).save(buffer, "JPEG")
    return buffer.getvalue()


def test_failed_add_leaves_the_dataset_untouched(workspace, image_folders):
    ingest(image_folders, "pets")
    before = sorted(p.name for p in (workspace / "datasets" / "pets").rglob("*"))
    with pytest.raises(CnnlabError, match="no usable images"):
        add_files("pets", [("x.png", b"")], "cat")
    after = sorted(p.name for p in (workspace / "datasets" / "pets").rglob("*"))
    assert after == before


def test_progress_is_reported(workspace, image_folders):
    calls = []
    ingest(image_folders, "pets", progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (24, 24)
    assert [done for done, _ in calls] == list(range(1, 25))


def test_options_only_for_samples(workspace, image_folders):
    with pytest.raises(CnnlabError, match="`options` apply to samples only"):
        ingest(image_folders, "x", options={"count": 3})


def test_bad_split_fractions(workspace, image_folders):
    with pytest.raises(CnnlabError, match="must add up to 1"):
        ingest(image_folders, "x", split=(0.5, 0.2, 0.2))


# -- editing ----------------------------------------------------------------------------


def test_delete_images_class_and_dataset(workspace, image_folders):
    ingest(image_folders, "pets")
    dataset = Dataset("pets")
    victim = dataset.records[0]
    health = delete_images("pets", [victim.file])
    assert health["images"] == 23
    assert victim.file not in {record.file for record in Dataset("pets").records}
    assert (dataset.path / victim.file).exists()  # kept: version 1 still lists it
    with pytest.raises(CnnlabError, match="Not in dataset 'pets': images/nope.png"):
        delete_images("pets", ["images/nope.png"])
    health = delete_class("pets", "dog")
    assert set(health["classes"]) == {"cat", "fox"}
    assert Dataset("pets").meta["classes"] == ["cat", "fox"]
    assert "dog" not in Dataset("pets").meta["class_folders"]  # files kept for version 1
    with pytest.raises(CnnlabError, match="has no class 'owl'. Classes: cat, fox"):
        delete_class("pets", "owl")
    delete_dataset("pets")
    assert list_datasets() == []
    with pytest.raises(CnnlabError, match="There is no dataset named 'pets'"):
        delete_dataset("pets")
    assert workspace.joinpath("datasets").is_dir()


def test_workspace_files_are_written_atomically(workspace, image_folders):
    ingest(image_folders, "pets")
    leftovers = [p for p in workspace.rglob("*.tmp")]
    assert leftovers == []
    assert workspace_path_is_clean(workspace)


def workspace_path_is_clean(home: Path) -> bool:
    return all(workspace.inside(home, *p.relative_to(home).parts) for p in home.rglob("*"))


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["animals/cat/1.png", "animals/dog/2.png", "animals/README.txt"], ["cat", "dog", None]),
        (["README.txt", "animals/cat/1.png", "animals/dog/2.png"], [None, "cat", "dog"]),
        (["cats/1.png", "cats/2.png", "cats/sub/3.png"], ["cats", "cats", "cats"]),
        (["train/1.png", "car/2.png"], ["train", "car"]),  # a "train" class, not a split
        (["a/b/c/cat/1.png", "a/b/c/dog/1.png"], ["cat", "dog"]),
    ],
)
def test_layout_detection(names, expected):
    placed = place_all(names)
    assert [label for _, label, *_ in placed] == expected


def test_folder_with_junk_split_folders_and_a_fifo(workspace, tmp_path):
    import os

    root = tmp_path / "upload" / "root"
    seed = 100
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                seed += 1
                (folder / f"{i}.png").write_bytes(png(seed))
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.png").write_bytes(png(7))
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "x.png").write_bytes(png(8))
    os.mkfifo(root / "train" / "dog" / "pipe.png")
    report = ingest(tmp_path / "upload", "folder")
    assert report.classes == {"cat": 4, "dog": 4}
    assert report.ignored == 3
    assert reasons(report) == {"root/train/dog/pipe.png": "not a regular file"}
    assert {r.split for r in Dataset("folder").records} == {"train", "test"}
    assert Dataset("folder").meta["source"] == "folder upload"


def test_identical_files_in_one_class_are_both_kept_and_reported(workspace):
    same = png(3)
    report = add_files("dups", [("a.png", same), ("b.png", same), ("c.png", png(4))], "cat")
    files = sorted(r.file for r in Dataset("dups").records)
    sha16 = Dataset("dups").records[0].sha[:16]
    assert f"images/cat/{sha16}.png" in files and f"images/cat/{sha16}-1.png" in files
    assert report.health["duplicates"][0]["files"] == [
        f"images/cat/{sha16}.png",
        f"images/cat/{sha16}-1.png",
    ]
    assert report.health["leaks"] == []  # copies share a split
