"""Frozen, JSON-serialisable specs whose limits are declared once.

Each field of a spec carries its limits (a :class:`Range` or a :class:`Choice`) and a
one-line help text in its metadata. The same table validates values (with a message
naming the field, the allowed values and what was received) and feeds the widgets'
``min_value``/``max_value``/``options`` on the pages, so the UI and the core cannot
disagree.

Example::

    @dataclass(frozen=True)
    class AugmentSpec(Spec):
        rotation: float = param(0.0, Range(0.0, 0.5), "fraction of a full turn")

    AugmentSpec(rotation=0.9)
    # CnnlabError: `rotation` must be in [0, 0.5]. Received: rotation=0.9
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class Range:
    """A closed numeric interval; ``integer`` asks for whole numbers."""

    low: float
    high: float
    integer: bool = False

    def check(self, name: str, value: Any) -> Any:
        number_types = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types):
            kind = "a whole number" if self.integer else "a number"
            raise CnnlabError(f"`{name}` must be {kind}. Received: {name}={value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CnnlabError(f"`{name}` must be a finite number. Received: {name}={value!r}")
        if not self.low <= value <= self.high:
            raise CnnlabError(
                f"`{name}` must be in [{_fmt(self.low)}, {_fmt(self.high)}]. "
                f"Received: {name}={value!r}"
            )
        return value if self.integer else float(value)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of options."""

    options: tuple

    def check(self, name: str, value: Any) -> Any:
        if value not in self.options:
            allowed = ", ".join(repr(option) for option in self.options)
            raise CnnlabError(f"`{name}` must be one of {allowed}. Received: {name}={value!r}")
        return value


def _fmt(number: float) -> str:
    return f"{number:g}"


def param(default: Any, limits: Range | Choice | None = None, help: str = "") -> Any:
    """A spec field with its limits and help text attached."""
    if isinstance(default, (list, dict)):
        raise TypeError("spec defaults must be immutable; use a tuple")
    return dataclasses.field(default=default, metadata={"limits": limits, "help": help})


class Spec:
    """Mixin for frozen dataclasses: validation, JSON round-trip and field limits."""

    kind: ClassVar[str] = "spec"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            limits = field.metadata.get("limits")
            value = getattr(self, field.name)
            # A boolean field takes booleans only: 1 == True would pass a Choice, and
            # "false" is truthy.
            if isinstance(field.default, bool) and not isinstance(value, bool):
                allowed = "one of False, True" if limits is not None else "true or false"
                raise CnnlabError(
                    f"`{field.name}` must be {allowed}. Received: {field.name}={value!r}"
                )
            if limits is not None:
                checked = limits.check(field.name, getattr(self, field.name))
                object.__setattr__(self, field.name, checked)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; override where a combination can be wrong."""

    def to_dict(self) -> dict[str, Any]:
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def with_changes(self, **changes: Any) -> Spec:
        """A copy with ``changes`` applied and validated; unknown fields are an error."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Spec:
        """Build from a dict (e.g. parsed JSON); unknown keys are an error."""
        data = dict(data or {})
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CnnlabError(
                f"Unknown {cls.kind} field(s): {', '.join(unknown)}. "
                f"Valid fields: {', '.join(names)}."
            )
        tuples = {
            field.name for field in dataclasses.fields(cls) if isinstance(field.default, tuple)
        }
        for name in tuples & set(data):
            if isinstance(data[name], list):
                data[name] = tuple(data[name])
        return cls(**data)

    def replace(self, **changes: Any) -> Spec:
        return dataclasses.replace(self, **changes)

    @classmethod
    def limits(cls, name: str) -> Range | Choice | None:
        return _field(cls, name).metadata.get("limits")

    @classmethod
    def help(cls, name: str) -> str:
        return _field(cls, name).metadata.get("help", "")


def _field(cls: type, name: str) -> dataclasses.Field:
    for field in dataclasses.fields(cls):
        if field.name == name:
            return field
    raise KeyError(name)


def _plain(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
