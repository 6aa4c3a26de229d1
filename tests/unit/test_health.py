"""Health report, stratified splits and the one-click fixes."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.dataset import Dataset, Record
from cnnlab.data.health import (
    fix_label_conflicts,
    fix_leaks,
    health_report,
    remove_duplicates,
)
from cnnlab.data.ingest import add_files, ingest
from cnnlab.data.splits import assign_splits, check_fractions, minimum_per_class
from cnnlab.errors import CnnlabError

# Near-duplicates (perceptual hashes) are tested in test_similar.py; none here.
NO_NEAR = {"near_duplicates": 0, "near_conflicts": 0, "near_leaks": 0}


def rec(file, label, split="train", sha=None, width=24, height=24) -> Record:
    return Record(file, label, split, sha or file, width, height)


def png(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# -- the report -------------------------------------------------------------------------


def test_counts_per_class_and_split():
    records = [rec(f"c{i}", "cat", s) for i, s in enumerate(["train"] * 4 + ["val", "test"])]
    records += [rec(f"d{i}", "dog", "train") for i in range(3)]
    report = health_report(records)
    assert report["images"] == 9
    assert report["classes"]["cat"] == {"train": 4, "val": 1, "test": 1, "total": 6}
    assert report["classes"]["dog"] == {"train": 3, "val": 0, "test": 0, "total": 3}
    assert report["splits"] == {"train": 7, "val": 1, "test": 1}
    assert report["imbalance_ratio"] == 2.0
    assert "No val images for class(es): dog." in report["warnings"]
    json.dumps(report)  # plain JSON


def test_duplicates_conflicts_and_leaks():
    records = [
        rec("a1", "cat", "train", sha="A"),
        rec("a2", "cat", "val", sha="A"),  # duplicate in class + leak train/val
        rec("b1", "cat", "train", sha="B"),
        rec("b2", "dog", "train", sha="B"),  # label conflict, same split
        rec("c1", "dog", "test", sha="C"),
    ]
    report = health_report(records)
    # Records without an upload name (older ingests) are named by their stored file.
    assert report["duplicates"] == [
        {"sha": "A", "label": "cat", "files": ["a1", "a2"], "sources": ["a1", "a2"]}
    ]
    assert report["label_conflicts"] == [
        {"sha": "B", "labels": ["cat", "dog"], "files": ["b1", "b2"], "sources": ["b1", "b2"]}
    ]
    assert report["leaks"] == [
        {"sha": "A", "splits": ["train", "val"], "files": ["a1", "a2"], "sources": ["a1", "a2"]}
    ]
    assert report["counts"] == {
        "duplicates": 1,
        "label_conflicts": 1,
        "leaks": 1,
        "tiny": 0,
        **NO_NEAR,
    }
    text = " ".join(report["warnings"])
    assert "under two or more labels" in text and "more than one split" in text
    assert "duplicate" in text


def test_imbalance_sizes_tiny_and_too_small_classes():
    records = [rec(f"c{i}", "cat", width=100, height=50) for i in range(8)]
    records += [rec("d0", "dog", width=10, height=40), rec("d1", "dog", width=30, height=30)]
    report = health_report(records)
    assert report["imbalance_ratio"] == 4.0
    assert any("imbalanced: 'cat' has 4x" in w for w in report["warnings"])
    assert report["sizes"]["width"] == {"min": 10, "median": 100, "max": 100}
    assert report["sizes"]["aspect"]["min"] == 0.25
    assert report["tiny"] == [{"file": "d0", "source": "d0", "width": 10, "height": 40}]
    assert report["too_small_classes"] == [{"label": "dog", "images": 2, "minimum": 3}]
    assert any("Class 'dog' has 2 image(s); at least 3" in w for w in report["warnings"])


def test_empty_and_single_class_reports():
    assert health_report([])["warnings"][0].startswith("The dataset has no images")
    report = health_report(
        [rec(f"c{i}", "cat", s) for i, s in enumerate(["train", "train", "val", "test"])]
    )
    assert report["imbalance_ratio"] == 1.0
    assert report["warnings"][0].startswith("Only one class (cat)")


def test_minimum_follows_the_split():
    records = [rec("a", "cat"), rec("b", "cat")]
    assert health_report(records, split=(0.8, 0.2, 0.0))["too_small_classes"] == []
    assert minimum_per_class((0.7, 0.15, 0.15)) == 3
    assert minimum_per_class((1.0, 0.0, 0.0)) == 1


# -- splits -----------------------------------------------------------------------------


def test_splits_are_stratified_and_deterministic():
    new = [("cat", f"c{i}") for i in range(40)] + [("dog", f"d{i}") for i in range(20)]
    first = assign_splits(new, seed=5)
    assert first == assign_splits(list(reversed(new)), seed=5)[::-1]  # order-independent
    assert first != assign_splits(new, seed=6)
    per_class = Counter(zip([label for label, _ in new], first, strict=True))
    assert per_class[("cat", "train")] == 28 and per_class[("cat", "val")] == 6
    assert per_class[("cat", "test")] == 6
    assert per_class[("dog", "train")] == 14 and per_class[("dog", "val")] == 3
    assert per_class[("dog", "test")] == 3


def test_copies_share_a_split_and_small_classes_train_only():
    new = [("cat", "same")] * 3 + [("cat", f"c{i}") for i in range(10)] + [("owl", "o1")] * 2
    result = assign_splits(new, seed=0)
    assert len(set(result[:3])) == 1
    assert result[-2:] == ["train", "train"]


def test_added_images_fill_the_fractions_without_moving_any():
    existing = [("cat", f"c{i}", "train") for i in range(7)]
    result = assign_splits([("cat", f"n{i}") for i in range(3)], existing, seed=0)
    # Empty splits first, then the one furthest below its share (val before test on a tie).
    assert sorted(result) == ["test", "val", "val"]


def test_check_fractions_messages():
    with pytest.raises(CnnlabError, match=r"must be three fractions in \[0, 1\]"):
        check_fractions((0.5, 0.5))
    with pytest.raises(CnnlabError, match="train a share above 0"):
        check_fractions((0, 0.5, 0.5))
    assert check_fractions([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)


def test_split_is_fixed_at_ingest_and_kept_on_add(workspace, image_folders):
    ingest(image_folders, "a", seed=7)
    ingest(image_folders, "b", seed=7)
    split_a = {r.sha: r.split for r in Dataset("a").records}
    assert split_a == {r.sha: r.split for r in Dataset("b").records}
    add_files("a", [(f"n{i}.png", png(100 + i)) for i in range(6)], "cat")
    after = Dataset("a")
    assert all(split_a[r.sha] == r.split for r in after.records if r.sha in split_a)
    cat = Counter(r.split for r in after.records if r.label == "cat")
    assert cat["train"] >= 9 and cat["val"] >= 2 and cat["test"] >= 2


def test_too_small_class_goes_to_train_with_a_message(workspace):
    files = [(f"cat/{i}.png", png(i)) for i in range(6)] + [("owl/0.png", png(50))]
    report = add_files("small", files, None)
    assert report.health["too_small_classes"] == [{"label": "owl", "images": 1, "minimum": 3}]
    assert [r.split for r in Dataset("small").records if r.label == "owl"] == ["train"]
    assert any("Class 'owl' has 1 image(s); at least 3" in w for w in report.health["warnings"])


# -- fixes ------------------------------------------------------------------------------


@pytest.fixture
def messy(workspace):
    """A dataset with a duplicate, a label conflict and a leak, given by split folders."""
    a, b = png(1), png(2)
    files = [(f"train/cat/{i}.png", png(10 + i)) for i in range(4)]
    files += [(f"train/dog/{i}.png", png(20 + i)) for i in range(4)]
    files += [(f"val/cat/{i}.png", png(30 + i)) for i in range(2)]
    files += [(f"test/dog/{i}.png", png(40 + i)) for i in range(2)]
    files += [("train/cat/dup1.png", a), ("train/cat/dup2.png", a)]  # duplicate
    files += [("train/cat/x.png", b), ("train/dog/x.png", b)]  # label conflict
    files += [("train/dog/leak.png", png(3)), ("test/dog/leak.png", png(3))]  # leak + dup
    add_files("messy", files, None)
    return "messy"


def test_fixes_clear_the_health_problems(messy):
    health = Dataset(messy).health()
    assert health["counts"] == {
        "duplicates": 2,
        "label_conflicts": 1,
        "leaks": 1,
        "tiny": 0,
        **NO_NEAR,
    }
    total = health["images"]

    assert fix_label_conflicts(messy) == 2
    health = Dataset(messy).health()
    assert health["label_conflicts"] == [] and health["images"] == total - 2

    assert fix_leaks(messy) == 1
    dataset = Dataset(messy)
    assert dataset.health()["leaks"] == []
    assert {r.split for r in dataset.records if r.source.endswith("leak.png")} == {"train"}

    assert remove_duplicates(messy) == 2
    dataset = Dataset(messy)
    assert dataset.health()["duplicates"] == []
    assert dataset.health()["images"] == total - 4
    on_disk = {str(p.relative_to(dataset.path)) for p in (dataset.path / "images").rglob("*.*")}
    # Every image of the fixed dataset is on disk; the removed ones stay for the earlier
    # versions, and nothing else does.
    from cnnlab.data.versions import history, records_of

    named = {
        r.file for row in history(dataset.path) for r in records_of(dataset.path, row["version"])
    }
    assert {r.file for r in dataset.records} <= on_disk <= named
    assert remove_duplicates(messy) == 0


def test_fixes_on_a_missing_dataset(workspace):
    with pytest.raises(CnnlabError, match="There is no dataset named 'ghost'"):
        fix_leaks("ghost")
