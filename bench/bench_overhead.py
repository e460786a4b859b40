"""1. Engine overhead: explain_region's wall time against the time spent inside the model.

For each method, the sample model explains the oil region of a 512 x 512 window of the demo
scene with the bench's budgets, then, every parameter at its default, the oil region and a
60 px disc on the slick in their automatic windows (160 and 192 px: small windows make the
model fast, so the engine's own work weighs most there), and SHAP on hexagons of 40 px on
a 256 px window (19 cells, where Kernel SHAP tries its boosted-trees adjustment: a cost of
its own, about 10 fits, that a smaller budget spreads over fewer evaluations), with the
default coalitions and with 500. The model's onnxruntime session
is wrapped so that the time inside every ``InferenceSession.run`` is summed, in the same
process and the same run as the wall time:
the machine's load weighs on both alike. The ratio is explain_region's wall time over that
sum; 1.00 means the engine adds nothing to the model's own cost. "Outside the model" is the
rest: preparing the model's input and reading its output (``SegmentationModel.predict``'s
own work), masking, compositing, the region score, the solver, cells and polygons.
"""

import cProfile
import io
import pstats
import time

import numpy as np

import _setup
from _setup import md_table, summary_row

TITLE = "1. Engine overhead"
GOAL = 1.05
REPEATS = 3
COARSE_HEX = 40.0     # circumradius, px: 19 cells meet the 256 px window on the oil region


