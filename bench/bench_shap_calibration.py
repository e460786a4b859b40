"""8. Kernel SHAP's standard errors at the plugin's sizes: tens to hundreds of cells.

Section 2 checks the standard errors on games of 12-16 players, tabulated whole. An analyst's
run has a hexagon cell per player: 19 cells on large hexagons, 93-295 with the default
cells (section 1). Here the players number 19-295, on games whose exact Shapley values are
known in closed form at any size (``shapley_games.wide_game``: a weak linear part and
``M / 2`` AND / OR terms of 2-8 random players, whose odd part has terms of every odd
order up to 7, beyond the fit's), with the default coalitions (``2 M + 2048``) and with
fewer (``4 (M + 2)``, the smallest budget of two phases, and ``M + 2`` pairs' worth where
that is smaller than the default). Over the seeds, per cell: the share of true values within
+-1.96 standard errors and the mean ``(error / SE)^2`` (goal 90-98 % and 0.7-1.5, as in
section 2). Our estimator only, in the project's venv or the benchmark's.

Then two-valued games, which no other table has: weighted majorities (1 when the players
present hold at least half the weight; ``shapley_games.majority_game``) of 12 and 16 equal
or unequal players, at 64-2,048 coalitions. Their values are two levels that a hyperplane
separates, where a logistic surrogate's slope is not determined by the coalitions (its
errors are in no residual). Seeds whose estimate is exact to float precision are left out
of the calibration, as in section 2.
"""

import time

import numpy as np

from _setup import md_table, summary_row
from bench_shap_accuracy import COVERAGE, EXACT_REL, MEAN_Z2, calibrated, calibration

TITLE = "8. Kernel SHAP standard errors at the plugin's sizes"
SEEDS = 20


def _cells(quick):
    """``(players, budget)``: the default coalitions and fewer, per player count."""
    if quick:
        return [(19, 300), (60, 600)]
    cells = []
    for m in (19, 48, 105, 229, 295):
        default = 2 * m + 2048
        cells += [(m, b) for b in sorted({2 * (m + 2) + 2, 8 * (m + 2), default})
                  if b <= default]
    return cells


def _runs(v, m, n_samples, exact, seeds):
    """Our estimator's errors and standard errors on the game ``v``, (seeds, M) each."""
    from seg_explainer.core.kernel_shap import kernel_shap

    runs = [kernel_shap(v, m, n_samples, seed=seed) for seed in range(seeds)]
    return (np.array([r.values - exact for r in runs]),
            np.array([r.standard_errors for r in runs]))


def cell(m, budget, seeds):
    """Coverage, mean (err/SE)^2, MSE and seconds per run of our estimator on
    ``wide_game(m)`` with ``budget`` coalitions, over ``seeds`` seeds."""
    import shapley_games

    v, exact = shapley_games.wide_game(m, seed=0)
    t0 = time.perf_counter()
    err, se = _runs(v, m, budget, exact, seeds)
    seconds = (time.perf_counter() - t0) / seeds
    cover, z2 = calibration(err + exact, se, exact)
    return {"m": m, "budget": budget, "cover": cover, "z2": z2,
            "mse": float(np.mean(err ** 2)), "seconds": seconds}


# weighted majorities: (label, weights); the unequal weights fixed, 1-9 each
MAJORITIES = [("equal", (1,) * 12), ("unequal", (2, 5, 9, 3, 9, 8, 6, 2, 4, 6, 8, 1)),
              ("equal", (1,) * 16),
              ("unequal", (7, 3, 1, 9, 9, 2, 5, 6, 4, 8, 9, 3, 2, 2, 1, 6))]
MAJORITY_BUDGETS = (64, 128, 256, 512, 1024, 2048)


def _majority_cells(quick):
    if quick:
        return [(MAJORITIES[0], 128)]
    return [(g, b) for g in MAJORITIES for b in MAJORITY_BUDGETS]


