#!/usr/bin/env bash
# Set up (first time) and run the whole test suite, browser tests included: ./scripts/test.sh
# Extra arguments go to pytest, e.g. ./scripts/test.sh tests/unit -k ingest
set -euo pipefail
REQUIREMENTS=requirements-dev.txt
source "$(dirname "$0")/setup.sh"
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
