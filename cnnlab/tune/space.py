"""A search space as data: which training and architecture settings a study varies.

A space maps parameter names to a dimension, in JSON::

    {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},
     "batch_size": {"values": [16, 32, 64]},
     "dropout": {"low": 0.1, "high": 0.5}}

The parameters a space may name are declared once in :data:`TUNABLE`, with limits
taken from the spec fields they set (TrainSpec, the presets' options, AugmentSpec),
so a space can never ask for a value a run would refuse, and the Tune page draws its
widgets from the same table. :func:`trial_config` turns one trial's values into the
``(ArchSpec, TrainSpec)`` of an ordinary run. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range

# Presets a study may switch between (``simple`` has nothing to size). ``transfer`` is
# the pretrained EfficientNet-Lite0 the auto recipe trains on photos (its weights are
# installed); ``width`` and ``depth`` size only the networks trained from scratch.
TUNABLE_PRESETS = ("vgg_small", "resnet_small", "mobilenet_small", "gated_small", "transfer")
# The preset a space's architecture parameters resize when the recipe's has none.
SIZED_PRESET = "vgg_small"
# Each from-scratch preset's option for ``depth``.
DEPTH_OPTION = {
    "vgg_small": "stages",
    "resnet_small": "stages",
    "mobilenet_small": "stages",
    "gated_small": "gated_blocks",
}
# Floats get this many points in a grid search (low, middle, high).
GRID_POINTS = 3
MAX_DIMENSIONS = 12
MAX_CHOICES = 16


@dataclass(frozen=True)
class Tunable:
    """One parameter a space may vary: what it sets, and its limits."""

    name: str
    sets: str  # "train" (a TrainSpec field), "arch" (a preset option) or "augment"
    limits: Range | Choice
    help: str
    log: bool = False  # sampled on a log scale by default (a learning rate)


def _tunables() -> dict[str, Tunable]:
    from cnnlab.models.registry import VggOptions
    from cnnlab.train.spec import TrainSpec

    def train(name: str, log: bool = False, limits: Range | None = None) -> Tunable:
        return Tunable(name, "train", limits or TrainSpec.limits(name), TrainSpec.help(name), log)

    return {
        tunable.name: tunable
        for tunable in (
            train("learning_rate", log=True),
            # Batches of one make BatchNorm meaningless: at least 4.
            train("batch_size", limits=Range(4, 256, integer=True)),
            train("optimizer"),
            train("weight_decay"),
            train("label_smoothing"),
            # Past 256 px a CPU trial takes hours: sizes a study can afford.
            train("image_size", limits=Range(16, 256, integer=True)),
            Tunable("preset", "arch", Choice(TUNABLE_PRESETS), "the network's family"),
            Tunable("width", "arch", Range(8, 128, integer=True), VggOptions.help("width")),
            Tunable(
                "depth", "arch", Range(1, 5, integer=True), "stages (gated blocks) of the network"
            ),
            Tunable(
                "dropout", "arch", VggOptions.limits("dropout"), "dropout before the classifier"
            ),
            Tunable(
                "augmentation_strength",
                "augment",
                Range(0.0, 2.0),
                "scales the recipe's augmentation: 0 = none, 1 = as is, 2 = twice as strong",
            ),
        )
    }


TUNABLE: dict[str, Tunable] = _tunables()


@dataclass(frozen=True)
class Dimension:
    """The values one parameter takes: a list of ``values``, or ``low``..``high``."""

    name: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def integer(self) -> bool:
        limits = TUNABLE[self.name].limits
        return isinstance(limits, Range) and limits.integer

    def to_dict(self) -> dict[str, Any]:
        if self.values:
            return {"values": list(self.values)}
        return {"low": self.low, "high": self.high, "log": self.log}

    def describe(self) -> str:
        if self.values:
            return ", ".join(map(str, self.values))
        scale = " (log scale)" if self.log else ""
        return f"{self.low:g} to {self.high:g}{scale}"


def _dimension(name: str, data: Any) -> Dimension:
    """One dimension from JSON, checked against the parameter's limits."""
    if name not in TUNABLE:
        raise CnnlabError(
            f"A search space cannot vary {name!r}. Parameters it may vary: {', '.join(TUNABLE)}."
        )
    tunable = TUNABLE[name]
    limits = tunable.limits
    where = f"Search space, `{name}`"
    if isinstance(data, (list, tuple)):
        data = {"values": list(data)}
    if not isinstance(data, Mapping):
        raise CnnlabError(
            f'{where}: give {{"values": [...]}} or {{"low": ..., "high": ...}}. Received: {data!r}'
        )
    unknown = sorted(set(data) - {"values", "low", "high", "log"})
    if unknown:
        raise CnnlabError(
            f"{where}: unknown key(s) {', '.join(unknown)}; use values, or low, high and log."
        )
    if "values" in data:
        values = data["values"]
        if not isinstance(values, (list, tuple)) or not values:
            raise CnnlabError(f"{where}: `values` must be a non-empty list. Received: {values!r}")
        if len(values) > MAX_CHOICES:
            raise CnnlabError(
                f"{where}: at most {MAX_CHOICES} values. Received: {len(values)} values."
            )
        if len(set(map(str, values))) != len(values):
            raise CnnlabError(f"{where}: a value is listed twice. Received: {list(values)}")
        checked = tuple(_check(limits, name, value) for value in values)
        return Dimension(name, values=checked)
    if isinstance(limits, Choice):
        raise CnnlabError(
            f"{where} is a choice: list its values, e.g. "
            f'{{"values": {json.dumps(list(limits.options[:2]))}}}.'
        )
    if "low" not in data or "high" not in data:
        raise CnnlabError(f"{where}: a range needs both `low` and `high`. Received: {dict(data)}")
    low, high = (_check(limits, name, data[key]) for key in ("low", "high"))
    log = data.get("log", tunable.log)
    if not isinstance(log, bool):
        raise CnnlabError(f"{where}: `log` must be true or false. Received: {log!r}")
    if not low < high:
        raise CnnlabError(
            f"{where}: `low` ({low:g}) must be below `high` ({high:g}); for one value, "
            f'write {{"values": [{low:g}]}}.'
        )
    if log and low <= 0:
        raise CnnlabError(f"{where}: a log-scale range must start above 0. Received: low={low:g}")
    return Dimension(name, low=low, high=high, log=log)


