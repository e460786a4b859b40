"""What a run will cost before it starts: its window, cells and model evaluations, and time.

:func:`plan_run` applies the same rules as the engine (the automatic window of
:func:`~.region.explanation_window_edge`, the automatic cell size of
:func:`~.cells.auto_cell_size`, SHAP's default sample count) to a region known only by its
size, so forms can show the values a run will use. Occlusion's evaluation count depends on
what its pruning keeps; :func:`expected_occlusion_evaluations` grows the same trees on a
stand-in score (the share of the region each rectangle hides), which is how a region score
behaves when the region's own pixels matter most. :func:`seconds_per_evaluation` times the
model on the window. No QGIS, no Qt.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .parameters import by_name

__all__ = ["Plan", "expected_by_depth", "expected_occlusion_evaluations", "format_duration",
           "measured_occlusion_evaluations", "occlusion_profile", "occlusion_shares", "plan_run",
           "region_size", "seconds_per_evaluation"]


@dataclass(frozen=True)
class Plan:
    """The values a run will use, as far as they are known before it starts.

    Attributes
    ----------
    method : str
    window : int
        Window edge, pixels.
    window_auto : bool
        The window was chosen automatically (WINDOW 0).
    cell_size : float or None
        SHAP's cell circumradius, pixels (None for the other methods).
    cell_size_auto : bool
    n_cells : int or None
        SHAP's cells on the window.
    evaluations : int
        Model evaluations: exact for SHAP and RISE, expected for occlusion.
    most : int
        The most evaluations the run can spend (= ``evaluations`` but for occlusion).
    samples_needed : int or None
        SHAP: the fewest coalitions its cells need (``explain.min_samples``) when the
        N_SAMPLES asked is below it (the run will be refused); None otherwise.
    """

    method: str
    window: int
    window_auto: bool
    cell_size: float | None
    cell_size_auto: bool
    n_cells: int | None
    evaluations: int
    most: int
    samples_needed: int | None = None

    def with_evaluations(self, evaluations):
        """This plan with ``evaluations`` expected (e.g. measured for occlusion)."""
        from dataclasses import replace

        return replace(self, evaluations=int(evaluations))

    def seconds(self, per_evaluation):
        """The run's expected seconds at ``per_evaluation`` seconds per model evaluation:
        its evaluations, and for SHAP the estimator's own work on this machine
        (:func:`~.kernel_shap.solve_seconds`; 14-19 % of a default small-region run of the
        sample model, whose small windows make the model fast: docs/defaults.md)."""
        seconds = float(per_evaluation) * self.evaluations
        if self.method == "shap" and self.n_cells:
            from .kernel_shap import solve_seconds

            seconds += solve_seconds(self.n_cells, self.evaluations - 2)
        return seconds

    def text(self):
        """One line for a form: ``"192 x 192 px window (automatic); hexagons of 14 px
        (automatic), 72 cells; 2,194 model evaluations"``."""
        auto = " (automatic)"
        parts = [f"{self.window} x {self.window} px window{auto if self.window_auto else ''}"]
        if self.cell_size is not None:
            parts.append(f"cells of {self.cell_size:g} px{auto if self.cell_size_auto else ''}"
                         f", {self.n_cells:,} cells")
        count = f"{self.evaluations:,} model evaluations"
        if self.most != self.evaluations:
            count = f"about {count} (at most {self.most:,})"
        parts.append(count)
        if self.samples_needed is not None:
            parts.append(f"too few for {self.n_cells:,} cells: N_SAMPLES must be at least "
                         f"{self.samples_needed:,} (or raise the cell size)")
        return "; ".join(parts)


@lru_cache(maxsize=64)
def _cell_count(window, cell_size, shape):
    from .cells import hexagon_grid, square_grid

    grid = hexagon_grid if shape == "hexagon" else square_grid
    return int(grid(int(window), int(window), float(cell_size)).n_cells)


def plan_run(method, params, *, region_pixels, region_extent, fixed_size=None, tile_size=None,
             context=None):
    """The window, cells and evaluations of a run on a region of a given size.

    Parameters
    ----------
    method : {"shap", "rise", "occlusion"}
    params : dict
        Engine parameters by name (``window``, ``hex_size``, ``n_samples``, ...); missing
        ones take their declared defaults.
    region_pixels : float
        The region's area in raster pixels (0 for points).
    region_extent : int
        The larger side of the region's bounding box, pixels.
    fixed_size, tile_size, context
        The model's (``SegmentationModel.describe()``).

    Returns
    -------
    Plan
    """
    from .region import explanation_window_edge

    def value(name):
        got = params.get(name)
        return by_name(name).default if got is None else got

    requested = params.get("window") or None
    window = explanation_window_edge(requested, fixed_size, tile_size, region_extent, context)
    cell_size = n_cells = needed = None
    cell_auto = False
    if method == "shap":
        from .cells import auto_cell_size
        from .explain import default_samples, min_samples

        cell_auto = not params.get("hex_size")
        cell_size = auto_cell_size(region_pixels) if cell_auto else float(params["hex_size"])
        n_cells = _cell_count(window, cell_size, value("cell_shape"))
        n = int(params.get("n_samples") or 0) or default_samples(n_cells)
        least = min_samples(n_cells)
        needed = least if n < least else None
        if n_cells < 60:
            n = min(n, 2 ** n_cells - 2)
        count = most = n + 2
    elif method == "rise":
        count = most = int(value("n_masks")) + 1
    elif method == "occlusion":
        from .occlusion import evaluation_bound

        depth = int(value("max_depth"))
        most = evaluation_bound((window, window), depth)
        side = max(1, min(int(region_extent), window))
        count = expected_occlusion_evaluations(window, depth, side)
    else:
        raise ValueError(f"unknown method {method!r}")
    return Plan(method=method, window=int(window), window_auto=requested is None and
                not fixed_size, cell_size=cell_size, cell_size_auto=cell_auto,
                n_cells=n_cells, evaluations=int(count), most=int(most),
                samples_needed=needed)


