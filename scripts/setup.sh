#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian bookworm machine:
#   1. Debian packages (QGIS 3.22 LTR, GDAL, numpy 1.24, Xvfb, ...), only those missing;
#   2. .venv made with --system-site-packages from Debian's /usr/bin/python3;
#   3. pip install -r requirements.txt, constrained to the system numpy/scipy (never numpy 2).
# A second run finds everything in place and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qgis qgis-providers python3-qgis python3-gdal gdal-bin python3-numpy python3-scipy
              python3-matplotlib python3-venv python3-pip xvfb xauth imagemagick)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv (system site packages visible)"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi

# Pin what QGIS and GDAL are compiled against.
/usr/bin/python3 - > .venv/constraints.txt <<'PY'
import numpy, scipy, matplotlib
print(f"numpy=={numpy.__version__}")
print(f"scipy=={scipy.__version__}")
print(f"matplotlib=={matplotlib.__version__}")
PY

stamp=.venv/.requirements.sha
want=$(cat requirements.txt .venv/constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -r requirements.txt (constrained to system numpy)"
    .venv/bin/python -m pip install -q --disable-pip-version-check \
        -r requirements.txt -c .venv/constraints.txt
    echo "$want" > "$stamp"
fi
.venv/bin/python - <<'PY'
import numpy
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__} in .venv: QGIS needs the system numpy 1.x"
PY
echo "setup: ready"
