"""Near-duplicate images: the same picture resized, re-encoded or cropped a little.

Exact copies share a content hash (``Record.sha``) and the health report finds them;
near-copies do not. Here each stored image gets two 64-bit perceptual hashes from
``imagehash``: ``phash`` (the signs of its lowest 8x8 DCT frequencies) and ``dhash``
(whether each pixel of a 9x8 thumbnail is brighter than its neighbour). Two images are
near-duplicates when both hashes differ in at most ``max_distance`` bits; asking both
keeps unrelated simple pictures (generated shapes) apart, which one hash alone does not.

:data:`DEFAULT_MAX_DISTANCE` was measured on 450 real photos (``bench/bench_similar.py``):
copies halved and saved as JPEG are all found, 99.8% of brightened ones, 94% of 3% crops
and 40% of 5% crops, while no two different photos (101,025 pairs) come closer than 14.

A group is a ``duplicate`` (one class, one split), a ``conflict`` (two or more classes:
the label of the picture is in doubt) or a ``leak`` (one class in several splits, so
evaluation scores a picture the model trained on). The hashes are cached in the dataset
folder (``phash.json``, keyed by content hash), so only new images are hashed again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from cnnlab import workspace
from cnnlab.data.dataset import SPLITS, Dataset, Record

# Most bits two hashes may differ in for their images to count as near-duplicates.
DEFAULT_MAX_DISTANCE = 10
# Images with a side below this are not compared: at 32x32 and under, different
# pictures of a class (digits, icons) share most of their hash bits.
MIN_SIDE = 48
# The cache file in the dataset folder, and what its hashes were made with.
CACHE_FILE = "phash.json"
METHOD = "phash+dhash-8x8"
# Images compared with all others at once (BLOCK x images x 16 bytes of XORs).
BLOCK = 256


def image_hash(path: Path | str) -> str:
    """The perceptual hashes of the image at ``path``: phash and dhash, 16 hex digits each."""
    with Image.open(path) as image:
        # A JPEG decodes at a fraction of its size when asked for a small one; the hashes
        # look at 32x32 pixels at most, so this changes nothing they see and saves most
        # of the decoding of large photos.
        image.draft("L", (128, 128))
        gray = image.convert("L")
        return f"{imagehash.phash(gray)}{imagehash.dhash(gray)}"


def perceptual_hashes(folder: Path, records: Sequence[Record]) -> np.ndarray:
    """The hashes of each record's image (``uint64``, shape ``(images, 2)``: phash and
    dhash, in record order), from the cache in
    ``folder`` when there; new ones are hashed and the cache is rewritten (entries of
    images no longer in ``records`` are dropped)."""
    path = Path(folder) / CACHE_FILE
    cached = workspace.read_json(path, default=None)
    known: dict[str, str] = {}
    if isinstance(cached, dict) and cached.get("method") == METHOD:
        known = cached.get("hashes") or {}
    hashes: dict[str, str] = {}
    for record in records:
        if record.sha in hashes:
            continue
        value = known.get(record.sha)
        if value is None:
            value = image_hash(Path(folder) / record.file)
        hashes[record.sha] = value
    if hashes != known:
        workspace.atomic_write_json(path, {"method": METHOD, "hashes": hashes})
    pairs = [(int(hashes[r.sha][:16], 16), int(hashes[r.sha][16:], 16)) for r in records]
    return np.array(pairs, dtype=np.uint64).reshape(len(records), 2)


def distances(some: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Bits by which each of ``some`` differs from each of ``others`` (the larger of the
    two hashes' distances), shape ``(len(some), len(others))``."""
    return np.bitwise_count(some[:, None, :] ^ others[None, :, :]).max(axis=-1)


def close_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose hashes both differ in at most
    ``max_distance`` bits; XOR and popcount in blocks of rows, so memory stays flat."""
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(hashes), BLOCK):
        rows = hashes[start : start + BLOCK]
        close = distances(rows, hashes[start:]) <= max_distance
        for i, j in zip(*np.nonzero(close), strict=True):
            if j > i:
                pairs.append((start + int(i), start + int(j)))
    return pairs


def find_groups(
    records: Sequence[Record], hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[dict[str, Any]]:
    """Near-duplicate groups among ``records`` given their hashes (see :func:`near_duplicates`)."""
    # Compare each picture once: exact copies share a sha and are the health report's.
    first: dict[str, int] = {}
    for index, record in enumerate(records):
        first.setdefault(record.sha, index)
    shas = list(first)
    unique = hashes[[first[sha] for sha in shas]].reshape(len(shas), 2)
    parent = list(range(len(shas)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close_pairs(unique, max_distance):
        parent[root(j)] = root(i)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(shas)):
        members[root(i)].append(i)

    copies: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        copies[record.sha].append(index)
    groups = []
    for group in members.values():
        if len(group) < 2:
            continue
        picked = [index for i in group for index in copies[shas[i]]]
        # Train first, then index order: the first image is the one a fix keeps.
        picked.sort(key=lambda index: (SPLITS.index(records[index].split), index))
        near = unique[group]
        distance = int(distances(near, near).max())
        groups.append(_group([records[index] for index in picked], distance))
    groups.sort(
        key=lambda item: (("conflict", "leak", "duplicate").index(item["kind"]), item["files"])
    )
    return groups


def _group(chosen: list[Record], distance: int) -> dict[str, Any]:
    labels = {record.label for record in chosen}
    splits = {record.split for record in chosen}
    kind = "conflict" if len(labels) > 1 else "leak" if len(splits) > 1 else "duplicate"
    return {
        "files": [record.file for record in chosen],
        "sources": [record.upload_name for record in chosen],
        "labels": [record.label for record in chosen],
        "splits": [record.split for record in chosen],
        "kind": kind,
        "distance": distance,
    }


def near_duplicates(
    dataset: Dataset | str, max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[dict[str, Any]]:
    """Groups of images that are the same picture resized, re-encoded or cropped a little.

    Args:
        dataset: a :class:`Dataset` or its name.
        max_distance: most bits two perceptual hashes may differ in.

    Returns:
        One dict per group: ``files`` (stored names, train first), ``sources`` (upload
        names), ``labels``, ``splits`` (in the same order), ``kind`` (``duplicate``,
        ``conflict`` or ``leak``) and ``distance`` (most bits any two differ in).
        Groups of exact copies only (one sha) are left to the health report.
    """
    if not isinstance(dataset, Dataset):
        dataset = Dataset(dataset)
    return near_duplicates_in(dataset.path, dataset.records, max_distance)


def near_duplicates_in(
    folder: Path, records: Sequence[Record], max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[dict[str, Any]]:
    """:func:`near_duplicates` of the images ``records`` name under ``folder``."""
    comparable = [record for record in records if min(record.width, record.height) >= MIN_SIDE]
    return find_groups(comparable, perceptual_hashes(folder, comparable), max_distance)
