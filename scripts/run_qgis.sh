#!/usr/bin/env bash
# QGIS desktop with this checkout loaded as the seg_explainer plugin, in a profile of its own
# (.cache/qgis-desktop) so the user's own QGIS profile is untouched; the venv's packages are visible.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOME_DIR=$ROOT/.cache/qgis-desktop
INI="$HOME_DIR/profiles/default/QGIS/QGIS3.ini"
mkdir -p "$HOME_DIR/plugins" "$(dirname "$INI")"
ln -sfn "$ROOT" "$HOME_DIR/plugins/seg_explainer"
grep -q '^seg_explainer=true' "$INI" 2>/dev/null || printf '\n[PythonPlugins]\nseg_explainer=true\n' >> "$INI"
SITE=$("$ROOT/.venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export QGIS_PLUGINPATH="$HOME_DIR/plugins"
exec /usr/bin/qgis --profiles-path "$HOME_DIR" "$@"
