"""Cells: the regular super-pixels that Kernel SHAP switches on and off.

A :class:`Cells` object numbers every pixel of an image with the cell it belongs to. The
hexagonal grid follows the SHAP-for-segmentation paper: cells that do not depend on the image
content, of equal area, with six equal neighbours; with 512 x 512 pixels and a circumradius of
22 pixels there are about 224 of them (here 229: partial cells at the border are kept, and only
slivers smaller than a quarter of a full cell are merged into a neighbour).

Pixel coordinates: pixel ``(r, c)`` covers ``[c, c + 1] x [r, r + 1]`` (x = column, y = row),
so the image is the rectangle ``[0, W] x [0, H]``.
"""

from dataclasses import dataclass

import numpy as np

# Slivers smaller than this fraction of a full cell are merged into a neighbour.
MIN_CELL_FRACTION = 0.25
#: The seed paper's circumradius (229 cells on 512 x 512 px): the automatic size's largest.
PAPER_CELL_SIZE = 22
#: The automatic size's smallest circumradius, pixels.
MIN_AUTO_CELL_SIZE = 6
#: The automatic size makes the region's equal-area disc this many circumradii across,
#: so about seven or eight hexagons cover it.
REGION_ACROSS_CELLS = 5


def auto_cell_size(region_pixels):
    """Cell circumradius (pixels) for a region of ``region_pixels`` pixels.

    A fifth of the diameter of the disc of the region's area, so the region spans several
    cells, rounded to a whole pixel, from :data:`MIN_AUTO_CELL_SIZE` to the paper's
    :data:`PAPER_CELL_SIZE` (which regions of about 110 px across and more get).

    >>> auto_cell_size(1), auto_cell_size(60 * 60), auto_cell_size(200 * 200)
    (6.0, 14.0, 22.0)
    """
    diameter = 2.0 * np.sqrt(max(float(region_pixels), 0.0) / np.pi)
    return float(min(max(round(diameter / REGION_ACROSS_CELLS), MIN_AUTO_CELL_SIZE),
                     PAPER_CELL_SIZE))


