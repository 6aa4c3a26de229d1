"""How fast this device trains a model: measured once, remembered per device.

The auto recipe needs to know how long a run will take before it starts. A *probe*
trains the candidate model for a few batches of random pixels at the candidate size
(the first call traces the model and is not timed) and keeps the training images per
second in ``$CNNLAB_HOME/cache/throughput.json``, keyed on the device, the
architecture, the image size, the channels, the batch size and the augmentation. Every
finished run records its own steady-state speed under the same key, which then
replaces the probe's (a run includes the input pipeline, so it is the better number).

Without a measurement for a model, :func:`estimated_throughput` scales one this device
has for another model by their multiply-accumulates, which is close enough to rank
candidates; the recipe probes the one it picks.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys
import time
from typing import Any

import numpy as np

from cnnlab import workspace
from cnnlab.devices import describe_devices

CACHE_FILE = "throughput.json"
HOSTS = "hosts"  # the cache's entry of device keys per host
PROBE_SECONDS = 1.5
# Training multiply-accumulates per second assumed before anything was measured here.
DEFAULT_MACS_PER_S = {"cpu": 1.5e10, "gpu": 1.0e12}
# A step costs about three forward passes (forward, and backward for inputs and weights).
TRAINING_PASSES = 3


def device_key() -> str:
    """This machine's training device, as a cache key: GPU names, or the CPU and cores.

    Finding GPUs means importing TensorFlow (seconds), so the key is kept per host:
    a process that has TensorFlow loaded anyway (every training worker, the app)
    refreshes it, and planning in a fresh process (the CLI) reads it.
    """
    host = f"{socket.gethostname()}:{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
    cache = _read_cache()
    known = cache.get(HOSTS, {}).get(host)
    if isinstance(known, str) and "tensorflow" not in sys.modules:
        return known
    device = describe_devices()
    if device["gpu_count"]:
        key = f"gpu:{device['gpu_count']}x{device['gpus'][0]}"
    else:
        key = f"cpu:{_cpu_model()}:{os.cpu_count() or 1}"
    if key != known:
        cache.setdefault(HOSTS, {})[host] = key
        _write_cache(cache)
    return key


def is_gpu(key: str) -> bool:
    return key.startswith("gpu:")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def model_key(arch: Any, image_size: int, channels: int, batch_size: int, augment: Any) -> str:
    """The cache key of one training configuration (without the device)."""
    from cnnlab.data.augment import AugmentSpec
    from cnnlab.models.store import resolve_arch

    ops = AugmentSpec.from_dict(augment).active_ops(channels) if isinstance(augment, dict) else []
    text = json.dumps(resolve_arch(arch).to_dict(), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{digest}|{image_size}px|{channels}c|b{batch_size}|{'+'.join(ops) or 'noaug'}"


def _cache_path():
    return workspace.inside(workspace.home(), "cache", CACHE_FILE)


def _read_cache() -> dict[str, dict]:
    cache = workspace.read_json(_cache_path(), default={})
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_json(path, cache)


def cached_throughput(key: str) -> float | None:
    """Training images/s measured on this device for ``key``, or None."""
    entry = _read_cache().get(device_key(), {}).get(key)
    if isinstance(entry, dict) and isinstance(entry.get("images_per_s"), (int, float)):
        return float(entry["images_per_s"])
    return None


def record_throughput(key: str, images_per_s: float, source: str, macs: float | None) -> None:
    """Remember ``images_per_s`` for ``key`` on this device (``source``: probe or run)."""
    if not images_per_s or not np.isfinite(images_per_s) or images_per_s <= 0:
        return
    device = device_key()
    cache = _read_cache()
    cache.setdefault(device, {})[key] = {
        "images_per_s": float(images_per_s),
        "macs": macs,
        "source": source,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write_cache(cache)


def macs_per_image(arch: Any, image_size: int, channels: int, classes: int) -> float:
    """Forward multiply-accumulates of one image (from the architecture's analysis)."""
    from cnnlab.models.analysis import analyze

    return float(analyze(arch, image_size, channels, classes).totals["macs"])


def estimated_throughput(key: str, macs: float) -> tuple[float, str]:
    """``(images/s, how)`` for a model of ``macs`` forward MACs per image.

    ``how`` is "measured" when this device has a number for ``key``, "scaled" when it
    comes from another measured model's MACs per second, else "assumed".
    """
    measured = cached_throughput(key)
    if measured:
        return measured, "measured"
    rates = [
        entry["images_per_s"] * entry["macs"] * TRAINING_PASSES
        for entry in _read_cache().get(device_key(), {}).values()
        if isinstance(entry, dict) and entry.get("macs") and entry.get("images_per_s")
    ]
    if rates:
        return float(np.median(rates)) / (macs * TRAINING_PASSES), "scaled"
    kind = "gpu" if is_gpu(device_key()) else "cpu"
    return DEFAULT_MACS_PER_S[kind] / (macs * TRAINING_PASSES), "assumed"


def probe_throughput(
    arch: Any,
    image_size: int,
    channels: int,
    classes: int,
    batch_size: int,
    augment: Any = None,
) -> float:
    """Train the model a few batches on random pixels; record and return images/s."""
    import keras

    from cnnlab.data.augment import AugmentSpec, build_augmentation
    from cnnlab.models.builder import build_model
    from cnnlab.predict import keras_in_use

    augmentation = None
    if isinstance(augment, dict) and not AugmentSpec.from_dict(augment).is_neutral():
        augmentation = build_augmentation(AugmentSpec.from_dict(augment), channels, seed=0)
    with keras_in_use():  # the Train page probes in the server, beside other sessions
        model = build_model(arch, image_size, channels, classes, augmentation=augmentation)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch_size, image_size, image_size, channels), np.uint8)
        labels = rng.integers(0, classes, batch_size)
        model.train_on_batch(images, labels)  # traces the step: not timed
        # Timed until PROBE_SECONDS have passed (at least two batches): slow models are
        # not held for many batches, fast ones are timed long enough to be steady.
        done, started = 0, time.perf_counter()
        while done < 2 or time.perf_counter() - started < PROBE_SECONDS:
            model.train_on_batch(images, labels)
            done += 1
    images_per_s = done * batch_size / (time.perf_counter() - started)
    key = model_key(arch, image_size, channels, batch_size, augment)
    record_throughput(
        key, images_per_s, "probe", macs_per_image(arch, image_size, channels, classes)
    )
    del model
    keras.backend.clear_session(free_memory=False)
    return images_per_s
