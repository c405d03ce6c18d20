#!/usr/bin/env bash
# Run the demo on http://127.0.0.1:7860 with the built-in sample corpus (builds its index on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
export GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
