"""Shared fixtures: a fresh workspace per test and tiny synthetic image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Quiet TensorFlow's start-up chatter in test output; set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests never ask the internet for pretrained weights; they make their own files.
os.environ.setdefault("CNNLAB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def device_not_detected_yet(monkeypatch):
    """Device detection still running while the test runs, as on a cold start (it
    imports TensorFlow: seconds); it finishes when the test ends."""
    import threading

    import streamlit as st

    from cnnlab import devices

    release = threading.Event()

    def slow_detection():
        release.wait(30)
        return {"device": "CPU (no GPU found)"}

    st.cache_resource.clear()  # forget a detection an earlier test finished
    monkeypatch.setattr(devices, "describe_devices_apart", slow_detection)
    yield
    release.set()


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty ``CNNLAB_HOME`` for this test only."""
    import streamlit as st

    home = tmp_path / "cnnlab-home"
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    # Pages cache what they read (the training queue for a second, say), keyed by their
    # arguments only: the last test's workspace must not show through.
    st.cache_data.clear()
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
            pixels = np.clip(base + rng.normal(0, 30, (size, size, channels)), 0, 255).astype(
                np.uint8
            )
            image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
            image.save(folder / f"{label}_{i}.{fmt.lower().replace('jpeg', 'jpg')}", fmt)
    return root


@pytest.fixture
def image_folders(tmp_path) -> Path:
    """Three classes of eight 24x24 RGB images each, in ``class/`` folders."""
    return write_image_folders(tmp_path / "upload", {"cat": 8, "dog": 8, "fox": 8})


def make_dataset_on_disk(
    name: str,
    classes: dict[str, int],
    size: int = 24,
    channels: int = 3,
    splits: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> str:
    """Write a ready dataset ``name`` into the current ``CNNLAB_HOME``, without ingest.

    Images are PNGs under ``images/<label>/``. ``splits`` is (train, val, test) images per
    class: the last ``test`` images of a class go to test, the ``val`` before them to val,
    the rest to train; by default a fifth each to val and test. Returns the name.
    """
    import hashlib
    import shutil

    from PIL import Image

    from cnnlab import workspace
    from cnnlab.data.dataset import Record, write_index

    folder = workspace.dataset_dir(name)
    mode = "L" if channels == 1 else "RGB"
    upload = folder / "upload-tmp"
    write_image_folders(upload, classes, size=size, mode=mode, seed=seed)
    records = []
    for label, count in classes.items():
        val, test = splits[1:] if splits else (count // 5, count // 5)
        names = [f"{label}_{i}.png" for i in range(count)]
        for i, source in enumerate(names):
            image = Image.open(upload / label / source)
            pixels = np.asarray(image)
            sha = hashlib.sha256(pixels.tobytes()).hexdigest()
            target = folder / "images" / label / f"{sha[:16]}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target)
            split = "test" if i >= count - test else "val" if i >= count - test - val else "train"
            records.append(
                Record(
                    file=f"images/{label}/{sha[:16]}.png",
                    label=label,
                    split=split,
                    sha=sha,
                    width=image.width,
                    height=image.height,
                    source=source,
                )
            )
    shutil.rmtree(upload)
    write_index(folder / "index.csv", records)
    workspace.atomic_write_json(
        folder / "dataset.json",
        {
            "name": name,
            "created": "2026-01-01T00:00:00+00:00",
            "source": "synthetic test images",
            "channels": channels,
            "classes": sorted(classes),
            "split": {"train": 0.6, "val": 0.2, "test": 0.2},
            "seed": seed,
        },
    )
    return name


@pytest.fixture
def tiny_dataset(workspace) -> str:
    """A dataset named ``tiny`` in a fresh workspace: 3 classes x 10 RGB 24x24 images,
    split 6/2/2 per class. Returns the name."""
    return make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))


def widget_keys(at) -> set[str]:
    """The keys of every widget an AppTest run drew (to check who sees which control)."""

    def walk(node):
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    return {node.key for node in walk(at._tree) if getattr(node, "key", None)}
