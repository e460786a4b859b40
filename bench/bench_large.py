"""5. Large rasters: explaining a region of a 20000 x 20000 raster costs what a 2000 x 2000 does.

Two float32 GeoTIFFs (tiled 256 x 256, DEFLATE, BIGTIFF when needed) are made by tiling the
demo scene (2048 x 2048, 10 m pixels) and written block by block, so making them never holds
more than a strip in memory; they are cached under .cache/bench/. The region is a copy of the
demo's oil region, placed on the same scene content in both rasters (translated by whole
scene tiles in the large one). Each raster is explained through the real headless
``qgis_process`` (``scripts/qgis_process.sh run segexplainer:explain_shap``, WINDOW 256,
HEX_SIZE 32, N_SAMPLES 100); the runs alternate small / large. Measured: the wall time and
the peak resident memory of the qgis_process child (``os.wait4``'s ``ru_maxrss``, read by a
small launcher process so that the benchmark's own size does not leak into it; nothing to
install). The two runs see the same pixels, so their outputs must be identical.
"""

import os
import subprocess
import sys
import time

import numpy as np

import _setup
from _setup import md_table, summary_row

TITLE = "5. Large rasters"
TIME_GOAL = 0.10          # relative difference of wall time
MEMORY_GOAL_MIB = 1024.0
_STRIP = 512              # rows written at a time
_SCRIPT = _setup.ROOT / "scripts" / "qgis_process.sh"


def _scene():
    from seg_explainer.resources.sample import scene as scene_mod

    s, regions = _setup.sample_scene()
    db = np.where(s["valid"], s["sigma0_db"], scene_mod.NODATA).astype(np.float32)
    return db, regions["oil"], scene_mod


def tiled_raster(size):
    """Path of the ``size`` x ``size`` tiling of the demo scene (made once, then cached)."""
    db, _, scene_mod = _scene()
    key = _setup.cache_key(size=size, seed=scene_mod.DEFAULT_SEED, shape=db.shape,
                           digest=float(db[::64, ::64].sum()), version=1)
    path = _setup.CACHE / f"tiled_{size}_{key}.tif"
    if path.is_file():
        return path
    from osgeo import osr

    from seg_explainer.core.geoio import geotiff_writer

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(scene_mod.EPSG)
    gt = (scene_mod.ORIGIN[0], scene_mod.PIXEL_SIZE, 0.0, scene_mod.ORIGIN[1], 0.0,
          -scene_mod.PIXEL_SIZE)
    n = db.shape[0]
    cols = np.arange(size) % db.shape[1]
    _setup.CACHE.mkdir(parents=True, exist_ok=True)
    with geotiff_writer(path, size, size, 1, gt, srs.ExportToWkt(),
                        nodata=scene_mod.NODATA) as writer:
        for row0 in range(0, size, _STRIP):
            rows = np.arange(row0, min(size, row0 + _STRIP)) % n
            writer.write(1, db[rows][:, cols], 0, row0)
    return path


