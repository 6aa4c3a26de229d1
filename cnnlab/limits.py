"""What one workspace, run or visitor may take: every limit declared once, as data.

Each limit is a field of :class:`Limits`, a spec: its range is checked like any other
spec field and its help text is what the app shows users. The machine's owner sets one
with an environment variable ``CNNLAB_LIMIT_<FIELD>`` (e.g.
``CNNLAB_LIMIT_MAX_ACTIVE_RUNS=8``); :func:`current` reads them on every call, so a
change needs no restart of the code that reads it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.spec import Range, Spec, param

ENV_PREFIX = "CNNLAB_LIMIT_"
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits(Spec):
    """The limits in force; see the module docstring for how to change one."""

    kind = "limit"

    max_active_runs: int = param(
        20, Range(1, 100_000, integer=True), "queued plus running runs in the workspace"
    )
    max_run_minutes: float = param(
        24 * 60.0, Range(1.0, 7 * 24 * 60.0), "longest a run may train, in minutes"
    )
    predict_max_files: int = param(
        50, Range(1, 100_000, integer=True), "images in one Predict upload"
    )
    predict_max_megapixels: float = param(
        400.0, Range(1.0, 100_000.0), "pixels of all images of one Predict upload, in millions"
    )
    zip_max_entries: int = param(
        200_000, Range(1, 10_000_000, integer=True), "entries (files and folders) in one zip"
    )
    zip_max_gb: float = param(
        8.0, Range(0.01, 1024.0), "bytes a zip may expand to, all files together, in GB"
    )
    arch_json_max_kb: int = param(
        256, Range(1, 100_000, integer=True), "size of an imported architecture JSON, in KB"
    )
    arch_json_max_depth: int = param(
        16, Range(2, 1000, integer=True), "nesting depth of an imported architecture JSON"
    )
    min_free_disk_mb: int = param(
        500, Range(0, 10_000_000, integer=True), "free disk kept when ingesting or training, MB"
    )


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def current() -> Limits:
    """The limits in force: the defaults, with any ``CNNLAB_LIMIT_*`` variable applied.

    Raises:
        CnnlabError: when a variable is not a number in the limit's range (the message
            names the variable).
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Limits):
        text = os.environ.get(env_name(field.name), "").strip()
        if not text:
            continue
        variable = env_name(field.name)
        kind = int if isinstance(field.default, int) else float
        try:
            value = kind(text)
        except ValueError:
            raise CnnlabError(
                f"`{variable}` must be a {'whole ' if kind is int else ''}number "
                f"({Limits.help(field.name)}). Received: {variable}={text!r}"
            ) from None
        values[field.name] = Limits.limits(field.name).check(variable, value)
    return Limits(**values)


def describe(limits: Limits | None = None) -> list[dict[str, Any]]:
    """The limits as rows for people: ``limit`` (what it bounds), ``value``, ``variable``."""
    limits = limits or current()
    return [
        {
            "limit": Limits.help(field.name),
            "value": getattr(limits, field.name),
            "variable": env_name(field.name),
        }
        for field in dataclasses.fields(Limits)
    ]


def check_free_disk(path: Path, doing: str, needed_bytes: int = 0) -> None:
    """Refuse to start ``doing`` (e.g. "store these images") when the disk holding
    ``path`` would keep less than ``min_free_disk_mb`` free after ``needed_bytes``.

    Raises:
        CnnlabError: saying how much is free and how much is kept, and what to do.
    """
    keep = current().min_free_disk_mb * MB
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free - needed_bytes < keep:
        raise CnnlabError(
            f"Not enough free disk to {doing}: {free / MB:,.0f} MB free"
            + (f", {needed_bytes / MB:,.0f} MB needed" if needed_bytes else "")
            + f", and {keep / MB:,.0f} MB is kept free ({env_name('min_free_disk_mb')}). "
            "Delete old runs or datasets, or free space on that disk."
        )


def check_predict_upload(files: Sequence[tuple[str, bytes]]) -> int:
    """Refuse a Predict upload with more files, or more pixels all together, than the
    limits allow. Pixels are read from each image's header (nothing is decoded); a
    file whose header cannot be read counts 0 here and gets its own error when
    predicted. Returns the pixels counted.

    Raises:
        CnnlabError: naming the count or the pixels, the limit, its variable and the fix.
    """
    limit = current()
    if len(files) > limit.predict_max_files:
        raise CnnlabError(
            f"{len(files)} images at once is more than the limit of {limit.predict_max_files} "
            f"({env_name('predict_max_files')}). Predict them in smaller batches, or use "
            "`python -m cnnlab predict` for a whole folder."
        )
    pixels = sum(_header_pixels(data) for _, data in files)
    if pixels > limit.predict_max_megapixels * 1e6:
        raise CnnlabError(
            f"These images hold {pixels / 1e6:,.0f} megapixels together, more than the limit "
            f"of {limit.predict_max_megapixels:g} ({env_name('predict_max_megapixels')}). "
            "Upload fewer or smaller images at once."
        )
    return pixels


def _header_pixels(data: bytes) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
            return width * height * max(1, getattr(image, "n_frames", 1))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return 0
