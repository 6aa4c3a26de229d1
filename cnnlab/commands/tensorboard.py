"""``tensorboard``: serve the TensorBoard logs of chosen runs, or of every run."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from cnnlab.cli import add_json_flag, print_json

POLL_INTERVAL_S = 0.5


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tensorboard",
        help="open TensorBoard over runs (all of them by default)",
        description=(
            "Start TensorBoard over the logs every run writes into <run>/tensorboard/ "
            "(epoch scalars with the learning rate, the model graph, a tuning trial's "
            "hparams), wait until it answers, print its address and serve until Ctrl-C."
        ),
    )
    parser.add_argument(
        "runs", nargs="*", metavar="RUN", help="run ids to show (default: every run)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port to serve on (default: a free one from 6006)"
    )
    parser.add_argument("--host", default="localhost", help="interface to listen on; 0.0.0.0 = all")
    add_json_flag(parser)
    parser.set_defaults(handler=run_tensorboard)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_tensorboard(args: argparse.Namespace) -> int:
    # A plain `kill` must stop the TensorBoard child too, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _serve(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.tensorboard import start_tensorboard

    server = start_tensorboard(args.runs, port=args.port, host=args.host)
    try:
        if args.json:
            print_json(
                {
                    "url": server.url,
                    "pid": server.process.pid,
                    "logdir": server.logdir,
                    "runs": server.runs,
                }
            )
        else:
            shown = ", ".join(server.runs) if args.runs else f"{len(server.runs)} run(s)"
            print(f"TensorBoard at {server.url} ({shown}); press Ctrl-C to stop.", flush=True)
        while server.process.poll() is None:
            time.sleep(POLL_INTERVAL_S)
        raise CnnlabError(
            f"TensorBoard stopped (exit code {server.process.returncode}):\n{server.output()}"
        )
    except KeyboardInterrupt:
        print("TensorBoard stopped.", file=sys.stderr)
        return 0
    finally:
        server.stop()
