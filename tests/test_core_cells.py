"""Hexagon and square cells: a partition of the pixels matching its polygons exactly."""

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_explainer.core.cells import hexagon_grid, square_grid


def check_partition(cells, h, w):
    labels = cells.labels
    assert labels.shape == (h, w) and labels.dtype == np.int32
    m = cells.n_cells
    assert labels.min() == 0 and labels.max() == m - 1
    assert np.all(np.bincount(labels.ravel(), minlength=m) > 0)  # every label used
    assert cells.centers.shape == (m, 2)


def check_polygons(cells, h, w):
    polys = cells.polygons()
    assert len(polys) == cells.n_cells
    assert all(p.geom_type == "Polygon" and p.is_valid for p in polys)
    areas = np.array([p.area for p in polys])
    np.testing.assert_array_equal(areas, cells.areas)          # pixel-exact
    assert areas.sum() == h * w                                # no overlap...
    union = shapely.union_all(polys)
    assert union.area == h * w                                 # ...and no gap
    assert union.equals(shapely.box(0, 0, w, h))
    # every pixel centre lies in its own cell's polygon
    rows, cols = np.indices((h, w))
    pts = shapely.points(cols.ravel() + 0.5, rows.ravel() + 0.5)
    lab = cells.labels.ravel()
    for i, poly in enumerate(polys):
        inside = shapely.contains(poly, pts)
        assert np.array_equal(inside, lab == i)


def test_hexagons_512_at_22_like_the_paper():
    cells = hexagon_grid(512, 512, 22)
    check_partition(cells, 512, 512)
    # The paper: M = 224 hexagons of about 1170 pixels for 512 x 512 at circumradius 22.
    assert 210 <= cells.n_cells <= 240
    full = 3 * np.sqrt(3) / 2 * 22 ** 2
    areas = cells.areas
    assert areas.min() >= 0.25 * full                         # no slivers
    # interior cells (centre far from the edges) are full hexagons, within a few percent
    c = cells.centers
    inner = (c[:, 0] > 40) & (c[:, 0] < 472) & (c[:, 1] > 40) & (c[:, 1] < 472)
    assert inner.sum() > 120
    assert np.all(np.abs(areas[inner] / full - 1) < 0.03)


def test_hexagon_polygons_tile_the_image():
    cells = hexagon_grid(96, 130, 9)
    check_partition(cells, 96, 130)
    check_polygons(cells, 96, 130)


def test_hexagon_shape_and_neighbours():
    cells = hexagon_grid(200, 200, 12)
    c = cells.centers
    inner = np.nonzero((c[:, 0] > 40) & (c[:, 0] < 160) & (c[:, 1] > 40) & (c[:, 1] < 160))[0]
    # six neighbours at distance sqrt(3) * R from every interior cell
    d = np.linalg.norm(c[inner, None, :] - c[None, :, :], axis=-1)
    near = (d > 1) & (d < 1.2 * np.sqrt(3) * 12)
    assert np.all(near.sum(axis=1) == 6)
    np.testing.assert_allclose(d[near], np.sqrt(3) * 12, rtol=0.03)


def test_squares():
    cells = square_grid(100, 70, 16)
    check_partition(cells, 100, 70)
    check_polygons(cells, 100, 70)
    areas = cells.areas
    assert np.all(areas >= 0.25 * 256)
    assert np.sum(areas == 256) >= 12
    exact = square_grid(64, 64, 16)
    assert exact.n_cells == 16 and np.all(exact.areas == 256)
    assert np.array_equal(exact.labels[:16, :16], np.zeros((16, 16)))


def test_tiny_image_is_one_cell():
    cells = hexagon_grid(5, 3, 22)
    assert cells.n_cells == 1
    check_polygons(cells, 5, 3)


def test_mask_and_paint():
    cells = hexagon_grid(40, 50, 6)
    m = cells.n_cells
    z = np.random.default_rng(0).random((7, m)) < 0.5
    masks = cells.mask(z)
    assert masks.shape == (7, 40, 50) and masks.dtype == np.float32
    for i in range(7):
        np.testing.assert_array_equal(masks[i], z[i][cells.labels].astype(np.float32))
    v = np.arange(m, dtype=float)
    np.testing.assert_array_equal(cells.paint(v), cells.labels)
    both = cells.paint(np.stack([v, -v], axis=1))
    assert both.shape == (2, 40, 50)
    np.testing.assert_array_equal(both[1], -cells.labels)
    with pytest.raises(ValueError):
        cells.mask(np.ones((2, m + 1), bool))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 60), w=st.integers(1, 60), size=st.floats(2, 30),
       hexagon=st.booleans())
def test_any_size_is_a_partition(h, w, size, hexagon):
    cells = hexagon_grid(h, w, size) if hexagon else square_grid(h, w, size)
    check_partition(cells, h, w)
    polys = cells.polygons()
    assert all(p.geom_type == "Polygon" for p in polys)
    assert sum(p.area for p in polys) == h * w
    assert shapely.union_all(polys).area == h * w


def test_invalid_sizes():
    with pytest.raises(ValueError):
        hexagon_grid(10, 10, 0)
    with pytest.raises(ValueError):
        square_grid(0, 10, 4)
