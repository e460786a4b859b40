"""Many regions on a local Dask cluster: 64 regions of the sample scene with 1 and 2 workers.

Each configuration explains the same regions (Kernel SHAP, 128 px window, 64 coalitions,
seed 0) into a fresh folder, so nothing is skipped. Reported: wall time of the whole
``explain_regions`` call (cluster start, model shipped and loaded, summary written), the
speed-up of 2 workers over 1 (onnxruntime threads per worker = cores // workers), and the
batch time against the sum of the regions' own explanation time divided by the workers
(what a perfect scheduler would take).

    .venv/bin/python bench/bench_regions.py [--quick]
"""

import os
import shutil
import tempfile
import time

import _setup
from _setup import md_table, summary_row

TITLE = "7. Many regions on a local Dask cluster"
SETTINGS = {"window": 128, "hex_size": 22, "n_samples": 64, "seed": 0}


def _regions(raster, n):
    from osgeo import ogr

    from seg_explainer.core.geoio import raster_info
    from seg_explainer.core.regions import Region

    gt = raster_info(raster).geotransform
    out = []
    for k in range(n):
        row, col = 250 + 200 * (k // 8 % 8), 250 + 200 * (k % 8)
        x0, y0 = gt[0] + gt[1] * col, gt[3] + gt[5] * row
        x1, y1 = x0 + gt[1] * 24, y0 + gt[5] * 24
        ring = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
        out.append(Region(id=k, wkb=bytes(ogr.CreateGeometryFromWkt(ring).ExportToWkb())))
    return out


def run(quick=False):
    from seg_explainer.core.regions import explain_regions
    from seg_explainer.resources.sample import scene

    t0 = time.perf_counter()
    n = 16 if quick else 64
    work = tempfile.mkdtemp(prefix="segx-bench-regions-")
    try:
        paths = scene.write_sample(os.path.join(work, "sample"))
        regions = _regions(paths["scene"], n)
        results = {}
        for workers in (1, 2):
            started = time.perf_counter()
            r = explain_regions(regions, str(_setup.SAMPLE_MODEL), "oil", "shap",
                                os.path.join(work, f"out{workers}"), raster=paths["scene"],
                                n_workers=workers, **SETTINGS)
            wall = time.perf_counter() - started
            model = sum(rec["model_seconds"] or 0 for rec in r.records)
            results[workers] = (wall, model, r.n_done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count()
    speedup = results[1][0] / results[2][0]
    ideal = results[2][1] / 2
    over = results[2][0] / ideal - 1
    body = [[w, f"{cores // w}", done, f"{wall:.1f}", f"{model:.1f}", f"{model / w:.1f}",
             f"{100 * (wall / (model / w) - 1):+.0f} %"]
            for w, (wall, model, done) in results.items()]
    parts = [f"{n} regions (24 x 24 px boxes) of the sample scene, Kernel SHAP on a "
             f"{SETTINGS['window']} px window with {SETTINGS['n_samples']} coalitions, "
             f"{cores} cores, `explain_regions` on a LocalCluster of 1 and 2 worker "
             "processes. Wall time includes starting the cluster, shipping and loading the "
             "model and writing the summary.",
             md_table(["workers", "ort threads", "regions done", "wall s",
                       "sum of region s", "sum / workers", "wall vs sum / workers"], body),
             f"Speed-up 2 workers / 1: {speedup:.2f}x. Run time "
             f"{time.perf_counter() - t0:.0f} s."]
    rows = [summary_row(TITLE, f"{n} regions, speed-up of 2 workers over 1", f"{speedup:.2f}x",
                        ">= 1.7x", speedup >= 1.7),
            summary_row(TITLE, "2 workers: wall time vs sum of region times / workers",
                        f"{100 * over:+.0f} %", "within 10 %", abs(over) <= 0.10)]
    return {"title": TITLE, "markdown": "\n\n".join(parts), "rows": rows}


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
