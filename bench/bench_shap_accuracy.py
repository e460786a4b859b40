"""2. Kernel SHAP accuracy against every first-order Shapley approximator of shapiq, and shap.

Games with exact Shapley values (all ``2**M`` coalitions enumerated, see shapley_games.py):
smooth, saturating, interactions (2-4 player AND / OR terms) and sparse, at M = 12, 14, 16,
plus the sample model's oil region score on a hexagon grid of at most 16 cells (switched-off
cells = the window's mean), enumerated once and cached under ``.cache/bench``.

Every estimator reads the same tables through a counting wrapper, so budgets are
evaluations of the value function, the empty and full coalitions included: ours gets
``n_samples = budget - 2``, shapiq's approximators ``budget``, shap's KernelExplainer
``nsamples = budget - 2`` (it evaluates the background and ``x`` besides), shap's
PermutationExplainer ``max_evals = budget``. Seeds ``0 .. S-1`` for every estimator.

The competitors run in their own venv (``.venv-bench/shapiq``: shapiq 1.8 needs Python >= 3.12,
QGIS's Python is 3.11), through shapley_competitors.py; their estimates are cached under
``.cache/bench/competitors`` keyed by the game's table and the budgets (SPEX and ProxySPEX,
1-3 s a run, with 5 seeds; the others with all of them).
``SHAPIQ_PYTHON`` names another interpreter. Without one, the comparison is skipped and
said so.

Per game and budget: MSE = mean over seeds of the mean squared error over players; the
ratio best competitor / ours with a 95 % interval (delta method on the log of the ratio,
seeds independent); calibration of our standard errors: coverage of +-1.96 SE and mean
``(error / SE)**2`` over seeds and players. A cell where both are exact to float precision
(relative MSE < 1e-20) is a tie and has no calibration.

The comparison uses seeds ``0 .. 19``, the ones every competitor runs; the calibration uses
ours on seeds ``0 .. 59`` (``CALIBRATION_SEEDS``): the mean ``(error / SE)**2`` of a cell is
a mean of heavy-tailed ratios, and over only 20 seeds it moves between seed sets by as much
as the goal's band is wide (the sample model at 512: 1.94, 0.68 and 1.54 over seeds 0-19,
20-39 and 40-59, 1.39 over 0-59); our runs cost little next to the competitors'. Seeds
where our estimate is exact to float precision are left out of the calibration (both its
error and its standard error are rounding); over 60 seeds a cell exact on seeds 0-19 can
have some that are not.

For quick iterations, environment variables restrict the run (the long table in
docs/shapley_benchmark.md is then left alone, and the section says it is restricted):
``SHAP_BENCH_GAMES`` (';'-separated parts of game names, e.g. ``saturating, M=14;sample``),
``SHAP_BENCH_BUDGETS`` (e.g. ``128,256``), ``SHAP_BENCH_SEEDS`` (e.g. ``5``), and
``SHAP_BENCH_OPTIONS``, keyword options of our ``kernel_shap`` as JSON (e.g.
``{"sampling": "kernel"}``), to measure a variant against the same competitors::

    SHAP_BENCH_GAMES="saturating, M=14" SHAP_BENCH_BUDGETS=256,512 \
        .venv-bench/bin/python bench/run_all.py --only shap_accuracy

``SHAP_BENCH_INSTANCE`` (a non-negative integer other than the default ``GAME_SEED``) draws
other instances of the synthetic games (their generator's seed; the sample model is left
out), so that a result can be checked on games it was not developed on; the competitors
run on them too (their cache is keyed by the table)::

    SHAP_BENCH_INSTANCE=101 SHAP_BENCH_GAMES="M=12" \
        .venv-bench/bin/python bench/run_all.py --only shap_accuracy --out /tmp/i101.md
"""

import glob
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import _setup
from _setup import md_table, summary_row
from shapley_games import (GAME_SEED, GAMES, TableGame, exact_shapley, result_key,
                           synthetic_table)
from seg_explainer.core.model import file_sha256

