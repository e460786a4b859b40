"""The release package: `make package`'s zip installs into a fresh QGIS profile the way
"Install from ZIP" does, and QGIS (through qgis_process, the same on every QGIS version of the
test matrix) finds the plugin there, loads its Processing provider and runs an algorithm."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent


def _qgis_process(args, profile_root, runtime):
    """The qgis_process binary with only the fresh profile: no QGIS_PLUGINPATH, no checkout."""
    site = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("QGIS_PLUGINPATH", "PYTHONPATH")}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               QGIS_CUSTOM_CONFIG_PATH=str(profile_root), PYTHONPATH=site)
    return subprocess.run(["/usr/bin/qgis_process.bin", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_package_installs_into_a_fresh_profile_and_its_provider_runs(sample_data, tmp_path):
    built = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--out",
                            str(tmp_path / "dist")], capture_output=True, text=True, check=True)
    archive = Path(built.stdout.strip().splitlines()[-1])
    names = zipfile.ZipFile(archive).namelist()
    assert "seg_explainer/metadata.txt" in names and "seg_explainer/requirements.txt" in names
    assert not any(n.startswith(("seg_explainer/tests/", "seg_explainer/.venv")) for n in names)

    profile_root = tmp_path / "qgis-config"
    plugins = profile_root / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(archive).extractall(plugins)          # what "Install from ZIP" does
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)

    before = _qgis_process(["list"], profile_root, runtime)
    # the checkout is not on any path QGIS reads: only the installed copy can provide these
    assert "segexplainer:" not in before.stdout           # installed, not yet enabled
    enabled = _qgis_process(["plugins", "enable", "seg_explainer"], profile_root, runtime)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    listed = _qgis_process(["list"], profile_root, runtime)
    for algorithm in ("segment", "explain_shap", "explain_rise", "explain_occlusion"):
        assert f"segexplainer:{algorithm}" in listed.stdout, listed.stdout + listed.stderr

    small = tmp_path / "small.tif"
    gdal.Translate(str(small), sample_data["scene"], srcWin=[896, 896, 256, 256])
    out = tmp_path / "classes.tif"
    run = _qgis_process(["run", "segexplainer:segment", "--", f"INPUT={small}",
                         f"MODEL={sample_data['model']}", f"CLASSES={out}",
                         f"PROBABILITIES={tmp_path / 'probabilities.tif'}"], profile_root, runtime)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ds = gdal.Open(str(out))
    assert ds is not None and ds.RasterXSize > 0
