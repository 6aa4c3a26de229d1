"""``python -m cnnlab.tune.driver STUDY_ID``: the process that drives one study.

Started detached by :func:`cnnlab.tune.study.launch_driver` (the Tune page's start and
resume). Its output goes to ``driver.log`` in the study's folder.
"""

from __future__ import annotations

import sys
import traceback

from cnnlab.errors import CnnlabError
from cnnlab.runs import now_iso


def main(argv: list[str] | None = None) -> int:
    from cnnlab.tune.study import _update, drive

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m cnnlab.tune.driver STUDY_ID", file=sys.stderr)
        return 2
    study_id = argv[0]
    try:
        drive(study_id, on_event=lambda message: print(f"[{now_iso()}] {message}", flush=True))
    except CnnlabError as error:
        print(f"error: {error}", flush=True)
        return 2
    except Exception as error:  # recorded, so the page says why the study stopped
        traceback.print_exc()
        _update(
            study_id, status="failed", error=f"{type(error).__name__}: {error}", finished=now_iso()
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
