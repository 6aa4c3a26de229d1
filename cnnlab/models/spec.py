"""``ArchSpec``: a preset name with options, or an ordered list of blocks.

In JSON, one of::

    {"preset": "vgg_small", "options": {"width": 32, "stages": 3, ...}}
    {"blocks": [{"type": "conv", "filters": 32, ...}, {"type": "pool", ...}, ...]}

Options are validated against the preset's options spec and stored complete (every
default filled in), so two equal architectures have equal JSON. The classifier is not
part of the spec: the builder always ends with ``Dense(classes, softmax)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cnnlab import limits
from cnnlab.errors import CnnlabError
from cnnlab.models.blocks import Backbone, Block, block_from_dict
from cnnlab.models.registry import get_preset
from cnnlab.spec import Spec

MAX_BLOCKS = 64
# A bracket, or a JSON string (escapes skipped; an unclosed one runs to the end), whose
# brackets do not nest. One left-to-right pass, so any text is scanned in linear time.
_BRACKET_OR_STRING = re.compile(r'[\[\]{}]|"(?:[^"\\]+|\\.)*"?')


@dataclass(frozen=True)
class ArchSpec(Spec):
    """An architecture's body.

    Build with :meth:`ArchSpec.preset` or :meth:`ArchSpec.from_blocks`, or from JSON with
    :meth:`from_dict`.
    """

    kind = "architecture"
    preset_name: str = ""  # a registered preset, or "" when `blocks` are given
    options: Mapping[str, Any] = field(default_factory=dict)  # the preset's options
    blocks: tuple[Block, ...] = ()  # the body, in order, when there is no preset

    def validate(self) -> None:
        if self.preset_name and self.blocks:
            raise CnnlabError(
                "An architecture is either a preset or a list of blocks, not both. "
                f"Received: preset={self.preset_name!r} and {len(self.blocks)} blocks."
            )
        if self.preset_name:
            preset = get_preset(self.preset_name)
            if not isinstance(self.options, Mapping):
                raise CnnlabError(
                    f"`options` must be an object of {self.preset_name} options. "
                    f"Received: options={self.options!r}"
                )
            resolved = preset.options.from_dict(dict(self.options)).to_dict()
            object.__setattr__(self, "options", MappingProxyType(resolved))
            return
        if self.options:
            raise CnnlabError(
                "`options` belong to a preset; a list of blocks takes none. "
                f"Received: options={dict(self.options)!r}"
            )
        object.__setattr__(self, "options", MappingProxyType({}))
        if not self.blocks:
            raise CnnlabError(
                "An architecture needs a preset or at least one block. "
                "Received: no preset and an empty block list."
            )
        if len(self.blocks) > MAX_BLOCKS:
            raise CnnlabError(
                f"An architecture may have at most {MAX_BLOCKS} blocks. "
                f"Received: {len(self.blocks)} blocks."
            )
        blocks = tuple(
            block_from_dict(block, position) for position, block in enumerate(self.blocks, 1)
        )
        object.__setattr__(self, "blocks", blocks)
        for position, block in enumerate(blocks, 1):
            if isinstance(block, Backbone) and position != 1:
                raise CnnlabError(
                    f"Block {position} (backbone): a backbone must be the first block. "
                    "Move it to the top or remove it."
                )

    # --- construction --------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **options: Any) -> ArchSpec:
        """The registered preset ``name`` with ``options`` (validated, defaults filled)."""
        return cls(preset_name=name, options=options)

    @classmethod
    def from_blocks(cls, blocks: list[Block | dict]) -> ArchSpec:
        return cls(blocks=tuple(blocks))

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """From parsed JSON: ``{"preset": ..., "options": ...}`` or ``{"blocks": [...]}``."""
        if isinstance(data, ArchSpec):
            return data
        if not isinstance(data, Mapping):
            raise CnnlabError(
                'An architecture must be a JSON object like {"preset": "simple"} or '
                f'{{"blocks": [...]}}. Received: {type(data).__name__}'
            )
        unknown = sorted(set(data) - {"preset", "options", "blocks"})
        if unknown:
            raise CnnlabError(
                f"Unknown architecture field(s): {', '.join(unknown)}. "
                "Valid fields: preset, options, blocks."
            )
        preset = data.get("preset") or ""
        if not isinstance(preset, str):
            raise CnnlabError(f"`preset` must be a preset name. Received: preset={preset!r}")
        blocks = data.get("blocks") or ()
        if not isinstance(blocks, (list, tuple)):
            raise CnnlabError(f"`blocks` must be a list of blocks. Received: blocks={blocks!r}")
        return cls(preset_name=preset, options=data.get("options") or {}, blocks=tuple(blocks))

    @classmethod
    def from_json(cls, text: str | bytes) -> ArchSpec:
        """From JSON text: an object as ``from_dict`` takes, or a bare list of blocks.

        Imported text is bounded before it is parsed: at most ``arch_json_max_kb`` and
        ``arch_json_max_depth`` levels of nesting (see :mod:`cnnlab.limits`).

        Raises:
            CnnlabError: too large, too deep, not JSON, or not a valid architecture.
        """
        limit = limits.current()
        size = len(text)  # characters: a floor on the bytes, enough to refuse a huge paste
        if isinstance(text, str) and size <= max_json_bytes(limit):
            size = len(text.encode("utf-8", "replace"))
        if size > max_json_bytes(limit):
            raise CnnlabError(
                f"The architecture JSON is larger than the limit of {limit.arch_json_max_kb} KB "
                f"({limits.env_name('arch_json_max_kb')}). An architecture takes a few KB: "
                "import a file that 'Export JSON' wrote."
            )
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise CnnlabError(
                    "The architecture is not UTF-8 text; save the JSON as UTF-8."
                ) from None
        if _nesting_depth(text) > limit.arch_json_max_depth:
            raise _too_deep(limit)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CnnlabError(
                f"The architecture is not valid JSON: {error.msg} at line {error.lineno}, "
                f"column {error.colno}. Fix it there, or export a working architecture "
                "to start from."
            ) from None
        except RecursionError:  # the depth scan should have refused it; never a traceback
            raise _too_deep(limit) from None
        if isinstance(data, list):
            data = {"blocks": data}
        arch = cls.from_dict(data)
        arch.check_weights_files()
        return arch

    def check_weights_files(self) -> None:
        """Refuse a backbone weights file outside the folders it may come from (see
        cnnlab.train.pretrained.check_weights_path): imports and builds check this; a
        stored run record is read as written."""
        from cnnlab.train.pretrained import check_weights_path  # cnnlab.train builds on models

        for block in self.resolved_blocks():
            if isinstance(block, Backbone):
                check_weights_path(block.weights)

    # --- views ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        if self.preset_name:
            return {"preset": self.preset_name, "options": dict(self.options)}
        return {"blocks": [block.to_dict() for block in self.blocks]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def resolved_blocks(self) -> tuple[Block, ...]:
        """The body's blocks: the preset expanded, or the blocks as given."""
        if self.preset_name:
            preset = get_preset(self.preset_name)
            return tuple(preset.blocks(preset.options.from_dict(dict(self.options))))
        return self.blocks

    def to_blocks(self) -> ArchSpec:
        """The same architecture as an editable list of blocks."""
        return ArchSpec(blocks=self.resolved_blocks())

    @property
    def label(self) -> str:
        """``vgg_small`` or ``custom (7 blocks)``, for titles and tables."""
        if self.preset_name:
            return self.preset_name
        return f"custom ({len(self.blocks)} blocks)"

    @property
    def backbone(self) -> Backbone | None:
        first = self.resolved_blocks()[0]
        return first if isinstance(first, Backbone) else None

    def __reduce__(self):
        # Options are a read-only mapping, which pickle refuses; rebuild from JSON.
        return (ArchSpec.from_dict, (self.to_dict(),))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()


def max_json_bytes(limit: limits.Limits | None = None) -> int:
    """The most bytes an imported architecture JSON may have (``arch_json_max_kb``)."""
    return (limit or limits.current()).arch_json_max_kb * 1024


def _nesting_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in JSON text, brackets inside strings not counted.

    Unbalanced text gets a depth too (json.loads then says what is wrong with it).
    """
    depth = deepest = 0
    for token in _BRACKET_OR_STRING.findall(text):
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _too_deep(limit: limits.Limits) -> CnnlabError:
    return CnnlabError(
        f"The architecture JSON nests deeper than the limit of {limit.arch_json_max_depth} "
        f"levels ({limits.env_name('arch_json_max_depth')}). An architecture is an "
        "object with a list of blocks; flatten the nested lists or objects."
    )
