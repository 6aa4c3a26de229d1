"""Dataset versions: every change to a dataset's index is a new version; none is edited.

Each time a dataset's index is written (ingest, adding images, a health fix, a relabel,
a removal), the new index is also kept as ``versions/<n>.csv`` and ``versions.json``
gains a row saying what changed (images added, removed, relabelled, moved between
splits). Image files named by any version stay on disk, so a run keeps the data it was
trained on: it records the version (``RunRecord.dataset_version``), and training,
evaluation and the embedding map read that version's index.

A dataset made before versions were kept gets version 1 for the state it was in when it
was first changed afterwards.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab import workspace
from cnnlab.errors import CnnlabError

VERSIONS_DIR = "versions"
VERSIONS_FILE = "versions.json"


def history(path: Path) -> list[dict[str, Any]]:
    """The dataset's versions, oldest first (empty before its first change was kept)."""
    rows = workspace.read_json(Path(path) / VERSIONS_FILE, default=[])
    return rows if isinstance(rows, list) else []


def index_path(path: Path, version: int) -> Path:
    return Path(path) / VERSIONS_DIR / f"{int(version)}.csv"


def changes(previous: list, records: list) -> dict[str, int]:
    """How ``records`` differ from ``previous``: images added and removed (by stored
    file), relabelled and moved to another split (same image, by content hash)."""
    before = {record.file: record for record in previous}
    after = {record.file: record for record in records}
    added = [after[file] for file in after.keys() - before.keys()]
    removed = [before[file] for file in before.keys() - after.keys()]
    # A relabel moves an image to its new class's folder: same pixels, another file.
    gone = Counter((record.sha, record.label) for record in removed)
    relabelled = sum(
        1
        for record in added
        if any(sha == record.sha and label != record.label for sha, label in gone)
    )
    moved = sum(
        1
        for file in after.keys() & before.keys()
        if after[file].split != before[file].split or after[file].label != before[file].label
    )
    return {
        "added": len(added) - relabelled,
        "removed": len(removed) - relabelled,
        "relabelled": relabelled,
        "moved": moved,
    }


def describe(counts: dict[str, int]) -> str:
    """One line for a version's change: "+12 images, -3, 2 relabelled"."""
    parts = []
    if counts.get("added"):
        parts.append(f"+{counts['added']} image(s)")
    if counts.get("removed"):
        parts.append(f"-{counts['removed']} image(s)")
    if counts.get("relabelled"):
        parts.append(f"{counts['relabelled']} relabelled")
    if counts.get("moved"):
        parts.append(f"{counts['moved']} changed split or label")
    return ", ".join(parts) or "no image changed"


def record(path: Path, previous: list, records: list) -> int:
    """Keep ``records`` as the dataset's next version (``previous`` is the index it
    replaces); returns the new version's number."""
    path = Path(path)
    rows = history(path)
    if not rows and previous:
        rows.append(_row(path, 1, [], previous, "as it was when versions began to be kept"))
    number = rows[-1]["version"] + 1 if rows else 1
    change = None if rows else "created"
    rows.append(_row(path, number, previous, records, change))
    workspace.atomic_write_json(path / VERSIONS_FILE, rows)
    return number


def _row(path: Path, number: int, previous: list, records: list, change: str | None) -> dict:
    from cnnlab.data.dataset import write_index

    target = index_path(path, number)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_index(target, records)
    counts = changes(previous, records)
    return {
        "version": number,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": len(records),
        "classes": len({r.label for r in records}),
        **counts,
        "change": change or describe(counts),
    }


def records_of(path: Path, version: int) -> list:
    """The index of ``version``.

    Raises:
        CnnlabError: when the dataset has no such version.
    """
    from cnnlab.data.dataset import read_index

    file = index_path(path, version)
    if not file.exists():
        known = ", ".join(str(row["version"]) for row in history(path)) or "none kept"
        raise CnnlabError(
            f"Dataset {Path(path).name!r} has no version {version!r} (versions: {known})."
        )
    return read_index(file)


def dataset_versions(name: str) -> list[dict[str, Any]]:
    """Dataset ``name``'s versions, oldest first, each with the runs trained on it.

    Raises:
        CnnlabError: when there is no such dataset.
    """
    from cnnlab import runs
    from cnnlab.data.dataset import Dataset

    dataset = Dataset(name)
    trained = Counter(info.record.dataset_version for info in runs.list_runs(dataset.name))
    return [{**row, "runs": trained.get(row["version"], 0)} for row in history(dataset.path)]