@dataclass(frozen=True, eq=False)
class Cells:
    """A partition of an image into cells.

    Attributes
    ----------
    labels : ndarray, shape (H, W), int32
        Cell number of every pixel, 0 .. M-1; every number is used. Numbers follow the
        raster order of each cell's first pixel.
    kind : {"hexagon", "square"}
    size : float
        Hexagon circumradius, or square edge, in pixels.
    """

    labels: np.ndarray
    kind: str
    size: float

    @property
    def shape(self):
        """(H, W) of the image."""
        return self.labels.shape

    @property
    def n_cells(self):
        """M, the number of cells."""
        return int(self.labels.max()) + 1 if self.labels.size else 0

    @property
    def areas(self):
        """ndarray, shape (M,), int: pixels per cell."""
        return np.bincount(self.labels.ravel(), minlength=self.n_cells)

    @property
    def centers(self):
        """ndarray, shape (M, 2), float: (row, col) centroid of each cell, pixel coordinates.

        Pixel ``(r, c)`` has its centre at ``(r + 0.5, c + 0.5)``.
        """
        rows, cols = np.indices(self.shape)
        flat = self.labels.ravel()
        areas = np.maximum(self.areas, 1)
        r = np.bincount(flat, weights=rows.ravel() + 0.5, minlength=self.n_cells) / areas
        c = np.bincount(flat, weights=cols.ravel() + 0.5, minlength=self.n_cells) / areas
        return np.stack([r, c], axis=1)

    def mask(self, coalitions):
        """Pixel masks of cell coalitions.

        Parameters
        ----------
        coalitions : array_like of bool, shape (n, M) or (M,)
            True = the cell is kept (present).

        Returns
        -------
        ndarray, shape (n, H, W) (or (H, W) for a 1-D input), float32
            1 where the pixel's cell is kept, 0 elsewhere.
        """
        z = np.asarray(coalitions)
        if z.shape[-1] != self.n_cells:
            raise ValueError(f"coalitions have {z.shape[-1]} columns, there are "
                             f"{self.n_cells} cells")
        return z.astype(np.float32)[..., self.labels]

    def paint(self, values):
        """Spread per-cell values over the pixels.

        Parameters
        ----------
        values : array_like, shape (M,) or (M, D)

        Returns
        -------
        ndarray, shape (H, W) or (D, H, W), float32
        """
        v = np.asarray(values, dtype=np.float32)
        if v.shape[0] != self.n_cells:
            raise ValueError(f"{v.shape[0]} values for {self.n_cells} cells")
        if v.ndim == 1:
            return v[self.labels]
        return np.moveaxis(v[self.labels], -1, 0)

    def polygons(self):
        """Pixel-exact outlines of the cells.

        Returns
        -------
        list of shapely.Polygon, length M
            Polygon ``i`` is exactly the union of the pixel squares labelled ``i``, in pixel
            coordinates (x = column, y = row). Together they tile ``[0, W] x [0, H]`` without
            overlap. Cells are 4-connected, so each is one Polygon.
        """
        from .shapely_geos import import_shapely

        shapely = import_shapely()

        labels = self.labels
        h, w = labels.shape
        # Horizontal runs of equal label, one box per run.
        change = np.ones((h, w + 1), dtype=bool)
        change[:, 1:w] = labels[:, 1:] != labels[:, :-1]
        rr, cc = np.nonzero(change)
        run_row, run_start = rr[:-1], cc[:-1]
        run_end = cc[1:]
        keep = run_row == rr[1:]  # drop the pair spanning two rows
        run_row, run_start, run_end = run_row[keep], run_start[keep], run_end[keep]
        run_label = labels[run_row, run_start]
        order = np.argsort(run_label, kind="stable")   # by cell, then raster order
        bounds = np.searchsorted(run_label[order], np.arange(self.n_cells + 1))
        out = []
        for i in range(self.n_cells):
            sel = order[bounds[i]:bounds[i + 1]]
            ring = _row_convex_outline(run_row[sel], run_start[sel], run_end[sel])
            if ring is not None:     # one run per row, overlapping rows: trace the outline
                out.append(shapely.Polygon(ring))
                continue
            boxes = shapely.box(run_start[sel], run_row[sel], run_end[sel], run_row[sel] + 1)
            geom = shapely.union_all(boxes)
            out.append(geom.simplify(0))  # drop the collinear vertices between runs
        return out


def _row_convex_outline(rows, starts, ends):
    """Outline ring of a cell with one run per row in consecutive, overlapping rows.

    ``rows`` ascending; returns an (N, 2) array of (x, y) vertices without collinear ones,
    or None when the cell is not of that shape (the caller then unions the runs' boxes).
    """
    n = len(rows)
    if n == 0 or np.any(np.diff(rows) != 1):
        return None
    if n > 1 and (np.any(starts[1:] >= ends[:-1]) or np.any(ends[1:] <= starts[:-1])):
        return None
    r = rows.astype(np.float64)
    left = np.empty((2 * n, 2))
    left[0::2, 0], left[0::2, 1] = starts, r            # down the left side
    left[1::2, 0], left[1::2, 1] = starts, r + 1
    right = np.empty((2 * n, 2))
    right[0::2, 0], right[0::2, 1] = ends[::-1], r[::-1] + 1   # up the right side
    right[1::2, 0], right[1::2, 1] = ends[::-1], r[::-1]
    ring = np.concatenate([left, right])
    ring = ring[np.any(ring != np.roll(ring, 1, axis=0), axis=1)]       # repeated points
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    collinear = ((prev[:, 0] == ring[:, 0]) & (ring[:, 0] == nxt[:, 0])) | \
                ((prev[:, 1] == ring[:, 1]) & (ring[:, 1] == nxt[:, 1]))
    return ring[~collinear]


def _validate(height, width, size):
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"cell size must be a positive number of pixels, got {size}")
    return height, width, float(size)


def _relabel(raw):
    """Contiguous labels 0..M-1 in raster order of each label's first pixel."""
    _, first, inverse = np.unique(raw.ravel(), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse].reshape(raw.shape).astype(np.int32)


