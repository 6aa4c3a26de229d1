"""Architectures: specs, presets, the Keras builder, the analysis and the diagram.

Importing ``cnnlab.models`` does not import TensorFlow: specs, presets and the
analysis are plain Python (so the Architecture page redraws instantly). The names
that need Keras (``build_model``, ``conv_layer_names``, ``gate_layer_names``,
``gate_values``) are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from cnnlab.models.analysis import Analysis, ModelInput, analyze
from cnnlab.models.blocks import BLOCK_TYPES, Block, block_from_dict
from cnnlab.models.registry import get_preset, list_presets, register_preset
from cnnlab.models.spec import ArchSpec
from cnnlab.models.store import list_saved_archs, load_saved_arch, resolve_arch, save_arch

_KERAS_NAMES = {"build_model", "conv_layer_names", "gate_layer_names", "gate_values"}

__all__ = [
    "BLOCK_TYPES",
    "Analysis",
    "ArchSpec",
    "Block",
    "ModelInput",
    "analyze",
    "block_from_dict",
    "get_preset",
    "list_presets",
    "list_saved_archs",
    "load_saved_arch",
    "register_preset",
    "resolve_arch",
    "save_arch",
    *sorted(_KERAS_NAMES),
]


def __getattr__(name: str) -> Any:
    if name in _KERAS_NAMES:
        from cnnlab.models import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'cnnlab.models' has no attribute {name!r}")
