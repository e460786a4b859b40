#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian machine (bookworm, trixie or sid):
#   1. Debian packages: QGIS (3.40 LTR from bookworm-backports on bookworm, the distribution's own
#      QGIS elsewhere), GDAL, numpy/scipy/matplotlib as QGIS was built with them, Xvfb, ...;
#   2. .venv made with --system-site-packages from Debian's /usr/bin/python3;
#   3. pip install -r requirements-dev.txt, constrained to the system numpy, scipy and matplotlib
#      (whatever major version QGIS was built with: never a second numpy), binary wheels only.
# SEGX_QGIS_SUITE picks the QGIS source: "backports" (default on bookworm) or "distro" (the
# distribution's own QGIS: 3.22 on bookworm, 3.40 on trixie, 3.44 on sid).
# A second run finds everything in place and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

. /etc/os-release
CODENAME=${VERSION_CODENAME:-unknown}
SUITE_CHOICE=${SEGX_QGIS_SUITE:-$([ "$CODENAME" = bookworm ] && echo backports || echo distro)}

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_PACKAGES=(qgis qgis-providers python3-qgis python3-gdal gdal-bin python3-numpy python3-scipy
              python3-matplotlib python3-venv python3-pip xvfb xauth imagemagick
              strace)   # strace: the hostile-model tests audit every file onnxruntime opens
# shapely: Debian's own where it is shapely 2 (trixie, sid), built against the system GEOS; on
# bookworm (python3-shapely 1.8) pip installs the wheel whose bundled GEOS matches QGIS's.
[ "$CODENAME" = bookworm ] || APT_PACKAGES+=(python3-shapely)
apt_target=()
if [ "$SUITE_CHOICE" = backports ]; then
    [ "$CODENAME" = bookworm ] || { echo "setup: SEGX_QGIS_SUITE=backports needs bookworm (this is $CODENAME)" >&2; exit 2; }
    LIST=/etc/apt/sources.list.d/seg-explainer-bookworm-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: enabling bookworm-backports (QGIS 3.40 LTR) in $LIST"
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            | $SUDO tee "$LIST" > /dev/null
        $SUDO apt-get update -qq
    fi
    apt_target=(-t bookworm-backports)
fi

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p' || true; }
missing=()
for p in "${APT_PACKAGES[@]}"; do
    [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
qgis_now=$(installed_version python3-qgis)
if [ "$SUITE_CHOICE" = backports ] && [ -n "$qgis_now" ] && [[ "$qgis_now" != *bpo* ]]; then
    echo "setup: QGIS $qgis_now is installed; upgrading to bookworm-backports' QGIS 3.40"
    missing+=(qgis qgis-providers python3-qgis qgis-common qgis-plugin-grass)
fi
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${apt_target[@]}" "${missing[@]}"
fi

PYVER=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$PYVER" ]; then
    echo "setup: .venv was made for another Python; recreating it for Python $PYVER"
    rm -rf .venv
fi
# A .venv left half made (an interrupted run) lacks the system packages or pip: make it again.
if [ -x .venv/bin/python ] && { ! grep -qx 'include-system-site-packages = true' .venv/pyvenv.cfg \
        || ! .venv/bin/python -m pip --version > /dev/null 2>&1; }; then
    echo "setup: .venv is incomplete (an interrupted set-up?); recreating it"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv (Python $PYVER, system site packages visible)"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi

# Pin what QGIS and GDAL are compiled against (the same rule as the dock's installer).
# What the distribution already provides (Debian's shapely 2) is left out of pip's list.
/usr/bin/python3 ui/pip_rules.py constraints > .venv/constraints.txt
/usr/bin/python3 ui/pip_rules.py requirements requirements-dev.txt > .venv/requirements.txt

stamp=.venv/.requirements.sha
want=$(cat .venv/requirements.txt .venv/constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -r requirements-dev.txt (constrained to the system's numpy)"
    .venv/bin/python -m pip install -q --disable-pip-version-check --only-binary=:all: \
        -r .venv/requirements.txt -c .venv/constraints.txt
    echo "$want" > "$stamp"
fi
.venv/bin/python - .venv/constraints.txt <<'PY'
import sys
import numpy
want = dict(line.strip().split("==") for line in open(sys.argv[1]) if "==" in line)
assert numpy.__version__ == want["numpy"], (
    f"numpy {numpy.__version__} in .venv, but QGIS is built with numpy {want['numpy']}")
import qgis.core  # noqa: F401  (QGIS is importable from the venv)
from qgis.core import Qgis
print(f"setup: ready (QGIS {Qgis.QGIS_VERSION}, Python {sys.version.split()[0]}, numpy {numpy.__version__})")
PY
