"""What an architecture costs, computed from its spec: shapes, parameters, MACs, memory.

:func:`analyze` walks the blocks with plain arithmetic (no TensorFlow, so the page can
redo it on every edit); only a keras.applications backbone is measured by building it
once with random weights. A test checks every count against the built Keras model.

Per row (one per block, plus the input and the classifier):

- ``output_shape``: per image, ``[height, width, channels]`` or ``[features]``.
- ``params``: weights of the block's layers (``trainable_params`` the trained ones).
- ``macs``: multiply-accumulates of one forward pass on one image.
- ``activation_bytes``: float32 outputs of the block's layers for one image; training
  keeps them for the backward pass.
- ``receptive_field``: side, in input pixels, of the patch one output position sees;
  ``jump``: input pixels between neighbouring output positions (the product of the
  strides so far). Both are None once the map is flattened or pooled away.

The training-memory estimate is ``4 B x params`` (weights) ``+ 12 B x trainable``
(gradients and Adam's two moments) ``+ 2 x batch x activation bytes`` (activations and
their gradients). Real use adds framework overhead; treat it as a lower bound.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.models.blocks import Backbone, Block, Dense, Dropout, Flatten, Pool, ShapeError
from cnnlab.models.spec import ArchSpec
from cnnlab.spec import Choice, Range, Spec, param

BYTES_PER_VALUE = 4  # float32
# keras.applications refuse smaller inputs than this for their ImageNet layouts (Lite0
# is held to the same).
BACKBONE_MIN_SIZE = 32
SMALL_RECEPTIVE_FIELD = 0.25  # warn when the last map sees < this fraction of the side
DOMINANT_DENSE = 0.5  # warn when Flatten -> Dense holds more than this share of params
LARGE_TRAINING_MEMORY = 8 * 1024**3


@dataclass(frozen=True)
class ModelInput(Spec):
    """What the model is built for; limits shared by the builder, page and CLI."""

    kind = "model input"
    image_size: int = param(64, Range(8, 1024, integer=True), "side the images are resized to")
    channels: int = param(3, Choice((1, 3)), "1 for grayscale, 3 for colour")
    num_classes: int = param(10, Range(2, 10000, integer=True), "outputs of the classifier")
    batch_size: int = param(32, Range(1, 4096, integer=True), "images per training step")


def check_input(image_size: int, channels: int, num_classes: int, batch_size: int = 32) -> None:
    """Raise CnnlabError naming the field when a size is out of its range."""
    ModelInput(image_size, channels, num_classes, batch_size)


@dataclass
class Analysis:
    """The per-layer table, totals and warnings of one architecture at one input size."""

    arch: ArchSpec
    image_size: int
    channels: int
    num_classes: int
    batch_size: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "input": {
                "image_size": self.image_size,
                "channels": self.channels,
                "num_classes": self.num_classes,
                "batch_size": self.batch_size,
            },
            "rows": [dict(row) for row in self.rows],
            "totals": dict(self.totals),
            "warnings": list(self.warnings),
        }


def analyze(
    arch: ArchSpec | dict | str,
    image_size: int,
    channels: int,
    num_classes: int,
    batch_size: int = 32,
) -> Analysis:
    """The per-layer table, totals and warnings of ``arch`` for these inputs.

    ``arch`` may be anything :func:`cnnlab.models.resolve_arch` takes (a spec, a dict,
    a preset or saved name, a JSON file).

    Raises:
        CnnlabError: a size out of range, a block that cannot take its input, or a
            body that shrinks the image below 1x1 (naming the layer and the fix).
    """
    from cnnlab.models.store import resolve_arch

    arch = resolve_arch(arch)
    check_input(image_size, channels, num_classes, batch_size)
    blocks = arch.resolved_blocks()
    result = Analysis(arch, image_size, channels, num_classes, batch_size)
    result.rows = _walk(blocks, image_size, channels, num_classes)
    params = sum(row["params"] for row in result.rows)
    trainable = sum(row["trainable_params"] for row in result.rows)
    activation_bytes = sum(row["activation_bytes"] for row in result.rows)
    result.totals = {
        "params": params,
        "trainable_params": trainable,
        "non_trainable_params": params - trainable,
        "macs": sum(row["macs"] for row in result.rows),
        "activation_bytes": activation_bytes,
        "batch_size": batch_size,
        "training_memory_bytes": training_memory_bytes(
            params, trainable, activation_bytes, batch_size
        ),
    }
    result.warnings = _warnings(result)
    return result


def training_memory_bytes(params: int, trainable: int, activation_bytes: int, batch: int) -> int:
    """Weights, gradients, Adam's moments and a batch of activations (and their grads)."""
    return BYTES_PER_VALUE * (params + 3 * trainable) + 2 * batch * activation_bytes


