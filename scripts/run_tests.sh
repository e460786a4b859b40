#!/usr/bin/env bash
# The linter, then the test suite in a real headless QGIS (pytest-qgis, offscreen Qt platform).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(mktemp -d /tmp/segx-runtime.XXXXXX); chmod 700 "$RUNTIME"
export XDG_RUNTIME_DIR="$RUNTIME"
trap 'rm -rf "$RUNTIME"' EXIT
.venv/bin/ruff check .   # ruff.toml: pyflakes and pycodestyle, 100 columns
.venv/bin/python -m pytest tests -ra "$@"