FULL_SEEDS = 20
CALIBRATION_SEEDS = 60   # ours only; the first FULL_SEEDS of them are compared
QUICK_SEEDS = 3
BUDGETS = (64, 128, 256, 512, 1024, 2048, 4096)
MS = (12, 16, 14)       # in this order: M = 14 last
EXACT_REL = 1e-20        # relative MSE below which an estimate is exact to float precision
TITLE = "2. Kernel SHAP accuracy against shapiq and shap"
COMPETITORS = Path(__file__).resolve().parent / "shapley_competitors.py"
LONG_TABLE = _setup.ROOT / "docs" / "shapley_benchmark.md"


# --------------------------------------------------------------------------- model game

def model_game(m_range=(12, 16), shape=(128, 160)):
    """The sample model's oil region score over a hexagon grid of ``m_range`` cells.

    Returns ``(table, m, description)``; the table is cached under .cache/bench keyed by the
    model's hash, the window, the grid and the baseline.
    """
    from seg_explainer.core.cells import hexagon_grid

    lo, hi = m_range
    h, w = shape
    hex_size = next((float(hs) for hs in np.arange(4.0, max(h, w), 0.5)
                     if lo <= hexagon_grid(h, w, float(hs)).n_cells <= hi), None)
    if hex_size is None:
        raise RuntimeError(f"no hexagon grid of {h} x {w} px has {lo}..{hi} cells")
    image, region, origin = _setup.oil_window((h, w))
    cells = hexagon_grid(h, w, hex_size)
    m = cells.n_cells
    key = _setup.cache_key(model=file_sha256(_setup.SAMPLE_MODEL), size=f"{h} x {w}",
                           origin=origin, hex_size=hex_size, m=m, baseline="mean", cls=1,
                           version=1)
    name = f"shap_model_game_{key}"
    desc = (f"sample model, oil region score, {h} x {w} px window, {m} hexagons "
            f"(circumradius {hex_size:g} px), switched-off cells = window mean")
    cached = _setup.cache_load(name)
    if cached is not None:
        return cached["table"], m, desc
    from seg_explainer.core.baselines import fill_nodata

    model = _setup.load_sample_model()
    filled = fill_nodata(image, np.isfinite(image[:, :, 0]))
    mean = filled.reshape(-1, filled.shape[-1]).mean(axis=0)
    idx = np.flatnonzero(region.ravel())
    z = ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1).astype(bool)
    table = np.empty(len(z))
    for start in range(0, len(z), 64):
        keep = z[start:start + 64][:, cells.labels]
        imgs = np.where(keep[..., None], filled[None], mean[None, None, None])
        probs = model.predict(imgs.astype(np.float32), batch_size=16)
        table[start:start + 64] = probs.reshape(len(keep), -1, probs.shape[-1])[:, idx, 1] \
            .mean(axis=1)
    _setup.cache_save(name, table=table)
    return table, m, desc


def games(quick, instance=None):
    """(name, table maker) of every game; ``instance``: the synthetic games' generator seed
    when not ``GAME_SEED`` (named after it; the sample model is then left out)."""
    out = []
    if _setup.sample_available() and instance is None:
        args = ((6, 8), (64, 64)) if quick else ((12, 16), (128, 160))
        out.append(("sample model", lambda: model_game(*args)))
    seed = GAME_SEED if instance is None else instance
    tag = "" if instance is None else f" #{instance}"
    for m in ((10,) if quick else MS):
        for g in GAMES:
            out.append((f"{g}{tag}, M={m}",
                        lambda g=g, m=m: (synthetic_table(g, m, seed=seed), m, None)))
    return out


def instance():
    """The SHAP_BENCH_INSTANCE seed of the synthetic games, or None (``GAME_SEED``'s)."""
    env = os.environ.get("SHAP_BENCH_INSTANCE", "").strip()
    if not env:
        return None
    if not env.isdecimal():
        raise SystemExit(f"SHAP_BENCH_INSTANCE={env!r} is not a non-negative integer: give "
                         f"the synthetic games' generator seed, e.g. 101 (the default "
                         f"instance is {GAME_SEED})")
    return None if int(env) == GAME_SEED else int(env)


# --------------------------------------------------------------------------- competitors

def competitor_python():
    """The interpreter of the competitors' venv, or None."""
    env = os.environ.get("SHAPIQ_PYTHON")
    path = Path(env) if env else _setup.ROOT / ".venv-bench" / "shapiq" / "bin" / "python"
    return str(path) if path.is_file() else None


