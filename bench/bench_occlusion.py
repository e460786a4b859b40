"""3. Multi-scale occlusion: evaluations of ours against the seed's every-offset algorithm.

Both algorithms build the same pruned quadtrees for every grid offset; ours evaluates each
distinct rectangle once and grows all offsets together, the seed's evaluates every tree's
nodes on their own (``naive_multiscale_occlusion``). The score is the sample model's oil
region score on a 512 x 512 window around the oil region, an occluded rectangle taking the
window's mean (synthetic localised score when the sample model is missing).

The model runs once per distinct rectangle: the seed's run reads the same scores from a
memo, so its heatmap is checked against ours (``np.allclose``) without paying its cost;
its ``n_evaluations`` still counts every rectangle it asked for, which is what it would
cost. ``n_naive_evaluations`` (what ours says the seed would spend) is cross-checked.
"""

import time

import numpy as np

import _setup
from _setup import md_table, summary_row

TITLE = "3. Multi-scale occlusion evaluations"
GOAL = 5.0


class MemoScore:
    """Score of occluded rectangles ``(n, 4)`` -> (n,), each distinct rectangle computed once."""

    def __init__(self, compute):
        self.compute, self.memo, self.computed = compute, {}, 0

    def __call__(self, rects):
        rects = [tuple(int(v) for v in r) for r in np.asarray(rects).reshape(-1, 4)]
        new = list(dict.fromkeys(r for r in rects if r not in self.memo))
        if new:
            for r, v in zip(new, self.compute(np.asarray(new, dtype=np.int64))):
                self.memo[r] = float(v)
            self.computed += len(new)
        return np.array([self.memo[r] for r in rects])


def model_score(size, crop):
    """The sample model's oil region score with rectangles filled by the window mean.

    The model runs on the ``crop`` x ``crop`` part of the window centred on the region
    (what the region's score mostly sees), so each evaluation costs a crop, not a window;
    a rectangle that misses the crop leaves the score as it is.
    """
    from seg_explainer.core.baselines import fill_nodata

    image, region, origin = _setup.oil_window(size)
    filled = fill_nodata(image, np.isfinite(image[:, :, 0]))
    mean = filled.reshape(-1, filled.shape[-1]).mean(axis=0)
    rows, cols = np.nonzero(region)
    r0c = int(np.clip(round(rows.mean() - crop / 2), 0, size - crop))
    c0c = int(np.clip(round(cols.mean() - crop / 2), 0, size - crop))
    part = filled[r0c:r0c + crop, c0c:c0c + crop]
    idx = np.flatnonzero(region[r0c:r0c + crop, c0c:c0c + crop].ravel())
    model = _setup.load_sample_model()
    base = None

    def compute(rects):
        nonlocal base
        out = np.empty(len(rects))
        shift = np.array([r0c, r0c, c0c, c0c])
        clipped = np.clip(rects - shift, 0, crop)
        touches = (clipped[:, 1] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 2])
        todo = np.flatnonzero(touches)
        if not touches.all():
            if base is None:
                p = model.predict(part[None], batch_size=1)
                base = float(p.reshape(-1, p.shape[-1])[idx, 1].mean())
            out[~touches] = base
        for start in range(0, len(todo), 16):
            chunk = todo[start:start + 16]
            imgs = np.repeat(part[None], len(chunk), axis=0)
            for i, (a0, a1, b0, b1) in enumerate(clipped[chunk]):
                imgs[i, a0:a1, b0:b1] = mean
            p = model.predict(imgs, batch_size=8)
            out[chunk] = p.reshape(len(chunk), -1, p.shape[-1])[:, idx, 1].mean(axis=1)
        return out

    desc = (f"sample model, oil region score ({int(region.sum())} px disc), "
            f"{size} x {size} px window at (row, col) {origin} of the demo scene, occlusion "
            f"by the window mean; the model runs on the {crop} x {crop} px crop centred on "
            f"the region (rectangles missing it leave the score unchanged)")
    return compute, desc


