"""Architecture presets: small functions filed under a name, each returning blocks.

A preset has an options spec (limits declared once, so the page can draw widgets for
them) and a function from options to the body's blocks. The classifier
(``Dense(classes, softmax)`` named ``predictions``) is added by the builder, never by
a preset. A duplicate name fails at import; an unknown name lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.errors import CnnlabError
from cnnlab.models.blocks import (
    BACKBONES,
    Backbone,
    Block,
    Conv,
    Dropout,
    Flatten,
    Gated,
    GlobalPool,
    Pool,
    Residual,
    SeparableConv,
)
from cnnlab.spec import Choice, Range, Spec, param


@dataclass(frozen=True)
class Preset:
    """A registered preset: its name, options spec, block function and description."""

    name: str
    options: type[Spec]
    blocks: Callable[[Spec], tuple[Block, ...]]
    description: str


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, options: type[Spec], description: str):
    """Decorator filing ``fn(options) -> blocks`` under ``name``."""

    def decorator(fn: Callable[[Spec], tuple[Block, ...]]):
        if name in PRESETS:
            raise AssertionError(f"duplicate architecture preset {name!r}")
        PRESETS[name] = Preset(name, options, fn, description)
        return fn

    return decorator


def list_presets() -> list[str]:
    """Registered preset names, in registration order."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise CnnlabError(
            f"Unknown architecture preset {name!r}. Valid presets: {', '.join(PRESETS)}."
        )
    return PRESETS[name]


# --- option specs ---------------------------------------------------------------------


@dataclass(frozen=True)
class SimpleOptions(Spec):
    kind = "`simple` option"  # the seeds' model has nothing to choose


_WIDTH = Range(4, 256, integer=True)
_DROPOUT = Range(0.0, 0.9)


@dataclass(frozen=True)
class VggOptions(Spec):
    kind = "`vgg_small` option"
    width: int = param(32, _WIDTH, "filters of the first stage; doubled at each stage")
    stages: int = param(3, Range(1, 5, integer=True), "stages of two convs and a pooling")
    batch_norm: bool = param(True, None, "batch normalisation after each conv")
    dropout: float = param(0.3, _DROPOUT, "dropout before the classifier")
    # 2 halves the image in the first layer: about 4x less work, for photos on a CPU.
    stem_stride: int = param(1, Range(1, 2, integer=True), "stride of the first convolution")


@dataclass(frozen=True)
class ResnetOptions(Spec):
    kind = "`resnet_small` option"
    width: int = param(16, _WIDTH, "filters of the first stage; doubled at each stage")
    stages: int = param(3, Range(1, 5, integer=True), "stages; each after the first halves")
    blocks_per_stage: int = param(2, Range(1, 6, integer=True), "residual blocks per stage")
    dropout: float = param(0.2, _DROPOUT, "dropout before the classifier")


@dataclass(frozen=True)
class MobilenetOptions(Spec):
    kind = "`mobilenet_small` option"
    width: int = param(32, _WIDTH, "filters of the stem; separable stages double it")
    stages: int = param(3, Range(1, 5, integer=True), "stages of two separable convs")
    dropout: float = param(0.2, _DROPOUT, "dropout before the classifier")


@dataclass(frozen=True)
class GatedOptions(Spec):
    kind = "`gated_small` option"
    width: int = param(32, _WIDTH, "filters of the stem; gated blocks double it")
    gated_blocks: int = param(2, Range(1, 4, integer=True), "gated blocks, each then pooled")
    branches: int = param(3, Range(2, 4, integer=True), "branches per gate: 1x1, 3x3, 5x5, 7x7")
    dropout: float = param(0.2, _DROPOUT, "dropout before the classifier")


@dataclass(frozen=True)
class TransferOptions(Spec):
    kind = "`transfer` option"
    # Lite0 by default: its ImageNet weights are installed, the others' are downloaded.
    backbone: str = param("efficientnetlite0", Choice(BACKBONES), "pretrained network")
    weights: str = param("imagenet", None, "'imagenet', 'none' (random) or a weights file")
    fine_tune_last: int = param(
        0, Range(0, 1000, integer=True), "backbone layers left trainable; 0 = frozen"
    )
    dropout: float = param(0.2, _DROPOUT, "dropout before the classifier")

    def validate(self) -> None:
        Backbone(self.backbone, self.weights, self.fine_tune_last)


