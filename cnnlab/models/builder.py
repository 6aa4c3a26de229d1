"""Turn an :class:`ArchSpec` into a ``keras.Model`` that takes raw pixels.

The model's layers, in order::

    input (None, None, channels)      raw pixels in [0, 255], any size
    resize        Resizing(image_size, image_size)
    augmentation  optional Keras preprocessing stack, active only in training
    rescale       Rescaling(1/255), or the backbone's own preprocessing
    <body>        conv_1, pool_1, res_1, gated_1, ... (one name per block)
    predictions   Dense(classes, softmax), float32 so mixed precision stays safe

Because resizing and rescaling are layers, a saved ``.keras`` file carries its
preprocessing and prediction can never drift from training. Only stock Keras layers
are used (the gate's mix is Reshape/Concatenate/Dot), so any Keras can load the file
without cnnlab's help.

Layer names are readable and stable: a block's output layer carries the block's name
(``conv_2``, ``gated_1``), its inner layers that name plus a suffix (``gated_1_gate``
is the gate's softmax, shape ``(batch, branches)``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import keras
import numpy as np
from keras import layers

from cnnlab.errors import CnnlabError
from cnnlab.models import analysis
from cnnlab.models.blocks import (
    Backbone,
    Conv,
    Dense,
    Dropout,
    Flatten,
    Gated,
    GlobalPool,
    PointwiseConv,
    Pool,
    Residual,
    SeparableConv,
)
from cnnlab.models.spec import ArchSpec
from cnnlab.models.store import resolve_arch

# The backbone's last feature map gets this name, so Grad-CAM finds it in any model.
BACKBONE_FEATURES = "backbone_features"
_BLOCK_OUTPUT = re.compile(r"^(conv|sepconv|pointwise|res|gated)_\d+$")
_CONV_TYPES = (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D)
# Keras's default (0.99) averages over ~100 steps: a small photo set has about 10 steps
# an epoch, so validation early in a run used statistics far from the data's and
# collapsed to one class. 0.9 (PyTorch's default) follows the data within an epoch.
BN_MOMENTUM = 0.9


def build_model(
    arch: ArchSpec | dict | str,
    image_size: int,
    channels: int,
    num_classes: int,
    *,
    augmentation: keras.Layer | None = None,
    weights: str | None = None,
) -> keras.Model:
    """Build the Keras model of ``arch`` for images of ``channels`` and ``num_classes``.

    Args:
        arch: the architecture, or anything :func:`cnnlab.models.resolve_arch` takes.
        image_size: side of the square images the body sees (after ``Resizing``).
        channels: 1 (grayscale) or 3 (colour) input channels.
        num_classes: number of outputs of the softmax.
        augmentation: a layer (usually a ``keras.Sequential`` of preprocessing layers)
            working on [0, 255] pixels; Keras runs it only while training.
        weights: for a backbone, overrides its ``weights`` option ("imagenet", "none"
            or a file); for other architectures, a weights file to load into the
            whole model (e.g. to continue from an earlier run).

    Raises:
        CnnlabError: invalid sizes, a body that shrinks the image below 1x1, a backbone
            whose ImageNet weights cannot be downloaded, a missing weights file.
    """
    arch = resolve_arch(arch)
    # The arithmetic analysis checks sizes and shapes with the messages the page shows.
    analysis.check_input(image_size, channels, num_classes)
    blocks = arch.resolved_blocks()
    backbone = blocks[0] if isinstance(blocks[0], Backbone) else None
    if backbone is not None and weights is not None:
        backbone = Backbone(backbone.name, weights, backbone.fine_tune_last)
        blocks = (backbone, *blocks[1:])
    analysis.check_blocks(blocks, image_size, channels, num_classes)

    inputs = keras.Input((None, None, channels), name="pixels")
    x = layers.Resizing(image_size, image_size, name="resize")(inputs)
    if augmentation is not None:
        x = augmentation(x)
    if backbone is None:
        x = layers.Rescaling(1.0 / 255, name="rescale")(x)
        body = blocks
    else:
        x = _backbone(backbone, inputs, x, channels)
        body = blocks[1:]
    counters: Counter[str] = Counter()
    for block in body:
        counters[block.prefix] += 1
        x = _BUILDERS[type(block)](block, x, f"{block.prefix}_{counters[block.prefix]}")
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(
        x
    )
    model = keras.Model(inputs, outputs, name=_model_name(arch))
    if backbone is None and weights not in (None, "none"):
        _load_whole_model_weights(model, weights)
    return model


# --- blocks ------------------------------------------------------------------------------


def _activation(name: str) -> str | None:
    return None if name == "linear" else name


def _conv_bn_act(x, name, filters, kernel, stride, padding, activation, batch_norm):
    """Conv2D, then BatchNorm and activation; the block's output is named ``name``."""
    if not batch_norm:
        return layers.Conv2D(
            filters, kernel, stride, padding, activation=_activation(activation), name=name
        )(x)
    x = layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=name)(x)


