"""Training: the TrainSpec, the auto recipe, the Trainer and runs as background jobs.

Importing ``cnnlab.train`` does not import TensorFlow, so pages and the command line
start and watch runs instantly. ``Trainer`` (which needs Keras) loads on first use.

    run_id = start_run("digits")                  # auto recipe, detached worker
    info = wait_for_run(run_id, on_event=print)   # or poll cnnlab.runs.read_events
"""

from __future__ import annotations

from typing import Any

from cnnlab.train.jobs import (
    cancel_run,
    continue_run,
    fork_run,
    max_concurrent_runs,
    prepare_run,
    queue,
    resume_run,
    start_run,
    wait_for_run,
)
from cnnlab.train.recipe import AUTO, auto_recipe
from cnnlab.train.spec import TrainSpec

__all__ = [
    "AUTO",
    "TrainSpec",
    "Trainer",
    "auto_recipe",
    "cancel_run",
    "continue_run",
    "fork_run",
    "max_concurrent_runs",
    "prepare_run",
    "queue",
    "resume_run",
    "start_run",
    "wait_for_run",
]


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        from cnnlab.train.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'cnnlab.train' has no attribute {name!r}")
