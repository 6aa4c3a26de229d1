"""A dataset on disk: normalised images, an index, metadata and a health report.

Layout under ``$CNNLAB_HOME/datasets/<name>/``::

    dataset.json   metadata: name, created, source, channels, classes, class_folders,
                   split fractions, seed, augmentation spec (the default for runs),
                   orientation_matters, rejected, ignored
    index.csv      one row per image: file,label,split,sha,width,height,source
    health.json    the health report (see ``cnnlab.data.health``)
    images/<key>/<sha16>.<ext>   each image, normalised once at ingest

``label`` is the class name as the user wrote it (``golden retriever``, ``猫``); ``key``
is its folder, a safe name unique in the dataset (``golden-retriever``,
``class-1a2b3c4d``), and ``class_folders`` maps each key to its name (see
:mod:`cnnlab.data.classes`). Datasets made before names were kept have key == label.
``file`` in the index is relative to the dataset folder; ``source`` is the name the
file had in the upload (``cats/same.png``), empty for images ingested before it was
recorded. ``sha`` is the SHA-256 of the normalised pixels, so the same picture saved
twice (even as another format) has the same hash. ``split`` is one of ``train``,
``val``, ``test``.

``orientation_matters`` says whether mirroring or turning an image changes its meaning
(digits, text, scans: true; ordinary photos: false); augmentation then leaves out flips
and keeps rotation small (``AugmentSpec.for_orientation``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnlab import workspace
from cnnlab.errors import CnnlabError

SPLITS = ("train", "val", "test")
INDEX_FIELDS = ("file", "label", "split", "sha", "width", "height", "source")
ORIENTATION_FIELD = "orientation_matters"


@dataclass(frozen=True)
class Record:
    """One image of a dataset."""

    file: str  # path relative to the dataset folder
    label: str  # class name, as the user wrote it
    split: str  # train, val or test
    sha: str  # SHA-256 of the normalised pixels
    width: int
    height: int
    source: str = ""  # the name the file had in the upload

    @property
    def upload_name(self) -> str:
        """The name the user knows this image by: its upload's, else the stored one."""
        return self.source or self.file


class Dataset:
    """A dataset read from the workspace.

    Attributes:
        name: the dataset's safe name.
        path: its folder.
        meta: the parsed ``dataset.json``.
        records: the index rows, in index order.
    """

    def __init__(self, name: str, version: int | None = None):
        self.name = workspace.safe_name(name, "dataset name")
        self.path = workspace.dataset_dir(self.name)
        meta = workspace.read_json(self.path / "dataset.json")
        if meta is None:
            raise _no_such_dataset(name)
        self.meta: dict[str, Any] = meta
        if version is None or version == self.version:
            self.records: list[Record] = read_index(self.path / "index.csv")
        else:  # an earlier version, e.g. the one a run was trained on
            from cnnlab.data.versions import records_of

            self.records = records_of(self.path, version)
            self.meta = {**meta, "version": version}

    @property
    def version(self) -> int | None:
        """The version these records are (None for a dataset made before versions)."""
        return self.meta.get("version")

    @property
    def channels(self) -> int:
        """1 for grayscale datasets, 3 for colour."""
        return int(self.meta.get("channels", 3))

    @property
    def orientation_matters(self) -> bool:
        """Whether mirroring or turning an image changes its meaning (digits, scans).

        Datasets ingested before this was recorded count as True when grayscale
        (usually digits or scans) and False when colour (usually photos).

        Raises:
            CnnlabError: when the stored value is not a boolean.
        """
        return _orientation_matters(self.meta, self.path)

    @property
    def class_names(self) -> list[str]:
        """Class labels in a fixed (sorted) order; the model's output order."""
        return sorted({record.label for record in self.records})

    def split(self, split: str) -> list[Record]:
        """The records of ``split``, or of several joined by ``+`` (``train+val``)."""
        wanted = split.split("+") if isinstance(split, str) else [split]
        if not all(name in SPLITS for name in wanted):
            raise CnnlabError(
                f"`split` must be one of {', '.join(SPLITS)}, or several joined by '+' "
                f"(train+val). Received: {split!r}"
            )
        return [record for record in self.records if record.split in wanted]

    def files_and_labels(self, split: str) -> tuple[list[str], list[int]]:
        """Absolute image paths and integer labels (indices into ``class_names``)."""
        index = {label: i for i, label in enumerate(self.class_names)}
        rows = self.split(split)
        return [str(self.path / row.file) for row in rows], [index[row.label] for row in rows]

    def upload_names(self, files: list[str]) -> list[str]:
        """The upload name of each image path (as ``files_and_labels`` gives them); a
        path the index does not list keeps its own name."""
        known = {str(self.path / record.file): record.upload_name for record in self.records}
        return [known.get(str(file), str(file)) for file in files]

    def health(self) -> dict[str, Any]:
        return workspace.read_json(self.path / "health.json", default={}) or {}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, images={len(self.records)}, classes={len(self.class_names)})"
        )


