"""Where the model looked and what its layers saw: Grad-CAM, feature maps, gate weights.

Every function takes the model and its input as the :class:`cnnlab.predict.Predictor`
prepares it (``(size, size, channels)`` uint8 pixels, one image). Intermediate outputs
come from a sub-model built from ``model.inputs`` to the chosen layers, so the model's
own resizing and rescaling layers run first, exactly as in prediction.

Colour maps are drawn with NumPy (no matplotlib): a heat map for Grad-CAM and a
perceptually even blue-green-yellow map for feature maps.
"""

from __future__ import annotations

import weakref

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError

PREDICTIONS_LAYER = "predictions"
# Grid defaults: how many channels of a layer to draw and how many per row.
MAX_CHANNELS = 32
GRID_COLUMNS = 8
# Each feature map is drawn at least this many pixels wide, so small maps stay legible.
MIN_CELL = 96
# Longest side of images drawn for people (heat overlays).
DISPLAY_SIDE = 320

# Anchor colours (0..1 positions, RGB 0..255) interpolated linearly.
_HEAT_ANCHORS = (
    (0.00, (48, 18, 59)),
    (0.15, (65, 105, 225)),
    (0.35, (27, 207, 212)),
    (0.55, (97, 252, 108)),
    (0.70, (210, 233, 53)),
    (0.85, (254, 155, 45)),
    (1.00, (180, 15, 10)),
)
_EVEN_ANCHORS = (
    (0.00, (68, 1, 84)),
    (0.25, (59, 82, 139)),
    (0.50, (33, 145, 140)),
    (0.75, (94, 201, 98)),
    (1.00, (253, 231, 37)),
)
COLORMAPS = {"heat": _HEAT_ANCHORS, "even": _EVEN_ANCHORS}

# Sub-models per model, so repeated explanations do not rebuild graphs.
_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------ layers


def conv_layers(model) -> list[str]:
    """Names of the model's convolutional feature maps, input side first."""
    from cnnlab.models.builder import conv_layer_names

    names = conv_layer_names(model)
    if names:
        return names
    # A model not built by cnnlab: any layer with a 4-D output after a convolution.
    return [layer.name for layer in model.layers if _is_conv(layer)]


def gate_layers(model) -> list[str]:
    from cnnlab.models.builder import gate_layer_names

    return gate_layer_names(model)


def _is_conv(layer) -> bool:
    import keras

    return isinstance(
        layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
    )


def _layer(model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        known = ", ".join(conv_layers(model)) or "none"
        raise CnnlabError(
            f"The model has no layer named {name!r}. Convolution layers: {known}."
        ) from None


def _probe(model, names: tuple[str, ...], with_logits: bool = False):
    """A cached sub-model from the model's input to the outputs of ``names``."""
    import keras

    from cnnlab.predict import keras_in_use

    cache = _PROBES.setdefault(model, {})
    key = (names, with_logits)
    if key not in cache:
        outputs = [_layer(model, name).output for name in names]
        if with_logits:
            outputs.append(_score_input(model))
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        with keras_in_use():  # a clear from another session must not land mid-build
            cache[key] = keras.Model(inputs, outputs)
    return cache[key]


def _score_input(model):
    """The tensor the class scores are computed from (the predictions layer's input)."""
    head = _head(model)
    return head.input if head is not None else model.outputs[0]


def _head(model):
    """The final Dense softmax layer, whose logits Grad-CAM differentiates."""
    import keras

    try:
        layer = model.get_layer(PREDICTIONS_LAYER)
    except ValueError:
        layer = model.layers[-1]
    return layer if isinstance(layer, keras.layers.Dense) else None


def _batch(pixels: np.ndarray) -> np.ndarray:
    array = np.asarray(pixels, dtype="float32")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise CnnlabError(
            f"Expected one image of shape (height, width, channels). Received: {array.shape}"
        )
    return array[None]


# --------------------------------------------------------------------- Grad-CAM


def grad_cam(
    model, pixels: np.ndarray, layer_name: str | None = None, class_index: int | None = None
) -> np.ndarray:
    """Grad-CAM of one image: where the chosen class's score is most sensitive.

    The class score is the logit before the softmax (gradients of a saturated softmax
    vanish for confident predictions). The map is
    ``relu(sum_k mean(d score / d A_k) * A_k)`` over the layer's channels ``A_k``,
    scaled to [0, 1].

    Args:
        model: the run's model.
        pixels: one prepared image ``(size, size, channels)``.
        layer_name: the convolution layer; default the last one.
        class_index: the class to explain; default the predicted class.

    Returns:
        ``(height, width)`` float32 in [0, 1] at the layer's resolution (all zeros when
        no location raises the score).
    """
    import tensorflow as tf

    if layer_name is None:
        names = conv_layers(model)
        if not names:
            raise CnnlabError("This model has no convolution layer to compute Grad-CAM on.")
        layer_name = names[-1]
    probe = _probe(model, (layer_name,), with_logits=True)
    head = _head(model)
    inputs = tf.constant(_batch(pixels))
    with tf.GradientTape() as tape:
        activations, features = probe(inputs, training=False)
        if head is not None:
            # Mixed precision gives float16 features; the output head stays float32.
            features = tf.cast(features, head.kernel.dtype)
            scores = tf.matmul(features, head.kernel) + (head.bias if head.use_bias else 0.0)
        else:
            scores = tf.math.log(tf.maximum(features, 1e-12))
        if class_index is None:
            class_index = int(tf.argmax(scores[0]))
        num_classes = int(scores.shape[-1])
        if not 0 <= class_index < num_classes:
            raise CnnlabError(
                f"`class_index` must be in [0, {num_classes - 1}]. Received: {class_index}"
            )
        score = scores[:, class_index]
    if len(activations.shape) != 4:
        raise CnnlabError(
            f"Layer {layer_name!r} outputs shape {tuple(activations.shape)}, not feature maps; "
            "pick a convolution layer."
        )
    gradients = tape.gradient(score, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2))  # (1, channels)
    cam = tf.nn.relu(tf.reduce_sum(activations * weights[:, None, None, :], axis=-1))[0]
    cam = cam.numpy().astype("float32")
    top = float(cam.max())
    return cam / top if top > 0 else np.zeros_like(cam)