def _conv(block: Conv, x, name):
    return _conv_bn_act(
        x,
        name,
        block.filters,
        block.kernel,
        block.stride,
        block.padding,
        block.activation,
        block.batch_norm,
    )


def _pointwise(block: PointwiseConv, x, name):
    return _conv_bn_act(x, name, block.filters, 1, 1, "valid", block.activation, block.batch_norm)


def _separable(block: SeparableConv, x, name):
    if not block.batch_norm:
        return layers.SeparableConv2D(
            block.filters,
            block.kernel,
            block.stride,
            block.padding,
            activation=_activation(block.activation),
            name=name,
        )(x)
    x = layers.SeparableConv2D(
        block.filters,
        block.kernel,
        block.stride,
        block.padding,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation(block.activation, name=name)(x)


def _residual(block: Residual, x, name):
    f, k, bn = block.filters, block.kernel, block.batch_norm
    shortcut = x
    if block.needs_projection(x.shape[-1]):
        shortcut = layers.Conv2D(
            f, 1, block.stride, "same", use_bias=not bn, name=f"{name}_shortcut"
        )(x)
        if bn:
            shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_shortcut_bn")(
                shortcut
            )
    y = _conv_bn_act(x, f"{name}_a", f, k, block.stride, "same", block.activation, bn)
    if bn:
        y = layers.Conv2D(f, k, 1, "same", use_bias=False, name=f"{name}_b_conv")(y)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
    else:
        y = layers.Conv2D(f, k, 1, "same", name=f"{name}_b_conv")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation(block.activation, name=name)(y)


def _pool(block: Pool, x, name):
    pool = layers.MaxPooling2D if block.mode == "max" else layers.AveragePooling2D
    return pool(block.size, padding=block.padding, name=name)(x)


def _global_pool(block: GlobalPool, x, name):
    pool = layers.GlobalMaxPooling2D if block.mode == "max" else layers.GlobalAveragePooling2D
    return pool(name=name)(x)


def _flatten(block: Flatten, x, name):
    return layers.Flatten(name=name)(x)


def _dropout(block: Dropout, x, name):
    return layers.Dropout(block.rate, name=name)(x)


def _dense(block: Dense, x, name):
    return layers.Dense(block.units, activation=_activation(block.activation), name=name)(x)


def _gated(block: Gated, x, name):
    """Branches with different kernels, mixed per image by a softmax gate.

    gate = softmax(Dense(GlobalAveragePooling(x))) has one weight per branch and
    image; the output is sum_i gate_i * branch_i. The mix is written with stock layers
    (flatten each branch, stack, batch dot with the gate, reshape back) so saved models
    load without custom objects.
    """
    height, width = int(x.shape[1]), int(x.shape[2])
    branches = []
    for index, kernel in enumerate(block.kernels, 1):
        branch = _conv_bn_act(
            x,
            f"{name}_branch_{index}",
            block.filters,
            kernel,
            1,
            "same",
            block.activation,
            block.batch_norm,
        )
        branches.append(
            layers.Reshape((height * width * block.filters, 1), name=f"{name}_flat_{index}")(branch)
        )
    pooled = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    # Zero kernel: every gate starts as an even mix and learns to prefer branches.
    gate = layers.Dense(
        len(block.kernels), activation="softmax", kernel_initializer="zeros", name=f"{name}_gate"
    )(pooled)
    stacked = layers.Concatenate(axis=-1, name=f"{name}_stack")(branches)
    mixed = layers.Dot(axes=(2, 1), name=f"{name}_mix")([stacked, gate])
    return layers.Reshape((height, width, block.filters), name=name)(mixed)


_BUILDERS = {
    Conv: _conv,
    SeparableConv: _separable,
    PointwiseConv: _pointwise,
    Residual: _residual,
    Pool: _pool,
    GlobalPool: _global_pool,
    Flatten: _flatten,
    Dropout: _dropout,
    Dense: _dense,
    Gated: _gated,
}