#: The share of the stand-in score's rectangles below depth 1 that a real occlusion run is
#: expected to evaluate before anything of the real run is known. Depths 0 and 1 are never
#: pruned; below them a model's pruning is usually stricter than the stand-in's (hiding a
#: small part of a region moves a prediction less than in proportion): on the sample model
#: 0 to 0.85 (the demo's regions and a 60 px square). The middle of that range; once the
#: real trees are sampled (:func:`measured_occlusion_evaluations`) or the run is under way
#: (its progress), measured shares replace it.
OCCLUSION_PRUNING_SHARE = 0.5


def _stand_in_score(window, side):
    """The share of a ``side`` px square region at the centre of the window that each
    rectangle leaves visible: a score for which the region's own pixels are all that
    matters."""
    r0 = (int(window) - int(side)) // 2
    r1 = r0 + int(side)

    def score(rects):
        rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        rows = np.clip(np.minimum(rects[:, 1], r1) - np.maximum(rects[:, 0], r0), 0, None)
        cols = np.clip(np.minimum(rects[:, 3], r1) - np.maximum(rects[:, 2], r0), 0, None)
        return 1.0 - rows * cols / float(side * side)

    return score


@lru_cache(maxsize=64)
def occlusion_profile(window, max_depth, region_side):
    """Evaluations occlusion spends at each depth (0 to ``max_depth``) on a ``window`` px
    square window around a ``region_side`` px square region at its centre, for the stand-in
    score (:func:`_stand_in_score`); depths 0 and 1 are what every run spends."""
    from .occlusion import multiscale_occlusion

    result = multiscale_occlusion(_stand_in_score(window, region_side),
                                  (int(window), int(window)), max_depth=int(max_depth),
                                  batch_size=4096)
    return tuple(float(c) for c in result.evaluations_by_depth)


def expected_occlusion_evaluations(window, max_depth, region_side, shares=None):
    """Evaluations occlusion is expected to spend on a ``window`` px square window around a
    ``region_side`` px square region at its centre.

    Parameters
    ----------
    window, max_depth, region_side : int
    shares : sequence of float, optional
        The share of the stand-in's evaluations (:func:`occlusion_profile`) the run keeps at
        depths 2, 3, ...; the last one also holds for the deeper depths. Default
        :data:`OCCLUSION_PRUNING_SHARE` at every depth below 1.

    Returns
    -------
    int
        Never fewer than the rectangles every run evaluates (depths 0 and 1) nor more
        than :func:`~.occlusion.evaluation_bound`.
    """
    from .occlusion import evaluation_bound

    every_run = sum(occlusion_profile(int(window), int(max_depth), int(region_side))[:2])
    count = sum(expected_by_depth(window, max_depth, region_side, shares))
    most = evaluation_bound((window, window), int(max_depth))
    return int(min(most, max(every_run, round(count))))


def expected_by_depth(window, max_depth, region_side, shares=None):
    """The evaluations expected at each depth: :func:`occlusion_profile` with ``shares``
    (see :func:`expected_occlusion_evaluations`) below depth 1. Without them, what a run
    expects before it starts (its progress rescales as it goes)."""
    profile = occlusion_profile(int(window), int(max_depth), int(region_side))
    shares = list(shares) if shares else [OCCLUSION_PRUNING_SHARE]
    return profile[:2] + tuple(c * shares[min(i, len(shares) - 1)]
                               for i, c in enumerate(profile[2:]))


