"""Run every first-order Shapley approximator of shapiq (and shap's explainers) on tabulated games.

Runs in the competitors' venv (.venv-bench/shapiq: Python >= 3.12, shapiq 1.8, shap, lightgbm,
xgboost), never in the plugin's. It reads the games' tables from an .npz file and writes the
estimates, the evaluations each estimator made (counted on the table itself) and any
failure to another .npz file; bench_shap_accuracy.py compares them with ours.

    .venv-bench/shapiq/bin/python bench/shapley_competitors.py --games in.npz --out out.npz \
        --seeds 20 [--only OddSHAP LeverageSHAP]

Without ``--only``, every estimator in ``DEFAULT`` runs; those in ``SLOW`` (1-3 s a run, a
sparse Fourier transform each) with at most ``SLOW_SEEDS`` seeds.

Input .npz: ``names`` (str array) and per name ``table_<name>`` (2**M values) and
``budgets_<name>`` (int array). Output: per estimator label, game and budget an array
``est`` (seeds, M), ``evals`` (seeds,), ``seconds`` (seeds,), or an error message.
"""

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapley_games import TableGame  # noqa: E402


def _shapiq(cls_name, **kwargs):
    """A factory ``(n, seed, budget) -> values`` for a shapiq approximator."""

    def run(table, m, seed, budget):
        import shapiq

        cls = getattr(shapiq.approximator, cls_name)
        args = {k: (v(budget, m) if callable(v) else v) for k, v in kwargs.items()}
        approx = cls(n=m, random_state=seed, **args)
        game = TableGame(table, m)
        res = approx.approximate(budget, game)
        values = np.array([res[(i,)] for i in range(m)], dtype=np.float64)
        return values, game.rows

    return run


def _shap_kernel(table, m, seed, budget):
    import shap

    game = TableGame(table, m)
    explainer = shap.KernelExplainer(game, np.zeros((1, m)), link="identity")
    np.random.seed(seed)
    # shap evaluates f(background) and f(x) besides its nsamples rows
    values = explainer.shap_values(np.ones((1, m)), nsamples=budget - 2, l1_reg=False,
                                   silent=True)
    return np.asarray(values, dtype=np.float64).reshape(-1)[:m], game.rows


def _shap_permutation(table, m, seed, budget):
    import shap

    game = TableGame(table, m)
    masker = shap.maskers.Independent(np.zeros((1, m)), max_samples=1)
    explainer = shap.PermutationExplainer(game, masker, seed=seed)
    # one permutation (forward and back) costs 2M + 1 rows; shap needs max_evals >= 2M + 1
    exp = explainer(np.ones((1, m)), max_evals=max(budget, 2 * m + 1), silent=True)
    return np.asarray(exp.values, dtype=np.float64).reshape(-1)[:m], game.rows


def _half(budget, m):
    return max(m + 1, budget // 2)


ESTIMATORS = {
    "KernelSHAP": _shapiq("KernelSHAP"),
    "KernelSHAP paired": _shapiq("KernelSHAP", pairing_trick=True),
    "LeverageSHAP": _shapiq("LeverageSHAP"),
    "kADD-SHAP k=2": _shapiq("kADDSHAP", max_order=2),
    "PolySHAP k=2 paired": _shapiq("PolySHAP", max_order=2, pairing_trick=True),
    "PolySHAP k=3 paired": _shapiq("PolySHAP", max_order=3, pairing_trick=True),
    "PolySHAP k=3 partial paired": _shapiq("PolySHAP", max_order=3, pairing_trick=True,
                                           max_terms=_half),    # not in the default run
    "OddSHAP": _shapiq("OddSHAP"),
    "UnbiasedKernelSHAP": _shapiq("UnbiasedKernelSHAP"),
    "PermutationSamplingSV": _shapiq("PermutationSamplingSV"),
    "StratifiedSamplingSV": _shapiq("StratifiedSamplingSV"),
    "OwenSamplingSV": _shapiq("OwenSamplingSV"),
    "SVARM": _shapiq("SVARM"),
    "RegressionMSR": _shapiq("RegressionMSR", index="SV"),
    "ProxySPEX": _shapiq("ProxySPEX", index="SV", max_order=1),
    "SPEX": _shapiq("SPEX", index="SV", max_order=1),
    "ShaplEIG": _shapiq("ShaplEIG"),
    "shap KernelExplainer": _shap_kernel,
    "shap PermutationExplainer": _shap_permutation,
}


# PolySHAP's budget-capped frontier (max_terms = budget / 2) is left out: a setting we chose,
# not the library's default, and 4 times slower than k = 3
DEFAULT = [k for k in ESTIMATORS if k != "PolySHAP k=3 partial paired"]
SLOW = {"SPEX", "ProxySPEX"}
SLOW_SEEDS = 5


def versions():
    out = {"python": sys.version.split()[0]}
    for name in ("shapiq", "shap", "numpy", "lightgbm", "xgboost"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # an optional package missing
            out[name] = "not installed"
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    data = np.load(args.games)
    names = [str(n) for n in data["names"]]
    labels = args.only or DEFAULT
    out, errors = {}, {}
    for label in labels:
        run = ESTIMATORS[label]
        t_label = time.perf_counter()
        for name in names:
            table = data[f"table_{name}"]
            m = int(round(np.log2(len(table))))
            for budget in data[f"budgets_{name}"]:
                budget = int(budget)
                key = f"{label}|{name}|{budget}"
                est, evals, secs = [], [], []
                n_seeds = min(args.seeds, SLOW_SEEDS) if label in SLOW and not args.only \
                    else args.seeds
                try:
                    for seed in range(n_seeds):
                        t0 = time.perf_counter()
                        values, rows = run(table, m, seed, budget)
                        secs.append(time.perf_counter() - t0)
                        est.append(values)
                        evals.append(rows)
                except Exception as exc:  # recorded and reported, the others still run
                    errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    traceback.print_exc(limit=1)
                    continue
                out[f"est|{key}"] = np.array(est)
                out[f"evals|{key}"] = np.array(evals)
                out[f"seconds|{key}"] = np.array(secs)
        print(f"competitors: {label} done in {time.perf_counter() - t_label:.0f} s",
              file=sys.stderr, flush=True)
    meta = {"errors": errors, "versions": versions(), "labels": labels}
    tmp = Path(args.out).with_suffix(".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **out)
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