def synthetic_score(size):
    """A localised, non-additive score: a sigmoid of the occluded mass of a blob and a ring."""
    rr, cc = np.indices((size, size)) + 0.5
    d = np.hypot(rr - 0.45 * size, cc - 0.55 * size)
    blob = np.exp(-(d / (0.06 * size)) ** 2)
    ring = 0.4 * np.exp(-((d - 0.2 * size) / (0.05 * size)) ** 2)
    cb = np.pad(blob.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    cr = np.pad(ring.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    tb, tr = cb[-1, -1], cr[-1, -1]

    def box(c, r0, r1, c0, c1):
        return c[r1, c1] - c[r0, c1] - c[r1, c0] + c[r0, c0]

    def compute(rects):
        out = []
        for r0, r1, c0, c1 in rects:
            t = 4.0 - 6.0 * box(cb, r0, r1, c0, c1) / tb + 3.0 * box(cr, r0, r1, c0, c1) / tr
            out.append(1.0 / (1.0 + np.exp(-t)))
        return np.array(out)

    return compute, f"synthetic localised score (sigmoid of occluded blob and ring mass), " \
                    f"{size} x {size} px"


def run(quick=False):
    from seg_explainer.core.occlusion import multiscale_occlusion, naive_multiscale_occlusion

    use_model = _setup.sample_available()
    size = 128 if quick else 512
    depths = (2, 3) if quick else (4, 5)
    crop = 64 if quick else 256
    compute, desc = model_score(size, crop) if use_model else synthetic_score(size)
    score = MemoScore(compute)
    rows, results, body = [], [], []
    t0 = time.perf_counter()
    for depth in depths:
        t1 = time.perf_counter()
        computed_before = score.computed
        ours = multiscale_occlusion(score, (size, size), max_depth=depth, batch_size=64)
        seconds = time.perf_counter() - t1
        computed_ours = score.computed - computed_before
        naive = naive_multiscale_occlusion(score, (size, size), max_depth=depth, batch_size=64)
        equal = bool(np.allclose(ours.heatmap, naive.heatmap, rtol=1e-9, atol=1e-12))
        ratio = naive.n_evaluations / ours.n_evaluations
        results.append({"depth": depth, "ours": ours.n_evaluations,
                        "naive": naive.n_evaluations,
                        "naive_predicted": ours.n_naive_evaluations, "equal": equal,
                        "ratio": ratio, "offsets": ours.n_offsets, "leaves": len(ours.leaves),
                        "new_model_runs_ours": computed_ours,
                        "new_model_runs_naive": score.computed - computed_before - computed_ours,
                        "heatmap_ours": ours.heatmap, "heatmap_naive": naive.heatmap})
        body.append([depth, ours.n_offsets, ours.n_evaluations, naive.n_evaluations,
                     ours.n_naive_evaluations, f"{ratio:.2f}x", "yes" if equal else "**NO**",
                     f"{seconds:.0f} s"])
        rows.append(summary_row(TITLE, f"seed's evaluations / ours, depth {depth}",
                                f"{ratio:.2f}x ({naive.n_evaluations} / {ours.n_evaluations})"
                                f"; heatmaps equal: {'yes' if equal else 'NO'}",
                                f">= {GOAL:g}x, equal heatmaps", ratio >= GOAL and equal))
    parts = [f"Score: {desc}.",
             md_table(["depth", "offset trees", "ours: evaluations", "seed's: evaluations",
                       "seed's (predicted by ours)", "seed's / ours", "heatmaps equal",
                       "ours: wall time"], body)]
    low = [r for r in results if r["ratio"] < GOAL]
    if low:
        parts.append(
            f"**Below the {GOAL:g}x goal.** The cache only saves rectangles that several offset "
            f"trees (or depths) share; the offsets shift the grid by half the smallest cell, "
            f"so at depth d most rectangles of one offset are unique to it and the saving is "
            f"bounded by how many offsets the pruning keeps alive. Reaching {GOAL:g}x needs "
            f"fewer evaluations per tree, not just sharing: e.g. snapping the offsets to a "
            f"coarser set (multiples of the smallest cell instead of half of it, 4x fewer "
            f"distinct rectangles at the deepest level), pruning offsets whose depth-1 "
            f"importance density cannot reach the n_best-th tree (branch and bound on the "
            f"final ranking), or evaluating the depth-d children of a node only for offsets "
            f"whose trees are still among the candidates. core/occlusion.py is not changed "
            f"here.")
    parts.append(f"Run time {time.perf_counter() - t0:.0f} s.")
    return {"title": TITLE, "markdown": "\n\n".join(parts), "rows": rows, "results": results}


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
