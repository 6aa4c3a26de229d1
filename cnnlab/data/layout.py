"""Where each file of an upload belongs: its class and split, read from the folder layout.

Layouts: ``class/file``, ``root/class/file``, and either of those with ``train/``,
``val/``, ``test/`` folders above the class folders. OS junk (``__MACOSX``, ``.DS_Store``,
hidden files) is ignored; an unsafe path or a file outside a class folder is rejected
with a reason that says how to fix the upload.
"""

from __future__ import annotations

from cnnlab.data import classes
from cnnlab.data.splits import split_from_folder

JUNK_NAMES = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"}


def clean_parts(name: str) -> tuple[list[str], str | None]:
    """Split an archive or upload path; say "ignored" for junk, a reason for unsafe."""
    text = name.replace("\\", "/")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    for part in parts:
        if part.startswith(".") and part != ".." or part.lower() == "__macosx":
            return parts, "ignored"
    if parts and parts[-1].lower() in JUNK_NAMES:
        return parts, "ignored"
    if text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in parts:
        return parts, "unsafe path (absolute or containing '..'); it was skipped"
    return parts, None


def place_all(
    names: list[str],
) -> list[tuple[list[str], str | None, str | None, str | None, bool]]:
    """Decide each file's class and split from the layout of the whole upload.

    Layouts: ``class/file``, ``root/class/file``, and either of those with ``train/``,
    ``val/``, ``test/`` folders above the class folders. Returns, per name,
    ``(parts, label, split, reason, ignored)``.
    """
    cleaned = [clean_parts(name) for name in names]
    usable = [parts for parts, problem in cleaned if problem is None]
    strip = 0
    while True:
        in_folders = [p for p in usable if len(p) >= strip + 2]
        tops = {p[strip] for p in in_folders}
        if len(tops) != 1:
            break
        deep = sum(len(p) >= strip + 3 for p in in_folders)
        # A lone top folder is a root (not a class) when most files sit in folders
        # below it; a stray README beside the class folders does not change that.
        if split_from_folder(tops.pop()) or deep * 2 <= len(in_folders):
            break
        strip += 1
    # Split folders hold class folders; a "train" folder holding images is a class.
    split_layout = any(len(p) >= strip + 3 and split_from_folder(p[strip]) for p in usable)

    out = []
    for parts, problem in cleaned:
        shown = parts
        if problem == "ignored":
            out.append((shown, None, None, None, True))
            continue
        if problem:
            out.append((shown, None, None, problem, False))
            continue
        rest = parts[strip:]
        split = None
        if split_layout:
            split = split_from_folder(rest[0]) if len(rest) > 1 else None
            if split is None:
                out.append((shown, None, None, _outside_split_folders(rest), False))
                continue
            rest = rest[1:]
            if len(rest) < 2:
                out.append((shown, None, None, in_split_folder(parts[strip]), False))
                continue
        if len(rest) < 2:
            out.append((shown, None, None, _not_in_class_folder(), False))
            continue
        label, error = class_from_folder(rest[0])
        out.append((shown, label, split, error, False))
    return out


def class_from_folder(folder: str) -> tuple[str | None, str | None]:
    """The class a folder names (as written, see :mod:`cnnlab.data.classes`), or why not."""
    name, why = classes.problem(folder)
    if why is not None:
        return None, f"the folder name {folder!r} cannot be a class name: {why}; rename it"
    return name, None


def _not_in_class_folder() -> str:
    return "not inside a class folder; put each image in a folder named after its class"


def in_split_folder(folder: str) -> str:
    return (
        f"directly inside the split folder {folder!r}; put it in a class folder inside it "
        f"({folder}/<class>/image)"
    )


def _outside_split_folders(rest: list[str]) -> str:
    where = f"folder {rest[0]!r}" if len(rest) > 1 else "top level"
    return (
        f"in the {where}, outside the train/, val/ and test/ folders; in a zip with split "
        "folders every class folder must sit inside one of them"
    )
