"""Shared fixtures: a fresh workspace per test and tiny synthetic image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Quiet TensorFlow's start-up chatter in test output; set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty ``CNNLAB_HOME`` for this test only."""
    home = tmp_path / "cnnlab-home"
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    return home


def write_image_folders(
    root: Path,
    classes: dict[str, int],
    size: int = 24,
    mode: str = "RGB",
    fmt: str = "PNG",
    seed: int = 0,
) -> Path:
    """Write ``classes[label]`` random images of ``size`` pixels into ``root/label/``.

    Each class has its own mean colour, so a model can learn them apart.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for class_index, (label, count) in enumerate(classes.items()):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            base = (class_index * 80) % 256
            channels = 1 if mode == "L" else 3
            pixels = np.clip(
                base + rng.normal(0, 30, (size, size, channels)), 0, 255
            ).astype(np.uint8)
            image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
            image.save(folder / f"{label}_{i}.{fmt.lower().replace('jpeg', 'jpg')}", fmt)
    return root


@pytest.fixture
def image_folders(tmp_path) -> Path:
    """Three classes of eight 24x24 RGB images each, in ``class/`` folders."""
    return write_image_folders(tmp_path / "upload", {"cat": 8, "dog": 8, "fox": 8})