def check_blocks(
    blocks: tuple[Block, ...], image_size: int, channels: int, num_classes: int
) -> None:
    """The shape checks of :func:`analyze` (a backbone is measured once, then cached)."""
    _walk(blocks, image_size, channels, num_classes)


# --- the walk ----------------------------------------------------------------------------


def _walk(blocks, image_size, channels, num_classes) -> list[dict]:
    backbone = blocks[0] if isinstance(blocks[0], Backbone) else None
    steps = "Resizing → Rescaling" if backbone is None else "Resizing → backbone preprocessing"
    input_shape = (image_size, image_size, channels)
    # ResNet50's caffe preprocessing is a fixed 3x3 linear map plus offsets: 12 weights.
    fixed = 12 if backbone is not None and backbone.name == "resnet50" else 0
    rows = [
        _row(
            "input",
            f"Input → {steps}",
            input_shape,
            fixed,
            0,
            0,
            2 * math.prod(input_shape),
            1,
            1,
        )
    ]
    shape: tuple[int, ...] = input_shape
    receptive_field: int | None = 1
    jump: int | None = 1
    counters: dict[str, int] = {}
    for position, block in enumerate(blocks, 1):
        counters[block.prefix] = counters.get(block.prefix, 0) + 1
        name = f"{block.prefix}_{counters[block.prefix]}"
        if isinstance(block, Backbone):
            _check_backbone_size(block, image_size)
            measure, receptive_field, jump = _measure_backbone(
                block.name, image_size, block.fine_tune_last
            )
            title = f"{block.title} ({BACKBONE_TITLES[block.name]})"
        else:
            try:
                measure = block.measure(shape)
            except ShapeError as error:
                raise _shape_error(error, blocks, position, name, image_size, channels) from None
            title = block.title
            if len(measure.output_shape) == 3 and receptive_field is not None:
                for kernel, stride in measure.steps:
                    receptive_field += (kernel - 1) * jump
                    jump *= stride
            elif len(measure.output_shape) == 1:
                receptive_field = jump = None
        shape = measure.output_shape
        rows.append(
            _row(
                name,
                title,
                shape,
                measure.params,
                measure.trainable_params,
                measure.macs,
                measure.activation_elements,
                receptive_field,
                jump,
                block.summary(),
            )
        )
    if len(shape) != 1:
        raise CnnlabError(
            f"The blocks end with a {_shape_text(shape)} feature map, but the classifier "
            "needs a flat vector; add `flatten` or `global_pool` as the last block."
        )
    classifier = Dense(units=num_classes, activation="linear").measure(shape)
    rows.append(
        _row(
            "predictions",
            "Dense (softmax)",
            classifier.output_shape,
            classifier.params,
            classifier.params,
            classifier.macs,
            num_classes,
            None,
            None,
            f"{num_classes} softmax, float32",
        )
    )
    return rows


def _row(name, title, shape, params, trainable, macs, elements, rf, jump, details=""):
    return {
        "name": name,
        "type": title,
        "details": details,
        "output_shape": list(shape),
        "params": int(params),
        "trainable_params": int(trainable),
        "macs": int(macs),
        "activation_bytes": int(elements) * BYTES_PER_VALUE,
        "receptive_field": rf,
        "jump": jump,
    }


def _shape_text(shape) -> str:
    return "x".join(str(size) for size in shape)