def competitor_results(name, table, budgets, n_seeds):
    """Competitors' estimates on one game: ({label: {budget: (est, evals)}}, errors, versions).

    Read from the cache when there; otherwise run shapley_competitors.py once (all of them).
    """
    slug = name.replace(", M=", "-").replace(" ", "_")
    key = result_key(table, budgets)
    folder = _setup.CACHE / "competitors"
    files = sorted(glob.glob(str(folder / f"{slug}-{key}-*.npz")))
    python = competitor_python()
    if not files and python:
        folder.mkdir(parents=True, exist_ok=True)
        inp = folder / f".in-{slug}-{os.getpid()}.npz"
        np.savez(inp, names=np.array([slug]), **{f"table_{slug}": table,
                                                 f"budgets_{slug}": np.array(budgets)})
        out = folder / f"{slug}-{key}-all.npz"
        subprocess.run(["nice", python, str(COMPETITORS), "--games", str(inp), "--out",
                        str(out), "--seeds", str(n_seeds)], check=False)
        inp.unlink(missing_ok=True)
        files = [str(out)] if out.is_file() else []
    results, errors, versions = {}, {}, {}
    for f in files:
        with np.load(f) as data:
            meta = json.loads(str(data["meta"]))
            errors.update(meta["errors"])
            versions = meta["versions"]
            for k in data.files:
                if k.startswith("est|"):
                    _, label, _, budget = k.split("|")
                    results.setdefault(label, {})[int(budget)] = (
                        data[k], data[k.replace("est|", "evals|", 1)])
    return results, errors, versions


# --------------------------------------------------------------------------- ours

def ours(table, m, budget, seeds, options=None):
    """Our estimates, standard errors and evaluations over the seeds; ``options``: keyword
    options of ``kernel_shap``.

    Cached under .cache/bench keyed by the estimator's source files, the game's table, the
    budget, the seeds and the options: a change to core/kernel_shap.py or
    core/boosted_trees.py runs it again.
    """
    import inspect

    from seg_explainer.core import boosted_trees
    from seg_explainer.core.kernel_shap import kernel_shap

    sources = (inspect.getsourcefile(sys.modules[kernel_shap.__module__]),
               inspect.getsourcefile(boosted_trees))
    key = _setup.cache_key(code=[file_sha256(f) for f in sources],
                           table=result_key(table, [budget]),
                           seeds=list(seeds), version=1,
                           **({"options": options} if options else {}))
    name = f"shap_ours_{key}"
    cached = _setup.cache_load(name)
    if cached is not None:
        return cached["est"], cached["se"], cached["evals"], float(cached["eff"])
    est, se, evals, eff = [], [], [], 0.0
    for s in seeds:
        game = TableGame(table, m)
        res = kernel_shap(game, m, budget - 2, seed=s, batch_size=8192, **(options or {}))
        est.append(res.values)
        se.append(res.standard_errors)
        evals.append(game.rows)
        eff = max(eff, abs(res.values.sum() - (res.full_value - res.base_value)))
    out = np.array(est), np.array(se), np.array(evals), eff
    _setup.cache_save(name, est=out[0], se=out[1], evals=out[2], eff=np.array(eff))
    return out


def mse_stats(est, exact):
    """Per-seed MSE over players, (S,)."""
    return ((np.asarray(est) - exact) ** 2).mean(axis=1)


def ratio_ci(a, b):
    """mean(a) / mean(b) with a 95 % interval (delta method on the log, independent)."""
    ma, mb = a.mean(), b.mean()
    if mb <= 0 or ma <= 0:
        return (math.inf if mb <= 0 else 0.0), None
    na, nb = len(a), len(b)
    v = (a.var(ddof=1) / (na * ma ** 2) if na > 1 else 0.0) + \
        (b.var(ddof=1) / (nb * mb ** 2) if nb > 1 else 0.0)
    r = ma / mb
    return r, (r * math.exp(-1.96 * math.sqrt(v)), r * math.exp(1.96 * math.sqrt(v)))


