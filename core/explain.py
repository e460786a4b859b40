"""Explain a segmentation model's prediction over a region of interest.

The explained quantity is the one of the SHAP-for-segmentation paper: the **region score**,
the mean probability of a class over the region's pixels (a single pixel is a region too).
Several classes can be explained at once from the same model evaluations.

Three methods perturb the image and watch the region score:

``"shap"``
    Kernel SHAP over cells (hexagons by default): a cell's value is its Shapley value, and
    the values add up to ``full_value - base_value`` (base = every cell switched off). The
    per-pixel map gives each pixel its cell's value.
``"rise"``
    RISE: random smooth masks; a pixel's saliency is the mask-weighted mean score. The signed
    map is the saliency minus the mean score over all masks.
``"occlusion"``
    Multi-scale occlusion: rectangles of a quadtree are occluded; a rectangle's importance
    is the unoccluded score minus the occluded score.

Switched-off pixels take the value of a baseline (:mod:`seg_explainer.core.baselines`),
the image's per-band mean by default (the paper's choice for SAR). In every map, positive
values are **excitation** (the pixels push the region towards the class) and negative
values **inhibition**.

Nodata: NaN pixels of the image (any band) are replaced by the per-band mean of the valid
pixels before anything else, the baselines are computed from the valid pixels only, and
nodata pixels are left out of the region score (unless the region holds nothing else).
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .baselines import (STATIC_KINDS, baseline_image, composite, fill_nodata, infill_rects,
                        inpaint_masked)
from .batching import check_cancel

METHODS = ("shap", "rise", "occlusion")
BASELINES = STATIC_KINDS + ("inpaint", "infill")

#: Every parameter of :func:`explain_region` and its default. ``n_samples=None`` means
#: ``2 * M + 2048`` for M cells.
DEFAULTS = {
    "hex_size": 22,
    "cell_shape": "hexagon",
    "n_samples": None,
    "n_masks": 2000,
    "grid_size": 8,
    "p_keep": 0.5,
    "max_depth": 4,
    "n_best": 5,
    "baseline": "mean",
    "baseline_value": None,
    "blur_sigma": 8.0,
    "seed": 0,
    "batch_size": 16,
}
# The parameters each method uses (and records in Explanation.params).
_USED = {
    "shap": ("hex_size", "cell_shape", "n_samples", "baseline", "baseline_value", "blur_sigma",
             "seed", "batch_size"),
    "rise": ("n_masks", "grid_size", "p_keep", "baseline", "baseline_value", "blur_sigma",
             "seed", "batch_size"),
    "occlusion": ("max_depth", "n_best", "baseline", "baseline_value", "blur_sigma",
                  "batch_size"),
}


@dataclass(frozen=True, eq=False)
class Explanation:
    """The result of :func:`explain_region`.

    Attributes
    ----------
    method : {"shap", "rise", "occlusion"}
    classes : tuple of int
        The explained class indices, D of them.
    class_names : tuple of str
        Their names.
    signed : ndarray, shape (H, W), float32
        Contribution of every pixel to the first explained class's region score
        (excitation > 0, inhibition < 0).
    signed_all : ndarray, shape (D, H, W), float32
        The same for every explained class.
    excitation, inhibition : ndarray, shape (H, W), float32
        ``max(signed, 0)`` and ``max(-signed, 0)``.
    cells : tuple of dict
        The explanation's units. SHAP: one per cell, with ``id``, ``polygon`` (shapely, pixel
        coordinates: x = column, y = row), ``value`` (ndarray [D]), ``standard_error``
        (ndarray [D]), ``area`` (pixels); they tile the image. Occlusion: one per leaf of the
        ``n_best`` offset trees averaged into the map (leaves of different offsets
        overlap), with ``id``, ``polygon`` (the rectangle), ``value`` (importance [D]),
        ``standard_error`` None, ``depth``, ``offset`` ((rows, cols) grid shift), ``area``.
        RISE: empty (its masks have no cells).
    base_value : ndarray, shape (D,)
        SHAP and occlusion: region score with the whole image switched off (every cell, or
        the root rectangle, replaced by the baseline). RISE: mean region score over the
        masks (the level its signed map is measured from).
    full_value : ndarray, shape (D,)
        Region score of the unperturbed image.
    prediction : ndarray, shape (H, W, K), float32
        The model's probabilities on the unperturbed image.
    region_mask : ndarray of bool, shape (H, W)
        The pixels whose mean probability is explained (nodata pixels removed).
    n_evaluations : int
        Images the model was run on.
    seconds : float
        Wall time of the whole run.
    params : dict
        Every parameter the method used, defaults filled in (``n_samples`` resolved).
    details : dict
        Method-specific facts: SHAP ``n_cells`` and ``exact``; occlusion
        ``n_naive_evaluations``, ``n_offsets``, ``best_offsets``; RISE ``mean_score``.
    """

    method: str
    classes: tuple
    class_names: tuple
    signed: np.ndarray
    signed_all: np.ndarray
    excitation: np.ndarray
    inhibition: np.ndarray
    cells: tuple
    base_value: object
    full_value: np.ndarray
    prediction: np.ndarray
    region_mask: np.ndarray
    n_evaluations: int
    seconds: float
    params: dict
    details: dict = field(default_factory=dict)

    @property
    def contribution_total(self):
        """What the explanation's parts add up to, per explained class, ndarray [D].

        SHAP: the sum of the cell values, equal to ``full_value - base_value`` (efficiency).
        Occlusion: the summed importance of the leaves of the best offset tree (occlusions
        are not additive, so this may differ from ``full_value - base_value``). RISE: its
        saliency has no additive decomposition; ``full_value - base_value`` is given.
        """
        if self.method == "shap":
            return np.sum([c["value"] for c in self.cells], axis=0)
        if self.method == "occlusion" and self.cells:
            best = self.cells[0]["offset"]
            return np.sum([c["value"] for c in self.cells if c["offset"] == best], axis=0)
        return np.asarray(self.full_value) - np.asarray(self.base_value)


# --------------------------------------------------------------------------- validation


def _check_params(method, params):
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"explain_region() got unexpected parameter(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(DEFAULTS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    p = dict(DEFAULTS, **params)

    def positive_int(name, minimum=1):
        v = p[name]
        ok = (not isinstance(v, bool) and isinstance(v, (int, float, np.number))
              and np.isfinite(v) and v == int(v) and v >= minimum)
        if not ok:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
        p[name] = int(v)

    for name in ("n_masks", "grid_size", "max_depth", "n_best", "batch_size"):
        positive_int(name)
    positive_int("seed", 0)
    if p["n_samples"] is not None:
        positive_int("n_samples", 0)
    if not (isinstance(p["hex_size"], (int, float, np.number)) and np.isfinite(p["hex_size"])
            and p["hex_size"] >= 1):
        raise ValueError(f"hex_size must be a number of pixels >= 1, got {p['hex_size']!r}")
    if p["cell_shape"] not in ("hexagon", "square"):
        raise ValueError(f"cell_shape must be 'hexagon' or 'square', got {p['cell_shape']!r}")
    if not (isinstance(p["p_keep"], (int, float, np.number)) and 0 < p["p_keep"] <= 1):
        raise ValueError(f"p_keep must be a fraction in (0, 1], got {p['p_keep']!r}")
    if p["baseline"] not in BASELINES:
        raise ValueError(f"unknown baseline {p['baseline']!r}; choose one of "
                         f"{', '.join(BASELINES)}")
    if p["baseline"] == "infill" and method != "occlusion":
        raise ValueError("baseline 'infill' fills rectangles: it works with method "
                         "'occlusion' only; use 'mean', 'blur' or 'inpaint'")
    if p["baseline"] == "inpaint" and method == "rise":
        raise ValueError("baseline 'inpaint' needs on/off masks; RISE masks are soft: use "
                         "'mean', 'zero', 'constant' or 'blur' with RISE")
    if p["baseline"] == "constant" and p["baseline_value"] is None:
        raise ValueError("baseline 'constant' needs baseline_value")
    if not (np.isfinite(p["blur_sigma"]) and p["blur_sigma"] > 0):
        raise ValueError(f"blur_sigma must be a positive number of pixels, got "
                         f"{p['blur_sigma']!r}")
    return p


def _check_inputs(model, image, region_mask, classes):
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"image must be [H, W, C] (bands last), got shape {image.shape}")
    region = np.asarray(region_mask, dtype=bool)
    if region.shape != image.shape[:2]:
        raise ValueError(f"region_mask has shape {region.shape}, the image "
                         f"{image.shape[:2]}: they must match")
    if not region.any():
        raise ValueError("the region of interest is empty: it covers no pixel of the image")
    k = len(model.class_names)
    cls = [classes] if np.isscalar(classes) else list(classes)
    if not cls:
        raise ValueError("no class to explain: give a class index or a list of them")
    for c in cls:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < k:
            raise ValueError(f"class {c!r} does not exist: the model has classes 0..{k - 1} "
                             f"({', '.join(model.class_names)})")
    if len(set(cls)) != len(cls):
        raise ValueError(f"class list {cls} repeats a class")
    return image, region, tuple(int(c) for c in cls)


# --------------------------------------------------------------------------- engine


class _Monotone:
    """Forwards progress fractions, never backwards, and remembers the last one."""

    def __init__(self, progress):
        self.progress = progress
        self.last = 0.0

    def __call__(self, fraction):
        f = min(1.0, max(self.last, float(fraction)))
        self.last = f
        if self.progress is not None:
            self.progress(f)


class _Scorer:
    """Runs the model on perturbed images and reduces them to region scores [n, D]."""

    def __init__(self, model, image, region, classes, batch_size):
        self.model = model
        self.image = image
        self.idx = np.flatnonzero(region.ravel())
        self.classes = np.asarray(classes)
        self.batch_size = batch_size
        self.n_evaluations = 0
        self.prediction = None

    def __call__(self, images, keep_all=None):
        probs = np.asarray(self.model.predict(images, batch_size=self.batch_size),
                           dtype=np.float32)
        n, h, w = images.shape[:3]
        if probs.ndim != 4 or probs.shape[:3] != (n, h, w):
            raise ValueError(f"model.predict returned shape {probs.shape} for images of "
                             f"shape {images.shape}; expected [N, H, W, K]")
        self.n_evaluations += n
        if keep_all is not None and self.prediction is None and keep_all.any():
            self.prediction = probs[int(np.argmax(keep_all))].copy()
        flat = probs.reshape(n, h * w, -1)[:, self.idx][:, :, self.classes]
        return flat.mean(axis=1, dtype=np.float64)

    def unperturbed(self, cancel):
        if self.prediction is None:
            check_cancel(cancel)
            self(self.image[None], keep_all=np.ones(1, bool))
        return self.prediction


def explain_region(model, image, region_mask, classes, method, *, progress=None, cancel=None,
                   **params):
    """Explain the mean class probability over a region of interest.

    Parameters
    ----------
    model : object
        Anything with ``predict(images, batch_size)`` mapping float32 ``[N, H, W, C]`` raw
        images to ``[N, H, W, K]`` probabilities, and ``class_names`` (K names); e.g. a
        :class:`~seg_explainer.core.model.SegmentationModel`.
    image : ndarray, shape (H, W, C) (or (H, W) for one band)
        Raw raster values; NaN = nodata (see the module notes).
    region_mask : ndarray of bool, shape (H, W)
        The region of interest (one pixel or more).
    classes : int or sequence of int
        Class index (or D indices) to explain; all from the same evaluations.
    method : {"shap", "rise", "occlusion"}
    progress : callable(float), optional
        Called after every batch of model evaluations with the fraction done (monotone,
        ending at 1).
    cancel : callable() -> bool, optional
        Checked before every batch; True raises ``ExplanationCancelled``.
    **params
        hex_size : float, default 22
            SHAP cell size: hexagon circumradius or square edge, pixels.
        cell_shape : {"hexagon", "square"}, default "hexagon"
        n_samples : int, optional
            SHAP coalitions to evaluate besides the empty and full ones; default
            ``2 * M + 2048`` for M cells (all coalitions, exact, when that is more than
            ``2**M - 2``).
        n_masks : int, default 2000
            RISE masks.
        grid_size : int, default 8
            RISE mask grid (cells per side before upsampling).
        p_keep : float, default 0.5
            RISE probability of keeping a grid cell.
        max_depth : int, default 4
            Occlusion quadtree depth.
        n_best : int, default 5
            Occlusion: offset heatmaps averaged.
        baseline : {"mean", "zero", "constant", "blur", "inpaint", "infill"}, default "mean"
            What switched-off pixels become; "infill" (occlusion only) fills a rectangle with
            the mean of the pixels bordering it; "inpaint" (not RISE) is biharmonic and slow.
        baseline_value : float or sequence of float
            For baseline "constant" (raw units, one value or one per band).
        blur_sigma : float, default 8
            For baseline "blur", pixels.
        seed : int, default 0
            Random seed (SHAP, RISE): the result is a function of the seed.
        batch_size : int, default 16
            Images per model call; progress and cancellation act between batches.

    Returns
    -------
    Explanation

    Raises
    ------
    TypeError
        An unknown parameter name.
    ValueError
        An unknown method, class or baseline, an invalid parameter value, an empty region.
    ExplanationCancelled
        When ``cancel()`` returned True.
    """
    start = time.perf_counter()
    p = _check_params(method, params)
    image, region, classes = _check_inputs(model, image, region_mask, classes)
    valid = np.all(np.isfinite(image), axis=2)
    if (region & valid).any():
        region = region & valid
    filled = fill_nodata(image, valid)
    scorer = _Scorer(model, filled, region, classes, p["batch_size"])
    prog = _Monotone(progress)
    if p["baseline"] in STATIC_KINDS:
        base_img = baseline_image(filled, p["baseline"], value=p["baseline_value"],
                                  sigma=p["blur_sigma"], valid_mask=valid)
    else:
        base_img = None

    def images_for(masks):
        if base_img is not None:
            return composite(filled, base_img, masks)
        return np.stack([composite(filled, inpaint_masked(filled, m), m[None])[0]
                         for m in masks])

    run = {"shap": _run_shap, "rise": _run_rise, "occlusion": _run_occlusion}[method]
    out = run(scorer, filled, p, images_for, prog, cancel)
    prediction = scorer.unperturbed(cancel)
    full_value = prediction.reshape(-1, prediction.shape[-1])[scorer.idx][:, list(classes)]
    full_value = full_value.mean(axis=0, dtype=np.float64)
    prog(1.0)
    signed_all = np.asarray(out["signed"], dtype=np.float32).reshape(len(classes),
                                                                      *region.shape)
    signed = signed_all[0]
    params_used = {k: p[k] for k in _USED[method]}
    params_used["method"] = method
    return Explanation(
        method=method, classes=classes,
        class_names=tuple(model.class_names[c] for c in classes),
        signed=signed, signed_all=signed_all, excitation=np.maximum(signed, 0),
        inhibition=np.maximum(-signed, 0), cells=tuple(out["cells"]),
        base_value=out["base_value"], full_value=full_value, prediction=prediction,
        region_mask=region, n_evaluations=scorer.n_evaluations,
        seconds=time.perf_counter() - start, params=params_used, details=out["details"])


def _as_rows(values):
    v = np.asarray(values, dtype=np.float64)
    return v[:, None] if v.ndim == 1 else v


def _run_shap(scorer, image, p, images_for, prog, cancel):
    from .cells import hexagon_grid, square_grid
    from .kernel_shap import kernel_shap

    grid = hexagon_grid if p["cell_shape"] == "hexagon" else square_grid
    cells = grid(*image.shape[:2], p["hex_size"])
    m = cells.n_cells
    if p["n_samples"] is None:
        p["n_samples"] = 2 * m + 2048

    def value_fn(coalitions):
        z = np.asarray(coalitions, dtype=bool)
        return scorer(images_for(z[:, cells.labels]), keep_all=z.all(axis=1))

    res = kernel_shap(value_fn, m, p["n_samples"], seed=p["seed"], batch_size=p["batch_size"],
                      progress=prog, cancel=cancel)
    values, se = _as_rows(res.values), _as_rows(res.standard_errors)
    polygons = cells.polygons()
    areas = cells.areas
    table = [{"id": i, "polygon": polygons[i], "value": values[i].copy(),
              "standard_error": se[i].copy(), "area": int(areas[i])} for i in range(m)]
    return {"signed": cells.paint(values), "cells": table,
            "base_value": np.atleast_1d(np.asarray(res.base_value, float)),
            "details": {"n_cells": m, "exact": bool(res.exact)}}


def _run_rise(scorer, image, p, images_for, prog, cancel):
    from .rise import rise

    def score_fn(masks):
        masks = np.asarray(masks, dtype=np.float32)
        return scorer(images_for(masks), keep_all=np.all(masks >= 1.0, axis=(1, 2)))

    res = rise(score_fn, image.shape[:2], p["n_masks"], grid_size=p["grid_size"],
               p_keep=p["p_keep"], seed=p["seed"], batch_size=p["batch_size"], progress=prog,
               cancel=cancel)
    mean = np.atleast_1d(np.asarray(res.mean_score, float))
    return {"signed": res.signed, "cells": [], "base_value": mean,
            "details": {"mean_score": mean}}


def _run_occlusion(scorer, image, p, images_for, prog, cancel):
    import shapely

    from .occlusion import multiscale_occlusion

    h, w = image.shape[:2]
    everything_occluded = []     # the root rectangle's score: the base value

    def score_fn(rects):
        rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        keep_all = (rects[:, 1] <= rects[:, 0]) | (rects[:, 3] <= rects[:, 2])
        if p["baseline"] == "infill":
            scores = scorer(infill_rects(image, rects), keep_all=keep_all)
        else:
            masks = np.ones((len(rects), h, w), dtype=bool)
            for i, (r0, r1, c0, c1) in enumerate(rects):
                masks[i, max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = False
            scores = scorer(images_for(masks), keep_all=keep_all)
        whole = np.all(rects == (0, h, 0, w), axis=1)
        if whole.any() and not everything_occluded:
            everything_occluded.append(np.atleast_1d(scores[int(np.argmax(whole))]).copy())
        return scores

    res = multiscale_occlusion(score_fn, (h, w), max_depth=p["max_depth"], n_best=p["n_best"],
                               batch_size=p["batch_size"], progress=prog, cancel=cancel)
    table = []
    for i, leaf in enumerate(res.leaves):
        r0, r1, c0, c1 = (int(v) for v in leaf.rect)
        table.append({"id": i, "polygon": shapely.box(c0, r0, c1, r1),
                      "value": np.atleast_1d(np.asarray(leaf.importance, float)),
                      "standard_error": None, "depth": int(leaf.depth),
                      "offset": tuple(int(v) for v in leaf.offset),
                      "area": (r1 - r0) * (c1 - c0)})
    base = everything_occluded[0] if everything_occluded else None
    return {"signed": res.heatmap, "cells": table, "base_value": base,
            "details": {"n_naive_evaluations": int(res.n_naive_evaluations),
                        "n_offsets": int(res.n_offsets),
                        "best_offsets": [tuple(int(v) for v in o) for o in res.best_offsets]}}