# --- transfer learning -------------------------------------------------------------------

# Caffe-style preprocessing of ResNet50: RGB -> BGR, minus the ImageNet means (BGR).
_CAFFE_MEANS = (103.939, 116.779, 123.68)


def _backbone(block: Backbone, inputs, x, channels: int):
    """Preprocess for ``block.name``, then its layers, inlined into the outer model.

    Inlining (``input_tensor=``) keeps every backbone layer addressable by name in the
    outer model, which Grad-CAM and feature maps need. The pretrained weights are loaded
    by Keras into a separate copy of the backbone (its own download, cache and file
    format handling) and then copied layer by layer.
    """
    title = analysis.BACKBONE_TITLES[block.name]
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = _backbone_preprocessing(block.name, x)
    own_layers = {layer.name for layer in keras.Model(inputs, x).layers}
    application = analysis.backbone_application(block.name)
    base = application(include_top=False, weights=None, input_tensor=x)
    backbone_layers = [layer for layer in base.layers if layer.name not in own_layers]
    weights = _application_weights(block.weights, title)
    if weights is not None:
        pretrained = _pretrained_backbone(application, title, weights, int(x.shape[1]))
        _copy_weights(pretrained, backbone_layers, title)
        if block.name == "efficientnetb0" and weights == "imagenet":
            _fold_efficientnet_scaling(backbone_layers)
        del pretrained
    set_fine_tuning(backbone_layers, block.fine_tune_last)
    return layers.Activation("linear", name=BACKBONE_FEATURES)(base.output)


def _pretrained_backbone(application, title: str, weights: str, image_size: int):
    try:
        return application(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
        )
    except CnnlabError:
        raise
    except Exception as error:  # keras raises a bare Exception on a failed download
        if weights == "imagenet":
            raise CnnlabError(
                f"ImageNet weights for {title} could not be downloaded ({_short(error)}). "
                "Pass a local weights file (weights=PATH) or use random initialisation "
                "(weights=None)."
            ) from None
        raise CnnlabError(
            f"The weights file {weights} does not fit {title} without its top "
            f"({_short(error)}). Use a `{title}(include_top=False)` weights file, "
            "'imagenet' or 'none'."
        ) from None


def _copy_weights(source, target_layers: list, title: str) -> None:
    sources = [layer for layer in source.layers if layer.weights]
    targets = [layer for layer in target_layers if layer.weights]
    assert len(sources) == len(targets), f"{title}: {len(sources)} != {len(targets)} layers"
    for source_layer, target_layer in zip(sources, targets, strict=True):
        _set_weights(target_layer, source_layer.get_weights())


def _set_weights(layer, weights: list) -> None:
    layer.set_weights(weights)
    # Normalization computes from cached copies of its variables; loading a saved
    # model refreshes them, set_weights does not.
    if isinstance(layer, layers.Normalization):
        layer.finalize_state()


def _fold_efficientnet_scaling(backbone_layers: list) -> None:
    """Keras adds ``Rescaling(1/sqrt(stddev))`` after the normalisation for ImageNet
    weights (keras-team/keras issue 49930 in TensorFlow); dividing by sqrt(stddev) is
    the same as multiplying the normalisation's variance by stddev, which keeps the
    inlined backbone's layers identical whatever the weights."""
    from keras.src.applications.efficientnet import IMAGENET_STDDEV_RGB

    norm = next(layer for layer in backbone_layers if isinstance(layer, layers.Normalization))
    mean, variance, *rest = norm.get_weights()
    scale = np.asarray(IMAGENET_STDDEV_RGB, variance.dtype).reshape(variance.shape)
    _set_weights(norm, [mean, variance * scale, *rest])


def _backbone_preprocessing(name: str, x):
    if name in ("mobilenetv2", "efficientnetlite0"):  # scales to [-1, 1]
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)
    if name == "resnet50":
        # A fixed linear map does the channel swap and the mean subtraction exactly.
        caffe = layers.Dense(3, trainable=False, name="preprocess")
        x = caffe(x)
        kernel = np.zeros((3, 3), "float32")
        kernel[2, 0] = kernel[1, 1] = kernel[0, 2] = 1.0
        caffe.set_weights([kernel, -np.asarray(_CAFFE_MEANS, "float32")])
        return x
    return x  # EfficientNet rescales and normalises inside itself