def majority_cell(weights, budget, seeds):
    """As ``cell``, on ``majority_game(weights)`` with ``budget`` coalitions (the empty and
    the full one included), the seeds exact to float precision left out (``exact``: how
    many)."""
    import shapley_games

    v, exact = shapley_games.majority_game(weights)
    err, se = _runs(v, len(weights), budget - 2, exact, seeds)
    inexact = (err ** 2).mean(axis=1) > EXACT_REL * (exact ** 2).mean()
    cover, z2 = calibration(err[inexact] + exact, se[inexact], exact) if inexact.any() \
        else (float("nan"), float("nan"))
    return {"m": len(weights), "budget": budget, "cover": cover, "z2": z2,
            "mse": float(np.mean(err ** 2)), "exact": int((~inexact).sum()), "seeds": seeds}


def _judged(c):
    """Whether a majority cell has seeds not exact to float precision (calibration's)."""
    return c["exact"] < c["seeds"]


def _inside(c):
    return calibrated(c["cover"], c["z2"])


def run(quick=False):
    seeds = 4 if quick else SEEDS
    cells = [cell(m, b, seeds) for m, b in _cells(quick)]
    outside = [c for c in cells if not _inside(c)]
    body = [[c["m"], c["budget"], f"{100 * c['cover']:.1f} %", f"{c['z2']:.2f}",
             f"{c['mse']:.2e}", f"{c['seconds']:.2f}", "" if _inside(c) else "**outside**"]
            for c in cells]
    text = (f"Our estimator on `shapley_games.wide_game` (exact values in closed form), "
            f"{seeds} seeds a cell, the values of every player and seed pooled; seconds are "
            "the estimator's own per run (the game costs next to nothing).\n\n"
            + md_table(["players", "coalitions", "coverage of +-1.96 SE",
                        "mean (err/SE)^2", "MSE", "seconds a run", ""], body))
    covers = [c["cover"] for c in cells]
    z2s = [c["z2"] for c in cells]
    result = (f"{100 * min(covers):.0f}%-{100 * max(covers):.0f}% / "
              f"{min(z2s):.2f}-{max(z2s):.2f} over {len(cells)} cells "
              f"({min(c['m'] for c in cells)}-{max(c['m'] for c in cells)} players); "
              f"outside the goal: {len(outside)}")
    goal = (f"{100 * COVERAGE[0]:.0f}-{100 * COVERAGE[1]:.0f} % / "
            f"{MEAN_Z2[0]}-{MEAN_Z2[1]} in every cell")
    rows = [summary_row(TITLE, "standard errors: coverage of +-1.96 SE / mean (err/SE)^2, "
                        "range over cells", result, goal, not outside)]
    majority = [(label, majority_cell(w, b, seeds)) for (label, w), b in _majority_cells(quick)]
    judged = [c for _, c in majority if _judged(c)]
    off = [(label, c) for label, c in majority if _judged(c) and not _inside(c)]
    body = [[f"{label}, M={c['m']}", c["budget"],
             f"{100 * c['cover']:.1f} %" if _judged(c) else "exact",
             f"{c['z2']:.3g}" if _judged(c) else "", f"{c['mse']:.2e}",
             f"{c['exact']} of {c['seeds']}",
             "**outside**" if _judged(c) and not _inside(c) else ""]
            for label, c in majority]
    text += ("\n\nWeighted majorities (1 when the players present hold at least half the "
             f"weight), {seeds} seeds a cell; the seeds whose estimate is exact to float "
             "precision are left out of the coverage and mean (err/SE)^2.\n\n"
             + md_table(["game", "coalitions", "coverage of +-1.96 SE", "mean (err/SE)^2",
                         "MSE", "seeds exact", ""], body))
    result = (f"{100 * min(c['cover'] for c in judged):.0f}%-"
              f"{100 * max(c['cover'] for c in judged):.0f}% over {len(judged)} cells "
              f"not exact in every seed (of {len(majority)}); outside the goal: {len(off)}"
              + (" (" + ", ".join(f"{label} M={c['m']} at {c['budget']}: "
                                 f"{100 * c['cover']:.1f} % / {c['z2']:.3g}"
                                 for label, c in off) + ")" if off else ""))
    rows.append(summary_row(TITLE, "weighted majorities (two-valued games), M = 12 and 16, "
                            "64-2,048 coalitions: coverage of +-1.96 SE", result, goal,
                            not off))
    return {"title": TITLE, "markdown": text, "rows": rows, "cells": cells,
            "majorities": majority}


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
