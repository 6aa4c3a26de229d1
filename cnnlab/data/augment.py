"""Augmentation: an :class:`AugmentSpec` turned into a stack of Keras preprocessing layers.

The same stack is used everywhere, so what the Data page previews is what training
does: :func:`build_augmentation` returns a ``keras.Sequential`` that takes images with
pixel values in [0, 255] (uint8 or float), casts them to float32 and returns float32
pixels still in [0, 255]. Its random layers act only when called with
``training=True``, so it can sit inside a model (a no-op at inference) or be mapped
over a ``tf.data`` pipeline.

Each spec field is one *op* in a registry (:func:`augmentation_op`); the ops are
applied in registration order: geometry first (flips, crop, rotation, zoom, translation),
then colour, then noise and erasing.

Where mirroring or turning an image changes its meaning (digits, text, scans: a
dataset's ``orientation_matters``), :meth:`AugmentSpec.for_orientation` drops the flips
and keeps rotation small.

Keras is imported lazily, so reading or validating a spec stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.data.dataset import meta_path, read_meta, update_meta
from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range, Spec, param

ONOFF = Choice((False, True))
# Largest rotation kept when orientation matters: 0.05 of a turn, 18° either way.
ORIENTED_MAX_ROTATION = 0.05


@dataclass(frozen=True)
class AugmentSpec(Spec):
    """Random changes applied to training images; all off by default."""

    kind = "augmentation spec"

    horizontal_flip: bool = param(False, ONOFF, "mirror left-right at random")
    vertical_flip: bool = param(False, ONOFF, "mirror top-bottom at random")
    crop: float = param(
        0.0,
        Range(0.0, 0.5),
        "random crop: zoom in by up to this fraction of the side, aspect ratio varying",
    )
    rotation: float = param(
        0.0, Range(0.0, 0.5), "largest rotation, as a fraction of a full turn (0.05 = 18°)"
    )
    zoom: float = param(0.0, Range(0.0, 0.5), "largest zoom in or out, as a fraction of size")
    translation: float = param(
        0.0, Range(0.0, 0.5), "largest shift, as a fraction of width and height"
    )
    contrast: float = param(
        0.0, Range(0.0, 1.0), "largest contrast change, as a fraction (0.2 = 80%-120%)"
    )
    brightness: float = param(
        0.0, Range(0.0, 1.0), "largest brightness change, as a fraction of full white"
    )
    saturation: float = param(
        0.0, Range(0.0, 1.0), "how far colours may fade or deepen (colour images only)"
    )
    hue: float = param(
        0.0, Range(0.0, 0.5), "largest hue shift, as a fraction of the colour wheel (colour only)"
    )
    blur: float = param(0.0, Range(0.0, 1.0), "probability of a light Gaussian blur")
    gaussian_noise: float = param(
        0.0, Range(0.0, 64.0), "standard deviation of added pixel noise, in pixel units (0-255)"
    )
    erasing: float = param(
        0.0, Range(0.0, 1.0), "probability of blanking out a random rectangle with noise"
    )

    @classmethod
    def recommended(cls, channels: int = 3, orientation_matters: bool = False) -> AugmentSpec:
        """Mild settings for the automatic training recipe.

        Flips are recommended only where mirroring keeps the meaning: not when
        ``orientation_matters``, and not for grayscale data, which are often digits,
        text or scans.
        """
        return cls(
            horizontal_flip=channels == 3 and not orientation_matters,
            rotation=0.05,
            zoom=0.1,
            translation=0.1,
            contrast=0.1,
            brightness=0.1,
        )

    def for_orientation(self, orientation_matters: bool) -> AugmentSpec:
        """This spec as applied to a dataset with this ``orientation_matters``.

        When orientation matters (a mirrored or upturned digit is another digit, or
        none), a copy without flips and with rotation capped at
        ``ORIENTED_MAX_ROTATION``; otherwise the spec unchanged.
        """
        if not isinstance(orientation_matters, bool):
            raise CnnlabError(
                "`orientation_matters` must be one of False, True. "
                f"Received: orientation_matters={orientation_matters!r}"
            )
        if not orientation_matters:
            return self
        return self.replace(
            horizontal_flip=False,
            vertical_flip=False,
            rotation=min(self.rotation, ORIENTED_MAX_ROTATION),
        )

    def active_ops(self, channels: int = 3) -> list[str]:
        """Names of the ops this spec applies to images with ``channels`` channels."""
        return [
            op.name
            for op in _OPS.values()
            if getattr(self, op.name) and not (op.colour_only and channels != 3)
        ]

    def is_neutral(self) -> bool:
        """True when the spec changes nothing."""
        return self == AugmentSpec()


# --- the registry of ops --------------------------------------------------------------


@dataclass(frozen=True)
class AugmentOp:
    """One augmentation: the spec field it reads and how it becomes a Keras layer."""

    name: str  # the AugmentSpec field
    build: Callable[[Any, int | None], Any]  # (field value, seed) -> keras layer
    colour_only: bool  # skipped for grayscale images


_OPS: dict[str, AugmentOp] = {}


def augmentation_op(name: str, *, colour_only: bool = False):
    """Decorator filing a layer builder ``build(value, seed) -> layer`` under ``name``."""

    def register(build: Callable[[Any, int | None], Any]):
        if name in _OPS:
            raise ValueError(f"augmentation op {name!r} is registered twice")
        if name not in {field.name for field in dataclasses.fields(AugmentSpec)}:
            raise ValueError(f"augmentation op {name!r} is not an AugmentSpec field")
        _OPS[name] = AugmentOp(name, build, colour_only)
        return build

    return register


def registered_ops() -> list[str]:
    """Names of the augmentation ops, in the order they are applied."""
    return list(_OPS)


def get_op(name: str) -> AugmentOp:
    try:
        return _OPS[name]
    except KeyError:
        raise CnnlabError(
            f"Unknown augmentation {name!r}. Valid augmentations: {', '.join(_OPS)}."
        ) from None


# Every layer runs in float32 whatever the global (e.g. mixed-precision) policy is.
_F32 = {"dtype": "float32"}


@augmentation_op("horizontal_flip")
def _horizontal_flip(value, seed):
    import keras

    return keras.layers.RandomFlip("horizontal", seed=seed, name="horizontal_flip", **_F32)


@augmentation_op("vertical_flip")
def _vertical_flip(value, seed):
    import keras

    return keras.layers.RandomFlip("vertical", seed=seed, name="vertical_flip", **_F32)


@augmentation_op("crop")
def _crop(value, seed):
    import keras

    # A random resized crop around the centre from a stock layer (so a saved model loads
    # without custom objects): negative factors only zoom in, and a width factor of its
    # own draws the width scale independently of the height, so the aspect ratio varies.
    # A translation op, applied later, moves where the crop lands.
    return keras.layers.RandomZoom(
        height_factor=(-value, 0.0),
        width_factor=(-value, 0.0),
        fill_mode="reflect",
        seed=seed,
        name="crop",
        **_F32,
    )


@augmentation_op("rotation")
def _rotation(value, seed):
    import keras

    return keras.layers.RandomRotation(
        value, fill_mode="reflect", seed=seed, name="rotation", **_F32
    )


@augmentation_op("zoom")
def _zoom(value, seed):
    import keras

    # A single height factor range keeps the aspect ratio (width follows height).
    return keras.layers.RandomZoom(
        (-value, value), fill_mode="reflect", seed=seed, name="zoom", **_F32
    )


@augmentation_op("translation")
def _translation(value, seed):
    import keras

    return keras.layers.RandomTranslation(
        value, value, fill_mode="reflect", seed=seed, name="translation", **_F32
    )


@augmentation_op("contrast")
def _contrast(value, seed):
    import keras

    return keras.layers.RandomContrast(
        value, value_range=(0, 255), seed=seed, name="contrast", **_F32
    )


@augmentation_op("brightness")
def _brightness(value, seed):
    import keras

    return keras.layers.RandomBrightness(
        value, value_range=(0, 255), seed=seed, name="brightness", **_F32
    )


@augmentation_op("saturation", colour_only=True)
def _saturation(value, seed):
    import keras

    # RandomSaturation's factor 0.5 is "unchanged"; spread symmetrically around it.
    factor = (0.5 - value / 2, 0.5 + value / 2)
    return keras.layers.RandomSaturation(
        factor, value_range=(0, 255), seed=seed, name="saturation", **_F32
    )


@augmentation_op("hue", colour_only=True)
def _hue(value, seed):
    import keras

    # RandomHue shifts by up to factor / 2 of the wheel, either way.
    return keras.layers.RandomHue(2 * value, value_range=(0, 255), seed=seed, name="hue", **_F32)


@augmentation_op("blur")
def _blur(value, seed):
    import keras

    return keras.layers.RandomGaussianBlur(
        factor=(value, value),
        kernel_size=5,
        sigma=(0.1, 1.5),
        value_range=(0, 255),
        seed=seed,
        name="blur",
        **_F32,
    )


@augmentation_op("gaussian_noise")
def _gaussian_noise(value, seed):
    import keras

    # GaussianNoise takes a stddev of at most 1, so it works on pixels / 256: scaling by
    # a power of two is exact in float, so the stack stays an exact no-op at inference.
    return keras.Sequential(
        [
            keras.layers.Rescaling(1 / 256, **_F32),
            keras.layers.GaussianNoise(value / 256, seed=seed, **_F32),
            keras.layers.Rescaling(256.0, **_F32),
        ],
        name="gaussian_noise",
    )


@augmentation_op("erasing")
def _erasing(value, seed):
    import keras

    return keras.layers.RandomErasing(
        factor=(value, value), value_range=(0, 255), seed=seed, name="erasing", **_F32
    )


def build_augmentation(spec: AugmentSpec, channels: int = 3, seed: int | None = None):
    """The Keras layer stack for ``spec``, for images with ``channels`` channels.

    The stack casts its input (uint8 or float pixels in [0, 255]) to float32, applies
    one layer per enabled field (random only when called with ``training=True``) and
    clips the result back into [0, 255]. With a neutral spec it only casts.

    Use it either inside a model (``x = build_augmentation(spec, c)(x)``, active during
    ``fit`` only) or in a pipeline (``ds.map(lambda x, y: (aug(x, training=True), y))``).

    Args:
        spec: the augmentation settings.
        channels: 1 or 3; colour-only ops (saturation, hue) are skipped for 1.
        seed: makes the random draws repeatable; None draws fresh ones.

    Returns:
        A ``keras.Sequential`` named ``"augmentation"``.
    """
    import keras

    if channels not in (1, 3):
        raise CnnlabError(f"`channels` must be one of 1, 3. Received: channels={channels!r}")
    layers = [keras.layers.Rescaling(1.0, name="to_float32", **_F32)]
    for index, name in enumerate(spec.active_ops(channels)):
        op = _OPS[name]
        # Distinct seeds per layer, so two layers never draw the same random numbers.
        layer_seed = None if seed is None else int(seed) * 1009 + index + 1
        layers.append(op.build(getattr(spec, name), layer_seed))
    if len(layers) > 1:
        # Noise, erasing and interpolation can leave [0, 255]; ReLU(max=255) clips and is a
        # plain serialisable Keras layer.
        layers.append(keras.layers.ReLU(max_value=255.0, name="clip_0_255", **_F32))
    return keras.Sequential(layers, name="augmentation")


def preview(
    image: np.ndarray,
    spec: AugmentSpec,
    n: int = 8,
    seed: int = 0,
    image_size: int | None = None,
) -> list[np.ndarray]:
    """``n`` augmented variants of one image, drawn by the training layers.

    Args:
        image: an ``(H, W, C)`` or ``(H, W)`` array of pixels in [0, 255].
        spec: the augmentation settings.
        n: how many variants.
        seed: the same seed gives the same variants; another seed, others.
        image_size: first resize the image as the pipeline does for a run at this size
            (what training sees, and faster for large photos); None keeps its size.

    Returns:
        ``n`` uint8 arrays with the shape of ``image`` (``image_size`` square if given).
    """
    pixels = np.asarray(image)
    flat = pixels.ndim == 2
    if flat:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
        raise CnnlabError(
            "`image` must be an (H, W), (H, W, 1) or (H, W, 3) array. "
            f"Received: image.shape={tuple(np.shape(image))}"
        )
    if not 1 <= n <= 256:
        raise CnnlabError(f"`n` must be in [1, 256]. Received: n={n!r}")
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if image_size is not None:
        from cnnlab.data.pipeline import resize_pixels

        pixels = resize_pixels(pixels, image_size)
    stack = build_augmentation(spec, pixels.shape[-1], seed=seed)
    batch = np.repeat(pixels[None], n, axis=0)
    out = np.asarray(stack(batch, training=True))
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return [variant[..., 0] if flat else variant for variant in out]


# --- stored with the dataset ---------------------------------------------------------


def save_augment(dataset_name: str, spec: AugmentSpec) -> None:
    """Store ``spec`` as the dataset's default augmentation (in ``dataset.json``)."""
    if not isinstance(spec, AugmentSpec):
        raise CnnlabError(f"`spec` must be an AugmentSpec. Received: spec={spec!r}")
    update_meta(dataset_name, augment=spec.to_dict())


def load_augment(dataset_name: str) -> AugmentSpec:
    """The dataset's stored augmentation; a neutral spec when none was saved.

    Raises:
        CnnlabError: when the stored entry is damaged, naming the field at fault.
    """
    path = meta_path(dataset_name)
    stored = read_meta(dataset_name).get("augment")
    if stored is None:
        return AugmentSpec()
    where = f"The augmentation saved with dataset {dataset_name!r} ({path})"
    if not isinstance(stored, dict):
        raise CnnlabError(
            f"{where} is damaged: expected an object of fields. Received: {stored!r}. "
            "Save a new augmentation on the Data page."
        )
    try:
        return AugmentSpec.from_dict(stored)
    except CnnlabError as error:
        raise CnnlabError(
            f"{where} is damaged: {error} Save a new augmentation on the Data page "
            "or fix that field in dataset.json."
        ) from error
