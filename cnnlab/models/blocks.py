"""The building blocks of an architecture, as frozen specs with their own arithmetic.

Each block is a small frozen dataclass (limits declared once with
:func:`cnnlab.spec.param`) that also knows, without TensorFlow, what it does to a
feature map: :meth:`Block.measure` returns the output shape, the parameters, the
multiply-accumulates and the receptive-field steps. ``cnnlab.models.builder`` turns the
same blocks into Keras layers, and a test checks that both agree on every parameter.

A block in JSON is its fields plus ``"type"``::

    {"type": "conv", "filters": 32, "kernel": 3, "stride": 1, "padding": "valid",
     "activation": "relu", "batch_norm": false}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range, Spec, param

ACTIVATIONS = ("relu", "gelu", "swish", "elu", "tanh", "sigmoid", "linear")
PADDINGS = ("valid", "same")
BACKBONES = ("mobilenetv2", "efficientnetb0", "resnet50", "efficientnetlite0")

_FILTERS = Range(1, 2048, integer=True)
_KERNEL = Range(1, 15, integer=True)
_STRIDE = Range(1, 4, integer=True)


@dataclass(frozen=True)
class Measure:
    """What a block does to one image's feature map (all counts per image).

    Attributes:
        output_shape: ``(height, width, channels)`` or ``(features,)``.
        params: all weights, trainable or not.
        trainable_params: weights the optimiser updates.
        macs: multiply-accumulates of one forward pass.
        activation_elements: numbers written by the block's layers (its inner outputs
            included, since training keeps them for the backward pass).
        steps: ``(kernel, stride)`` pairs the receptive field grows by, in order.
    """

    output_shape: tuple[int, ...]
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    activation_elements: int = 0
    steps: tuple[tuple[int, int], ...] = ()


class ShapeError(Exception):
    """A block got an input it cannot work on; turned into a CnnlabError by the analysis."""

    def __init__(self, problem: str, collapse: bool = False):
        super().__init__(problem)
        self.collapse = collapse  # True when the spatial size fell below 1x1


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Keras's output length of a convolution or pooling along one axis."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1 if size >= kernel else 0


def _spatial(shape: tuple[int, ...], block: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"`{block}` needs a feature map (height, width, channels) but gets a flat "
            f"vector of {shape[0]} features; move it before `flatten`/`global_pool`"
        )
    return shape


def _conv_counts(height, width, channels, filters, kernel, stride, padding, batch_norm):
    """Shape, params and MACs of Conv2D (+ BatchNorm): shared by several blocks."""
    out_h = conv_output_size(height, kernel, stride, padding)
    out_w = conv_output_size(width, kernel, stride, padding)
    if out_h < 1 or out_w < 1:
        raise ShapeError(f"a {kernel}x{kernel} kernel does not fit", collapse=True)
    weights = kernel * kernel * channels * filters
    bias = 0 if batch_norm else filters
    norm = 4 * filters if batch_norm else 0  # gamma, beta (trained), mean, variance (not)
    macs = out_h * out_w * filters * kernel * kernel * channels
    return (out_h, out_w, filters), weights + bias + norm, weights + bias + norm // 2, macs


class Block(Spec):
    """Base of every block: JSON with a ``type`` key, a name prefix, and arithmetic."""

    kind = "block"
    type: ClassVar[str] = ""  # the block's name in JSON
    prefix: ClassVar[str] = ""  # layer-name prefix, numbered per architecture
    title: ClassVar[str] = ""  # what a person calls it
    spatial: ClassVar[bool] = True  # works on feature maps (vs. flat vectors)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **super().to_dict()}

    def measure(self, shape: tuple[int, ...]) -> Measure:
        """What this block does to an input of ``shape`` (raises ShapeError)."""
        raise NotImplementedError

    def summary(self) -> str:
        """A few words for tables and diagrams, e.g. ``32 3x3 relu``."""
        return ""


@dataclass(frozen=True)
class Conv(Block):
    type = "conv"
    prefix = "conv"
    title = "Convolution"
    filters: int = param(32, _FILTERS, "number of feature maps (output channels)")
    kernel: int = param(3, _KERNEL, "side of the square kernel, in pixels")
    stride: int = param(1, _STRIDE, "step between kernel positions; 2 halves the size")
    padding: str = param("valid", Choice(PADDINGS), "'same' keeps the size, 'valid' trims")
    activation: str = param("relu", Choice(ACTIVATIONS), "non-linearity after the conv")
    batch_norm: bool = param(False, None, "batch normalisation before the activation")

    def measure(self, shape):
        height, width, channels = _spatial(shape, self.type)
        out, params, trainable, macs = _conv_counts(
            height,
            width,
            channels,
            self.filters,
            self.kernel,
            self.stride,
            self.padding,
            self.batch_norm,
        )
        layers = 3 if self.batch_norm else 1  # conv, bn, activation share one shape
        return Measure(
            out, params, trainable, macs, layers * math.prod(out), ((self.kernel, self.stride),)
        )

    def summary(self):
        return f"{self.filters} {self.kernel}x{self.kernel}/{self.stride} {self.activation}"


@dataclass(frozen=True)
class SeparableConv(Block):
    type = "separable_conv"
    prefix = "sepconv"
    title = "Depthwise-separable convolution"
    filters: int = param(64, _FILTERS, "number of feature maps (output channels)")
    kernel: int = param(3, _KERNEL, "side of the depthwise kernel, in pixels")
    stride: int = param(1, _STRIDE, "step between kernel positions; 2 halves the size")
    padding: str = param("same", Choice(PADDINGS), "'same' keeps the size, 'valid' trims")
    activation: str = param("relu", Choice(ACTIVATIONS), "non-linearity after the conv")
    batch_norm: bool = param(True, None, "batch normalisation before the activation")

    def measure(self, shape):
        height, width, channels = _spatial(shape, self.type)
        out_h = conv_output_size(height, self.kernel, self.stride, self.padding)
        out_w = conv_output_size(width, self.kernel, self.stride, self.padding)
        if out_h < 1 or out_w < 1:
            raise ShapeError(f"a {self.kernel}x{self.kernel} kernel does not fit", collapse=True)
        depthwise = self.kernel * self.kernel * channels
        pointwise = channels * self.filters
        bias = 0 if self.batch_norm else self.filters
        norm = 4 * self.filters if self.batch_norm else 0
        params = depthwise + pointwise + bias + norm
        macs = out_h * out_w * channels * (self.kernel * self.kernel + self.filters)
        out = (out_h, out_w, self.filters)
        layers = 3 if self.batch_norm else 1
        return Measure(
            out,
            params,
            params - norm // 2,
            macs,
            layers * math.prod(out),
            ((self.kernel, self.stride),),
        )

    def summary(self):
        return f"{self.filters} {self.kernel}x{self.kernel}/{self.stride} {self.activation}"


@dataclass(frozen=True)
class PointwiseConv(Block):
    type = "pointwise_conv"
    prefix = "pointwise"
    title = "1x1 convolution"
    filters: int = param(64, _FILTERS, "number of feature maps (output channels)")
    activation: str = param("relu", Choice(ACTIVATIONS), "non-linearity after the conv")
    batch_norm: bool = param(False, None, "batch normalisation before the activation")

    def measure(self, shape):
        height, width, channels = _spatial(shape, self.type)
        out, params, trainable, macs = _conv_counts(
            height, width, channels, self.filters, 1, 1, "valid", self.batch_norm
        )
        layers = 3 if self.batch_norm else 1
        return Measure(out, params, trainable, macs, layers * math.prod(out), ((1, 1),))

    def summary(self):
        return f"{self.filters} 1x1 {self.activation}"


@dataclass(frozen=True)
class Residual(Block):
    """Two same-padded convolutions plus a shortcut (1x1 projection when shapes differ)."""

    type = "residual"
    prefix = "res"
    title = "Residual block"
    filters: int = param(64, _FILTERS, "number of feature maps (output channels)")
    kernel: int = param(3, _KERNEL, "side of both kernels, in pixels")
    stride: int = param(1, _STRIDE, "stride of the first conv; 2 halves the size")
    activation: str = param("relu", Choice(ACTIVATIONS), "non-linearity inside and after")
    batch_norm: bool = param(True, None, "batch normalisation after each conv")

    def needs_projection(self, channels: int) -> bool:
        return self.stride != 1 or channels != self.filters

    def measure(self, shape):
        height, width, channels = _spatial(shape, self.type)
        k, f, bn = self.kernel, self.filters, self.batch_norm
        out_a, params_a, train_a, macs_a = _conv_counts(
            height, width, channels, f, k, self.stride, "same", bn
        )
        out, params_b, train_b, macs_b = _conv_counts(*out_a, f, k, 1, "same", bn)
        params, trainable, macs = params_a + params_b, train_a + train_b, macs_a + macs_b
        # conv, bn, act (a) and conv, bn (b); without bn the activation is in conv a
        tensors = 5 if bn else 2
        if self.needs_projection(channels):
            _, params_s, train_s, macs_s = _conv_counts(
                height, width, channels, f, 1, self.stride, "same", bn
            )
            params, trainable, macs = params + params_s, trainable + train_s, macs + macs_s
            tensors += 2 if bn else 1
        tensors += 2  # add, activation
        return Measure(
            out, params, trainable, macs, tensors * math.prod(out), ((k, self.stride), (k, 1))
        )

    def summary(self):
        return f"{self.filters} 2x{self.kernel}x{self.kernel}/{self.stride} + shortcut"


@dataclass(frozen=True)
class Pool(Block):
    type = "pool"
    prefix = "pool"
    title = "Pooling"
    mode: str = param("max", Choice(("max", "average")), "keep the largest or the mean")
    size: int = param(2, Range(2, 8, integer=True), "window side (and stride), in pixels")
    padding: str = param("valid", Choice(PADDINGS), "'same' keeps a partial last window")

    def measure(self, shape):
        height, width, channels = _spatial(shape, self.type)
        out_h = conv_output_size(height, self.size, self.size, self.padding)
        out_w = conv_output_size(width, self.size, self.size, self.padding)
        if out_h < 1 or out_w < 1:
            raise ShapeError(f"a {self.size}x{self.size} window does not fit", collapse=True)
        out = (out_h, out_w, channels)
        return Measure(out, activation_elements=math.prod(out), steps=((self.size, self.size),))

    def summary(self):
        return f"{self.mode} {self.size}x{self.size}"


@dataclass(frozen=True)
class GlobalPool(Block):
    type = "global_pool"
    prefix = "global_pool"
    title = "Global pooling"
    mode: str = param("average", Choice(("average", "max")), "mean or largest of each map")

    def measure(self, shape):
        _, _, channels = _spatial(shape, self.type)
        return Measure((channels,), activation_elements=channels)

    def summary(self):
        return self.mode


@dataclass(frozen=True)
class Flatten(Block):
    type = "flatten"
    prefix = "flatten"
    title = "Flatten"

    def measure(self, shape):
        _spatial(shape, self.type)
        features = math.prod(shape)
        return Measure((features,), activation_elements=features)


@dataclass(frozen=True)
class Dropout(Block):
    type = "dropout"
    prefix = "dropout"
    title = "Dropout"
    spatial = False
    rate: float = param(0.3, Range(0.0, 0.9), "fraction of values zeroed while training")

    def measure(self, shape):
        return Measure(tuple(shape), activation_elements=math.prod(shape))

    def summary(self):
        return f"rate {self.rate:g}"


@dataclass(frozen=True)
class Dense(Block):
    type = "dense"
    prefix = "dense"
    title = "Dense"
    spatial = False
    units: int = param(128, Range(1, 8192, integer=True), "number of neurons")
    activation: str = param("relu", Choice(ACTIVATIONS), "non-linearity after the layer")

    def measure(self, shape):
        if len(shape) != 1:
            raise ShapeError(
                f"`dense` needs a flat vector but gets a {'x'.join(map(str, shape))} "
                "feature map; put `flatten` or `global_pool` before it"
            )
        params = shape[0] * self.units + self.units
        return Measure((self.units,), params, params, shape[0] * self.units, self.units)

    def summary(self):
        return f"{self.units} {self.activation}"


@dataclass(frozen=True)
class Gated(Block):
    """Conditional block: convolution branches mixed by a learned, input-dependent gate.

    Every branch sees the same input with its own kernel size; a gate (global average
    pooling of the input, then a softmax Dense with one output per branch) weighs the
    branches for each image, so the block chooses per input which receptive field to
    trust. The gate's output is a layer named ``<block>_gate`` of shape
    ``(batch, branches)`` whose rows sum to 1.
    """

    type = "gated"
    prefix = "gated"
    title = "Gated (conditional) block"
    filters: int = param(64, _FILTERS, "feature maps of every branch (and of the output)")
    kernels: tuple = param((1, 3, 5), None, "one branch per kernel size, e.g. [1, 3, 5]")
    activation: str = param("relu", Choice(ACTIVATIONS), "non-linearity of each branch")
    batch_norm: bool = param(True, None, "batch normalisation in each branch")

    def validate(self) -> None:
        super().validate()
        kernels = self.kernels
        if not isinstance(kernels, tuple) or not 2 <= len(kernels) <= 6:
            raise CnnlabError(
                "`kernels` must be a list of 2 to 6 kernel sizes, one per branch. "
                f"Received: kernels={_plain_list(kernels)!r}"
            )
        for kernel in kernels:
            _KERNEL.check("kernels", kernel)

    def measure(self, shape):
        height, width, channels = _spatial(shape, self.type)
        params = trainable = macs = 0
        for kernel in self.kernels:
            _, p, t, m = _conv_counts(
                height, width, channels, self.filters, kernel, 1, "same", self.batch_norm
            )
            params, trainable, macs = params + p, trainable + t, macs + m
        branches = len(self.kernels)
        gate = channels * branches + branches
        out = (height, width, self.filters)
        mix = math.prod(out) * branches
        per_branch = (3 if self.batch_norm else 1) * math.prod(out)
        # branch outputs, their flattened copies and the stack, then the mix
        elements = branches * per_branch + 2 * mix + math.prod(out) + channels + branches
        return Measure(
            out,
            params + gate,
            trainable + gate,
            macs + channels * branches + mix,
            elements,
            ((max(self.kernels), 1),),
        )

    def summary(self):
        kernels = "/".join(f"{k}x{k}" for k in self.kernels)
        return f"{self.filters} {kernels} gated"


@dataclass(frozen=True)
class Backbone(Block):
    """A pretrained network without its top, as the first block: one of
    keras.applications' or EfficientNet-Lite0 (:mod:`cnnlab.models.lite0`)."""

    type = "backbone"
    prefix = "backbone"
    title = "Pretrained backbone"
    name: str = param("efficientnetlite0", Choice(BACKBONES), "which pretrained network")
    weights: str = param("imagenet", None, "'imagenet', 'none' (random) or a weights file")
    fine_tune_last: int = param(
        0, Range(0, 1000, integer=True), "backbone layers left trainable; 0 = frozen"
    )

    def validate(self) -> None:
        if not isinstance(self.weights, str) or not self.weights.strip():
            raise CnnlabError(
                "`weights` must be 'imagenet', 'none' or the path of a weights file. "
                f"Received: weights={self.weights!r}"
            )

    def measure(self, shape):  # needs Keras: see cnnlab.models.analysis
        raise NotImplementedError

    def summary(self):
        frozen = "frozen" if self.fine_tune_last == 0 else f"last {self.fine_tune_last} trained"
        return f"{self.name}, {self.weights}, {frozen}"