def set_fine_tuning(backbone_layers: list, fine_tune_last: int) -> None:
    """Freeze the backbone except its last ``fine_tune_last`` layers.

    Batch-normalisation layers stay frozen (and in inference mode) even when
    fine-tuning, as Keras's transfer-learning guide advises: their statistics on a
    small dataset would wreck the pretrained features.
    """
    first_trained = len(backbone_layers) - fine_tune_last
    for index, layer in enumerate(backbone_layers):
        trained = index >= first_trained and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trained


def fine_tune_backbone(model: keras.Model, fine_tune_last: int) -> bool:
    """Let the last ``fine_tune_last`` layers of ``model``'s backbone train (see
    :func:`set_fine_tuning`); False when the model has no backbone. Recompile after."""
    names = [layer.name for layer in model.layers]
    if BACKBONE_FEATURES not in names:
        return False
    own = {"pixels", "resize", "augmentation", "rescale", "preprocess", "gray_to_rgb"}
    first = max(index for index, name in enumerate(names) if name in own) + 1
    set_fine_tuning(model.layers[first : names.index(BACKBONE_FEATURES)], fine_tune_last)
    return True


def _application_weights(weights: str, title: str) -> str | None:
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return None
    from cnnlab.train.pretrained import check_weights_path  # cnnlab.train builds on models

    check_weights_path(weights)  # before saying whether the file exists
    if not Path(weights).expanduser().is_file():
        raise CnnlabError(
            f"`weights` for {title} must be 'imagenet', 'none' or an existing weights file. "
            f"Received: weights={weights!r} (no such file)"
        )
    return str(Path(weights).expanduser())


def _short(error: Exception) -> str:
    text = " ".join(str(error).split(" -- ")[-1].split())
    return text if len(text) <= 160 else text[:157] + "..."


def _load_whole_model_weights(model: keras.Model, weights: str) -> None:
    if weights == "imagenet":
        raise CnnlabError(
            "`weights`='imagenet' needs a backbone; use the `transfer` preset or pass a "
            "weights file of this architecture."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CnnlabError(
            f"`weights` must be 'none' or an existing weights file. Received: weights={weights!r}"
        )
    try:
        if path.suffix == ".keras":
            model.set_weights(keras.models.load_model(path, compile=False).get_weights())
        else:
            model.load_weights(path)
    except (ValueError, OSError) as error:
        raise CnnlabError(
            f"The weights in {path.name} do not fit this architecture ({_short(error)}); "
            "use weights saved from the same architecture, image size and classes."
        ) from None


def _model_name(arch: ArchSpec) -> str:
    return arch.preset_name or "custom"


# --- finding layers ------------------------------------------------------------------


def conv_layer_names(model: keras.Model) -> list[str]:
    """Layers whose outputs are feature maps worth showing, input side first.

    For cnnlab blocks: each convolutional block's output (``conv_1``, ``sepconv_1``,
    ``res_1``, ``gated_1``...). For a keras.applications backbone: its convolution
    layers, then ``backbone_features`` (its last feature map). The last name is the
    usual Grad-CAM target.
    """
    names = []
    has_backbone = any(layer.name == BACKBONE_FEATURES for layer in model.layers)
    for layer in model.layers:
        if _BLOCK_OUTPUT.match(layer.name) or layer.name == BACKBONE_FEATURES:
            names.append(layer.name)
        elif has_backbone and isinstance(layer, _CONV_TYPES) and not _is_cnnlab_inner(layer):
            names.append(layer.name)
    return names


def _is_cnnlab_inner(layer) -> bool:
    return bool(re.match(r"^(conv|sepconv|pointwise|res|gated)_\d+_", layer.name))


def gate_layer_names(model: keras.Model) -> list[str]:
    """The gates of gated blocks (``gated_1_gate``...): outputs ``(batch, branches)``."""
    return [
        layer.name
        for layer in model.layers
        if re.match(r"^gated_\d+_gate$", layer.name) and isinstance(layer, layers.Dense)
    ]


def gate_values(model: keras.Model, images) -> dict[str, np.ndarray]:
    """Each gate's weights for ``images`` (raw pixels): ``{name: (n, branches)}``."""
    names = gate_layer_names(model)
    if not names:
        return {}
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    values = probe.predict(np.asarray(images, "float32"), verbose=0)
    if len(names) == 1:
        values = [values]
    return {name: np.asarray(value) for name, value in zip(names, values, strict=True)}
