"""Regions of interest: from map geometries to a pixel mask inside an explanation window."""

from dataclasses import dataclass

import numpy as np

from .errors import InputError


#: Window (and tile) edge in pixels when neither the user nor the model gives one.
DEFAULT_EDGE = 512
#: Pixels of image the automatic window keeps around the region when the model does not
#: declare its own (metadata ``seg_explainer_context``). For the sample U-Net a 4 x 4 px
#: change 64 px away moves a pixel's probability by 5e-4 (1e-2 at 16 px): docs/defaults.md.
DEFAULT_CONTEXT = 64
#: The automatic window's edges are multiples of this (a U-Net's total stride).
WINDOW_MULTIPLE = 32


def window_edge(requested=None, fixed_size=None, tile_size=None):
    """The square window (or tile) edge to use, in pixels: ``requested`` if given (not 0),
    else the model's fixed input size, else its preferred tile size, else
    :data:`DEFAULT_EDGE`.

    >>> window_edge(0, None, 256), window_edge(96, None, 256), window_edge()
    (256, 96, 512)
    """
    edge = requested or (fixed_size[0] if fixed_size else None) or tile_size or DEFAULT_EDGE
    return int(edge)


def auto_window_edge(extent, context=DEFAULT_CONTEXT, limit=DEFAULT_EDGE,
                     multiple=WINDOW_MULTIPLE):
    """Edge of the automatic window for a region ``extent`` pixels across (its larger side).

    The region plus ``context`` pixels on every side, rounded up to a multiple of
    ``multiple``; at most ``limit`` (the model's tile size, the seed paper's 512), unless the
    region alone needs more, then the region rounded up. So small regions get small, fast
    windows and large ones the paper's window.

    >>> auto_window_edge(28), auto_window_edge(60), auto_window_edge(400), auto_window_edge(600)
    (160, 192, 512, 608)
    """
    def up(n):
        return -(-int(n) // multiple) * multiple

    extent = max(1, int(extent))
    return int(max(min(up(extent + 2 * max(0, int(context))), limit), up(extent)))


def explanation_window_edge(requested, fixed_size, tile_size, extent, context=None):
    """The explanation window's edge: ``requested`` if given (not 0/None), else the model's
    fixed input size, else :func:`auto_window_edge` of the region's ``extent`` (pixels) with
    ``context`` (default :data:`DEFAULT_CONTEXT`) and the model's tile size as the limit.

    >>> explanation_window_edge(0, None, 512, 28), explanation_window_edge(96, None, 512, 28)
    (160, 96)
    """
    if requested or fixed_size:
        return window_edge(requested, fixed_size, tile_size)
    return auto_window_edge(extent, DEFAULT_CONTEXT if context is None else context,
                            int(tile_size or DEFAULT_EDGE))


@dataclass(frozen=True)
class Window:
    """A square (or rectangular) block of the raster's own pixel grid."""

    row0: int
    col0: int
    height: int
    width: int

    @property
    def shape(self):
        return self.height, self.width


#: How close to a pixel edge (in pixels) a coordinate counts as on it: floating-point
#: rounding of degrees (``(11.0 - 10.744) / 0.001`` is 256.0000000000002) must not add a
#: pixel beyond the raster's edge.
EDGE_TOLERANCE = 1e-6


def _snapped(*values):
    """``values`` in pixels, each on the nearest pixel edge when within
    :data:`EDGE_TOLERANCE` of it."""
    return [float(round(v)) if abs(v - round(v)) < EDGE_TOLERANCE else v for v in values]


def pixel_bounds(geometry, geotransform):
    """(row0, row1, col0, col1) half-open pixel bounds of a shapely geometry in map coordinates.

    Assumes a north-up geotransform (no rotation), as GDAL writes for projected scenes.
    """
    x0, dx, _, y0, _, dy = geotransform
    minx, miny, maxx, maxy = geometry.bounds
    cols = sorted(_snapped((minx - x0) / dx, (maxx - x0) / dx))
    rows = sorted(_snapped((maxy - y0) / dy, (miny - y0) / dy))
    row0, col0 = int(np.floor(rows[0])), int(np.floor(cols[0]))
    row1 = max(int(np.ceil(rows[1])), row0 + 1)
    col1 = max(int(np.ceil(cols[1])), col0 + 1)
    return row0, row1, col0, col1


def place_window(bounds, size, raster_height, raster_width):
    """The ``size`` x ``size`` window centred on the region's pixel ``bounds``.

    The window is shifted to lie inside the raster where the raster is large enough, so it
    always holds as much image as possible. Raises :class:`~.errors.InputError` when the
    region does not fit.
    """
    row0, row1, col0, col1 = bounds
    if row1 - row0 > size or col1 - col0 > size:
        raise InputError(
            f"the region of interest spans {row1 - row0} x {col1 - col0} pixels, more than the "
            f"{size} x {size} explanation window. Increase WINDOW or draw a smaller region.")
    out = []
    for lo, hi, extent in ((row0, row1, raster_height), (col0, col1, raster_width)):
        start = (lo + hi) // 2 - size // 2
        if extent >= size:
            start = min(max(start, 0), extent - size)
        start = min(start, lo)
        start = max(start, hi - size)
        out.append(int(start))
    return Window(out[0], out[1], size, size)


def region_mask(geometry, geotransform, window):
    """Pixels of ``window`` that belong to the region, as bool ``[height, width]``.

    Polygons take the pixels whose centres they contain; a polygon too small to contain any
    centre, a point or a line takes the pixels it touches (at least the pixel under it), so a
    single click is a one-pixel region.
    """
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    from shapely import affinity

    x0, dx, _, y0, _, dy = geotransform
    # Map coordinates -> window pixel coordinates (x = column, y = row).
    pix = affinity.affine_transform(
        geometry, [1 / dx, 0, 0, 1 / dy, -x0 / dx - window.col0, -y0 / dy - window.row0])
    mask = np.zeros(window.shape, dtype=bool)
    parts = list(getattr(pix, "geoms", [pix]))
    polys = [g for g in parts if g.geom_type in ("Polygon", "MultiPolygon")]
    others = [g for g in parts if g.geom_type not in ("Polygon", "MultiPolygon")]

    def touched(geom):
        """Points, lines, slivers: every pixel square the geometry intersects."""
        r0, r1, c0, c1 = pixel_bounds(geom, (0, 1, 0, 0, 0, 1))
        for r in range(max(r0, 0), min(r1, window.height)):
            for c in range(max(c0, 0), min(c1, window.width)):
                if geom.intersects(shapely.box(c, r, c + 1, r + 1)):
                    mask[r, c] = True

    if polys:
        rows, cols = np.mgrid[0:window.height, 0:window.width]
        inside = shapely.contains_xy(shapely.union_all(polys), cols.ravel() + 0.5,
                                     rows.ravel() + 0.5)
        mask |= inside.reshape(window.shape)
    if not mask.any():
        touched(pix)
    elif others:             # a collection of polygons and points: the points' pixels too
        for geom in others:
            touched(geom)
    return mask


def mask_extent(mask):
    """The larger side, in pixels, of the bounding box of a non-empty boolean ``mask``."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