def read_index(path: Path) -> list[Record]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return [
            Record(
                file=row["file"],
                label=row["label"],
                split=row["split"],
                sha=row["sha"],
                width=int(row["width"]),
                height=int(row["height"]),
                source=row.get("source") or "",
            )
            for row in rows
        ]
    except (KeyError, ValueError, TypeError) as error:
        raise CnnlabError(
            f"{path} is damaged ({error}); re-ingest the dataset or restore the file."
        ) from error


def write_index(path: Path, records: list[Record]) -> None:
    """Write the index atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(asdict(record))
    workspace.atomic_write_text(path, buffer.getvalue())


def list_datasets() -> list[str]:
    """Names of the datasets in the workspace, sorted."""
    root = workspace.datasets_root()
    return sorted(p.name for p in root.iterdir() if (p / "dataset.json").exists())


def load_dataset(name: str, version: int | None = None) -> Dataset:
    """Dataset ``name`` as it is now, or as it was at ``version``."""
    return Dataset(name, version)


# --- dataset.json ------------------------------------------------------------------------


def _no_such_dataset(name: str) -> CnnlabError:
    known = ", ".join(list_datasets()) or "none yet"
    return CnnlabError(
        f"There is no dataset named {name!r} (datasets: {known}). "
        "Create one with `python -m cnnlab ingest SOURCE --name NAME` or on the Data page."
    )


def meta_path(dataset_name: str) -> Path:
    """The ``dataset.json`` of dataset ``dataset_name``.

    Raises:
        CnnlabError: when there is no such dataset, listing the ones there are.
    """
    path = workspace.dataset_dir(dataset_name) / "dataset.json"
    if not path.exists():
        raise _no_such_dataset(dataset_name)
    return path


def read_meta(dataset_name: str) -> dict[str, Any]:
    """The parsed ``dataset.json``, read afresh (without the index, so it is cheap)."""
    path = meta_path(dataset_name)
    meta = workspace.read_json(path)
    if not isinstance(meta, dict):
        raise CnnlabError(f"{path} is damaged (not a JSON object); re-ingest the dataset.")
    return meta


def update_meta(dataset_name: str, **fields: Any) -> None:
    """Set top-level fields of a dataset's ``dataset.json``, keeping the others."""
    from cnnlab.data.store import dataset_lock  # the store imports this module

    path = meta_path(dataset_name)
    with dataset_lock(path.parent.name):  # ingest may be rewriting dataset.json too
        meta = read_meta(dataset_name)
        meta.update(fields)
        workspace.atomic_write_json(path, meta)


def get_orientation_matters(dataset_name: str) -> bool:
    """The dataset's ``orientation_matters``, read afresh from ``dataset.json``.

    See :attr:`Dataset.orientation_matters` for the default of older datasets.
    """
    return _orientation_matters(read_meta(dataset_name), workspace.dataset_dir(dataset_name))


def set_orientation_matters(dataset_name: str, value: bool) -> None:
    """Record whether mirroring or turning the dataset's images changes their meaning.

    Raises:
        CnnlabError: when ``value`` is not a boolean, or there is no such dataset.
    """
    if not isinstance(value, bool):
        raise CnnlabError(
            f"`{ORIENTATION_FIELD}` must be one of False, True. "
            f"Received: {ORIENTATION_FIELD}={value!r}"
        )
    update_meta(dataset_name, **{ORIENTATION_FIELD: value})


def _orientation_matters(meta: dict[str, Any], folder: Path) -> bool:
    stored = meta.get(ORIENTATION_FIELD)
    if stored is None:
        # Recorded since ingest stores it; older grayscale data are usually digits or scans.
        return int(meta.get("channels", 3)) == 1
    if not isinstance(stored, bool):
        raise CnnlabError(
            f"`{ORIENTATION_FIELD}` in {folder / 'dataset.json'} must be one of False, True. "
            f"Received: {ORIENTATION_FIELD}={stored!r}. Set it on the Data page "
            "(Augmentation tab) or fix that field in dataset.json."
        )
    return stored
