"""A short run of every benchmark in bench/, so the benchmark code cannot rot.

Runs each ``bench/bench_<name>.py`` with ``run(quick=True)`` in the project venv, where shap
and shapiq are not installed (the comparison must then be skipped, not crash). Asserts on
structure and on facts that could be false; never on time.
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
_setup = importlib.import_module("_setup")
run_all = importlib.import_module("run_all")

NAMES = run_all.discover()


def check_structure(out):
    assert isinstance(out["title"], str) and out["title"]
    assert isinstance(out["markdown"], str) and out["markdown"].strip()
    assert out["rows"], "a benchmark must put at least one row in the table"
    for row in out["rows"]:
        assert set(row) >= {"benchmark", "measure", "result", "goal", "met"}
        assert row["met"] in (True, False, None)


_RUNS = {}


def quick_run(name):
    """``bench_<name>.run(quick=True)``, once per test session."""
    if name not in _RUNS:
        _RUNS[name] = importlib.import_module(f"bench_{name}").run(quick=True)
    return _RUNS[name]


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_runs_quick(name):
    check_structure(quick_run(name))


def test_shap_accuracy_facts():
    out = quick_run("shap_accuracy")
    games = [c["game"] for c in out["cells"]]
    for name in ("smooth", "saturating", "interactions", "sparse"):
        assert any(g.startswith(name) for g in games)
    rows = {r["measure"]: r for r in out["rows"]}
    efficiency = next(r for m, r in rows.items() if m.startswith("efficiency"))
    assert efficiency["met"], efficiency["result"]
    if not any(c["others"] for c in out["cells"]):
        assert any("skipped" in str(r["result"]) for r in out["rows"])
    for game in set(games):
        cells = [c for c in out["cells"] if c["game"] == game]
        mse = [c["ours"].mean() for c in cells]
        # the error shrinks with the budget, unless the smallest was exact already (a
        # sigmoid of a weighted sum, by the regression adjustment below two phases)
        assert mse[-1] < mse[0] or cells[0]["exact"], f"{game}: {mse}"
    for c in out["cells"]:
        assert c["ours_evals"] <= c["budget"]


def test_shap_bench_options_reach_our_estimator(monkeypatch, tmp_path):
    bench = importlib.import_module("bench_shap_accuracy")
    games = importlib.import_module("shapley_games")
    from seg_explainer.core.kernel_shap import kernel_shap

    monkeypatch.setattr(_setup, "CACHE", tmp_path)
    monkeypatch.setenv("SHAP_BENCH_OPTIONS", '{"surrogate": false, "sampling": "kernel"}')
    options = bench.restriction()[3]
    assert options == {"surrogate": False, "sampling": "kernel"}
    m = 8
    table = games.synthetic_table("sparse", m)
    est = bench.ours(table, m, 64, [0, 1], options)[0]
    plain = bench.ours(table, m, 64, [0, 1])[0]
    for seed in (0, 1):
        want = kernel_shap(games.TableGame(table, m), m, 62, seed=seed, batch_size=8192,
                           surrogate=False, sampling="kernel").values
        np.testing.assert_allclose(est[seed], want, rtol=0, atol=1e-12)
    assert not np.allclose(est, plain)          # not served from the default's cache
    for bad in ("sampling=kernel", "[1]"):
        monkeypatch.setenv("SHAP_BENCH_OPTIONS", bad)
        with pytest.raises(SystemExit, match="SHAP_BENCH_OPTIONS"):
            bench.restriction()


def test_calibration_over_more_seeds_than_the_comparison(monkeypatch, tmp_path):
    # the MSE compared with the competitors is over their seeds only; the coverage and
    # mean (err/SE)^2 are over every calibration seed, the first ones included
    bench = importlib.import_module("bench_shap_accuracy")
    games = importlib.import_module("shapley_games")
    from seg_explainer.core.kernel_shap import kernel_shap

    monkeypatch.setattr(_setup, "CACHE", tmp_path)
    m = 8
    table = games.synthetic_table("smooth", m)
    exact = games.exact_shapley(table, m)
    cell, _ = bench.our_cell("smooth, M=8", table, m, exact, 64, 2, [0, 1, 2, 3, 4, 5])
    runs = [kernel_shap(games.TableGame(table, m), m, 62, seed=s, batch_size=8192)
            for s in range(6)]
    err = np.array([r.values for r in runs]) - exact
    se = np.array([r.standard_errors for r in runs])
    np.testing.assert_allclose(cell["ours"], (err[:2] ** 2).mean(axis=1), rtol=1e-12)
    assert not cell["exact"]
    assert cell["cover"] == pytest.approx(np.mean(np.abs(err) <= 1.96 * se))
    assert cell["z2"] == pytest.approx(np.mean((err / se) ** 2))
    assert cell["z2"] != pytest.approx(np.mean((err[:2] / se[:2]) ** 2))


def test_calibration_leaves_out_the_seeds_estimated_exactly(monkeypatch):
    # a cell where seeds 0 and 1 are exact to float precision (error and standard error
    # both rounding) and seeds 2-4 are not: the comparison calls the cell exact on the
    # competitors' seeds 0-1; the calibration is over seeds 2-4 alone
    bench = importlib.import_module("bench_shap_accuracy")
    rng = np.random.default_rng(0)
    m = 6
    exact = rng.normal(size=m)
    est = np.repeat(exact[None], 5, axis=0)
    se = np.full((5, m), 1e-17)
    est[:2] += 1e-17 * rng.normal(size=(2, m))
    est[2:] += 0.1 * rng.normal(size=(3, m))
    se[2:] = 0.1
    monkeypatch.setattr(bench, "ours", lambda *a, **k: (est, se, np.full(5, 64), 0.0))
    cell, _ = bench.our_cell("g", None, m, exact, 64, 2, list(range(5)))
    assert cell["exact"] and cell["inexact_seeds"] == 3
    assert (cell["cover"], cell["z2"]) == bench.calibration(est[2:], se[2:], exact)
    cell, _ = bench.our_cell("g", None, m, exact, 64, 3, list(range(5)))
    assert not cell["exact"]
    monkeypatch.setattr(bench, "ours", lambda *a, **k: (est[:2], se[:2], np.full(2, 64), 0.0))
    cell, _ = bench.our_cell("g", None, m, exact, 64, 2, [0, 1])
    assert cell["exact"] and cell["cover"] is None and cell["z2"] is None


def test_exact_shapley_oracle_agrees_with_brute_force():
    g = importlib.import_module("shapley_games")
    m = 6
    v = g.interaction_game(m, np.random.default_rng(3))
    table = g.tabulate(v, m)
    phi = g.exact_shapley(table, m)
    assert phi.sum() == pytest.approx(table[-1] - table[0])
    from test_core_shap import brute_force_shapley
    np.testing.assert_allclose(phi, brute_force_shapley(v, m), atol=1e-12)


def test_occlusion_heatmaps_equal_and_counts_consistent():
    out = quick_run("occlusion")
    for r in out["results"]:
        assert r["equal"]
        np.testing.assert_allclose(r["heatmap_ours"], r["heatmap_naive"])
        assert r["naive"] == r["naive_predicted"]
        # whole trees cost more than pruning while growing, which costs more than sharing
        assert r["naive"] > r["unshared"] >= r["ours"] > 0


def test_run_all_writes_report(tmp_path, monkeypatch):
    fake = tmp_path / "bench_fake.py"
    fake.write_text("def run(quick):\n    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(run_all, "discover", lambda: ["fake"])
    out = tmp_path / "B.md"
    assert run_all.main(["--quick", "--out", str(out)]) == 1
    text = out.read_text()
    assert "FAILED: RuntimeError: boom" in text and "| benchmark |" in text
    assert "Machine:" in text and "Command:" in text


def test_other_instances_of_the_synthetic_games(monkeypatch, tmp_path):
    # SHAP_BENCH_INSTANCE draws other games of the same kinds (their generator's seed), so
    # that a result can be checked on games it was not developed on
    bench = importlib.import_module("bench_shap_accuracy")
    games = importlib.import_module("shapley_games")
    monkeypatch.setattr(_setup, "CACHE", tmp_path)
    monkeypatch.setattr(bench, "competitor_python", lambda: None)
    monkeypatch.setenv("SHAP_BENCH_INSTANCE", str(games.GAME_SEED))
    assert bench.instance() is None                        # the default instance
    for bad in ("x", "-1", "1.5", "\u00b2"):           # "²" is a digit, not decimal
        monkeypatch.setenv("SHAP_BENCH_INSTANCE", bad)
        with pytest.raises(SystemExit, match="SHAP_BENCH_INSTANCE"):
            bench.instance()
    monkeypatch.setenv("SHAP_BENCH_INSTANCE", "101")
    assert bench.instance() == 101
    listed = bench.games(False, 101)
    assert len(listed) == len(games.GAMES) * len(bench.MS)      # no sample model
    default = dict(bench.games(False))
    for name, make in listed[:len(games.GAMES)]:
        table, m, _ = make()
        assert "#101" in name
        base = default[name.replace(" #101", "")]()[0]
        assert table.shape == base.shape == (2 ** m,)
        assert not np.allclose(table, base)
    monkeypatch.setenv("SHAP_BENCH_GAMES", "sparse #101")
    monkeypatch.setenv("SHAP_BENCH_BUDGETS", "64")
    monkeypatch.setenv("SHAP_BENCH_SEEDS", "2")
    out = bench.run(quick=True)
    assert [c["game"] for c in out["cells"]] == ["sparse #101, M=10"]
    assert "Restricted run" in out["markdown"] and "SHAP_BENCH_INSTANCE" in out["markdown"]
    table = games.synthetic_table("sparse", 10, seed=101)
    est = bench.ours(table, 10, 64, [0, 1])[0]
    np.testing.assert_array_equal(out["cells"][0]["ours"],
                                  bench.mse_stats(est, games.exact_shapley(table, 10)))


def test_update_adds_a_new_sections_rows_and_keeps_the_others():
    old = "\n".join(["# Benchmarks", "", "- Command: x", "",
                     "| benchmark | measure | result | goal | met |", "|---|---|---|---|---|",
                     "| 1. A | speed | 1.0 | | |", "| 2. B | error | 2.0 | | |", "",
                     "## 1. A", "", "old A", "", "## 2. B", "", "old B"])
    row = _setup.summary_row("3. C", "size", "3.0", "<= 4", True)
    new = run_all.splice(old, [{"title": "3. C", "markdown": "new C", "rows": [row],
                                "seconds": 5.0}], "cmd", 5.0)
    table = [line for line in new.splitlines() if line.startswith("| ")]
    assert table[1:] == ["| 1. A | speed | 1.0 | | |", "| 2. B | error | 2.0 | | |",
                         "| 3. C | size | 3.0 | <= 4 | yes |"]
    assert "old B\n\n## 3. C\n\nnew C\n\n_(5 s)_" in new
    assert "## 1. A\n\nold A" in new
    again = run_all.splice(new, [{"title": "3. C", "markdown": "newer C",
                                  "rows": [dict(row, result="2.5")], "seconds": 6.0}],
                           "cmd", 6.0)
    assert [line for line in again.splitlines() if line.startswith("| 3. C")] == \
        ["| 3. C | size | 2.5 | <= 4 | yes |"]
    assert "new C" not in again and again.count("## 3. C") == 1