def _check_backbone_size(block: Backbone, image_size: int) -> None:
    minimum = BACKBONE_MIN_SIZE
    if image_size < minimum:
        raise CnnlabError(
            f"`image_size` must be at least {minimum} for the "
            f"{BACKBONE_TITLES[block.name]} backbone. Received: image_size={image_size}"
        )


def _shape_error(error, blocks, position, name, image_size, channels) -> CnnlabError:
    """A ShapeError as a message naming the layer, the cause and the fix."""
    block = blocks[position - 1]
    if not error.collapse:
        return CnnlabError(f"Block {position} (`{name}`): {error}.")
    before = blocks[:position]
    pools = sum(isinstance(b, Pool) for b in before)
    strided = sum(getattr(b, "stride", 1) > 1 for b in before)
    valid = sum(
        getattr(b, "padding", "") == "valid"
        and getattr(b, "kernel", 1) > 1
        and not isinstance(b, Pool)
        for b in before
    )
    causes = []
    if pools:
        causes.append(_count(pools, "pooling layer"))
    if strided:
        causes.append(_count(strided, "strided convolution"))
    if valid:
        causes.append(_count(valid, "'valid' convolution"))
    subject = " and ".join(causes) if causes else f"A {block.title.lower()}"
    if pools:
        fix = "remove a pooling layer"
    elif strided:
        fix = "use stride 1 in a convolution"
    else:
        fix = "use padding 'same'"
    minimum = _smallest_fitting_size(blocks, image_size, channels)
    size_fix = f" or raise `image_size` to at least {minimum}" if minimum else ""
    return CnnlabError(
        f"{subject} shrink{'s' if subject.startswith('A ') or _single(causes) else ''} "
        f"{_article(image_size)} {image_size}x{image_size} input below 1x1 at layer `{name}`; "
        f"{fix}{size_fix}."
    )


def _article(number: int) -> str:
    """'an 8x8', 'a 16x16'."""
    text = str(number)
    return "an" if text.startswith("8") or text in ("11", "18") else "a"


def _single(causes: list[str]) -> bool:
    return len(causes) == 1 and causes[0].startswith("1 ")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _smallest_fitting_size(blocks, image_size, channels) -> int | None:
    if isinstance(blocks[0], Backbone):
        return None  # its output size is Keras's business; the message names the fix
    high = ModelInput.limits("image_size").high
    for size in range(image_size + 1, int(high) + 1):
        shape: tuple[int, ...] = (size, size, channels)
        try:
            for block in blocks:
                shape = block.measure(shape).output_shape
        except ShapeError:
            continue
        return size
    return None


# --- warnings ----------------------------------------------------------------------------


def _warnings(result: Analysis) -> list[str]:
    warnings = []
    rows, totals, size = result.rows, result.totals, result.image_size
    spatial = [row for row in rows[1:] if len(row["output_shape"]) == 3]
    if spatial and spatial[-1]["receptive_field"] is not None:
        last = spatial[-1]
        if last["receptive_field"] < SMALL_RECEPTIVE_FIELD * size:
            share = last["receptive_field"] / size
            warnings.append(
                f"The last feature map (`{last['name']}`) sees only "
                f"{last['receptive_field']}x{last['receptive_field']} pixels of the "
                f"{size}x{size} image ({share:.0%} of its side): features cannot cover "
                "a whole object. Add a pooling or strided layer (or another convolution), "
                "or lower `image_size`."
            )
    for index, row in enumerate(rows):
        if row["type"] != Flatten.title:
            continue
        following = [r for r in rows[index + 1 :] if r["type"] != Dropout.title]
        if not following or following[0]["type"] not in (Dense.title, "Dense (softmax)"):
            continue
        dense = following[0]
        share = dense["params"] / max(totals["params"], 1)
        if share > DOMINANT_DENSE:
            warnings.append(
                f"`{row['name']}` → `{dense['name']}` holds {share:.0%} of the parameters "
                f"({dense['params']:,} of {totals['params']:,}), which invites "
                f"overfitting; add a pooling layer before `{row['name']}` or use "
                "`global_pool` instead of `flatten`."
            )
    if totals["training_memory_bytes"] > LARGE_TRAINING_MEMORY:
        warnings.append(
            f"Training needs about {format_bytes(totals['training_memory_bytes'])} at batch "
            f"size {result.batch_size}, more than most GPUs have; lower `batch_size` or "
            "`image_size`."
        )
    backbone = result.arch.backbone
    if backbone is not None and backbone.weights == "imagenet" and size < 96:
        warnings.append(
            f"ImageNet weights were learned on 224x224 images; at {size}x{size} the "
            "pretrained features are weak. Use `image_size` 96 or more for transfer learning."
        )
    return warnings


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def format_count(count: float) -> str:
    """``1234567`` -> ``1.23M``."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= limit:
            return f"{count / limit:.3g}{suffix}"
    return f"{count:g}"


# --- backbones (the only part that needs Keras) ---------------------------------------


BACKBONE_TITLES = {
    "mobilenetv2": "MobileNetV2",
    "efficientnetb0": "EfficientNetB0",
    "resnet50": "ResNet50",
    "efficientnetlite0": "EfficientNet-Lite0",
}


def backbone_application(name: str):
    """The constructor of backbone ``name``, called as ``keras.applications``' are."""
    if name == "efficientnetlite0":  # not in keras.applications: see cnnlab.models.lite0
        from cnnlab.models.lite0 import EfficientNetLite0

        return EfficientNetLite0
    import keras

    return getattr(keras.applications, BACKBONE_TITLES[name])