# --- presets ----------------------------------------------------------------------------


@register_preset(
    "simple",
    SimpleOptions,
    "The seeds' model: Conv(32, 3x3) → MaxPool → Conv(64, 3x3) → MaxPool → Flatten.",
)
def simple(options: SimpleOptions) -> tuple[Block, ...]:
    # Kept exactly as the seed articles write it: the training benchmark's reference.
    return (
        Conv(filters=32, kernel=3, padding="valid", activation="relu"),
        Pool(mode="max", size=2),
        Conv(filters=64, kernel=3, padding="valid", activation="relu"),
        Pool(mode="max", size=2),
        Flatten(),
    )


@register_preset(
    "vgg_small",
    VggOptions,
    "Stages of two 3x3 convolutions and a max pooling, widths doubling; global pooling.",
)
def vgg_small(options: VggOptions) -> tuple[Block, ...]:
    blocks: list[Block] = []
    for stage in range(options.stages):
        filters = options.width * 2**stage
        for index in range(2):
            stride = options.stem_stride if stage == index == 0 else 1
            blocks.append(Conv(filters, 3, stride, "same", "relu", options.batch_norm))
        blocks.append(Pool("max", 2))
    return (*blocks, GlobalPool("average"), Dropout(options.dropout))


@register_preset(
    "resnet_small",
    ResnetOptions,
    "A conv stem, then stages of residual blocks (stride 2 between stages); global pooling.",
)
def resnet_small(options: ResnetOptions) -> tuple[Block, ...]:
    blocks: list[Block] = [Conv(options.width, 3, 1, "same", "relu", True)]
    for stage in range(options.stages):
        filters = options.width * 2**stage
        for index in range(options.blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(Residual(filters, 3, stride, "relu", True))
    return (*blocks, GlobalPool("average"), Dropout(options.dropout))


@register_preset(
    "mobilenet_small",
    MobilenetOptions,
    "A strided conv stem, then depthwise-separable convolutions (stride 2 per stage).",
)
def mobilenet_small(options: MobilenetOptions) -> tuple[Block, ...]:
    blocks: list[Block] = [Conv(options.width, 3, 2, "same", "relu", True)]
    for stage in range(options.stages):
        filters = options.width * 2 ** (stage + 1)
        blocks.append(SeparableConv(filters, 3, 2 if stage > 0 else 1, "same", "relu", True))
        blocks.append(SeparableConv(filters, 3, 1, "same", "relu", True))
    return (*blocks, GlobalPool("average"), Dropout(options.dropout))


@register_preset(
    "gated_small",
    GatedOptions,
    "A conv stem, then gated blocks whose input-dependent gate mixes 1x1/3x3/5x5 branches.",
)
def gated_small(options: GatedOptions) -> tuple[Block, ...]:
    kernels = (1, 3, 5, 7)[: options.branches]
    blocks: list[Block] = [
        Conv(options.width, 3, 1, "same", "relu", True),
        Pool("max", 2),
    ]
    for index in range(options.gated_blocks):
        blocks.append(Gated(options.width * 2 ** (index + 1), kernels, "relu", True))
        blocks.append(Pool("max", 2))
    return (*blocks, GlobalPool("average"), Dropout(options.dropout))


@register_preset(
    "transfer",
    TransferOptions,
    "A pretrained backbone (ImageNet weights: EfficientNet-Lite0's come with cnnlab, "
    "keras.applications' when they can be downloaded), frozen or partly fine-tuned, then "
    "global pooling.",
)
def transfer(options: TransferOptions) -> tuple[Block, ...]:
    return (
        Backbone(options.backbone, options.weights, options.fine_tune_last),
        GlobalPool("average"),
        Dropout(options.dropout),
    )


def describe_presets() -> list[dict]:
    """Each preset's name, description and options (default, limits, help), for listings."""
    import dataclasses

    described = []
    for preset in PRESETS.values():
        options = {}
        for option in dataclasses.fields(preset.options):
            limits = option.metadata.get("limits")
            if isinstance(limits, Range):
                allowed = [limits.low, limits.high]
            elif isinstance(limits, Choice):
                allowed = list(limits.options)
            else:
                allowed = None
            options[option.name] = {
                "default": option.default,
                "allowed": allowed,
                "help": option.metadata.get("help", ""),
            }
        described.append(
            {"name": preset.name, "description": preset.description, "options": options}
        )
    return described
