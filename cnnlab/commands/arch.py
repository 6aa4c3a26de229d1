"""``arch`` and ``presets``: what an architecture costs, and which presets there are."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.cli import add_json_flag, print_json
from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, ModelInput, analyze, list_saved_archs, resolve_arch
from cnnlab.models.analysis import Analysis, format_bytes, format_count
from cnnlab.models.registry import describe_presets


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "arch",
        help="per-layer shapes, parameters, MACs and memory of an architecture",
        description=(
            "Analyse a preset, a saved architecture or an ArchSpec JSON file for an image "
            "size and class count: one row per block (output shape, parameters, "
            "multiply-accumulates, activation memory, receptive field), totals, the "
            "training-memory estimate and warnings."
        ),
    )
    parser.add_argument("arch", metavar="PRESET_OR_FILE", help="preset, saved name or .json")
    parser.add_argument(
        "--image-size", type=int, default=None, help="image side in pixels (default 64)"
    )
    parser.add_argument("--classes", type=int, default=None, help="number of classes")
    parser.add_argument("--channels", type=int, default=None, help="1 or 3 (default 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="for the memory estimate")
    parser.add_argument(
        "--dataset", default=None, help="take channels and classes from this dataset"
    )
    parser.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="a preset option, e.g. --set width=16 (repeatable)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run_arch)

    listing = subparsers.add_parser(
        "presets", help="list the architecture presets and saved architectures"
    )
    add_json_flag(listing)
    listing.set_defaults(handler=run_presets)


def run_arch(args: argparse.Namespace) -> int:
    arch = _with_options(resolve_arch(args.arch), args.options)
    channels, classes = args.channels, args.classes
    if args.dataset:
        from cnnlab.data.dataset import load_dataset

        dataset = load_dataset(args.dataset)
        channels = channels or dataset.channels
        classes = classes or len(dataset.class_names)
    if classes is None:
        raise CnnlabError("`--classes` is required (or `--dataset NAME` to read it).")
    defaults = ModelInput()
    result = analyze(
        arch,
        args.image_size or defaults.image_size,
        channels or defaults.channels,
        classes,
        args.batch_size,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_analysis(result))
    return 0


def run_presets(args: argparse.Namespace) -> int:
    presets = describe_presets()
    saved = list_saved_archs()
    if args.json:
        print_json({"presets": presets, "saved": saved})
        return 0
    for preset in presets:
        print(f"{preset['name']:<16} {preset['description']}")
        for name, option in preset["options"].items():
            allowed = option["allowed"]
            if allowed and len(allowed) == 2 and all(isinstance(x, (int, float)) for x in allowed):
                allowed_text = f"[{allowed[0]:g}, {allowed[1]:g}]"
            elif allowed:
                allowed_text = "|".join(str(x) for x in allowed)
            else:
                allowed_text = ""
            setting = f"{name}={option['default']!r}"
            print(f"{'':<4}{setting:<24} {allowed_text:<24} {option['help']}")
    print(f"saved: {', '.join(saved) if saved else 'none'}")
    return 0


def _with_options(arch: ArchSpec, options: list[str]) -> ArchSpec:
    if not options:
        return arch
    if not arch.preset_name:
        raise CnnlabError("`--set` changes preset options; this architecture is a block list.")
    values = dict(arch.options)
    for item in options:
        key, sep, text = item.partition("=")
        if not sep:
            raise CnnlabError(f"`--set` takes OPTION=VALUE. Received: --set {item}")
        try:
            values[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[key.strip()] = text
    return ArchSpec.preset(arch.preset_name, **values)


def format_analysis(result: Analysis) -> str:
    """The analysis as a plain-text table with totals and warnings."""
    header = ("layer", "type", "output", "params", "MACs", "memory", "RF", "jump")
    lines = [header]
    for row in result.rows:
        lines.append(
            (
                row["name"],
                row["type"],
                "x".join(str(size) for size in row["output_shape"]),
                f"{row['params']:,}",
                format_count(row["macs"]),
                format_bytes(row["activation_bytes"]),
                "-" if row["receptive_field"] is None else str(row["receptive_field"]),
                "-" if row["jump"] is None else str(row["jump"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7}
    text = [
        f"{result.arch.label}: {result.image_size}x{result.image_size}x{result.channels} "
        f"-> {result.num_classes} classes"
    ]
    for line in lines:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
    totals = result.totals
    text.append(
        f"parameters: {totals['params']:,} ({totals['trainable_params']:,} trainable)   "
        f"MACs: {format_count(totals['macs'])}   activations per image: "
        f"{format_bytes(totals['activation_bytes'])}"
    )
    text.append(
        f"training memory at batch size {totals['batch_size']}: about "
        f"{format_bytes(totals['training_memory_bytes'])}"
    )
    text.extend(f"warning: {warning}" for warning in result.warnings)
    return "\n".join(text)