def _check(limits: Range | Choice, name: str, value: Any) -> Any:
    try:
        return limits.check(name, value)
    except CnnlabError as error:
        raise CnnlabError(f"Search space: {error}") from None


@dataclass(frozen=True)
class SearchSpace:
    """The parameters a study varies; everything else is the recipe's.

    Build with :meth:`from_dict` (JSON), :meth:`named` (a preset) or :func:`load_space`.
    """

    dimensions: tuple[Dimension, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.dimensions:
            raise CnnlabError(
                "A search space needs at least one parameter to vary, e.g. "
                '{"learning_rate": {"low": 0.0001, "high": 0.01, "log": true}}.'
            )
        if len(self.dimensions) > MAX_DIMENSIONS:
            raise CnnlabError(
                f"A search space may vary at most {MAX_DIMENSIONS} parameters. "
                f"Received: {len(self.dimensions)}."
            )

    @classmethod
    def from_dict(cls, data: Any, name: str = "custom") -> SearchSpace:
        """From parsed JSON: parameter name -> dimension.

        Raises:
            CnnlabError: naming the parameter and what is wrong with it.
        """
        if isinstance(data, SearchSpace):
            return data
        if not isinstance(data, Mapping):
            raise CnnlabError(
                "A search space must be a JSON object: parameter name -> "
                f'{{"values": [...]}} or {{"low": ..., "high": ...}}. '
                f"Received: {type(data).__name__}"
            )
        return cls(tuple(_dimension(str(key), value) for key, value in data.items()), name)

    @classmethod
    def named(cls, name: str) -> SearchSpace:
        if name not in SPACES:
            raise CnnlabError(
                f"Unknown search space {name!r}. Named spaces: {', '.join(SPACES)}; or give "
                "a JSON file."
            )
        return cls.from_dict(SPACES[name]["space"], name)

    def to_dict(self) -> dict[str, Any]:
        return {dimension.name: dimension.to_dict() for dimension in self.dimensions}

    @property
    def names(self) -> list[str]:
        return [dimension.name for dimension in self.dimensions]

    def grid_size(self) -> int:
        """Trials a grid search over this space has (floats at :data:`GRID_POINTS`)."""
        return math.prod(len(d.values) if d.values else _grid_count(d) for d in self.dimensions)

    def hyperparameters(self, grid: bool = False):
        """The space as KerasTuner ``HyperParameters`` (imports keras_tuner).

        Args:
            grid: give ranges a step, so a grid search has finitely many points.
        """
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for d in self.dimensions:
            if d.values:
                hp.Choice(d.name, list(d.values), ordered=not isinstance(d.values[0], str))
            elif d.integer:
                step = max(1, round((d.high - d.low) / (GRID_POINTS - 1))) if grid else 1
                hp.Int(d.name, int(d.low), int(d.high), step=step)
            else:
                sampling = "log" if d.log else "linear"
                step = None
                if grid:
                    span = d.high / d.low if d.log else d.high - d.low
                    step = span ** (1 / (GRID_POINTS - 1)) if d.log else span / (GRID_POINTS - 1)
                hp.Float(d.name, d.low, d.high, step=step, sampling=sampling)
        return hp


def _grid_count(d: Dimension) -> int:
    if d.integer:
        step = max(1, round((d.high - d.low) / (GRID_POINTS - 1)))
        return int((d.high - d.low) // step) + 1
    return GRID_POINTS


# Named spaces: what a user picks without writing JSON.
SPACES: dict[str, dict[str, Any]] = {
    "learning-rate-regularisation": {
        "title": "Learning rate and regularisation",
        "help": "How fast and how much to hold back, on the recipe's network.",
        "space": {
            "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
            "weight_decay": {"values": [0.0, 1e-4, 1e-3]},
            "label_smoothing": {"low": 0.0, "high": 0.2},
            "dropout": {"low": 0.1, "high": 0.5},
            "augmentation_strength": {"low": 0.5, "high": 1.5},
        },
    },
    "architecture-size": {
        "title": "Architecture size",
        "help": "Image size, width and depth of the network, at the recipe's learning rate.",
        "space": {
            "image_size": {"values": [48, 64, 80]},
            "width": {"values": [16, 24, 32, 48]},
            "depth": {"low": 2, "high": 4},
        },
    },
    "broad": {
        "title": "Broad",
        "help": "Network family, size and optimiser together: for longer studies.",
        "space": {
            "preset": {"values": list(TUNABLE_PRESETS)},
            "width": {"values": [16, 32, 48]},
            "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
            "optimizer": {"values": ["adam", "adamw", "sgd"]},
            "batch_size": {"values": [16, 32, 64]},
            "dropout": {"low": 0.1, "high": 0.5},
        },
    },
}
DEFAULT_SPACE = "learning-rate-regularisation"


def load_space(source: Any, files: bool = True) -> SearchSpace:
    """A space from a name in :data:`SPACES`, a JSON file, JSON text or a dict.

    Args:
        files: read a path as a JSON file; False for text typed into a page, which
            must never open a file on the server.

    Raises:
        CnnlabError: an unknown name, an unreadable file, bad JSON (with its line and
            column) or a bad space.
    """
    if isinstance(source, (SearchSpace, Mapping)):
        return SearchSpace.from_dict(source)
    text = str(source).strip()
    if text in SPACES:
        return SearchSpace.named(text)
    if not text.startswith("{") and not files:
        raise CnnlabError(
            "The search space must be a JSON object: parameter name -> "
            '{"values": [...]} or {"low": ..., "high": ...}, or a named space '
            f"({', '.join(SPACES)})."
        )
    if not text.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise CnnlabError(
                f"{text!r} is neither a named search space ({', '.join(SPACES)}) nor a JSON "
                "file that exists."
            )
        if path.stat().st_size > 100_000:
            raise CnnlabError(f"Search space file {path} is over 100 kB; a space is a few lines.")
        text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CnnlabError(
            f"The search space is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}."
        ) from None
    return SearchSpace.from_dict(data)


# --- from a trial's values to a run ------------------------------------------------------


def trial_config(
    arch: Any, spec: Any, params: Mapping[str, Any], dataset: Any, epochs: int | None = None
) -> tuple[Any, Any]:
    """``(ArchSpec, TrainSpec)`` of a trial: the recipe's ``arch`` and ``spec`` with
    ``params`` applied, for ``epochs`` epochs (the fields that follow the epochs
    follow, see :func:`cnnlab.train.recipe.with_changes`).

    Raises:
        CnnlabError: a value a spec refuses (it names the field).
    """
    from cnnlab.models.analysis import BACKBONE_MIN_SIZE
    from cnnlab.models.spec import ArchSpec
    from cnnlab.train.recipe import with_changes

    params = {key: value for key, value in params.items() if key in TUNABLE}
    arch = _trial_arch(ArchSpec.from_dict(arch), params)
    changes = {name: value for name, value in params.items() if TUNABLE[name].sets == "train"}
    if arch.preset_name == "transfer":  # a backbone needs a few pixels to pool
        size = int(changes.get("image_size", spec.image_size))
        changes["image_size"] = max(size, BACKBONE_MIN_SIZE)
    elif arch.preset_name in DEPTH_OPTION and spec.fine_tune_at:  # nothing to unfreeze
        changes["fine_tune_at"] = 0
    if epochs is not None:
        changes["epochs"] = int(epochs)
    if "augmentation_strength" in params:
        changes["augmentation"] = scaled_augmentation(
            spec.augmentation, float(params["augmentation_strength"])
        )
    return arch, with_changes(spec, dataset, **changes)


def _trial_arch(arch: Any, params: Mapping[str, Any]) -> Any:
    from cnnlab.models.registry import get_preset
    from cnnlab.models.spec import ArchSpec

    sized = {name for name in params if TUNABLE[name].sets == "arch"}
    if not sized:
        return arch
    preset = params.get("preset") or arch.preset_name
    if preset not in TUNABLE_PRESETS:
        preset = SIZED_PRESET  # the recipe's network has nothing to size (simple)
    if preset == "transfer" and "preset" not in params and sized & {"width", "depth"}:
        raise CnnlabError(
            "This dataset's recipe fine-tunes a pretrained network (`transfer`), which has "
            "no `width` or `depth` to vary: those size networks trained from scratch. Leave "
            'them out, or add `preset` to the space (e.g. {"values": ["transfer", '
            '"vgg_small"]}) to compare the two.'
        )
    fields = {field.name: field for field in dataclasses.fields(get_preset(preset).options)}
    # Options the recipe chose that the new preset also has (e.g. stem_stride) stay.
    options = {key: value for key, value in dict(arch.options).items() if key in fields}
    # A pretrained trial keeps its backbone's size: width and depth size the others.
    if "width" in params and "width" in fields:
        options["width"] = int(params["width"])
    if "dropout" in params:
        options["dropout"] = float(params["dropout"])
    if "depth" in params and preset in DEPTH_OPTION:
        name = DEPTH_OPTION[preset]
        limits = fields[name].metadata["limits"]
        options[name] = int(min(max(int(params["depth"]), limits.low), limits.high))
    return ArchSpec.preset(preset, **options)


def scaled_augmentation(augmentation: Any, strength: float) -> Any:
    """The recipe's augmentation with every magnitude times ``strength`` (within its
    limits); flips stay on unless the strength is 0, which turns augmentation off."""
    from cnnlab.data.augment import AugmentSpec

    if strength <= 0 or not isinstance(augmentation, dict):
        return "none" if strength <= 0 else augmentation
    spec = AugmentSpec.from_dict(augmentation)
    changes = {}
    for field in dataclasses.fields(AugmentSpec):
        limits = field.metadata.get("limits")
        value = getattr(spec, field.name)
        if isinstance(limits, Range) and isinstance(value, float) and value:
            changes[field.name] = min(limits.high, value * strength)
    return spec.with_changes(**changes).to_dict() if changes else augmentation