def our_cell(name, table, m, exact, budget, n_compared, cal_seeds, options=None):
    """Our results in one cell, before the competitors are added, and the efficiency error:
    the per-seed MSE (``ours``) on the first ``n_compared`` seeds (those the competitors ran)
    and whether it is exact to float precision there (``exact``), and the calibration over
    the seeds of ``cal_seeds`` whose estimate is not exact (an exact estimate's error and
    standard error are both rounding); None when every one is."""
    est, se, evals, eff = ours(table, m, budget, cal_seeds, options)
    scale = float(np.mean(exact ** 2))
    per_seed = mse_stats(est, exact)
    inexact = per_seed > EXACT_REL * scale
    cover, z2 = calibration(est[inexact], se[inexact], exact) if inexact.any() else (None, None)
    return {"game": name, "m": m, "budget": budget, "ours": per_seed[:n_compared],
            "ours_evals": int(evals.max()), "others": {}, "cover": cover, "z2": z2,
            "exact": per_seed[:n_compared].mean() <= EXACT_REL * scale, "scale": scale,
            "inexact_seeds": int(inexact.sum())}, eff


COVERAGE = (0.90, 0.98)  # the standard errors' goal: share of true values within +-1.96 SE
MEAN_Z2 = (0.7, 1.5)     # ... and mean (error / SE)^2


def calibrated(cover, z2):
    """Whether a cell's coverage and mean (err/SE)^2 meet the goal."""
    return COVERAGE[0] <= cover <= COVERAGE[1] and MEAN_Z2[0] <= z2 <= MEAN_Z2[1]


def calibration(est, se, exact):
    err = np.asarray(est) - exact
    se = np.asarray(se)
    cover = float(np.mean(np.abs(err) <= 1.96 * se))
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(se > 0, (err / se) ** 2, np.where(err == 0, 0.0, np.inf))
    return cover, float(np.mean(z2))


# --------------------------------------------------------------------------- overhead

def overhead(quick):
    """Our estimator's own time at M = 229, budget 2506, against the sample model's time:
    ``({game: seconds}, model seconds, seconds per image, evaluations)`` on a sigmoid of a
    weighted sum (the logistic surrogate is kept) and on one plus products of pairs (it is
    not; at 229 players the boosted trees are not tried either: ``_TREES_PLAYERS``)."""
    from seg_explainer.core.kernel_shap import kernel_shap

    m, n_samples = 229, 2 * 229 + 2048
    image, _, _ = _setup.oil_window(512)
    model = _setup.load_sample_model()
    x = np.repeat(np.nan_to_num(image)[None], 4, axis=0).astype(np.float32)
    model.predict(x[:1], batch_size=1)
    t0 = time.perf_counter()
    reps = 1 if quick else 3
    for _ in range(reps):
        model.predict(x, batch_size=4)
    per_image = (time.perf_counter() - t0) / (4 * reps)
    rng = np.random.default_rng(0)
    w = rng.normal(size=m) / 8
    pairs, c = rng.choice(m, size=(m, 2)), rng.normal(size=m) / 4

    def sigmoid(z):
        return 1 / (1 + np.exp(-(z - 0.5) @ w))

    def with_pairs(z):                 # no logistic surrogate fits it
        return sigmoid(z) + (z[:, pairs[:, 0]] & z[:, pairs[:, 1]]) @ c

    own = {}
    for name, game in (("sigmoid", sigmoid), ("pairs", with_pairs)):
        inside = [0.0]

        def value_fn(z, game=game, inside=inside):
            t = time.perf_counter()
            out = game(np.asarray(z, dtype=bool))
            inside[0] += time.perf_counter() - t
            return out

        t0 = time.perf_counter()
        res = kernel_shap(value_fn, m, n_samples, seed=0, batch_size=64)
        own[name] = time.perf_counter() - t0 - inside[0]
    model_time = res.n_evaluations * per_image
    return own, model_time, per_image, res.n_evaluations


# --------------------------------------------------------------------------- report

def _fmt(x):
    return "0" if x == 0 else f"{x:.2e}"


def restriction():
    """The SHAP_BENCH_* restriction: (game name parts or None, budgets or None, seeds or None,
    our estimator's options or None)."""
    games_env = os.environ.get("SHAP_BENCH_GAMES")
    budgets_env = os.environ.get("SHAP_BENCH_BUDGETS")
    seeds_env = os.environ.get("SHAP_BENCH_SEEDS")
    options_env = os.environ.get("SHAP_BENCH_OPTIONS")
    options = None
    if options_env:
        try:
            options = json.loads(options_env)
        except ValueError:
            pass
        if not isinstance(options, dict):
            raise SystemExit(f"SHAP_BENCH_OPTIONS={options_env!r} is not a JSON object: give "
                             "kernel_shap's options as one, e.g. '{\"sampling\": \"kernel\"}'")
    return ([g.strip() for g in games_env.split(";") if g.strip()] if games_env else None,
            tuple(int(b) for b in budgets_env.split(",")) if budgets_env else None,
            int(seeds_env) if seeds_env else None, options or None)


