"""Smoke runs of the engine benchmarks (bench_overhead, bench_crop, bench_large), quick mode.

They check that each benchmark runs and that what it measures is right (values, zeros,
identical outputs); never how fast: a benchmark measures, a test checks.
"""

import importlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SAMPLE_MODEL = BENCH.parent / "resources" / "sample" / "oil_unet.onnx"


def _bench(name):
    if not (BENCH / f"bench_{name}.py").is_file():
        pytest.skip(f"bench/bench_{name}.py is missing")
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(f"bench_{name}")


def _check_shape(out):
    assert set(out) >= {"title", "markdown", "rows"}
    assert out["markdown"].strip() and out["rows"]
    for row in out["rows"]:
        assert set(row) == {"benchmark", "measure", "result", "goal", "met"}


@pytest.mark.skipif(not SAMPLE_MODEL.is_file(), reason="no sample model")
def test_overhead_quick():
    out = _bench("overhead").run(quick=True)
    _check_shape(out)
    results = out["results"]
    cases = ["bench budgets", "defaults, oil region", "defaults, 60 px disc"]
    assert [(r["case"], r["method"]) for r in results] == [
        (c, m) for c in cases for m in ("shap", "rise", "occlusion")] + [
        ("SHAP on large hexagons", "shap")]
    for r in results:
        assert r["evaluations"] > 2
        assert r["calls"] >= 1 and r["wall"] > 0 and r["ratio"] >= 1
        assert r["model"] > 0 and r["model"] <= r["wall"]
        assert np.isfinite(r["explanation"].signed).all()
    assert len(out["rows"]) == 10 and all("inside InferenceSession.run" in r["measure"]
                                          for r in out["rows"])
    # the default cases' windows are the automatic ones: 160 px (oil), 192 px (60 px disc)
    assert [r["explanation"].signed.shape[-1] for r in results[3:9:3]] == [160, 192]
    # the large hexagons: few enough players for Kernel SHAP's trees' adjustment
    from seg_explainer.core.kernel_shap import _TREES_PLAYERS

    assert 2 <= results[-1]["explanation"].details["n_players"] <= _TREES_PLAYERS


def test_crop_quick():
    out = _bench("crop").run(quick=True)
    _check_shape(out)
    results = out["results"]
    assert {(r["region"], r["method"]) for r in results} == {
        (g, m) for g in ("oil", "pixel") for m in ("rise", "occlusion", "shap")}
    for r in results:
        assert r["crop"] is not None                     # the box model is local
        r0, r1, c0, c1 = r["crop"]
        assert (r1 - r0) * (c1 - c0) < r["window"][0] * r["window"][1] / 4
        assert r["max_diff"] <= 1e-5                     # crop values == full values
        if r["method"] == "shap":
            assert r["compared"] == "exact Shapley values"
            assert r["n_outside"] > 0 and r["zero_outside"]
            assert r["efficiency_error"] <= 1e-6
        if r["method"] != "rise":                        # fewer model evaluations
            assert r["evals_crop"] < r["evals_full"]
    diff_row = [row for row in out["rows"] if "difference" in row["measure"]][0]
    assert diff_row["met"] is True


@pytest.mark.skipif(not SAMPLE_MODEL.is_file() or shutil.which("bash") is None
                    or not os.path.exists("/usr/bin/qgis_process.bin"),
                    reason="needs the sample model and qgis_process")
def test_large_quick():
    bench = _bench("large")
    out = bench.run(quick=True)
    _check_shape(out)
    res = out["results"]
    small, large = res["sizes"]
    assert large > small
    # the same region of the same pixels gives identical outputs in both rasters
    for key in ("EXCITATION", "INHIBITION", "SIGNED"):
        assert res["diffs"][key] == 0.0
        a, _ = bench._read(res["outputs"][small][key])
        assert np.isfinite(a).all() and np.abs(a).max() > 0      # not an empty output
    assert all(m > 0 for v in res["rss_mib"].values() for m in v)
    from osgeo import gdal

    ds = gdal.Open(str(bench.tiled_raster(large)))
    assert (ds.RasterXSize, ds.RasterYSize) == (large, large)
    assert ds.GetRasterBand(1).GetBlockSize() != [large, 1]        # tiled, not striped


def test_full_runs_give_shap_budgets_the_engine_takes():
    # the full runs' SHAP budgets must meet the engine's minimum (M + 2 pairs) for the cells
    # of their whole windows: the quick runs above do not reach them
    from seg_explainer.core.cells import hexagon_grid, square_grid
    from seg_explainer.core.explain import min_samples

    runs = [(size, params) for _, size, _, _, budgets in _bench("overhead")._cases(False)
            for params in budgets.values()]
    size, configs = _bench("crop").configs(False)
    runs += [(size, params) for _, params in configs]
    checked = 0
    for size, params in runs:
        if "n_samples" in params:
            grid = square_grid if params.get("cell_shape") == "square" else hexagon_grid
            cells = grid(size, size, params["hex_size"]).n_cells
            assert params["n_samples"] >= min_samples(cells), (size, params)
            checked += 1
    assert checked >= 3
