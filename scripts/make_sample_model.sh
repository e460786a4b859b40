#!/usr/bin/env bash
# Train the sample oil-slick segmentation model and measure it on held-out scenes.
#   1. creates .venv-train (git-ignored; system site packages visible, CPU torch 2.13.0 and
#      onnx 1.17.0, numpy pinned to the system version so GDAL's numpy bindings keep working);
#   2. runs resources/sample/train_model.py  -> resources/sample/oil_unet.onnx;
#   3. runs resources/sample/evaluate_model.py (onnxruntime only) on held-out seeds.
# Idempotent: a second run reuses .venv-train. `--venv-only` stops after step 1.
# torch never goes into .venv (the project venv): QGIS needs numpy 1.x there.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0   # a CPU wheel lies in the local pip index; unpinned `torch` pulls CUDA
ONNX_VERSION=1.17.0
VENV=.venv-train

if ! "$VENV/bin/python" -c "
import sys, torch, onnx
sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION' or onnx.__version__ != '$ONNX_VERSION')" 2>/dev/null; then
    echo "make_sample_model: setting up $VENV (torch==$TORCH_VERSION CPU, onnx==$ONNX_VERSION)"
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$VENV"
    /usr/bin/python3 -c 'import numpy; print(f"numpy=={numpy.__version__}")' > "$VENV/constraints.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "torch==$TORCH_VERSION" "onnx==$ONNX_VERSION" -c "$VENV/constraints.txt"
fi
"$VENV/bin/python" - <<'PY'
import numpy
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__} in .venv-train"
PY
[ "${1:-}" = "--venv-only" ] && exit 0

# Both scripts import the scene generator (scene.py) from their own folder.
"$VENV/bin/python" resources/sample/train_model.py "$@"
if [ -x .venv/bin/python ]; then EVAL_PY=.venv/bin/python; else EVAL_PY="$VENV/bin/python"; fi
"$EVAL_PY" resources/sample/evaluate_model.py