def run(quick=False):
    only_games, only_budgets, only_seeds, options = restriction()
    other = instance()
    restricted = any(r is not None for r in (only_games, only_budgets, only_seeds, options,
                                             other))
    seeds = list(range(only_seeds or (QUICK_SEEDS if quick else FULL_SEEDS)))
    cal_seeds = list(range(only_seeds or (QUICK_SEEDS if quick else CALIBRATION_SEEDS)))
    budgets = only_budgets or ((64, 128, 256) if quick else BUDGETS)
    t0 = time.perf_counter()
    cells, notes, versions, all_errors, labels_seen = [], [], {}, {}, set()
    eff_worst = 0.0
    played = []
    for name, make in games(quick, other):       # ours first: the competitors' runs are cached
        if only_games and not any(part in name for part in only_games):
            continue
        table, m, desc = make()
        if name == "sample model":
            name = f"sample model, M={m}"
        if desc:
            notes.append(f"- *{name}* (M = {m}): {desc}.")
        exact = exact_shapley(table, m)
        played.append((name, table, exact))
        for budget in budgets:
            cell, eff = our_cell(name, table, m, exact, budget, len(seeds), cal_seeds, options)
            eff_worst = max(eff_worst, eff / max(abs(table[-1] - table[0]), 1e-300))
            cells.append(cell)
            print(f"shap_accuracy: {name} B={budget} ours {cell['ours'].mean():.2e}"
                  + (f" cover {cell['cover']:.2f} z2 {cell['z2']:.2f}"
                     if cell["cover"] is not None else " exact"), file=sys.stderr, flush=True)
    for name, table, exact in played:
        # keyed by every budget of the run's size, so a restricted run reads the full cache
        comp, errors, ver = competitor_results(name, table, (64, 128, 256) if quick else BUDGETS,
                                               max(len(seeds), FULL_SEEDS * (not quick)))
        versions = ver or versions
        all_errors.update(errors)
        labels_seen |= set(comp)
        for cell in (c for c in cells if c["game"] == name):
            for label, by_budget in comp.items():
                if cell["budget"] in by_budget:
                    e, n = by_budget[cell["budget"]]
                    cell["others"][label] = (mse_stats(e, exact), int(n.max()))
            if not cell["others"]:
                continue
            best = min(cell["others"], key=lambda k: cell["others"][k][0].mean())
            theirs = cell["others"][best][0]
            cell["best"] = best
            if cell["exact"] and theirs.mean() <= EXACT_REL * cell["scale"]:
                cell["tie"] = True
                cell["ratio"], cell["ci"] = 1.0, (1.0, 1.0)
            elif cell["exact"]:              # ours exact, theirs not: a ratio of rounding errors
                cell["tie"], cell["exact_win"] = False, True
                cell["ratio"], cell["ci"] = math.inf, (math.inf, math.inf)
            else:
                cell["tie"] = False
                cell["ratio"], cell["ci"] = ratio_ci(theirs, cell["ours"])
    own, model_time, per_image, n_eval = overhead(quick)
    return _report(cells, notes, versions, all_errors, sorted(labels_seen), seeds,
                   len(cal_seeds), eff_worst, (own, model_time, per_image, n_eval),
                   time.perf_counter() - t0, quick or restricted, restricted, options)


