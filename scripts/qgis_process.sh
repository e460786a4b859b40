#!/usr/bin/env bash
# Run QGIS's headless Processing executor with this checkout loaded as the seg_explainer plugin.
#   scripts/qgis_process.sh list
#   scripts/qgis_process.sh run segexplainer:explain_shap -- INPUT=... MODEL=... ROI=...
# Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which the 3.22 binary rejects,
# so the binary is called directly. State (plugin link, throw-away profile) lives in
# $SEGX_QGIS_HOME (default .cache/qgis_process in the checkout).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOME_DIR=${SEGX_QGIS_HOME:-$ROOT/.cache/qgis_process}
mkdir -p "$HOME_DIR/plugins" "$HOME_DIR/profile" "$HOME_DIR/runtime"
chmod 700 "$HOME_DIR/runtime"
ln -sfn "$ROOT" "$HOME_DIR/plugins/seg_explainer"

export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="$HOME_DIR/runtime"
export QGIS_PLUGINPATH="$HOME_DIR/plugins"
export QGIS_CUSTOM_CONFIG_PATH="$HOME_DIR/profile"
if [ -x "$ROOT/.venv/bin/python" ]; then
    SITE=$("$ROOT/.venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ ! -f "$HOME_DIR/.enabled" ]; then
    /usr/bin/qgis_process.bin plugins enable seg_explainer > "$HOME_DIR/enable.log" 2>&1 \
        || { cat "$HOME_DIR/enable.log" >&2; exit 1; }
    touch "$HOME_DIR/.enabled"
fi
exec /usr/bin/qgis_process.bin "$@"