BLOCK_TYPES: dict[str, type[Block]] = {}


def _register(*classes: type[Block]) -> None:
    for cls in classes:
        if cls.type in BLOCK_TYPES:
            raise AssertionError(f"duplicate block type {cls.type!r}")
        BLOCK_TYPES[cls.type] = cls


_register(
    Conv,
    SeparableConv,
    PointwiseConv,
    Residual,
    Pool,
    GlobalPool,
    Flatten,
    Dropout,
    Dense,
    Gated,
    Backbone,
)


def block_from_dict(data: Any, position: int | None = None) -> Block:
    """Parse one block from JSON; errors say which block (1-based) was wrong."""
    where = f"Block {position}" if position is not None else "Block"
    if isinstance(data, Block):
        return data
    if not isinstance(data, dict):
        raise CnnlabError(
            f'{where} must be an object like {{"type": "conv", ...}}. Received: {data!r}'
        )
    fields = dict(data)
    kind = fields.pop("type", None)
    if not isinstance(kind, str) or kind not in BLOCK_TYPES:
        raise CnnlabError(
            f"{where}: `type` must be one of {', '.join(BLOCK_TYPES)}. Received: type={kind!r}"
        )
    try:
        return BLOCK_TYPES[kind].from_dict(fields)
    except CnnlabError as error:
        raise CnnlabError(f"{where} ({kind}): {error}") from None
    except TypeError as error:  # e.g. a field given a list where a number belongs
        raise CnnlabError(f"{where} ({kind}): {error}") from None


def _plain_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