def _report(cells, notes, versions, errors, labels, seeds, n_cal, eff_worst, ovh, seconds,
            quick, restricted=False, options=None):
    compared = [c for c in cells if c["others"]]
    summary = []
    if compared:
        losses = [c for c in compared if not c["tie"] and c["ci"] is not None
                  and c["ci"][1] < 1.0]
        worst = min(compared, key=lambda c: c["ratio"])
        finite = [c for c in compared if not c.get("exact_win")] or compared
        best = max(finite, key=lambda c: c["ratio"])
        exact_wins = [c for c in compared if c.get("exact_win")]
        summary.append(summary_row(
            TITLE, "MSE best competitor / ours, worst cell (95 % interval)",
            f"{worst['ratio']:.2f}x [{worst['ci'][0]:.2f}, {worst['ci'][1]:.2f}] "
            f"({worst['game']}, budget {worst['budget']}, best: {worst['best']}); cells worse "
            f"beyond the interval: {len(losses)} of {len(compared)}",
            ">= 1 within the interval in every cell", not losses))
        summary.append(summary_row(
            TITLE, "MSE best competitor / ours, best cell",
            f"{best['ratio']:.3g}x ({best['game']}, budget {best['budget']}, "
            f"best competitor: {best['best']})" + (
                f"; ours exact where every competitor errs: {len(exact_wins)} cells ("
                + "; ".join(f"{c['game']}, budget {c['budget']}" for c in exact_wins) + ")"
                if exact_wins else ""), ">= 2x somewhere", best["ratio"] >= 2.0))
        wins = sum(1 for c in compared if c["ratio"] >= 1.0)
        summary.append(summary_row(TITLE, "cells where ours is at least as accurate",
                                   f"{wins} of {len(compared)} (ties: "
                                   f"{sum(c['tie'] for c in compared)})", None, None))
    else:
        summary.append(summary_row(TITLE, "comparison with shapiq / shap",
                                   "skipped: no competitors' venv (.venv-bench/shapiq)", None, None))
    cal = [c for c in cells if c["cover"] is not None]
    bad = []
    if cal:
        cov = [c["cover"] for c in cal]
        z2 = [c["z2"] for c in cal]
        bad = [c for c in cal if not calibrated(c["cover"], c["z2"])]
        summary.append(summary_row(
            TITLE, "standard errors: coverage of +-1.96 SE / mean (err/SE)^2, range over cells",
            f"{min(cov):.0%}-{max(cov):.0%} / {min(z2):.2f}-{max(z2):.2f}; cells outside "
            f"the goal: {len(bad)} of {len(cal)}", "90-98 % / 0.7-1.5 in every cell", not bad))
    summary.append(summary_row(TITLE, "efficiency, largest |sum - (v(all) - v(none))| "
                               "relative to v(all) - v(none)", f"{eff_worst:.1e}",
                               "float precision", eff_worst < 1e-12))
    own_each, model_time, per_image, n_eval = ovh
    own = max(own_each.values())
    summary.append(summary_row(
        TITLE, "estimator's own time / sample model's, M = 229, budget 2506 (the slower game)",
        f"{own / model_time:.2%} ({own:.2f} s against {n_eval} x {per_image * 1e3:.0f} ms)",
        "< 5 %", own / model_time < 0.05))
    # ---- detail
    parts = [f"MSE over players, mean over {len(seeds)} seeds; budget = evaluations of the "
             "value function (the empty and full coalitions included), counted on the game "
             "itself. *best competitor* is the most accurate of the "
             f"{len(labels)} competitors run ({', '.join(labels) or 'none'}) in that cell; "
             "ratio = its MSE / ours (> 1: ours is more accurate), 95 % interval. "
             f"Coverage and mean (err/SE)^2 are of our standard errors over {n_cal} seeds "
             f"(0 to {n_cal - 1}) and the players (goal 90-98 % and 0.7-1.5), leaving out the "
             "seeds where our estimate is exact to float precision (its error and standard "
             "error are then both rounding; the seeds counted are given when some are left out); "
             "*exact* where every one is. Every competitor's MSE in every cell: "
             "[docs/shapley_benchmark.md](docs/shapley_benchmark.md)."]
    if bad:
        # the count above uses these unrounded figures; the table rounds them
        parts.append("Standard errors outside the goal (coverage / mean (err/SE)^2, "
                     "unrounded): " + "; ".join(
                         f"{c['game']} at {c['budget']}: {100 * c['cover']:.2f} % / "
                         f"{c['z2']:.3f}" for c in bad) + ".")
    if versions:
        parts.append("Competitors' environment: " + ", ".join(
            f"{k} {v}" for k, v in versions.items()) + ".")
    spex = sorted({c["game"] for c in cells if "ProxySPEX" in c["others"]})
    parts.append("Not in the comparison: ShaplEIG (needs shapiq's `shapleig` extra: torch, "
                 "gpytorch, botorch); SPEX and ProxySPEX (sparse Fourier transforms: 1-3 s a "
                 "run at M = 12, 985 s for ProxySPEX's 35 runs at M = 16) "
                 + ("were run, with 5 seeds, only on " + ", ".join(spex) if spex else
                    "were not run (the cached competitors' runs left them out)") + ".")
    failed = sorted({k.split("|")[0] + ": " + v for k, v in errors.items()
                     if not k.startswith("ShaplEIG")})
    if failed:
        parts.append("Competitors that failed (their cells are left out):\n" + "\n".join(
            f"- {f}" for f in _dedupe(failed)))
    headers = ["game", "budget", "ours MSE", "best competitor", "its MSE", "ratio [95 %]",
               "coverage", "mean (err/SE)^2"]
    body = []
    for c in cells:
        best = c.get("best")
        body.append([c["game"], c["budget"], _fmt(c["ours"].mean()), best or "-",
                     _fmt(c["others"][best][0].mean()) if best else "-",
                     ("tie (both exact)" if c.get("tie") else
                      "ours exact" if c.get("exact_win") else
                      f"{c['ratio']:.2f} [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]")
                     if best else "-",
                     "exact" if c["cover"] is None else f"{c['cover']:.0%}" + (
                         f" (over {c['inexact_seeds']} seeds)"
                         if c["inexact_seeds"] < n_cal else ""),
                     "exact" if c["z2"] is None else f"{c['z2']:.2f}"])
    parts.append(md_table(headers, body))
    if notes:
        parts.append("Games: smooth, saturating, interactions, sparse as in "
                     "`bench/shapley_games.py`;\n" + "\n".join(notes))
    parts.append(f"Estimator overhead: M = 229 players, n_samples = 2506 (the engine's "
                 f"default 2 M + 2048), our estimator's own time (sampling and solve, the "
                 f"value function's time taken out) {own_each['pairs']:.2f} s on a sigmoid of "
                 f"a weighted sum plus products of pairs (no logistic surrogate is kept) and "
                 f"{own_each['sigmoid']:.2f} s on the sigmoid alone (the logistic surrogate is "
                 f"kept), against {n_eval} evaluations of the sample model on a 512 x 512 "
                 f"window at {per_image * 1e3:.0f} ms each.")
    if restricted:
        parts.append("**Restricted run** (SHAP_BENCH_GAMES / SHAP_BENCH_BUDGETS / "
                     "SHAP_BENCH_SEEDS / SHAP_BENCH_OPTIONS / SHAP_BENCH_INSTANCE): not every "
                     "game, budget or seed, or other instances of the games (named #seed)"
                     + (f"; ours with the options {json.dumps(options)}" if options else "")
                     + ".")
    parts.append(f"Run time {seconds:.0f} s.")
    if compared and not quick:
        _write_long_table(cells, labels, len(seeds))
    return {"title": TITLE, "markdown": "\n\n".join(parts), "rows": summary, "cells": cells}


