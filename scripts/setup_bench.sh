#!/usr/bin/env bash
# The benchmark environments, for `make bench` only; nothing here goes into .venv (the plugin's).
#   1. .venv-bench: Debian's /usr/bin/python3 with --system-site-packages (QGIS, GDAL and the
#      system numpy visible), the project's requirements and shap, constrained to the system
#      numpy and scipy, whatever their version (QGIS and GDAL are compiled against them);
#   2. .venv-bench/shapiq: the competitors of the Kernel SHAP comparison (bench/shapley_competitors.py):
#      shapiq 1.8, shap, lightgbm and xgboost. shapiq 1.8 needs Python >= 3.12, newer than
#      QGIS's, so this venv has its own Python (the first python3.13 / python3.12 found on PATH
#      or under pyenv) and its own numpy; it only reads game tables and writes estimates.
#      Without such a Python the comparison is skipped (the benchmark says so).
# Idempotent: stamp files hold the hash of the inputs; a second run returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

SHAP_VERSION=0.46.0
VENV=.venv-bench
# the competitors' venv: versions measured in BENCHMARKS.md
SHAPIQ_SPEC="shapiq==1.8.*"
COMPETITOR_PINS=("shap==0.54.1" "lightgbm==4.7.0" "xgboost==3.4.1" "sparse-transform==0.2.1"
                 "galois==0.4.11")
VENV_SHAPIQ=.venv-bench/shapiq     # inside .venv-bench: ignored by git, one folder to delete

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
system_numpy=$(/usr/bin/python3 -c "import numpy; print(numpy.__version__)")
"$VENV/bin/python" - "$system_numpy" <<'PY'
import sys
import numpy, shap
assert numpy.__version__ == sys.argv[1], \
    f"numpy {numpy.__version__} in .venv-bench, the system's is {sys.argv[1]}"
print(f"setup_bench: .venv-bench ready (numpy {numpy.__version__} "
      f"= the system's, shap {shap.__version__})")
PY

# ---- the competitors' venv
find_python() {
    local cand
    for cand in python3.13 python3.12; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys, venv; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in "$(pyenv root)"/versions/3.1[2-9]*/bin/python3; do
            if [ -x "$cand" ] && "$cand" -c 'import sys, venv; assert sys.version_info >= (3, 12)' 2>/dev/null; then
                echo "$cand"; return 0
            fi
        done
    fi
    return 1
}

if [ ! -x "$VENV_SHAPIQ/bin/python" ]; then
    if ! py=$(find_python); then
        echo "setup_bench: no Python >= 3.12 found (shapiq 1.8 needs one): the comparison with" \
             "shapiq is skipped; install python3.12 (or pyenv's) to run it"
        exit 0
    fi
    echo "setup_bench: creating $VENV_SHAPIQ with $py"
    "$py" -m venv "$VENV_SHAPIQ"
fi
stamp="$VENV_SHAPIQ/.requirements.sha"
want=$(printf '%s\n' "$SHAPIQ_SPEC" "${COMPETITOR_PINS[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup_bench: pip install $SHAPIQ_SPEC ${COMPETITOR_PINS[*]} into $VENV_SHAPIQ"
    "$VENV_SHAPIQ/bin/python" -m pip install -q --disable-pip-version-check \
        "$SHAPIQ_SPEC" "${COMPETITOR_PINS[@]}"
    echo "$want" > "$stamp"
fi
"$VENV_SHAPIQ/bin/python" -c "
import sys, shapiq, shap
assert shapiq.__version__.startswith('1.8'), shapiq.__version__
print(f'setup_bench: $VENV_SHAPIQ ready (Python {sys.version.split()[0]}, '
      f'shapiq {shapiq.__version__}, shap {shap.__version__})')"