class _TimedSession:
    """An onnxruntime session whose ``run`` calls are timed (their seconds summed)."""

    def __init__(self, session):
        self.session = session
        self.seconds = 0.0
        self.calls = 0

    def run(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def __getattr__(self, name):
        return getattr(self.session, name)


def _budgets(quick):
    if quick:
        return {"shap": dict(n_samples=32, hex_size=40), "rise": dict(n_masks=8),
                "occlusion": dict(max_depth=1, n_best=1)}
    return {"shap": dict(n_samples=500, hex_size=22), "rise": dict(n_masks=300),
            "occlusion": dict(max_depth=2)}


def measure(method, model, image, region, params, batch_size=16, profile=False):
    """One run: dict with evaluations, wall, model (inside InferenceSession.run), ratio,
    outside time, the model calls and the explanation. ``batch_size`` None: the engine's
    default."""
    from seg_explainer.core.explain import explain_region

    timed = _TimedSession(model._session)
    model._session = timed
    prof = cProfile.Profile() if profile else None
    try:
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        batch = {} if batch_size is None else {"batch_size": batch_size}
        e = explain_region(model, image, region, 1, method, **batch, **params)
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
    finally:
        model._session = timed.session
    out = {"method": method, "evaluations": e.n_evaluations, "wall": wall,
           "model": timed.seconds, "calls": timed.calls, "ratio": wall / timed.seconds,
           "outside": wall - timed.seconds, "explanation": e}
    if prof:
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(8)
        out["profile"] = text.getvalue()
    return out


def _method_text(res):
    """The row's method, with SHAP's players (the cells meeting the window)."""
    players = res["explanation"].details.get("n_players")
    return res["method"] + (f" ({players} cells)" if players else "")


def _batch_text(batch, size):
    from seg_explainer.core.batching import batch_size_for

    if batch is not None:
        return f"batch size {batch}"
    return f"the default batch size (automatic: {batch_size_for(None, size, size)} images a call)"


def _cases(quick):
    """``(label, window edge, region radius or None, batch size, {method: params})``: the
    bench's budgets on the sample model's 512 px tile (batch 16), then every parameter at
    its default (the batch size too, None) on the automatic window
    (``core.region.auto_window_edge``) of the oil region and of a 60 px disc on the slick,
    as an analyst's first run gets them."""
    from seg_explainer.core.region import auto_window_edge

    _, regions = _setup.sample_scene()
    oil = 2 * regions["oil"]["radius_px"]
    defaults = _budgets(True) if quick else {m: {} for m in _budgets(quick)}
    # SHAP on cells large enough for few players (<= kernel_shap._TREES_PLAYERS): the
    # boosted-trees adjustment is tried, a cost of its own that more coalitions spread
    coarse = {"shap": dict(n_samples=32, hex_size=40)} if quick else {
        "shap": dict(hex_size=COARSE_HEX),
        "shap, 500 coalitions": dict(hex_size=COARSE_HEX, n_samples=500)}
    return [("bench budgets", 128 if quick else 512, None, 16, _budgets(quick)),
            ("defaults, oil region", auto_window_edge(oil), None, None, defaults),
            ("defaults, 60 px disc", auto_window_edge(60), 30.0, None, defaults),
            ("SHAP on large hexagons", 128 if quick else 256, None, None, coarse)]


def run(quick=False):
    if not _setup.sample_available():
        return {"title": TITLE, "markdown": "Skipped: no sample model.",
                "rows": [summary_row(TITLE, "overhead", "skipped: no sample model", None,
                                     None)]}
    model = _setup.load_sample_model()
    repeats = 1 if quick else REPEATS
    parts, rows, results = [], [], []
    for label, size, radius, batch, budgets in _cases(quick):
        image, region, _ = _setup.oil_window(size, min_radius=radius or 1.0)
        model.predict(np.zeros((2, size, size, 1), np.float32), batch_size=2)   # warm up
        # a key is the method, then maybe ", " and what sets the run apart
        methods = {key: key.split(",")[0] for key in budgets}
        runs = {key: [] for key in budgets}
        for _ in range(repeats):                       # rounds over the methods, interleaved
            for key, params in budgets.items():
                runs[key].append(measure(methods[key], model, image, region, params, batch))
        case = []
        for key, params in budgets.items():
            ordered = sorted(runs[key], key=lambda r: r["ratio"])
            res = dict(ordered[len(ordered) // 2], ratios=[r["ratio"] for r in runs[key]],
                       case=label, method=key)
            if res["ratio"] > GOAL and not quick:      # where does it go? a profiled rerun
                res["profile"] = measure(methods[key], model, image, region, params, batch,
                                         profile=True)["profile"]
            case.append(res)
        body = [[_method_text(r), r["evaluations"], r["calls"], f"{r['wall']:.2f}",
                 f"{r['model']:.2f}", f"{r['ratio']:.3f}",
                 ", ".join(f"{v:.3f}" for v in r["ratios"]),
                 f"{r['outside']:.2f} ({100 * r['outside'] / r['wall']:.1f} %)"] for r in case]
        given = "; ".join(f"{m}: " + (", ".join(f"{k}={v}" for k, v in p.items()) or
                                      "every parameter at its default")
                          for m, p in budgets.items())
        parts += [f"**{label}**: sample model, a disc of {int(region.sum())} px on the oil "
                  f"slick, {size} x {size} window, "
                  f"{_batch_text(batch, size)} "
                  f"({given}).", "",
                  md_table(["method", "evaluations", "model calls", "explain_region (s)",
                            "inside InferenceSession.run (s)", "ratio (median run)",
                            "ratios of all runs", "outside the model (s)"], body), ""]
        for r in case:
            if "profile" in r:
                parts += [f"Profile of {r['method']} (ratio above {GOAL}):", "", "```",
                          r["profile"].strip()[:3000], "```", ""]
        rows += [summary_row(TITLE, f"{r['method']}, {label} ({size} px): explain_region / "
                             "inside InferenceSession.run", f"{r['ratio']:.3f}",
                             f"<= {GOAL:.2f}", bool(r["ratio"] <= GOAL)) for r in case]
        results += case
    parts.insert(0, "The time inside the model is the sum of the onnxruntime session's `run` "
                 f"calls, timed in the same run as the wall time. Each method runs {repeats} "
                 "time(s) per case, in rounds over the methods; the row is the run with the "
                 "median ratio, all ratios listed.\n")
    return {"title": TITLE, "markdown": "\n".join(parts).rstrip(), "rows": rows,
            "results": results}


if __name__ == "__main__":
    import sys

    out = run(quick="--quick" in sys.argv)
    print(out["markdown"])
