#!/usr/bin/env bash
# The benchmark environment .venv-bench: the project's requirements plus shap (the reference
# Kernel SHAP), for `make bench` only. shap never goes into .venv (the project venv).
#   1. .venv-bench made with --system-site-packages from Debian's /usr/bin/python3;
#   2. pip install -r requirements.txt and shap, constrained to the system numpy and scipy
#      (QGIS and GDAL are compiled against them: never numpy 2).
# Idempotent: a stamp file holds the hash of the inputs; a second run returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

SHAP_VERSION=0.46.0
VENV=.venv-bench

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_bench: creating $VENV (system site packages visible)"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

/usr/bin/python3 - > "$VENV/constraints.txt" <<'PY'
import numpy, scipy
print(f"numpy=={numpy.__version__}")
print(f"scipy=={scipy.__version__}")
PY

stamp="$VENV/.requirements.sha"
want=$( (cat requirements.txt "$VENV/constraints.txt"; echo "shap==$SHAP_VERSION") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup_bench: pip install -r requirements.txt shap==$SHAP_VERSION (constrained to system numpy/scipy)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r requirements.txt "shap==$SHAP_VERSION" -c "$VENV/constraints.txt"
    echo "$want" > "$stamp"
fi
"$VENV/bin/python" - <<'PY'
import numpy, shap
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__} in .venv-bench"
print(f"setup_bench: ready (numpy {numpy.__version__}, shap {shap.__version__})")
PY
