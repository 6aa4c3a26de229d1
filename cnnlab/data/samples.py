"""Built-in sample datasets: ``sample:digits`` and ``sample:shapes``.

Each sample is a generator of ``(label, name, image)`` that ingest stores exactly like
uploaded pictures, so samples go through the same checks, hashing and splitting. Each
sample's spec class also declares the dataset's ``orientation_matters`` (whether
mirroring or turning an image changes its meaning; see ``cnnlab.data.dataset``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cnnlab.errors import CnnlabError
from cnnlab.spec import Range, Spec, param

SAMPLE_PREFIX = "sample:"
# Side of the stored digits; see digits() for why they are upscaled.
DIGITS_SIDE = 32
SHAPES = ("circle", "square", "triangle", "star")


@dataclass(frozen=True)
class ShapesSpec(Spec):
    """Options of the generated ``sample:shapes`` dataset."""

    kind = "sample:shapes option"
    orientation_matters = True  # stored in dataset.json; a class attribute, not an option

    count: int = param(120, Range(3, 5000, integer=True), "images of the largest class")
    image_size: int = param(64, Range(16, 256, integer=True), "side of each image, in pixels")
    imbalance: float = param(
        1.0, Range(1.0, 10.0), "class k gets about count / imbalance**k images (1 = balanced)"
    )
    seed: int = param(0, Range(0, 2**31 - 1, integer=True), "the same seed draws the same images")


@dataclass(frozen=True)
class DigitsSpec(Spec):
    """``sample:digits`` has no options."""

    kind = "sample:digits option"
    orientation_matters = True  # a mirrored 3 or an upturned 6 is not the same digit


SAMPLES = {"digits": DigitsSpec, "shapes": ShapesSpec}


def is_sample(source: Any) -> bool:
    return isinstance(source, str) and source.strip().lower().startswith(SAMPLE_PREFIX)


def sample_spec(source: str, options: dict | None) -> Spec:
    """Validate a sample name and its options.

    Raises:
        CnnlabError: for an unknown sample or an option out of range.
    """
    which = source.strip().lower()[len(SAMPLE_PREFIX) :]
    if which not in SAMPLES:
        valid = ", ".join(SAMPLE_PREFIX + name for name in SAMPLES)
        raise CnnlabError(f"Unknown sample {source!r}. Valid samples: {valid}.")
    return SAMPLES[which].from_dict({k: v for k, v in (options or {}).items() if v is not None})


def sample_images(spec: Spec) -> Iterator[tuple[str, str, Image.Image]]:
    if isinstance(spec, ShapesSpec):
        return shapes(spec)
    return digits()


def sample_size(spec: Spec) -> int:
    """How many images the sample yields (for progress)."""
    if isinstance(spec, ShapesSpec):
        return sum(shape_counts(spec).values())
    return 1797


def digits() -> Iterator[tuple[str, str, Image.Image]]:
    """scikit-learn's 1,797 handwritten digits, labels ``"0"`` to ``"9"``, grayscale.

    The originals are 8x8 with 17 gray levels (0-16). They are stretched to 0-255 and
    upscaled 4x to 32x32 with NEAREST: at 8x8 every image would sit at the minimum size
    and be flagged tiny, and nearest-neighbour only repeats pixels, so the stored image
    holds exactly the original information (no invented smoothing; shrinking it back by
    4 gives the original). Any smoothing is left to the run's own resize.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for index, (pixels, target) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        gray = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray, "L").resize((DIGITS_SIDE, DIGITS_SIDE), Image.NEAREST)
        yield str(int(target)), f"digits/{index:04d}.png", image


def shape_counts(spec: ShapesSpec) -> dict[str, int]:
    """Images per class: ``count * imbalance**-k``, at least 3 so every class splits."""
    return {
        name: max(3, int(round(spec.count * spec.imbalance ** (-k))))
        for k, name in enumerate(SHAPES)
    }


def shapes(spec: ShapesSpec | None = None) -> Iterator[tuple[str, str, Image.Image]]:
    """Coloured shapes on noisy backgrounds; the same spec draws the same images."""
    spec = spec or ShapesSpec()
    rng = np.random.default_rng(spec.seed)
    size = spec.image_size
    for label, count in shape_counts(spec).items():
        for index in range(count):
            yield label, f"shapes/{label}/{index:04d}.png", _draw(label, size, rng)


def _draw(label: str, size: int, rng: np.random.Generator) -> Image.Image:
    base = rng.integers(40, 216, size=3)
    noise = rng.normal(0, 18, (size, size, 3))
    background = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    # A colour far from the background, so the shape is always visible.
    colour = tuple(int(c) for c in (base + 128 + rng.integers(-40, 41, size=3)) % 256)
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(0.18, 0.32)
    cx, cy = rng.uniform(radius + 1, size - radius - 1, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    if label == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        points = {"square": 4, "triangle": 3, "star": 10}[label]
        vertices = []
        for k in range(points):
            r = radius * (0.45 if label == "star" and k % 2 else 1.0)
            theta = angle + 2 * math.pi * k / points
            vertices.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
        draw.polygon(vertices, fill=colour)
    return image


def describe(spec: Spec) -> str:
    """The ``source`` text stored in dataset.json, e.g. ``sample:shapes(count=120, ...)``."""
    if isinstance(spec, ShapesSpec):
        args = ", ".join(f"{k}={v}" for k, v in spec.to_dict().items())
        return f"sample:shapes({args})"
    return "sample:digits"
