#!/usr/bin/env bash
# Set up (first time) and start cnnlab with the digits sample ready: ./scripts/run.sh
set -euo pipefail
REQUIREMENTS=requirements.txt
source "$(dirname "$0")/setup.sh"
if ! .venv/bin/python -m cnnlab datasets --json | grep -q '"name": "digits"'; then
  echo "Loading the built-in digits sample..." >&2
  .venv/bin/python -m cnnlab ingest sample:digits --name digits
fi
exec .venv/bin/python scripts/serve.py "$@"
