"""Stratified train/val/test splits, fixed at ingest and extended without moving images.

One rule serves both the first ingest and every later addition: within each class,
new images go one by one (in a seeded shuffled order) to the split that is furthest
below its share of the class, so the class keeps the chosen fractions and no image
that already has a split ever moves. Copies of the same picture in one class always
share a split, so the split itself never creates a leak.

A class needs at least one image per split that has a non-zero fraction (3 for the
usual 70/15/15). A smaller class cannot be evaluated: all its images go to ``train``
and the health report names it with the minimum.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from cnnlab.data.dataset import SPLITS
from cnnlab.errors import CnnlabError

DEFAULT_SPLIT = (0.7, 0.15, 0.15)

# Folder names an upload may use for its own split, and the split each one means.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def check_fractions(split: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions.

    Raises:
        CnnlabError: unless there are three non-negative numbers summing to 1 with a
            positive train share.
    """
    try:
        values = tuple(float(value) for value in split)
    except (TypeError, ValueError):
        raise CnnlabError(
            f"`split` must be three numbers (train, val, test). Received: split={split!r}"
        ) from None
    if len(values) != 3 or any(not 0 <= value <= 1 for value in values):
        raise CnnlabError(
            "`split` must be three fractions in [0, 1] for train, val and test. "
            f"Received: split={split!r}"
        )
    if abs(sum(values) - 1.0) > 1e-6:
        raise CnnlabError(
            f"`split` fractions must add up to 1. Received: split={split!r} "
            f"(sum {sum(values):g}); e.g. use (0.7, 0.15, 0.15)."
        )
    if values[0] <= 0:
        raise CnnlabError(f"`split` must give train a share above 0. Received: split={split!r}")
    return values  # type: ignore[return-value]


def minimum_per_class(split: Sequence[float]) -> int:
    """Images a class needs so that every split with a non-zero fraction gets one."""
    return sum(1 for fraction in split if fraction > 0)


def assign_splits(
    new: Sequence[tuple[str, str]],
    existing: Iterable[tuple[str, str, str]] = (),
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
) -> list[str]:
    """Give each new image a split.

    Args:
        new: ``(label, sha)`` for each image without a split yet.
        existing: ``(label, sha, split)`` for images that already have one (kept).
        split: the train/val/test fractions.
        seed: makes the choice repeatable.

    Returns:
        The split of each entry of ``new``, in order.
    """
    fractions = check_fractions(split)
    minimum = minimum_per_class(fractions)
    counts: dict[str, Counter] = defaultdict(Counter)
    known: dict[tuple[str, str], str] = {}
    for label, sha, where in existing:
        counts[label][where] += 1
        known.setdefault((label, sha), where)

    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for position, (label, sha) in enumerate(new):
        groups[label][sha].append(position)

    result: list[str] = [""] * len(new)
    for label in sorted(groups):
        by_sha = groups[label]
        class_total = sum(counts[label].values()) + sum(len(v) for v in by_sha.values())
        shas = sorted(by_sha)
        rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(label.encode())])
        order = [shas[i] for i in rng.permutation(len(shas))]
        for sha in order:
            positions = by_sha[sha]
            where = known.get((label, sha))
            if where is None:
                if class_total < minimum:
                    where = "train"
                else:
                    where = _neediest(counts[label], class_total, fractions)
                known[(label, sha)] = where
            for position in positions:
                result[position] = where
            counts[label][where] += len(positions)
    return result


def _neediest(counts: Counter, total: int, fractions: Sequence[float]) -> str:
    """The split furthest below its share; an empty split with a share comes first."""

    def need(index: int) -> tuple[int, float, int]:
        name = SPLITS[index]
        fraction = fractions[index]
        empty = 1 if fraction > 0 and counts[name] == 0 else 0
        return (empty, fraction * total - counts[name], -index)

    candidates = [i for i in range(len(SPLITS)) if fractions[i] > 0]
    return SPLITS[max(candidates, key=need)]


def split_from_folder(name: str) -> str | None:
    """``train``/``val``/``test`` when ``name`` is a split folder name, else ``None``."""
    return SPLIT_FOLDERS.get(name.strip().lower())
