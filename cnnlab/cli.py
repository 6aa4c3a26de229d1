"""``python -m cnnlab``: the command line over the same functions the pages call.

Each verb lives in a module under ``cnnlab.commands`` with a ``register(subparsers)``
function that adds its parser and sets ``handler``. A handler returns the exit code.
A :class:`CnnlabError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from cnnlab.errors import CnnlabError

# Verb modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "data",
    "arch",
    "train",
    "evaluate",
    "audit",
    "predict",
    "tune",
    "system",
    "tensorboard",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnnlab",
        description="Image-classification experiments with Keras, from the shell.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(f"cnnlab.commands.{module}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CnnlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. an output path that cannot be written
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def print_json(obj: Any) -> None:
    """One JSON object on one line of stdout, for scripts."""
    print(json.dumps(obj, default=str), flush=True)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