def _measure_backbone(name: str, image_size: int, fine_tune_last: int):
    from cnnlab.models.blocks import Measure

    summary = _backbone_summary(name, image_size)
    first_trained = len(summary["layers"]) - fine_tune_last
    trainable = sum(
        params
        for index, (is_norm, params) in enumerate(summary["layers"])
        if index >= first_trained and not is_norm
    )
    measure = Measure(
        summary["output_shape"],
        summary["params"],
        trainable,
        summary["macs"],
        summary["activation_elements"],
    )
    return measure, summary["receptive_field"], summary["jump"]


@functools.lru_cache(maxsize=8)
def _backbone_summary(name: str, image_size: int) -> dict[str, Any]:
    """Build the backbone once with random weights and count what it holds."""
    import keras

    application = backbone_application(name)
    model = application(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    body = model.layers[1:]
    fields: dict[str, tuple[int, int]] = {model.layers[0].name: (1, 1)}
    macs = elements = 0
    for layer in body:
        output_shape = tuple(layer.output.shape[1:])
        elements += math.prod(output_shape)
        macs += _layer_macs(layer, output_shape)
        fields[layer.name] = _layer_field(layer, fields)
    receptive_field, jump = fields[body[-1].name]
    summary = {
        "layers": [
            (isinstance(layer, keras.layers.BatchNormalization), layer.count_params())
            for layer in body
        ],
        "params": model.count_params(),
        "macs": macs,
        "activation_elements": elements,
        "output_shape": tuple(int(size) for size in model.output.shape[1:]),
        "receptive_field": receptive_field,
        "jump": jump,
    }
    del model
    return summary


def _layer_macs(layer, output_shape) -> int:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = layer.kernel.shape  # (kh, kw, in, multiplier)
        return math.prod(output_shape) * kernel[0] * kernel[1]
    if isinstance(layer, keras.layers.Conv2D):
        kernel = layer.kernel.shape  # (kh, kw, in, out)
        return math.prod(output_shape) * kernel[0] * kernel[1] * kernel[2]
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    return 0


def _layer_field(layer, fields) -> tuple[int, int]:
    """Receptive field and jump after ``layer``: the widest of its inputs, grown."""
    inputs = []
    for node in layer._inbound_nodes[:1]:
        for tensor in node.input_tensors:
            history = getattr(tensor, "_keras_history", None)
            if history is not None and history.operation.name in fields:
                inputs.append(fields[history.operation.name])
    receptive_field, jump = max(inputs) if inputs else (1, 1)
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    strides = getattr(layer, "strides", None)
    if kernel and strides:
        receptive_field += (kernel[0] - 1) * jump
        jump *= strides[0]
    return receptive_field, jump
