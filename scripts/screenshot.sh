#!/usr/bin/env bash
# Regenerate docs/screenshot.png: the real QGIS desktop under Xvfb, with the dock open and a
# SHAP explanation of the sample's boundary region over the sample scene. With the argument
# `regions`: docs/regions.png, explain_regions on the sample's slicks and look-alikes, the summary
# layer styled by own_share.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/docs/screenshot.png
export SEGX_SHOT_KIND=${1:-dock}
if [ "$SEGX_SHOT_KIND" = regions ]; then
    OUT=$ROOT/docs/regions.png
fi
SHOT=$(mktemp -d /tmp/segx_shot.XXXXXX)
export SEGX_SHOT="$SHOT" SEGX_ROOT="$ROOT"
"$ROOT/.venv/bin/python" "$ROOT/resources/sample/scene.py" --out "$SHOT/sample" > /dev/null
Xvfb :97 -screen 0 1600x1000x24 > "$SHOT/xvfb.log" 2>&1 &
XVFB=$!
trap 'kill $XVFB $QGIS 2>/dev/null || true' EXIT
export DISPLAY=:97
sleep 2
bash "$ROOT/scripts/run_qgis.sh" --noversioncheck --nologo --code "$ROOT/scripts/screenshot_qgis.py" \
    > "$SHOT/qgis.log" 2>&1 &
QGIS=$!
for _ in $(seq 1 900); do [ -f "$SHOT/READY" ] && break; sleep 1; done
cat "$SHOT/READY"; echo
import -window root "$SHOT/full.png"
convert "$SHOT/full.png" -resize 1280x -strip -colors 192 "PNG8:$OUT"
echo "wrote $OUT"
