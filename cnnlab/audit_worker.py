"""``python -m cnnlab.audit_worker DATASET``: the detached process of an audit started
from the Data page (see :func:`cnnlab.audit.start_audit`); its options are in the
dataset's ``audit-job.json``, its output goes to ``audit.log`` beside it."""

from __future__ import annotations

import sys

from cnnlab.audit import run_job
from cnnlab.errors import CnnlabError


def main(argv: list[str]) -> int:
    try:
        run_job(argv[0])
    except CnnlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
