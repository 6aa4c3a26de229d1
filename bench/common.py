"""What the training benchmarks share: a throw-away workspace, running `cnnlab` as a
user does, and the options of a script that also runs its peer in its own process."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--keep and --json, and the hidden --peer/--folders a script calls itself with."""
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)


@contextmanager
def bench_workspace(keep: bool = False) -> Iterator[tuple[Path, dict]]:
    """A temporary CNNLAB_HOME and the environment that points `cnnlab` at it; removed
    afterwards unless ``keep``."""
    home = Path(tempfile.mkdtemp(prefix="cnnlab-bench-"))
    env = {
        **os.environ,
        "CNNLAB_HOME": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    try:
        yield home, env
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def run(command: list[str], env: dict) -> tuple[dict, float]:
    """Run ``command``; returns (its last stdout line as JSON, wall seconds)."""
    print(f"$ python {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall


def class_folders(home: Path, name: str = "digits") -> Path:
    """Dataset ``name`` of the workspace ``home`` copied out as split/class/file folders,
    the layout the Keras peers read with image_dataset_from_directory."""
    os.environ["CNNLAB_HOME"] = str(home)
    sys.path.insert(0, str(REPO))
    from cnnlab.data.dataset import load_dataset

    dataset = load_dataset(name)
    folders = home / "class-folders"
    for record in dataset.records:
        target = folders / record.split / record.label / Path(record.file).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dataset.path / record.file, target)
    return folders
