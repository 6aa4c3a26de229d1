"""Near-duplicates: resized and re-encoded copies found within a class, across classes
and across splits; distinct pictures left alone; the fixes change only what they say."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import similar
from cnnlab.data.dataset import Dataset
from cnnlab.data.health import fix_near_conflicts, fix_near_leaks, remove_near_duplicates
from cnnlab.data.ingest import add_files


def picture(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (blobs of colour, like a photo at low detail)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return coarse.resize((size, size), Image.BICUBIC)


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 75} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def near_copy(seed: int) -> bytes:
    """The picture made smaller and saved as JPEG: other bytes, other pixels, same photo."""
    return encoded(picture(seed).resize((72, 72), Image.LANCZOS), "JPEG")


@pytest.fixture
def lookalikes(workspace):
    files = [(f"train/cat/{i}.png", encoded(picture(100 + i))) for i in range(6)]
    files += [(f"train/dog/{i}.png", encoded(picture(200 + i))) for i in range(6)]
    files += [(f"val/cat/{i}.png", encoded(picture(300 + i))) for i in range(2)]
    files += [(f"test/dog/{i}.png", encoded(picture(400 + i))) for i in range(2)]
    files += [("train/cat/a.png", encoded(picture(1))), ("train/cat/a-small.jpg", near_copy(1))]
    files += [("train/cat/b.png", encoded(picture(2))), ("train/dog/b-small.jpg", near_copy(2))]
    files += [("train/dog/c.png", encoded(picture(3))), ("test/dog/c-small.jpg", near_copy(3))]
    add_files("looks", files, None)
    return "looks"


def by_kind(groups):
    return {group["kind"]: group for group in groups}


def test_copies_found_by_kind_and_named_as_uploaded(lookalikes):
    health = Dataset(lookalikes).health()
    groups = by_kind(health["near_duplicates"])
    assert len(health["near_duplicates"]) == 3, health["near_duplicates"]
    assert groups["duplicate"]["sources"] == ["train/cat/a.png", "train/cat/a-small.jpg"]
    assert groups["conflict"]["sources"] == ["train/cat/b.png", "train/dog/b-small.jpg"]
    assert groups["conflict"]["labels"] == ["cat", "dog"]
    assert groups["leak"]["sources"] == ["train/dog/c.png", "test/dog/c-small.jpg"]
    assert groups["leak"]["splits"] == ["train", "test"]
    assert all(group["files"][0].startswith("images/") for group in groups.values())
    assert all(0 <= group["distance"] <= similar.DEFAULT_MAX_DISTANCE for group in groups.values())
    counts = health["counts"]
    assert (counts["near_duplicates"], counts["near_conflicts"], counts["near_leaks"]) == (3, 1, 1)
    # Not exact copies: the exact findings stay empty.
    assert health["duplicates"] == health["label_conflicts"] == health["leaks"] == []
    warnings = " ".join(health["warnings"])
    assert "near-identical picture(s) appear under two or more labels" in warnings
    assert "near-identical picture(s) appear in more than one split" in warnings


def test_distinct_pictures_and_exact_copies_are_not_near_duplicates(workspace):
    files = [(f"cat/{i}.png", encoded(picture(i))) for i in range(20)]
    files += [(f"dog/{i}.png", encoded(picture(50 + i))) for i in range(20)]
    files += [("dog/same.png", encoded(picture(50)))]  # exact copy: the health report's
    add_files("distinct", files, None)
    health = Dataset("distinct").health()
    assert health["near_duplicates"] == []
    assert len(health["duplicates"]) == 1


def test_fixes_change_only_what_they_say(lookalikes):
    before = {r.source: r for r in Dataset(lookalikes).records}

    assert remove_near_duplicates(lookalikes) == 1
    after = {r.source: r for r in Dataset(lookalikes).records}
    assert set(before) - set(after) == {"train/cat/a-small.jpg"}

    assert fix_near_conflicts(lookalikes) == 2
    after = {r.source: r for r in Dataset(lookalikes).records}
    assert set(before) - set(after) == {
        "train/cat/a-small.jpg",
        "train/cat/b.png",
        "train/dog/b-small.jpg",
    }

    assert fix_near_leaks(lookalikes) == 1
    dataset = Dataset(lookalikes)
    after = {r.source: r for r in dataset.records}
    assert after["test/dog/c-small.jpg"].split == "train"
    unchanged = set(after) - {"test/dog/c-small.jpg"}
    assert all(after[source] == before[source] for source in unchanged)
    # Now in one split, the leak is a duplicate within train; the rest is clean.
    assert [g["kind"] for g in dataset.health()["near_duplicates"]] == ["duplicate"]
    on_disk = {str(p.relative_to(dataset.path)) for p in (dataset.path / "images").rglob("*.*")}
    # Removed images stay on disk for the dataset's earlier versions, and nothing else.
    from cnnlab.data.versions import history, records_of

    named = {r.file for v in history(dataset.path) for r in records_of(dataset.path, v["version"])}
    assert {r.file for r in dataset.records} <= on_disk <= named
    assert fix_near_conflicts(lookalikes) == 0


def test_hashes_are_cached_per_picture(lookalikes, monkeypatch):
    dataset = Dataset(lookalikes)
    first = similar.near_duplicates(dataset)

    def no_hashing(path):
        raise AssertionError(f"hashed {path} again")

    monkeypatch.setattr(similar, "image_hash", no_hashing)
    assert similar.near_duplicates(lookalikes) == first


def test_close_pairs_in_blocks(monkeypatch):
    monkeypatch.setattr(similar, "BLOCK", 3)
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, (10, 2), dtype=np.uint64)
    hashes[7] = hashes[1] ^ np.uint64(0b101)  # 2 bits off in the first hash
    assert similar.close_pairs(hashes, 2) == [(1, 7)]
    assert similar.close_pairs(hashes, 1) == []
