"""The health report of a dataset, and the one-click fixes it offers.

:func:`health_report` is a pure function of the index rows: class counts per split,
imbalance, duplicates, label conflicts, leaks between splits, near-duplicates (the same
picture resized, re-encoded or cropped a little; :mod:`cnnlab.data.similar`), size and
aspect statistics, tiny images and classes too small to split, plus plain sentences that
say what to do about each. Every finding names its images as the user uploaded them
(``source``/``sources``: ``cats/same.png``) beside their stored names (``file``/``files``:
``images/cats/<hash>.png``); :func:`finding_rows` lays them out for people. The fixes
(:func:`remove_duplicates`, :func:`fix_label_conflicts`, :func:`fix_leaks`, and for
near-duplicates :func:`remove_near_duplicates`, :func:`fix_near_conflicts`,
:func:`fix_near_leaks`) rewrite a stored dataset and return how many images they changed.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnnlab import workspace
from cnnlab.data import similar
from cnnlab.data.classes import base_key
from cnnlab.data.dataset import SPLITS, Record
from cnnlab.data.splits import DEFAULT_SPLIT, minimum_per_class
from cnnlab.data.store import rewrite
from cnnlab.errors import CnnlabError

# Images with a side below this many pixels are listed as "tiny".
TINY_SIDE = 16
# A largest/smallest class ratio above this earns a warning.
IMBALANCE_WARNING = 3.0
# Lists in the report are cut to this many entries (counts stay exact).
MAX_LISTED = 200


def health_report(
    records: Sequence[Record],
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Summarise a dataset's index rows; the result is plain JSON.

    Args:
        records: the dataset's images.
        split: the dataset's train/val/test fractions (sets the per-class minimum).
        folder: the dataset's folder; when given, its images are compared for
            near-duplicates (their perceptual hashes are cached there).

    Returns:
        ``images``, ``splits``, ``classes`` ({label: {train, val, test, total}}),
        ``imbalance_ratio``, ``duplicates``, ``label_conflicts``, ``leaks``, ``sizes``,
        ``tiny``, ``tiny_side``, ``too_small_classes``, ``counts`` (how many of each
        problem, even when a list is cut) and ``warnings`` (sentences for people).
        Each duplicate, conflict and leak has ``files`` (stored names) and ``sources``
        (upload names, in the same order); each tiny image ``file`` and ``source``.
        ``near_duplicates`` lists groups as :func:`cnnlab.data.similar.near_duplicates`
        gives them (``files``, ``sources``, ``labels``, ``splits``, ``kind``,
        ``distance``; empty without ``folder``); ``counts`` has ``near_duplicates``
        (groups), ``near_conflicts`` and ``near_leaks``.
    """
    classes: dict[str, dict[str, int]] = {}
    for record in records:
        row = classes.setdefault(record.label, {name: 0 for name in (*SPLITS, "total")})
        row[record.split] = row.get(record.split, 0) + 1
        row["total"] += 1
    classes = dict(sorted(classes.items()))
    split_counts = {name: sum(row[name] for row in classes.values()) for name in SPLITS}
    totals = [row["total"] for row in classes.values()]
    imbalance = round(max(totals) / min(totals), 2) if totals else None

    by_sha: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_sha[record.sha].append(record)
    duplicates, conflicts, leaks = [], [], []
    for sha, copies in by_sha.items():
        if len(copies) < 2:
            continue
        per_label: dict[str, list[Record]] = defaultdict(list)
        for copy in copies:
            per_label[copy.label].append(copy)
        for label, same in sorted(per_label.items()):
            if len(same) > 1:
                duplicates.append({"sha": sha, "label": label, **_names(same)})
        if len(per_label) > 1:
            conflicts.append({"sha": sha, "labels": sorted(per_label), **_names(copies)})
        splits_seen = sorted({c.split for c in copies}, key=SPLITS.index)
        if len(splits_seen) > 1:
            leaks.append({"sha": sha, "splits": splits_seen, **_names(copies)})

    minimum = minimum_per_class(split)
    too_small = [
        {"label": label, "images": row["total"], "minimum": minimum}
        for label, row in classes.items()
        if row["total"] < minimum
    ]
    tiny = [
        {"file": r.file, "source": r.upload_name, "width": r.width, "height": r.height}
        for r in records
        if min(r.width, r.height) < TINY_SIDE
    ]
    near = similar.near_duplicates_in(folder, records) if folder is not None else []
    report = {
        "images": len(records),
        "splits": split_counts,
        "classes": classes,
        "imbalance_ratio": imbalance,
        "duplicates": duplicates[:MAX_LISTED],
        "label_conflicts": conflicts[:MAX_LISTED],
        "leaks": leaks[:MAX_LISTED],
        "sizes": _size_summary(records),
        "tiny": tiny[:MAX_LISTED],
        "tiny_side": TINY_SIDE,
        "near_duplicates": near[:MAX_LISTED],
        "too_small_classes": too_small,
        "counts": {
            "duplicates": sum(len(d["files"]) - 1 for d in duplicates),
            "label_conflicts": len(conflicts),
            "leaks": len(leaks),
            "tiny": len(tiny),
            "near_duplicates": len(near),
            "near_conflicts": sum(item["kind"] == "conflict" for item in near),
            "near_leaks": sum(item["kind"] == "leak" for item in near),
        },
    }
    report["warnings"] = _warnings(report, split)
    return report