def heat_by_quadrant(heatmap: np.ndarray) -> np.ndarray:
    """Share of the total heat in each quadrant: ``[[top-left, top-right],
    [bottom-left, bottom-right]]`` (sums to 1, or all zeros for an empty map).

    Odd sizes split the middle row/column evenly between both halves.
    """
    heat = np.asarray(heatmap, dtype="float64")
    # Upsample by 2 so an odd middle row/column is shared fairly.
    heat = np.kron(heat, np.ones((2, 2)))
    half_h, half_w = heat.shape[0] // 2, heat.shape[1] // 2
    shares = np.array(
        [
            [heat[:half_h, :half_w].sum(), heat[:half_h, half_w:].sum()],
            [heat[half_h:, :half_w].sum(), heat[half_h:, half_w:].sum()],
        ]
    )
    total = shares.sum()
    return shares / total if total > 0 else shares


# ----------------------------------------------------------------- feature maps


def feature_maps(model, pixels: np.ndarray, layer_name: str) -> np.ndarray:
    """The output of ``layer_name`` for one image: ``(height, width, channels)``."""
    probe = _probe(model, (layer_name,))
    output = probe(_batch(pixels), training=False)
    if isinstance(output, (list, tuple)):
        output = output[0]
    maps = np.asarray(output)[0]
    if maps.ndim != 3:
        raise CnnlabError(
            f"Layer {layer_name!r} outputs shape {maps.shape}, not feature maps; "
            "pick a convolution layer."
        )
    return maps.astype("float32")


