#!/usr/bin/env bash
# Sourced by run.sh and test.sh: make .venv with Python 3.11+ and install $REQUIREMENTS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi
if [ -z "$python_bin" ] || ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "cnnlab needs Python 3.11 or newer; install it, or set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$python_bin" --version)..." >&2
  "$python_bin" -m venv .venv
fi
stamp=".venv/.installed-$(cat "$REQUIREMENTS" requirements.txt | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  echo "Installing $REQUIREMENTS (first time only; TensorFlow is a large download)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$REQUIREMENTS"
  touch "$stamp"
fi