def _names(records: Sequence[Record]) -> dict[str, list[str]]:
    """Stored and upload names of some images, in the same order."""
    return {
        "files": [record.file for record in records],
        "sources": [record.upload_name for record in records],
    }


def _sources(item: dict[str, Any]) -> list[str]:
    """The upload names of a finding; reports written before they were recorded have
    stored names only."""
    if item.get("sources"):
        return list(item["sources"])
    if item.get("source"):
        return [item["source"]]
    return list(item.get("files") or [item.get("file", "")])


# What each list of findings is called, and the column that says what it is about.
FINDINGS = {
    "label_conflicts": ("Same image under two labels", "labels"),
    "leaks": ("Same image in two splits", "splits"),
    "duplicates": ("Exact duplicates within a class", "label"),
    "tiny": ("Tiny images", "size"),
    "near_duplicates": ("Near-duplicates (resized, re-encoded or cropped copies)", "kind"),
}


def near_kind(item: dict[str, Any]) -> str:
    """What a near-duplicate group is, in words: ``conflict: cat, dog``."""
    kind = item.get("kind", "")
    if kind == "conflict":
        return f"conflict: {', '.join(sorted(set(item.get('labels') or [])))}"
    if kind == "leak":
        splits = sorted(set(item.get("splits") or []), key=SPLITS.index)
        return f"leak: {', '.join(splits)}"
    return f"duplicate in {(item.get('labels') or [''])[0]}"


def finding_rows(report: dict[str, Any], kind: str) -> list[dict[str, str]]:
    """The findings of one kind (a key of :data:`FINDINGS`) as rows for people: the
    images as uploaded first, what the finding is about, then the stored names.

    Raises:
        CnnlabError: for an unknown ``kind``.
    """
    if kind not in FINDINGS:
        raise CnnlabError(f"`kind` must be one of {', '.join(FINDINGS)}. Received: kind={kind!r}")
    about = FINDINGS[kind][1]
    rows = []
    for item in report.get(kind) or []:
        if kind == "tiny":
            detail = f"{item['width']}x{item['height']}"
        elif kind == "near_duplicates":
            detail = near_kind(item)
        else:
            value = item.get(about, "")
            detail = ", ".join(value) if isinstance(value, list) else str(value)
        stored = item.get("files") or [item.get("file", "")]
        rows.append(
            {"images": ", ".join(_sources(item)), about: detail, "stored as": ", ".join(stored)}
        )
    return rows


def _example(items: list[dict[str, Any]]) -> str:
    """A warning's example, from its first finding: ``(e.g. cats/a.png and cats/b.png)``."""
    if not items:
        return ""
    names = _sources(items[0])[:2]
    return f" (e.g. {' and '.join(names)})" if names else ""