def _borders(labels):
    """Counts of 4-neighbour pixel pairs between different labels: (a, b, count), a != b."""
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()]),
             np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()])]
    p = np.concatenate(pairs, axis=1)
    p = p[:, p[0] != p[1]]
    p = np.concatenate([p, p[::-1]], axis=1)  # both directions
    if p.shape[1] == 0:
        return np.zeros((3, 0), dtype=np.int64)
    uniq, counts = np.unique(p, axis=1, return_counts=True)
    return np.vstack([uniq, counts])


def _merge_small(raw, min_area):
    """Split labels into 4-connected pieces, then merge pieces below ``min_area`` pixels.

    Each small piece joins the neighbour with which it shares the longest border, preferring
    neighbours that are not small themselves; repeated until no small piece has a neighbour.
    """
    from skimage.measure import label as connected

    labels = connected(_relabel(raw), background=-1, connectivity=1).astype(np.int64) - 1
    while True:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[areas == 0] = False
        if not small.any():
            break
        a, b, count = _borders(labels)
        sel = small[a]
        a, b, count = a[sel], b[sel], count[sel]
        if len(a) == 0:
            break
        # Rank candidates: big neighbours first, then longer borders, then lower label.
        order = np.lexsort((b, -count, small[b].astype(int), a))
        a, b = a[order], b[order]
        first = np.ones(len(a), dtype=bool)
        first[1:] = a[1:] != a[:-1]
        src, dst = a[first], b[first]
        # Pieces next to a big cell join it; if every small piece borders only small ones,
        # the smallest joins its best neighbour alone, and the next round goes on.
        ok = ~small[dst]
        if not ok.any():
            ok = src == src[np.argmin(areas[src])]
        mapping = np.arange(len(areas))
        mapping[src[ok]] = dst[ok]
        labels = mapping[labels]
    return _relabel(labels)


def hexagon_grid(height, width, size):
    """Partition an image into pointy-topped hexagons (rows offset by half a hexagon).

    Each pixel belongs to the hexagon that contains its centre (the nearest hexagon centre).
    The lattice is centred on the image, so partial hexagons are alike on opposite edges;
    partial hexagons smaller than a quarter of a full one are merged into a neighbour.

    Parameters
    ----------
    height, width : int
        Image size, pixels.
    size : float
        Hexagon circumradius, pixels (the full hexagon has ``3 * sqrt(3) / 2 * size**2``
        pixels; 22 gives about 1257).

    Returns
    -------
    Cells
        512 x 512 at ``size=22`` gives 229 cells.
    """
    height, width, size = _validate(height, width, size)
    rows, cols = np.indices((height, width), dtype=np.float64)
    x = cols + 0.5 - width / 2.0
    y = rows + 0.5 - height / 2.0
    # Axial coordinates of a pointy-topped lattice, rounded to the nearest hexagon in cube space.
    q = (np.sqrt(3.0) / 3.0 * x - y / 3.0) / size
    r = (2.0 / 3.0 * y) / size
    s = -q - r
    rq, rr, rs = np.round(q), np.round(r), np.round(s)
    dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    rq = np.where(fix_q, -rr - rs, rq)
    rr = np.where(fix_r, -rq - rs, rr)
    raw = (rr.astype(np.int64) + 1_000_000) * 2_000_003 + rq.astype(np.int64) + 1_000_000
    full = 3.0 * np.sqrt(3.0) / 2.0 * size * size
    return Cells(_merge_small(raw, MIN_CELL_FRACTION * full), "hexagon", size)


def square_grid(height, width, size):
    """Partition an image into squares of ``size`` pixels, centred on the image.

    Partial squares at the edges smaller than a quarter of a full one are merged into a
    neighbour.

    Parameters
    ----------
    height, width : int
        Image size, pixels.
    size : int
        Square edge, pixels.

    Returns
    -------
    Cells
    """
    height, width, size = _validate(height, width, size)
    step = max(1, int(round(size)))
    pad_r = (-(-height // step) * step - height) // 2
    pad_c = (-(-width // step) * step - width) // 2
    rows = (np.arange(height) + pad_r) // step
    cols = (np.arange(width) + pad_c) // step
    raw = rows[:, None] * (width + 2) + cols[None, :]
    return Cells(_merge_small(raw, MIN_CELL_FRACTION * step * step), "square", step)
