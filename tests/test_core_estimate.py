"""Automatic window and cell size (issue 14): they follow the region, the plan a form shows
before a run is what the run uses, and occlusion's progress rises to 1 only at the end."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seg_explainer.core.cells import PAPER_CELL_SIZE, auto_cell_size, hexagon_grid
from seg_explainer.core.estimate import (expected_occlusion_evaluations, plan_run,
                                         region_size)
from seg_explainer.core.job import explain_to_files, read_job
from seg_explainer.core.metadata import parse_metadata
from seg_explainer.core.occlusion import evaluation_bound, multiscale_occlusion
from seg_explainer.core.region import (DEFAULT_CONTEXT, WINDOW_MULTIPLE, auto_window_edge,
                                       explanation_window_edge)

from test_core_job import Model, raster, region_wkb  # noqa: F401 (the fixture)


@given(st.integers(1, 2000), st.integers(0, 300), st.sampled_from([256, 512, 1024]))
def test_the_automatic_window_holds_the_region_and_its_context_up_to_the_tile(extent, context,
                                                                               limit):
    edge = auto_window_edge(extent, context, limit)
    assert edge % WINDOW_MULTIPLE == 0 and edge >= extent
    if extent + 2 * context <= limit:
        assert extent + 2 * context <= edge < extent + 2 * context + WINDOW_MULTIPLE
    elif extent <= limit:
        assert edge == limit          # large regions: the paper's (the model's) tile
    else:
        assert edge < extent + WINDOW_MULTIPLE


def test_a_window_or_a_fixed_input_asked_for_is_kept():
    assert explanation_window_edge(96, None, 512, 28) == 96
    assert explanation_window_edge(0, (256, 256), 256, 28) == 256
    assert explanation_window_edge(None, None, None, 28) == \
        auto_window_edge(28, DEFAULT_CONTEXT, 512)


@given(st.floats(0, 1e6))
def test_the_automatic_cell_lets_the_region_span_several_cells(pixels):
    size = auto_cell_size(pixels)
    assert 6 <= size <= PAPER_CELL_SIZE
    hexagon_area = 1.5 * np.sqrt(3) * size ** 2
    if 6 < size < PAPER_CELL_SIZE:     # neither clamp: several cells cover the region
        assert 5 <= pixels / hexagon_area <= 11


def test_a_model_may_declare_its_context():
    assert parse_metadata({"seg_explainer_context": "40"}).context == 40
    assert parse_metadata({}).context is None
    with pytest.raises(Exception, match="seg_explainer_context"):
        parse_metadata({"seg_explainer_context": "-3"})


class ContextModel(Model):
    context = 8      # small, so the 96 px test raster holds the automatic window


@pytest.mark.parametrize("method, params", [("shap", {}), ("rise", {"n_masks": 30}),
                                            ("shap", {"hex_size": 5, "n_samples": 90})])
def test_the_plan_is_what_the_run_uses(raster, method, params):  # noqa: F811
    from osgeo import gdal

    wkb = region_wkb(40, 42, 58, 54)
    pixels, extent = region_size(wkb, gdal.Open(raster).GetGeoTransform())
    assert (pixels, extent) == (18 * 12, 18)
    plan = plan_run(method, params, region_pixels=pixels, region_extent=extent,
                    context=ContextModel.context)
    run = explain_to_files(ContextModel(), raster, wkb, "oil", method, **params)
    assert run.job.window.height == plan.window == auto_window_edge(18, 8)
    assert run.result.n_evaluations == plan.evaluations == plan.most
    if method == "shap":
        assert run.result.params["hex_size"] == plan.cell_size
        assert plan.cell_size_auto == ("hex_size" not in params)
        assert run.result.details["n_cells"] == plan.n_cells == \
            hexagon_grid(plan.window, plan.window, plan.cell_size).n_cells
    assert run.metadata["window"]


def test_a_large_region_gets_the_model_tile(raster):  # noqa: F811
    job = read_job(ContextModel(), raster, region_wkb(10, 10, 80, 80))
    assert job.window.height == 96          # 70 px + 2 x 8 rounded up to 32 px
    plan = plan_run("shap", {}, region_pixels=70 * 70, region_extent=70, tile_size=64)
    assert plan.window == 96 and plan.cell_size == auto_cell_size(4900)


def test_occlusion_expects_between_its_first_level_and_its_bound():
    for window, side in ((160, 28), (192, 60), (512, 300)):
        expected = expected_occlusion_evaluations(window, 4, side)
        assert evaluation_bound((window, window), 1) <= expected <= \
            evaluation_bound((window, window), 4)
    # a region filling more of the window keeps more of the tree
    assert expected_occlusion_evaluations(192, 4, 4) < expected_occlusion_evaluations(192, 4, 96)


def test_occlusion_progress_stays_below_one_until_the_end():
    rng = np.random.default_rng(1)
    weights = rng.random((64, 64))

    def score(rects):
        out = []
        for r0, r1, c0, c1 in np.asarray(rects).reshape(-1, 4):
            out.append(weights.sum() - weights[r0:r1, c0:c1].sum())
        return np.asarray(out)

    for expected in (10, 400, 100000):      # far too few, about right, far too many
        seen = []
        multiscale_occlusion(score, (64, 64), max_depth=3, batch_size=16,
                             progress=seen.append, expected_evaluations=expected)
        assert seen[-1] == 1.0 and all(0 <= f < 1 for f in seen[:-1])
