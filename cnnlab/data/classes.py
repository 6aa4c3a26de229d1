"""Class names as the user wrote them, and the safe folder (key) each is stored under.

A class's *name* is what the user wrote (a folder's name, or the label given to loose
files), trimmed of surrounding whitespace and Unicode-normalised (NFC): ``golden
retriever``, ``cat!``, ``猫``. Records, ``Dataset.class_names``, predictions, reports and
exports use the name. Two names that are equal after trimming and NFC are one class;
any other two are two classes (``Cat`` and ``cat`` too).

On disk a class lives in ``images/<key>/``. The key is an ASCII slug of the name
(``golden retriever`` -> ``golden-retriever``), or ``class-<8 hex>`` (a hash of the name)
when the name has no ASCII letter or digit (``猫``). Keys are unique within a dataset,
ignoring case (so case-insensitive file systems cannot merge them either): when
``cat!`` and ``cat?`` would both be ``cat``, the later one is ``cat-2``. Datasets made
before names were kept have key == name, and load unchanged.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping

from cnnlab import workspace
from cnnlab.errors import CnnlabError

MAX_LENGTH = 100
SEPARATORS = ("/", "\\")
# Unicode categories refused in a name: control characters and lone surrogates (which
# cannot be written as UTF-8). Format characters (zero-width joiners) are kept: some
# scripts and emoji need them.
REFUSED_CATEGORIES = ("Cc", "Cs")
RULE = (
    f"1 to {MAX_LENGTH} characters with no slash, backslash or control character, and "
    "not '.' or '..'"
)


def normalise(text: str) -> str:
    """``text`` as a class name is compared: NFC, surrounding whitespace trimmed."""
    return unicodedata.normalize("NFC", str(text)).strip()


def problem(text: str) -> tuple[str, str | None]:
    """The normalised name, and why it cannot be a class name and how to fix that (None
    when it can)."""
    name = normalise(text)
    if not name:
        return name, "it is empty; give the images a class name, e.g. 'cat'"
    if len(name) > MAX_LENGTH:
        return name, f"it has {len(name)} characters; shorten it to at most {MAX_LENGTH}"
    for separator in SEPARATORS:
        if separator in name:
            example = name.replace(separator, " - ")
            return name, (
                f"it contains a path separator ({separator!r}); write it without, e.g. {example!r}"
            )
    for char in name:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            return name, (
                f"it contains a control character (U+{ord(char):04X}); remove tabs, line "
                "breaks and other invisible characters from it"
            )
    if name in (".", ".."):
        return name, f"{name!r} names a folder, not a class; choose a word for the class"
    return name, None


def class_name(text: str, field: str = "label") -> str:
    """``text`` as a class name: trimmed and NFC-normalised, otherwise as written.

    Raises:
        CnnlabError: when it is empty, too long, holds a path separator or a control
            character, or is ``.``/``..``; the message says which and how to fix it.
    """
    name, why = problem(text)
    if why is None:
        return name
    raise CnnlabError(
        f"`{field}` (a class name) must be {RULE}. Received: {field}={str(text)!r}: {why}."
    )


def base_key(name: str) -> str:
    """The folder name ``name`` would get with no other class around: its ASCII slug,
    or ``class-<8 hex>`` of its UTF-8 bytes when it has no ASCII letter or digit."""
    try:
        slug = workspace.safe_name(name, "class name")
    except CnnlabError:
        slug = ""
    if any(char.isalnum() for char in slug):
        return slug
    return "class-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def key_of_file(file: str) -> str:
    """The class folder of an index ``file`` (``images/<key>/<name>``)."""
    parts = file.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "images" else parts[0]


class ClassKeys:
    """The folder (key) of each class of one dataset; new names get new, unique keys.

    Args:
        existing: ``{name: key}`` of the classes already stored.
    """

    def __init__(self, existing: Mapping[str, str] | None = None):
        self.keys: dict[str, str] = dict(existing or {})
        self._taken = {key.casefold() for key in self.keys.values()}

    @classmethod
    def from_records(cls, records: Iterable) -> ClassKeys:
        """The keys of stored records (each class's folder in its ``file``)."""
        keys: dict[str, str] = {}
        for record in records:
            keys.setdefault(record.label, key_of_file(record.file))
        return cls(keys)

    def key(self, name: str) -> str:
        """The folder of class ``name``, choosing a free one for a new class."""
        if name in self.keys:
            return self.keys[name]
        base = base_key(name)
        key, number = base, 2
        while key.casefold() in self._taken:
            key = f"{base}-{number}"
            number += 1
        self.keys[name] = key
        self._taken.add(key.casefold())
        return key

    def folders(self) -> dict[str, str]:
        """``{key: name}``, sorted by key: what ``dataset.json`` records."""
        return {key: name for name, key in sorted(self.keys.items(), key=lambda kv: kv[1])}
