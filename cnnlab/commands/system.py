"""``devices``: what training would run on here, from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli import add_json_flag, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="the GPUs (or the CPU) training would use on this machine",
        description="Detect the devices TensorFlow sees: GPU names, else the CPU.",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run_devices)


def run_devices(args: argparse.Namespace) -> int:
    from cnnlab.devices import describe_devices

    found = describe_devices()
    if args.json:
        print_json(found)
    else:
        print(f"{found['device']} · {found['cpu_count']} CPU core(s)")
    return 0
