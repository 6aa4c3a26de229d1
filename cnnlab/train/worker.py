"""``python -m cnnlab.train.worker RUN_ID``: the process that executes one run.

Started detached by :func:`cnnlab.train.jobs.start_run` (and resume, continue, fork).
It beats the run's heartbeat, waits for a queue slot (a cancel while waiting ends the
run ``cancelled``), then runs the :class:`~cnnlab.train.trainer.Trainer`, which
writes progress, checkpoints and results into the run folder. Its stdout and stderr
go to ``worker.log`` in the run folder.
"""

from __future__ import annotations

import os
import sys
import traceback

from cnnlab import runs
from cnnlab.errors import CnnlabError


def run_worker(run_id: str) -> int:
    """Execute run ``run_id``; returns the process exit code (0 = completed or cancelled)."""
    from cnnlab.train.jobs import QueueSlot

    info = runs.load_run(run_id)
    runs.update_run(run_id, worker=runs.worker_info())
    slot = QueueSlot(run_id, info.queued_at)
    with runs.Heartbeat(info.path):

        def waiting(position: int) -> None:
            runs.append_event(
                info.path, {"type": "status", "status": "queued", "position": position}
            )

        try:
            got_slot = slot.acquire(lambda: runs.cancel_requested(info.path), waiting)
        except CnnlabError as error:
            runs.update_run(run_id, status="failed", error=str(error), finished=runs.now_iso())
            runs.append_event(
                info.path, {"type": "status", "status": "failed", "message": str(error)}
            )
            return 1
        if not got_slot:
            runs.update_run(run_id, status="cancelled", finished=runs.now_iso())
            runs.append_event(info.path, {"type": "status", "status": "cancelled"})
            return 0
        try:
            from cnnlab.train.trainer import Trainer

            trainer = Trainer(info.dataset, info.arch, info.train, run_id=run_id)
            trainer.fit()
        except BaseException:  # the Trainer recorded the failure in run.json
            traceback.print_exc()
            return 1
        finally:
            slot.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m cnnlab.train.worker RUN_ID", file=sys.stderr)
        return 2
    print(f"cnnlab worker {os.getpid()} for run {argv[0]}", flush=True)
    return run_worker(argv[0])


if __name__ == "__main__":
    sys.exit(main())
