"""Many regions on a local Dask cluster: 64 regions of the sample scene with 1 and 2 workers.

Each configuration explains the same regions (Kernel SHAP, 128 px window, 512 coalitions,
seed 0) into a fresh folder, so nothing is skipped. Three configurations: 1 worker with the
default onnxruntime threads (cores // workers = 2), 1 worker with 1 thread, and 2 workers of
1 thread (the default on 2 cores). Reported: wall time of the whole ``explain_regions`` call
(cluster start, model shipped and loaded, summary written); the speed-up of 2 workers over 1
worker of the same threads (how the batch scales with workers) and over 1 worker using both
cores (what a user gains from a second worker on this machine: at most 2 / the model's own
2-thread speed-up); and the batch time against the sum of the regions' own explanation time
divided by the workers (what a perfect scheduler would take), with the cluster start and the
time each region spends outside its explanation (reading, writing its files).

    .venv/bin/python bench/bench_regions.py [--quick] [--n-samples N]

``--n-samples`` sets the coalitions per region. The default, 512, gives regions of 3 to 7 s,
still below what an analyst runs (the engine's default for these regions, 2 M + 2048, is
about 2,100); ``--n-samples 64`` gives half-second regions, where the batch's fixed few
seconds (starting the cluster, loading the model on each worker) weigh most. ``--quick``:
16 regions of 64 coalitions.
"""

import os
import shutil
import tempfile
import time

import _setup
from _setup import md_table, summary_row

TITLE = "7. Many regions on a local Dask cluster"
SETTINGS = {"window": 128, "hex_size": 22, "n_samples": 512, "seed": 0}


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


def run(quick=False, n_samples=None):
    from seg_explainer.core.regions import explain_regions
    from seg_explainer.resources.sample import scene

    t0 = time.perf_counter()
    n = 16 if quick else 64
    cores = os.cpu_count()
    configs = [(1, cores), (1, 1), (2, max(1, cores // 2))]       # (workers, ort threads)
    settings = dict(SETTINGS, n_samples=int(n_samples or (64 if quick else
                                                          SETTINGS["n_samples"])))
    work = tempfile.mkdtemp(prefix="segx-bench-regions-")
    try:
        paths = scene.write_sample(os.path.join(work, "sample"))
        regions = _regions(paths["scene"], n)
        results = {}
        for workers, threads in configs:
            started = time.perf_counter()
            r = explain_regions(regions, str(_setup.SAMPLE_MODEL), "oil", "shap",
                                os.path.join(work, f"out{workers}-{threads}"),
                                raster=paths["scene"], n_workers=workers, n_threads=threads,
                                **settings)
            wall = time.perf_counter() - started
            model = sum(rec["model_seconds"] or 0 for rec in r.records)
            outside = sum((rec["seconds"] or 0) - (rec["model_seconds"] or 0)
                          for rec in r.records)
            results[workers, threads] = (wall, model, r.n_done, outside)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one_all, one_one, two = (results[c] for c in configs)
    scaling = one_one[0] / two[0]
    against_all = one_all[0] / two[0]
    thread_gain = one_one[1] / one_all[1]          # the model's own 2-thread speed-up
    over = two[0] / (two[1] / 2) - 1
    body = [[w, t, done, f"{wall:.1f}", f"{model:.1f}", f"{model / w:.1f}",
             f"{100 * (wall / (model / w) - 1):+.0f} %", f"{1000 * outside / done:.0f}"]
            for (w, t), (wall, model, done, outside) in results.items()]
    parts = [f"{n} regions (24 x 24 px boxes) of the sample scene, Kernel SHAP on a "
             f"{settings['window']} px window with {settings['n_samples']} coalitions, "
             f"{cores} cores, `explain_regions` on a LocalCluster of 1 and 2 worker "
             "processes. Wall time includes starting the cluster, shipping and loading the "
             "model and writing the summary; *outside* is each region's time outside its "
             "explanation (reading the window, writing its rasters, cells and record).",
             md_table(["workers", "ort threads", "regions done", "wall s",
                       "sum of region s", "sum / workers", "wall vs sum / workers",
                       "outside, ms / region"], body),
             f"Speed-up of 2 workers over 1 worker with the same onnxruntime threads: "
             f"{scaling:.2f}x. Over 1 worker using both cores: {against_all:.2f}x; one "
             f"worker's model already runs {thread_gain:.2f}x faster on 2 threads than on 1, "
             f"so a second process can give at most {2 / thread_gain:.2f}x there. "
             f"Run time {time.perf_counter() - t0:.0f} s."]
    rows = [summary_row(TITLE, f"{n} regions, speed-up of 2 workers over 1 (1 ort thread "
                               "each)", f"{scaling:.2f}x", ">= 1.7x", scaling >= 1.7),
            summary_row(TITLE, "speed-up of 2 workers over 1 worker using both cores",
                        f"{against_all:.2f}x (at most {2 / thread_gain:.2f}x)", "", None),
            summary_row(TITLE, "2 workers: wall time vs sum of region times / workers",
                        f"{100 * over:+.0f} %", "within 10 %", abs(over) <= 0.10)]
    return {"title": TITLE, "markdown": "\n\n".join(parts), "rows": rows}


if __name__ == "__main__":
    import sys

    samples = sys.argv[sys.argv.index("--n-samples") + 1] if "--n-samples" in sys.argv else None
    print(run(quick="--quick" in sys.argv, n_samples=samples)["markdown"])
