"""Where datasets, runs and saved architectures live, and how files are written there.

The workspace is ``$CNNLAB_HOME`` (default ``~/.cnnlab``). Every browser session and
the command line share it, and it survives restarts. User-chosen names pass through
:func:`safe_name`, so no user string can become a path outside the workspace, and
every file is written atomically (temp file + rename), so a crash never leaves half a
file behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

NAME_MAX_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def home() -> Path:
    """The workspace root, created on first use."""
    root = Path(os.environ.get("CNNLAB_HOME") or Path.home() / ".cnnlab").expanduser()
    for sub in ("datasets", "runs", "archs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def safe_name(name: str, what: str = "name") -> str:
    """Turn a user's name into a single safe path component.

    Letters, digits, ``.``, ``_`` and ``-`` are kept; accents are dropped; any other run
    of characters becomes ``-``. Leading dots and dashes are removed so a name can
    never be hidden, ``.`` or ``..``.

    Raises:
        CnnlabError: when nothing usable is left.
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub("-", text.strip()).strip(".-_")[:NAME_MAX_LENGTH].strip(".-_")
    if not text:
        raise CnnlabError(
            f"The {what} {name!r} has no usable characters; use letters, digits, '.', '_' or '-'."
        )
    return text


def inside(root: Path, *parts: str) -> Path:
    """``root / parts``, refusing anything that would land outside ``root``."""
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise CnnlabError(f"The path {'/'.join(parts)!r} points outside the workspace.")
    return path


def datasets_root() -> Path:
    return home() / "datasets"


def runs_root() -> Path:
    return home() / "runs"


def archs_root() -> Path:
    return home() / "archs"


def dataset_dir(name: str) -> Path:
    """The folder of dataset ``name`` (which need not exist yet)."""
    return inside(datasets_root(), safe_name(name, "dataset name"))


def run_dir(run_id: str) -> Path:
    """The folder of run ``run_id`` (which need not exist yet)."""
    return inside(runs_root(), safe_name(run_id, "run id"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file; ``default`` when it does not exist.

    Raises:
        CnnlabError: when the file exists but is not valid JSON.
    """
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CnnlabError(f"{path} is not valid JSON ({error}); fix or delete it.") from error


def remove_tree(path: Path) -> None:
    """Delete a folder inside the workspace (and only there)."""
    path = Path(path).resolve()
    if home().resolve() not in path.parents:
        raise CnnlabError(f"Refusing to delete {path}: it is outside the workspace.")
    shutil.rmtree(path, ignore_errors=True)
