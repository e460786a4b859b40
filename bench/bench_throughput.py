"""6. Batch size and threads: images per second of the sample model on 512 x 512 windows.

``SegmentationModel.predict`` is timed against the batch size and onnxruntime's intra-op
thread count, and, when ``core/explain.py`` provides ``explain_region``, each method's
end-to-end explanation against the batch size (model evaluations per second, everything
included: compositing, model, region score, solver). The machine is shared and noisy:
every configuration is timed in interleaved rounds (all configurations once per round)
and the median is kept, so the ratios compare like with like.
"""

import statistics
import time

import numpy as np

import _setup
from _setup import md_table, summary_row

TITLE = "6. Batch size and threads"


def _predict_rates(image, batches, threads, n_images, rounds):
    models = {t: _setup.load_sample_model(n_threads=t) for t in threads}
    data = np.repeat(image[None], n_images, axis=0)
    for t in threads:                                    # warm up every session
        models[t].predict(data[:2], batch_size=2)
    times = {(t, b): [] for t in threads for b in batches}
    for _ in range(rounds):
        for t in threads:
            for b in batches:
                t0 = time.perf_counter()
                models[t].predict(data, batch_size=b)
                times[(t, b)].append(time.perf_counter() - t0)
    return {k: n_images / statistics.median(v) for k, v in times.items()}


def _explain_rates(image, region, batches, threads, quick):
    """Evaluations per second of each method, keyed ``(method, threads, batch)``."""
    from seg_explainer.core import explain as explain_mod

    models = {t: _setup.load_sample_model(n_threads=t) for t in threads}
    params = {
        "shap": dict(n_samples=30 if quick else 62, hex_size=90),
        "rise": dict(n_masks=16 if quick else 64),
        "occlusion": dict(max_depth=2),
    }
    out = {}
    for method, p in params.items():
        for t in threads:
            for b in batches:
                t0 = time.perf_counter()
                e = explain_mod.explain_region(models[t], image, region, 1, method,
                                               batch_size=b, **p)
                out[(method, t, b)] = (e.n_evaluations / (time.perf_counter() - t0),
                                       e.n_evaluations)
    return out


def run(quick=False):
    if not _setup.sample_available():
        return {"title": TITLE, "markdown": "Skipped: the sample model "
                "(resources/sample/oil_unet.onnx) is missing; run `make sample-model`.",
                "rows": [summary_row(TITLE, "throughput", "skipped: no sample model", None,
                                     None)]}
    size = 128 if quick else 512
    batches = (1, 2, 4) if quick else (1, 2, 4, 8, 16, 32)
    threads = (1, 2)
    n_images = 8 if quick else 32
    rounds = 1 if quick else 2
    image, region, _ = _setup.oil_window(size)
    from seg_explainer.core.baselines import fill_nodata

    filled = fill_nodata(image, np.isfinite(image[:, :, 0]))
    t0 = time.perf_counter()
    rates = _predict_rates(filled, batches, threads, n_images, rounds)
    headers = ["batch size"] + [f"{t} thread{'s' if t > 1 else ''} (images/s)" for t in threads]
    body = [[b] + [f"{rates[(t, b)]:.2f}" for t in threads] for b in batches]
    best_t, best_b = max(rates, key=rates.get)
    best = rates[(best_t, best_b)]
    # smallest batch within 5 % of the best rate: no memory spent for nothing
    near = min((b for (t, b), r in rates.items() if t == best_t and r >= 0.95 * best))
    gains = [rates[(max(threads), b)] / rates[(min(threads), b)] for b in batches]
    parts = [f"`SegmentationModel.predict` on {n_images} windows of {size} x {size} px "
             f"(the sample model, one band), median of {rounds} interleaved round(s).",
             md_table(headers, body)]
    rows = [
        summary_row(TITLE, f"predict, {size} x {size} px: best images/s",
                    f"{best:.2f} images/s at batch {best_b}, {best_t} thread(s)", None, None),
        summary_row(TITLE, "recommended predict defaults",
                    f"batch {near} (within 5 % of the best), n_threads {best_t} "
                    f"({max(threads)} threads / {min(threads)}: {min(gains):.2f}x to "
                    f"{max(gains):.2f}x over batch sizes)", None, None),
    ]
    try:
        from seg_explainer.core import explain as explain_mod  # noqa: F401
        has_explain = hasattr(explain_mod, "explain_region")
    except ImportError:
        has_explain = False
    if has_explain:
        eb = (1, 4) if quick else (1, 4, 16)
        er = _explain_rates(image, region, eb, threads, quick)
        methods = sorted({m for m, _, _ in er})
        body = [[m, t, er[(m, t, eb[0])][1]] + [f"{er[(m, t, b)][0]:.2f}" for b in eb]
                for m in methods for t in threads]
        parts.append(f"`explain_region` end to end on the same {size} x {size} px window "
                     f"(oil region, class oil), model evaluations per second against "
                     f"`batch_size` and onnxruntime threads (small runs: SHAP 62 coalitions "
                     f"of 90 px hexagons, RISE 64 masks, occlusion depth 2).")
        parts.append(md_table(["method", "threads", "evaluations"]
                              + [f"batch {b}" for b in eb], body))
        t_best = max(threads)
        for m in methods:
            bb = max(eb, key=lambda b: er[(m, t_best, b)][0])
            rates_m = ", ".join(f"batch {b}: {er[(m, t_best, b)][0]:.2f}" for b in eb)
            rows.append(summary_row(TITLE, f"explain_region {m}, {t_best} threads: best batch "
                                    f"size", f"{bb} ({rates_m} evaluations/s)", None, None))
        # the default batch size against the best, per method
        from seg_explainer.core.explain import DEFAULTS

        d = DEFAULTS["batch_size"]
        if d in eb:
            best_rate = {m: max(er[(m, t_best, c)][0] for c in eb) for m in methods}
            gaps = ", ".join(f"{m} {100 * (1 - er[(m, t_best, d)][0] / best_rate[m]):.0f} %"
                             for m in methods)
            rows.append(summary_row(TITLE, f"BATCH_SIZE default ({d}): below each method's "
                                    f"best batch size by", gaps, None, None))
    else:
        parts.append("`core/explain.py` has no `explain_region` yet: end-to-end rates skipped.")
    parts.append(f"Run time {time.perf_counter() - t0:.0f} s.")
    return {"title": TITLE, "markdown": "\n\n".join(parts), "rows": rows, "rates": rates}


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
