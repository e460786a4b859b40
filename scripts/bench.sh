#!/usr/bin/env bash
# `make bench`: set up .venv-bench (scripts/setup_bench.sh), then run every benchmark in
# bench/ and write the table to BENCHMARKS.md. Extra arguments go to bench/run_all.py
# (e.g. --quick, or --only shap_accuracy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_bench.sh
exec .venv-bench/bin/python bench/run_all.py --out BENCHMARKS.md "$@"