def _look_alike_warnings(names: list[str]) -> list[str]:
    """Classes whose names differ only in case, accents, spaces or punctuation are kept apart
    (the user may mean two classes); say so, in case they meant one."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[base_key(name).casefold()].append(name)
    return [
        f"Classes {_and(repr(name) for name in group)} differ only in case, "
        "accents, spaces or punctuation; they are kept as separate classes. If they are "
        "one class, delete all but one and add their images again under its name."
        for group in groups.values()
        if len(group) > 1
    ]


def _and(items: Iterable[str]) -> str:
    """``'a', 'b' and 'c'``."""
    items = list(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _size_summary(records: Sequence[Record]) -> dict[str, Any]:
    if not records:
        return {}
    widths = [r.width for r in records]
    heights = [r.height for r in records]
    aspects = [r.width / r.height for r in records]

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "min": round(min(values), 3),
            "median": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }

    return {"width": summary(widths), "height": summary(heights), "aspect": summary(aspects)}


def _warnings(report: dict[str, Any], split: Sequence[float]) -> list[str]:
    out: list[str] = []
    classes = report["classes"]
    if not classes:
        return ["The dataset has no images; add some on the Data page or with `ingest`."]
    if len(classes) < 2:
        out.append(
            f"Only one class ({next(iter(classes))}); a classifier needs at least two. "
            "Add images of another class."
        )
    for item in report["too_small_classes"]:
        out.append(
            f"Class '{item['label']}' has {item['images']} image(s); at least "
            f"{item['minimum']} are needed to split it into train, val and test. Its images "
            "are all in train, so it is not evaluated; add more images of it."
        )
    small = {item["label"] for item in report["too_small_classes"]}
    for index, name in enumerate(SPLITS):
        if split[index] <= 0:
            continue
        missing = [label for label, row in classes.items() if row[name] == 0 and label not in small]
        if missing and report["splits"][name] == 0:
            out.append(f"The {name} split is empty.")
        elif missing:
            out.append(f"No {name} images for class(es): {', '.join(missing[:10])}.")
    out += _look_alike_warnings(list(classes))
    ratio = report["imbalance_ratio"]
    if ratio and ratio > IMBALANCE_WARNING:
        largest = max(classes, key=lambda label: classes[label]["total"])
        smallest = min(classes, key=lambda label: classes[label]["total"])
        out.append(
            f"Classes are imbalanced: '{largest}' has {ratio:g}x as many images as "
            f"'{smallest}'. Consider class weights or more images of the small classes."
        )
    counts = report["counts"]
    if counts["label_conflicts"]:
        out.append(
            f"{counts['label_conflicts']} image(s) appear under two or more labels"
            f"{_example(report['label_conflicts'])}; the true label is unknown. "
            "Fix: remove every copy."
        )
    if counts["leaks"]:
        out.append(
            f"{counts['leaks']} image(s) appear in more than one split"
            f"{_example(report['leaks'])}, so evaluation would score pictures the model "
            "trained on. Fix: move all copies to one split."
        )
    if counts["duplicates"]:
        out.append(
            f"{counts['duplicates']} duplicate copy(ies) within a class"
            f"{_example(report['duplicates'])}. Fix: keep one copy of each."
        )
    out += _near_warnings(report)
    if counts["tiny"]:
        out.append(
            f"{counts['tiny']} image(s) have a side under {TINY_SIDE} pixels"
            f"{_example(report['tiny'])}; they may be too small to learn from."
        )
    return out


def _near_warnings(report: dict[str, Any]) -> list[str]:
    counts = report["counts"]
    groups = report.get("near_duplicates") or []
    total = counts.get("near_duplicates", 0)
    conflicts, leaks = counts.get("near_conflicts", 0), counts.get("near_leaks", 0)
    out = []
    if conflicts:
        example = _example([g for g in groups if g["kind"] == "conflict"])
        out.append(
            f"{conflicts} near-identical picture(s) appear under two or more labels{example}; "
            "the true label is unknown. Fix: remove every copy."
        )
    if leaks:
        example = _example([g for g in groups if g["kind"] == "leak"])
        out.append(
            f"{leaks} near-identical picture(s) appear in more than one split{example}, so "
            "evaluation would score pictures the model trained on. Fix: move all copies to "
            "one split."
        )
    if total - conflicts - leaks:
        example = _example([g for g in groups if g["kind"] == "duplicate"])
        out.append(
            f"{total - conflicts - leaks} group(s) of near-duplicates within a class"
            f"{example}. Fix: keep one copy of each."
        )
    return out


# -- fixes ------------------------------------------------------------------------------


def remove_duplicates(name: str) -> int:
    """Keep one copy of each picture per class; return how many copies were removed.

    The copy kept is the one in the earliest split (train, then val, then test), then the
    first in the index.
    """

    def change(records: list[Record]) -> tuple[list[Record], int]:
        order = sorted(range(len(records)), key=lambda i: (SPLITS.index(records[i].split), i))
        seen: set[tuple[str, str]] = set()
        keep: set[int] = set()
        for i in order:
            key = (records[i].sha, records[i].label)
            if key not in seen:
                seen.add(key)
                keep.add(i)
        return [r for i, r in enumerate(records) if i in keep], len(records) - len(keep)

    return rewrite(name, change)[0]


def fix_label_conflicts(name: str) -> int:
    """Remove every copy of each picture that appears under two or more labels.

    The true label of such a picture is unknown, so no copy is kept: keeping any one
    would be a guess. Returns how many images were removed.
    """

    def change(records: list[Record]) -> tuple[list[Record], int]:
        labels: dict[str, set[str]] = defaultdict(set)
        for record in records:
            labels[record.sha].add(record.label)
        kept = [r for r in records if len(labels[r.sha]) < 2]
        return kept, len(records) - len(kept)

    return rewrite(name, change)[0]


def fix_leaks(name: str) -> int:
    """Move all copies of a picture found in several splits into the earliest of them.

    Train comes before val and val before test, so a leaked picture ends up where the
    model learns from it and no longer inflates a score. Returns how many images moved.
    """

    def change(records: list[Record]) -> tuple[list[Record], int]:
        first: dict[str, int] = {}
        for record in records:
            index = SPLITS.index(record.split)
            first[record.sha] = min(first.get(record.sha, index), index)
        moved = 0
        out = []
        for record in records:
            target = SPLITS[first[record.sha]]
            if record.split != target:
                record = replace(record, split=target)
                moved += 1
            out.append(record)
        return out, moved

    return rewrite(name, change)[0]


def _near_fix(name: str, kind: str, change_group) -> int:
    """Apply ``change_group(records, indices)`` to each near-duplicate group of ``kind``;
    it returns the records to drop and the records to move (index -> new split)."""
    folder = workspace.dataset_dir(name)

    def change(records: list[Record]) -> tuple[list[Record], int]:
        position = {record.file: i for i, record in enumerate(records)}
        drop: set[int] = set()
        moves: dict[int, str] = {}
        for group in similar.near_duplicates_in(folder, records):
            if group["kind"] == kind:
                indices = [position[file] for file in group["files"]]
                dropped, moved = change_group(records, indices)
                drop |= dropped
                moves |= moved
        out = [
            replace(record, split=moves[i]) if i in moves else record
            for i, record in enumerate(records)
            if i not in drop
        ]
        return out, len(drop) + len(moves)

    return rewrite(name, change)[0]


def remove_near_duplicates(name: str) -> int:
    """Keep one image of each near-duplicate group within a class and split (the first
    in the index); return how many images were removed."""
    return _near_fix(name, "duplicate", lambda records, indices: (set(indices[1:]), {}))


def fix_near_conflicts(name: str) -> int:
    """Remove every image of each near-duplicate group spanning two or more labels.

    As for exact conflicts, the true label is unknown, so none is kept. Returns how many
    images were removed.
    """
    return _near_fix(name, "conflict", lambda records, indices: (set(indices), {}))


def fix_near_leaks(name: str) -> int:
    """Move the images of each near-duplicate group found in several splits into the
    earliest of them (as :func:`fix_leaks` does); return how many images moved."""

    def move(records: list[Record], indices: list[int]) -> tuple[set[int], dict[int, str]]:
        target = min((records[i].split for i in indices), key=SPLITS.index)
        return set(), {i: target for i in indices if records[i].split != target}

    return _near_fix(name, "leak", move)