def feature_map_grid(
    maps: np.ndarray,
    max_channels: int = MAX_CHANNELS,
    columns: int = GRID_COLUMNS,
    colormap: str = "even",
    gap: int = 2,
) -> Image.Image:
    """The first ``max_channels`` feature maps side by side, ``columns`` per row.

    Each map is scaled to its own min..max (so weak channels stay visible), coloured,
    and enlarged with nearest-neighbour to at least :data:`MIN_CELL` pixels.
    """
    maps = np.asarray(maps, dtype="float32")
    if maps.ndim != 3:
        raise CnnlabError(f"Feature maps must be (height, width, channels). Received: {maps.shape}")
    if max_channels < 1 or columns < 1:
        raise CnnlabError(
            f"`max_channels` and `columns` must be at least 1. "
            f"Received: max_channels={max_channels}, columns={columns}"
        )
    height, width, channels = maps.shape
    count = min(channels, max_channels)
    columns = min(columns, count)
    rows = -(-count // columns)
    scale = max(1, -(-MIN_CELL // max(height, width)))
    cell_h, cell_w = height * scale, width * scale
    canvas = np.full(
        (rows * cell_h + (rows - 1) * gap, columns * cell_w + (columns - 1) * gap, 3),
        255,
        dtype=np.uint8,
    )
    for index in range(count):
        channel = _unit_range(maps[..., index])
        tile = apply_colormap(channel, colormap)
        tile = np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8))
        row, column = divmod(index, columns)
        top, left = row * (cell_h + gap), column * (cell_w + gap)
        canvas[top : top + cell_h, left : left + cell_w] = tile
    return Image.fromarray(canvas, "RGB")


def _unit_range(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12:
        return np.zeros_like(values, dtype="float32")
    return ((values - low) / (high - low)).astype("float32")


# ----------------------------------------------------------------- gate weights


def gate_weights(model, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Each gate's weights (one per branch, summing to 1) for one image.

    Empty for models without gated blocks.
    """
    names = tuple(gate_layers(model))
    if not names:
        return {}
    outputs = _probe(model, names)(_batch(pixels), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {
        name: np.asarray(value)[0].astype("float32")
        for name, value in zip(names, outputs, strict=True)
    }


def gate_branch_labels(model, gate_name: str) -> list[str]:
    """Names for a gate's branches, with their kernel sizes when known (``3x3``)."""
    block = gate_name[: -len("_gate")] if gate_name.endswith("_gate") else gate_name
    branches = int(_layer(model, gate_name).output.shape[-1])
    labels = []
    for index in range(1, branches + 1):
        kernel = None
        for suffix in ("_conv", ""):
            try:
                kernel = model.get_layer(f"{block}_branch_{index}{suffix}").kernel_size
                break
            except (ValueError, AttributeError):
                continue
        size = f" ({kernel[0]}x{kernel[1]})" if kernel else ""
        labels.append(f"branch {index}{size}")
    return labels


# --------------------------------------------------------------------- drawing


def apply_colormap(values: np.ndarray, name: str = "heat") -> np.ndarray:
    """Values in [0, 1] to RGB uint8 with the named colour map (``heat`` or ``even``)."""
    if name not in COLORMAPS:
        raise CnnlabError(f"`colormap` must be one of {', '.join(COLORMAPS)}. Received: {name!r}")
    anchors = COLORMAPS[name]
    positions = np.array([position for position, _ in anchors])
    colours = np.array([colour for _, colour in anchors], dtype="float64")
    values = np.clip(np.nan_to_num(np.asarray(values, dtype="float64")), 0.0, 1.0)
    rgb = np.stack([np.interp(values, positions, colours[:, i]) for i in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def display_image(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """``image`` as RGB with its longest side ``side`` (small images enlarged crisply)."""
    image = image.convert("RGB")
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    method = Image.Resampling.NEAREST if scale > 2 else Image.Resampling.BILINEAR
    return image.resize(size, method)


def overlay_heatmap(
    image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45, side: int = DISPLAY_SIDE
) -> Image.Image:
    """The heat map, coloured, blended over the image (both shown at ``side`` pixels).

    The heat map covers the whole picture: the model saw the whole picture squeezed to
    a square, so the square map is stretched back to the picture's shape.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CnnlabError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
    base = display_image(image, side)
    heat = np.asarray(heatmap, dtype="float32")
    heat_image = Image.fromarray(np.rint(np.clip(heat, 0, 1) * 255).astype(np.uint8), "L")
    heat = np.asarray(heat_image.resize(base.size, Image.Resampling.BILINEAR), "float32") / 255
    coloured = apply_colormap(heat, "heat").astype("float32")
    # Cold areas stay mostly the picture; hot areas take the heat colour.
    weight = (alpha * (0.35 + 0.65 * heat))[..., None]
    blended = np.asarray(base, "float32") * (1 - weight) + coloured * weight
    return Image.fromarray(np.rint(blended).astype(np.uint8), "RGB")


def gate_weights_figure(weights: dict[str, np.ndarray], labels: dict[str, list[str]]):
    """One group of bars per gate: how much each branch counts for this image."""
    import plotly.graph_objects as go

    from cnnlab.plots import styled

    figure = go.Figure()
    for name, values in weights.items():
        names = labels.get(name) or [f"branch {i + 1}" for i in range(len(values))]
        figure.add_bar(
            name=name.removesuffix("_gate"),
            x=names,
            y=[float(v) for v in values],
            text=[f"{float(v):.0%}" for v in values],
            textposition="auto",
        )
    figure.update_layout(
        barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="gate weight")
    )
    return styled(figure, "Gate weights (each gate's branches sum to 100%)", height=280)