def region_file(size, out_dir):
    """A GeoPackage with the oil region, translated by whole scene tiles towards the centre."""
    from osgeo import ogr, osr

    db, oil, scene_mod = _scene()
    n = db.shape[0]
    # whole tiles towards the raster's centre, leaving room for the window below
    tiles = max(0, min((size // 2 - int(oil["row"])) // n + 1,
                       (size - int(oil["row"]) - 256) // n))
    row, col = oil["row"] + tiles * n, oil["col"] + tiles * n
    x0, y0 = scene_mod.ORIGIN
    px = scene_mod.PIXEL_SIZE
    path = os.path.join(out_dir, f"region_{size}.gpkg")
    if os.path.exists(path):
        os.unlink(path)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(scene_mod.EPSG)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("regions", srs, ogr.wkbPolygon)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for a in np.linspace(0, 2 * np.pi, 65):
        ring.AddPoint_2D(x0 + px * (col + oil["radius_px"] * np.cos(a)),
                         y0 - px * (row + oil["radius_px"] * np.sin(a)))
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    feat = ogr.Feature(layer.GetLayerDefn())
    feat.SetGeometry(poly)
    layer.CreateFeature(feat)
    ds = None
    return path, (row, col)


# Started as a fresh interpreter, this forks the command and reports its peak RSS. A child
# forked straight from the benchmark process would not do: Linux carries the resident size
# of the forking process's memory into the child's ru_maxrss (the pages are shared at fork
# and the high-water mark survives exec), so every child of a big process looks big.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_qgis_process(args, log_path):
    """Run scripts/qgis_process.sh; (return code, wall seconds, peak RSS in MiB)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    report = f"{log_path}.rusage"
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _LAUNCHER, report, "bash", str(_SCRIPT)]
                       + list(args), stdout=log, stderr=subprocess.STDOUT, env=env,
                       check=False)
        wall = time.perf_counter() - t0
    with open(report) as f:
        code, maxrss_kib = (int(v) for v in f.read().split())
    os.remove(report)
    return code, wall, maxrss_kib / 1024.0


def explain(raster, roi, out_dir, tag, window=256, hex_size=32, n_samples=100):
    outputs = {k: os.path.join(out_dir, f"{tag}_{k.lower()}.tif")
               for k in ("EXCITATION", "INHIBITION", "SIGNED")}
    args = ["run", "segexplainer:explain_shap", "--", f"INPUT={raster}",
            f"MODEL={_setup.SAMPLE_MODEL}", f"ROI={roi}", "CLASS=oil", f"WINDOW={window}",
            f"HEX_SIZE={hex_size}", f"N_SAMPLES={n_samples}", "SEED=0"]
    args += [f"{k}={v}" for k, v in outputs.items()]
    code, wall, rss = run_qgis_process(args, os.path.join(out_dir, f"{tag}.log"))
    if code != 0:
        with open(os.path.join(out_dir, f"{tag}.log"), errors="replace") as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"qgis_process failed on {raster} (exit {code}):\n{tail}")
    return wall, rss, outputs


def _read(path):
    from osgeo import gdal

    ds = gdal.Open(path)
    return ds.ReadAsArray().astype(np.float64), ds.GetGeoTransform()


def run(quick=False):
    if not _setup.sample_available():
        return {"title": TITLE, "markdown": "Skipped: no sample model.",
                "rows": [summary_row(TITLE, "large", "skipped: no sample model", None, None)]}
    if not os.path.exists("/usr/bin/qgis_process.bin"):
        return {"title": TITLE, "markdown": "Skipped: no qgis_process.",
                "rows": [summary_row(TITLE, "large", "skipped: no qgis_process", None, None)]}
    small, large = (2000, 4000) if quick else (2000, 20000)
    params = dict(window=128, hex_size=32, n_samples=20) if quick else \
        dict(window=256, hex_size=32, n_samples=100)
    rounds = 1 if quick else 4
    import tempfile

    t0 = time.perf_counter()
    rasters = {s: tiled_raster(s) for s in (small, large)}
    t_make = time.perf_counter() - t0
    out_dir = tempfile.mkdtemp(prefix="bench_large_", dir=str(_setup.CACHE))
    rois = {s: region_file(s, out_dir) for s in (small, large)}
    times = {small: [], large: []}
    rss = {small: [], large: []}
    outputs = {}
    for k in range(rounds):
        order = (small, large) if k % 2 == 0 else (large, small)
        for s in order:
            wall, peak, outs = explain(rasters[s], rois[s][0], out_dir, f"r{k}_{s}", **params)
            times[s].append(wall)
            rss[s].append(peak)
            outputs[s] = outs
    diffs = {}
    for key in ("EXCITATION", "INHIBITION", "SIGNED"):
        a, _ = _read(outputs[small][key])
        b, _ = _read(outputs[large][key])
        diffs[key] = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    t_small, t_large = min(times[small]), min(times[large])
    rel = t_large / t_small - 1.0
    peak = max(max(rss[small]), max(rss[large]))
    sizes = {s: os.path.getsize(rasters[s]) / 2 ** 20 for s in rasters}
    body = [[f"{s} x {s}", f"{sizes[s]:.0f}", f"{rois[s][1][0]:.1f}, {rois[s][1][1]:.1f}",
             ", ".join(f"{t:.1f}" for t in times[s]), ", ".join(f"{m:.0f}" for m in rss[s])]
            for s in (small, large)]
    parts = [f"`scripts/qgis_process.sh run segexplainer:explain_shap` with WINDOW "
             f"{params['window']}, HEX_SIZE {params['hex_size']}, N_SAMPLES "
             f"{params['n_samples']}, CLASS oil, {rounds} round(s) alternating the rasters "
             f"(rasters made or found in the cache in {t_make:.0f} s).", "",
             md_table(["raster", "file (MiB)", "region centre (row, col)", "wall time (s)",
                       "peak RSS (MiB)"], body), "",
             f"Best wall time: large / small = {t_large:.1f} / {t_small:.1f} s "
             f"({100 * rel:+.1f} %). Largest difference between the two runs' outputs: "
             + ", ".join(f"{k.lower()} {v:.1e}" for k, v in diffs.items()) + "."]
    rows = [summary_row(TITLE, f"wall time, {large}^2 vs {small}^2",
                        f"{100 * rel:+.1f} %", "within 10 %", bool(abs(rel) <= TIME_GOAL)),
            summary_row(TITLE, "peak memory of qgis_process", f"{peak:.0f} MiB",
                        "< 1 GiB", bool(peak < MEMORY_GOAL_MIB)),
            summary_row(TITLE, "same outputs on both rasters",
                        f"max difference {max(diffs.values()):.1e}", "0",
                        bool(max(diffs.values()) == 0.0))]
    return {"title": TITLE, "markdown": "\n".join(parts), "rows": rows,
            "results": {"times": times, "rss_mib": rss, "diffs": diffs, "sizes": [small, large],
                        "outputs": outputs}}


if __name__ == "__main__":
    import sys

    out = run(quick="--quick" in sys.argv)
    print(out["markdown"])
    for r in out["rows"]:
        print(r)