def occlusion_shares(window, max_depth, region_side, through_depth=1):
    """How much of the stand-in's trees a real occlusion run keeps, from a sample of them.

    The stand-in score's sample (:func:`~.occlusion.sampled_tree_sizes`, ``through_depth``)
    is grown once here; the returned ``shares(real)`` takes the real score's sample (a
    :class:`~.occlusion.TreeSample` grown alike) and returns the real / stand-in ratios at
    depths 2, 3, ...: the ``shares`` of :func:`expected_by_depth` and
    :func:`expected_occlusion_evaluations`.

    A run pays for distinct rectangles, so at the depths the samples evaluated the ratio is
    of the rectangles each sample evaluated there; at the depth they only counted, it is of
    nodes, times how much more (or less) the real sample's nodes shared rectangles at the
    deepest depth it evaluated. A score that keeps few scattered nodes shares fewer of them
    with other trees than the stand-in, whose kept nodes all cover the region; a ratio of
    nodes then undercounts the run.
    """
    from .occlusion import sampled_tree_sizes

    stand_in = sampled_tree_sizes(_stand_in_score(window, region_side),
                                  (int(window), int(window)), max_depth=int(max_depth),
                                  through_depth=through_depth, batch_size=4096)

    def ratio(a, b):
        return a / b if b else 1.0

    def shares(real):
        out, sharing = [], 1.0
        for d in range(2, len(real.nodes)):
            of_nodes = ratio(real.nodes[d], stand_in.nodes[d])
            if d < len(real.new):
                out.append(ratio(real.new[d], stand_in.new[d]))
                sharing = out[-1] / of_nodes if of_nodes else 1.0
            else:
                out.append(of_nodes * sharing)
        return out

    return shares


def measured_occlusion_evaluations(model, job, class_index, params, *, cancel=None):
    """Occlusion's expected evaluations on a job (:class:`~.job.Job`), from a sample of its
    real trees.

    The sample's trees are grown on the real model through depth 2 and their depth-3
    nodes counted (:func:`~.explain.occlusion_tree_sizes`, the same inputs, checks and
    scores as the run), then compared with the stand-in's (:func:`occlusion_shares`).
    Costs the sample's evaluations: about 4 x :data:`~.occlusion.SAMPLE_TREES` plus the
    depth-2 rectangles kept, a few percent of a run.

    Returns
    -------
    (int, int)
        The run's expected evaluations, and the evaluations the sample spent.
    """
    from .explain import occlusion_tree_sizes
    from .region import mask_extent

    params = {k: v for k, v in params.items() if v is not None}
    depth = int(params.get("max_depth") or by_name("max_depth").default)
    side = mask_extent(job.mask)
    window = max(job.mask.shape)
    if depth < 2:
        return expected_occlusion_evaluations(window, depth, side), 0
    real, spent = occlusion_tree_sizes(model, job.image, job.mask, [int(class_index)],
                                       through_depth=2, cancel=cancel, **params)
    shares = occlusion_shares(window, depth, side, through_depth=2)(real)
    return expected_occlusion_evaluations(window, depth, side, shares=shares), int(spent)


def seconds_per_evaluation(model, window, n_channels=1, batch_size=None, *, min_seconds=0.5,
                           max_evaluations=64, cancel=None):
    """Seconds of one model evaluation of a ``window`` px square image through the engine's
    own path (masks composed on the image, the model's output checked, the region scored),
    ``batch_size`` images a model call (None: automatic, as a run does): a short RISE run on
    a random image after a warm-up run, its time per evaluation. Runs of at least
    ``min_seconds`` (and at most ``max_evaluations``), then the fastest; None when
    cancelled."""
    import time

    from .batching import batch_size_for
    from .errors import ExplanationCancelled
    from .explain import explain_region
    from .parameters import by_name

    channels = getattr(model, "n_channels", None) or max(1, int(n_channels or 1))
    edge = int(window)
    batch = batch_size_for(batch_size, edge, edge)
    image = np.random.default_rng(0).standard_normal((edge, edge, channels)).astype(np.float32)
    region = np.zeros((edge, edge), dtype=bool)
    region[edge // 2, edge // 2] = True

    def timed(n_masks):
        started = time.perf_counter()
        explain_region(model, image, region, 0, "rise", n_masks=n_masks,
                       batch_size=batch, cancel=cancel)
        return (time.perf_counter() - started) / (n_masks + 1)

    first = max(batch, by_name("n_masks").minimum)       # the fewest masks a run may take
    try:
        timed(first)                                  # warm-up: onnxruntime allocates here
        n = first
        times = []
        while n <= max_evaluations:
            times.append(timed(n))
            if times[-1] * (n + 1) >= min_seconds / 2 and len(times) >= 2:
                break
            n *= 2
        return float(min(times[-2:]))
    except ExplanationCancelled:
        return None


def format_duration(seconds):
    """``"40 s"``, ``"3 min"``, ``"1 h 20 min"``."""
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60)} min"


def region_size(roi_wkb, geotransform):
    """``(pixels, extent)`` of a region given in the raster's CRS: its area in raster pixels
    and the larger side of its pixel bounding box (what :func:`plan_run` needs)."""
    from .region import pixel_bounds
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    geometry = shapely.from_wkb(roi_wkb)
    dx, dy = geotransform[1], geotransform[5]
    r0, r1, c0, c1 = pixel_bounds(geometry, geotransform)
    return float(geometry.area / abs(dx * dy)), int(max(r1 - r0, c1 - c0))
