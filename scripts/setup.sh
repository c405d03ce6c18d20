#!/usr/bin/env bash
# Create .venv (once) and install a requirements file into it (again only when it changed).
# Usage: scripts/setup.sh requirements.txt|requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.installed-$(basename "$req")"
sum=$(cat "$req" requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, by exact version: an unpinned torch would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q "$(grep -E '^torch==' requirements.txt)"
  .venv/bin/python -m pip install -q -r "$req"
  # the Space builder adds spaces to requirements.txt (app.py imports it): the same version the tests use
  .venv/bin/python -m pip install -q "$(grep -oE '^spaces==[^ ]+' requirements-dev.txt)"
  echo "$sum" > "$stamp"
fi
