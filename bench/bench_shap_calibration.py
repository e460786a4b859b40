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
"""

import time

import numpy as np

from _setup import md_table, summary_row
from bench_shap_accuracy import COVERAGE, MEAN_Z2, calibrated, calibration

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


def cell(m, budget, seeds):
    """Coverage, mean (err/SE)^2, MSE and seconds per run of our estimator on
    ``wide_game(m)`` with ``budget`` coalitions, over ``seeds`` seeds."""
    from seg_explainer.core.kernel_shap import kernel_shap

    import shapley_games

    v, exact = shapley_games.wide_game(m, seed=0)
    err, se = [], []
    t0 = time.perf_counter()
    for seed in range(seeds):
        res = kernel_shap(v, m, budget, seed=seed)
        err.append(res.values - exact)
        se.append(res.standard_errors)
    seconds = (time.perf_counter() - t0) / seeds
    err = np.array(err)
    cover, z2 = calibration(err + exact, se, exact)
    return {"m": m, "budget": budget, "cover": cover, "z2": z2,
            "mse": float(np.mean(err ** 2)), "seconds": seconds}


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
    return {"title": TITLE, "markdown": text, "rows": rows, "cells": cells}


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