def _dedupe(lines, limit=12):
    out, seen = [], set()
    for line in lines:
        head = line.split(":")[0]
        if head not in seen:
            seen.add(head)
            out.append(line)
    return out[:limit]


def _write_long_table(cells, labels, n_seeds):
    lines = ["# Kernel SHAP against shapiq and shap: every estimator's MSE", "",
             f"Written by `bench/bench_shap_accuracy.py` (`make bench`). MSE over players, "
             f"mean over {n_seeds} seeds, at equal evaluations of the value function; "
             "`-` = the estimator failed or was not run at that budget. Lower is better.", ""]
    games_seen = []
    for c in cells:
        if c["game"] not in games_seen:
            games_seen.append(c["game"])
    for g in games_seen:
        rows = [c for c in cells if c["game"] == g]
        headers = ["estimator"] + [str(c["budget"]) for c in rows]
        body = [["**ours**"] + [_fmt(c["ours"].mean()) for c in rows]]
        for label in labels:
            body.append([label] + [_fmt(c["others"][label][0].mean())
                                   if label in c["others"] else "-" for c in rows])
        lines += [f"## {g}", "", md_table(headers, body), ""]
    tmp = LONG_TABLE.with_name(f".{LONG_TABLE.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, LONG_TABLE)


if __name__ == "__main__":
    out = run(quick="--quick" in sys.argv)
    print(out["markdown"])
