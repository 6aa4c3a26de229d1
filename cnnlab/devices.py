"""Which devices training will use: GPUs (memory growth on), else the CPU, said plainly.

``describe_devices`` is what each run shows; the app's sidebar asks a child process
(``describe_devices_apart``); tests monkeypatch them.
``choose_strategy`` picks ``tf.distribute.MirroredStrategy`` when there are several
devices of the kind training uses (several GPUs, or the CPU split into logical devices
in the tests), else the default strategy.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def enable_memory_growth() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of all at once.

    Must run before TensorFlow initialises its devices; later calls do nothing.
    """
    tf = _tf()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # devices already initialised: growth is fixed by then
            pass


@functools.lru_cache(maxsize=1)
def describe_devices() -> dict[str, Any]:
    """The devices training can use.

    Returns:
        ``{"gpus": [names], "gpu_count": n, "device": "GPU: name" or "CPU (no GPU
        found)", "cpu_count": cores, "logical_cpus": n}``.
    """
    tf = _tf()
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # details are best effort; the device itself is what counts
            details = {}
        names.append(details.get("device_name") or gpu.name)
    if names:
        device = f"GPU: {names[0]}" if len(names) == 1 else f"{len(names)} GPUs: {names[0]}"
    else:
        device = "CPU (no GPU found)"
    return {
        "gpus": names,
        "gpu_count": len(names),
        "device": device,
        "cpu_count": os.cpu_count() or 1,
        "logical_cpus": len(tf.config.list_logical_devices("CPU")),
    }


def describe_devices_apart(timeout_s: float = 300.0) -> dict[str, Any]:
    """:func:`describe_devices` in a child process (``python -m cnnlab devices --json``).

    For a server: importing TensorFlow takes seconds, and done in one of its threads it
    holds the interpreter's lock against every page being drawn meanwhile.

    Raises:
        CnnlabError: when the child fails or takes longer than ``timeout_s``.
    """
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "cnnlab", "devices", "--json"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False,
            # At low priority: on a small machine the pages being drawn come first.
            preexec_fn=(lambda: os.nice(10)) if hasattr(os, "nice") else None,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CnnlabError(f"Detecting devices took over {timeout_s:g} s.") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CnnlabError(f"Detecting devices failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def has_gpu() -> bool:
    return describe_devices()["gpu_count"] > 0


def choose_strategy():
    """MirroredStrategy over all GPUs when there are several (or over several logical
    CPU devices when there is no GPU), else TensorFlow's default strategy."""
    tf = _tf()
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
    return tf.distribute.get_strategy()


def strategy_name(strategy) -> str:
    replicas = getattr(strategy, "num_replicas_in_sync", 1)
    name = type(strategy).__name__
    if name.startswith("_Default"):
        return "default (one device)"
    return f"{name} ({replicas} replicas)"


def use_mixed_precision(setting: str) -> bool:
    """Whether to train in mixed precision: ``auto`` means on a GPU only."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return has_gpu()


def split_cpu(count: int) -> None:
    """Split the CPU into ``count`` logical devices (before TensorFlow initialises)."""
    tf = _tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


LOGICAL_CPUS_ENV = "CNNLAB_LOGICAL_CPUS"


def configure_from_env() -> None:
    """Apply ``CNNLAB_LOGICAL_CPUS=N`` (split the CPU into N logical devices, so
    MirroredStrategy can be exercised without GPUs) and GPU memory growth.

    Must run before TensorFlow initialises its devices; afterwards it changes nothing.
    """
    from cnnlab.errors import CnnlabError

    text = os.environ.get(LOGICAL_CPUS_ENV, "").strip()
    if text:
        if not text.isdigit() or not 1 <= int(text) <= 64:
            raise CnnlabError(
                f"`{LOGICAL_CPUS_ENV}` must be a whole number in [1, 64]. "
                f"Received: {LOGICAL_CPUS_ENV}={text!r}"
            )
        try:
            split_cpu(int(text))
        except RuntimeError:  # TensorFlow already initialised in this process
            pass
    enable_memory_growth()
