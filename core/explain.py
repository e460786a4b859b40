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

Receptive-field cropping (``crop="auto"``): the prediction of a fully convolutional model
over a small region depends only on a neighbourhood of it. The engine then looks for the
smallest window around the region whose prediction over the region matches the full
window's within ``crop_tolerance`` (see :func:`find_crop`), and runs every masked
evaluation on that crop only. Cells, masks and rectangles stay defined on the full window
(so are the nodata fill and the baseline image, so values are comparable with an uncropped
run); the parts outside the crop cannot change the region score, so SHAP cells wholly
outside it are dummy players (exactly 0), occluded rectangles wholly outside it have
exactly 0 importance and cost no evaluation, and RISE's masks are unchanged (the crop only
changes where the model is run).
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .baselines import (STATIC_KINDS, baseline_image, composite, fill_nodata, infill_rects,
                        inpaint_masked, screen_values, screening_message)
from .batching import Staged, batch_size_for, check_cancel
from .checked_model import checked
from .errors import InputError, InputWarning, ModelError
from .parameters import EXPLAIN_METHODS, PARAMETERS, by_name, check_parameters, defaults

METHODS = EXPLAIN_METHODS
#: Parameters every method uses (cropping).
_CROP_PARAMS = ("crop", "crop_tolerance", "crop_multiple")
#: The keywords :func:`explain_region` accepts, in declaration order (:mod:`.parameters`).
_ACCEPTED = tuple(p.name for p in PARAMETERS
                  if set(p.methods) & set(METHODS) and p.name not in ("window", "n_threads"))
#: Every parameter of :func:`explain_region` and its default. ``n_samples=None`` means
#: ``2 * M + 2048`` for M cells. Derived from :mod:`.parameters`.
DEFAULTS = defaults(_ACCEPTED)
# The parameters each method uses (and records in Explanation.params).
_USED = {m: tuple(n for n in _ACCEPTED if m in by_name(n).methods and n not in _CROP_PARAMS)
         for m in METHODS}


@dataclass(frozen=True, eq=False)
class Cell:
    """One unit of an explanation: a SHAP cell or an occlusion quadtree leaf.

    Attributes
    ----------
    id : int
    polygon : shapely.Polygon
        Pixel coordinates of the window: x = column, y = row.
    value : ndarray, shape (D,)
        Contribution (SHAP value, or occlusion importance) per explained class.
    standard_error : ndarray, shape (D,), or None
        SHAP's standard error; None for occlusion.
    area : int
        Pixels.
    depth : int or None
        Occlusion: the leaf's quadtree depth.
    offset : tuple of int or None
        Occlusion: ``(rows, cols)`` grid shift of the leaf's tree.

    ``cell["value"]`` is ``cell.value`` (and so on), for scripts written when cells were
    dicts.
    """

    id: int
    polygon: object
    value: np.ndarray
    standard_error: object
    area: int
    depth: object = None
    offset: object = None

    def __getitem__(self, name):
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


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
    cells : tuple of Cell
        The explanation's units. SHAP: one per cell; they tile the image. Occlusion: one per
        leaf of the ``n_best`` offset trees averaged into the map (leaves of different
        offsets overlap), with ``depth`` and ``offset``. RISE: empty (its masks have no
        cells).
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
        Every parameter the method used, defaults filled in (``n_samples`` resolved). With
        ``crop="auto"`` also ``crop``, ``crop_tolerance``, ``crop_multiple`` and
        ``crop_window``, the crop used (``[row0, row1, col0, col1]``, half-open pixels of
        the image) or None when the whole image was used.
    details : dict
        Method-specific facts: SHAP ``n_cells``, ``n_players`` (cells in the coalitions:
        all of them, or those meeting the crop) and ``exact``; occlusion
        ``n_naive_evaluations``, ``n_offsets``, ``best_offsets``; RISE ``mean_score``. With
        ``crop="auto"``, ``crop``: the search's record (see :func:`find_crop`).
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
            return np.sum([c.value for c in self.cells], axis=0)
        if self.method == "occlusion" and self.cells:
            best = self.cells[0].offset
            return np.sum([c.value for c in self.cells if c.offset == best], axis=0)
        return np.asarray(self.full_value) - np.asarray(self.base_value)


# --------------------------------------------------------------------------- validation


def _check_params(method, params):
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    try:
        p = check_parameters(_ACCEPTED, params)
    except TypeError as exc:
        raise TypeError(f"explain_region() got {exc}") from None
    if p["baseline"] == "infill" and method != "occlusion":
        raise InputError("baseline 'infill' fills rectangles: it works with method "
                         "'occlusion' only; use 'mean', 'blur' or 'inpaint'")
    if p["baseline"] == "inpaint" and method == "rise":
        raise InputError("baseline 'inpaint' needs on/off masks; RISE masks are soft: use "
                         "'mean', 'zero', 'constant' or 'blur' with RISE")
    if p["baseline"] == "constant" and p["baseline_value"] is None:
        raise InputError("baseline 'constant' needs baseline_value")
    return p


def _check_sizes(method, p, shape):
    """Refuse parameters that cannot be meaningful on an image of ``shape`` (H, W)."""
    h, w = shape
    if method == "rise" and p["grid_size"] > min(h, w):
        raise InputError(
            f"GRID_SIZE: a {p['grid_size']} x {p['grid_size']} mask grid on a {h} x {w} px "
            f"window makes grid cells smaller than a pixel. Use GRID_SIZE {min(h, w)} or less "
            "(8 is the usual), or raise WINDOW.")


def default_samples(n_players):
    """SHAP's coalitions for ``n_players`` cells when N_SAMPLES is 0: ``2 M + 2048``."""
    return 2 * int(n_players) + 2048


def min_samples(n_players):
    """The fewest SHAP coalitions that determine one value per cell: ``M + 2`` complementary
    pairs (``2 M + 4`` coalitions), or every coalition when that is fewer. With fewer pairs
    Kernel SHAP's regression has more unknowns than equations: its values are then a
    penalised guess pulled toward an equal share, and their standard errors miss that bias
    by orders of magnitude (coverage of +-1.96 SE 4-10 % at 19-229 cells; docs/benchmarks.md)."""
    m = int(n_players)
    return min(2 * m + 4, 2 ** min(m, 62) - 2)


def _check_samples(n_samples, n_players):
    """Refuse a SHAP sample count too small to determine one value per cell."""
    needed = min_samples(n_players)
    if n_samples < needed:
        raise InputError(
            f"N_SAMPLES: {n_samples} coalition(s) cannot determine the values of "
            f"{n_players} cells; at least {needed} are needed (0 = automatic: "
            f"{default_samples(n_players)}). Raise N_SAMPLES, or raise HEX_SIZE for fewer cells.")


def _check_inputs(model, image, region_mask, classes):
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or min(image.shape) < 1:
        raise InputError(f"image must be [H, W, C] (bands last), got shape {image.shape}")
    region = np.asarray(region_mask, dtype=bool)
    if region.shape != image.shape[:2]:
        raise InputError(f"region_mask has shape {region.shape}, the image "
                         f"{image.shape[:2]}: they must match")
    if not region.any():
        raise InputError("the region of interest is empty: it covers no pixel of the image")
    k = len(model.class_names)
    cls = [classes] if np.isscalar(classes) else list(classes)
    if not cls:
        raise InputError("no class to explain: give a class index or a list of them")
    for c in cls:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < k:
            raise InputError(f"class {c!r} does not exist: the model has classes 0..{k - 1} "
                             f"({', '.join(model.class_names)})")
    if len(set(cls)) != len(cls):
        raise InputError(f"class list {cls} repeats a class")
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

    def prepare(self, images):
        """The model's input for ``images``: the model's own ``prepare_images`` when it has
        one (the work before its call, which can run ahead: see ``batching.Staged``), else
        the images."""
        prepare = getattr(self.model, "prepare_images", None)
        return images if prepare is None else prepare(images)

    def __call__(self, images, keep_all=None):
        n, h, w = images.shape[:3]
        if keep_all is not None and self.prediction is None and keep_all.any():
            # the unperturbed image is in this batch: its whole prediction is kept
            probs = np.asarray(self.model.predict(images, batch_size=self.batch_size),
                               dtype=np.float32)
            if probs.ndim != 4 or probs.shape[:3] != (n, h, w):
                raise ModelError(f"model.predict returned shape {probs.shape} for images of "
                                 f"shape {images.shape}; expected [N, H, W, K]")
            self.prediction = probs[int(np.argmax(keep_all))].copy()
            picked = probs.reshape(n, h * w, -1)[:, self.idx]
        else:
            # only the region's pixels are activated, checked and reduced
            probs = np.asarray(self.model.predict_pixels(images, self.idx,
                                                         batch_size=self.batch_size),
                               dtype=np.float32)
            if probs.ndim != 3 or probs.shape[:2] != (n, len(self.idx)):
                raise ModelError(f"model.predict returned shape {probs.shape} for images of "
                                 f"shape {images.shape}; expected [N, H, W, K]")
            picked = probs
        self.n_evaluations += n
        # the classes asked for, C-contiguous whatever the model's memory layout: the mean adds
        # the pixels in the same order on both paths, and the scores are equal bit for bit
        return np.ascontiguousarray(picked[:, :, self.classes]).mean(axis=1, dtype=np.float64)

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
        :class:`~seg_explainer.core.model.SegmentationModel`. Every prediction is checked
        (:mod:`.checked_model`): NaN, infinity or values that are not probabilities stop
        the run with a ``ModelError``.
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
        hex_size : float, optional
            SHAP cell size: hexagon circumradius or square edge, pixels; default
            automatic, so the region spans several cells
            (:func:`~.cells.auto_cell_size`: 6 to the paper's 22 px).
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
        batch_size : int, optional
            Images per model call; progress and cancellation act between batches. None
            (the default): automatic, about 200,000 pixels a call
            (:func:`~.batching.batch_size_for` the images the model sees: the crop's with
            ``crop``). The result records the number used.
        crop : {None, "auto"}, default None
            None runs every evaluation on the whole image. "auto" first finds the smallest
            crop of the image around the region whose prediction over the region matches
            the whole image's within ``crop_tolerance`` (:func:`find_crop`), then runs the
            masked evaluations on that crop only; everything else (cells, masks,
            rectangles, nodata fill, baseline image) stays defined on the whole image.
            SHAP cells wholly outside the crop are dummy players: they are left out of the
            coalitions and get exactly 0 (cells partly inside are kept); occlusion
            rectangles wholly outside it get exactly 0 without an evaluation; RISE's masks
            are unchanged. For a model whose prediction over the region depends only on the
            crop (a fully convolutional model with a receptive field inside it) the result
            equals the uncropped one up to float rounding, at a fraction of the cost. No
            crop is used (the run is the uncropped one) when none smaller than the image
            passes the check, with a model of fixed input size, or with baseline
            "inpaint" (it depends on pixels outside any crop); ``details["crop"]`` says
            which crop was used and why.
        crop_tolerance : float, default 1e-6
            Largest accepted difference (probability units) between a candidate crop's and
            the whole image's prediction: per-pixel probabilities of every class over the
            region, and the region score, on the check images.
        crop_multiple : int, default 32
            Crop edges lie on multiples of this many pixels from the image's top-left
            corner (or on the image's edges), so that a model's pooling grid stays aligned:
            use the model's total stride (32 for a 5-level U-Net; 1 for a model without
            striding).

    Returns
    -------
    Explanation

    Raises
    ------
    TypeError
        An unknown parameter name.
    InputError
        (a ValueError) An unknown method, class or baseline, an invalid parameter value, an
        empty region.
    ModelError
        The model returned NaN, infinity or values that are not probabilities.
    ExplanationCancelled
        When ``cancel()`` returned True.
    """
    start = time.perf_counter()
    s = _prepare(model, image, region_mask, method, classes, params, cancel)
    p, region, classes, scorer = s.p, s.region, s.classes, s.scorer
    prog = _Monotone(progress)
    run = {"shap": _run_shap, "rise": _run_rise, "occlusion": _run_occlusion}[method]
    out = run(scorer, s.image, p, s.images_for, prog, cancel, s.win, region)
    prediction = s.full_prediction if s.full_prediction is not None else \
        scorer.unperturbed(cancel)
    full_value = prediction.reshape(-1, prediction.shape[-1])[np.flatnonzero(region.ravel())]
    full_value = full_value[:, list(classes)].mean(axis=0, dtype=np.float64)
    prog(1.0)
    signed_all = np.asarray(out["signed"], dtype=np.float32).reshape(len(classes),
                                                                      *region.shape)
    signed = signed_all[0]
    params_used = {k: p[k] for k in _USED[method]}
    params_used["method"] = method
    details = out["details"]
    if s.crop_record is not None:
        params_used.update({k: p[k] for k in _CROP_PARAMS})
        params_used["crop_window"] = s.crop_record["window"]
        details["crop"] = s.crop_record
    return Explanation(
        method=method, classes=classes,
        class_names=tuple(s.model.class_names[c] for c in classes),
        signed=signed, signed_all=signed_all, excitation=np.maximum(signed, 0),
        inhibition=np.maximum(-signed, 0), cells=tuple(out["cells"]),
        base_value=out["base_value"], full_value=full_value, prediction=prediction,
        region_mask=region, n_evaluations=scorer.n_evaluations,
        seconds=time.perf_counter() - start, params=params_used, details=details)


@dataclass
class _Prepared:
    """A run's checked inputs and its scorer: what every method starts from."""

    model: object
    p: dict
    image: np.ndarray          # nodata filled
    region: np.ndarray
    classes: tuple
    scorer: _Scorer
    images_for: object         # masks on the frame -> images on the frame
    win: tuple                 # the frame (the crop, or the whole image)
    crop_record: dict = None
    full_prediction: np.ndarray = None


def _prepare(model, image, region_mask, method, classes, params, cancel):
    model = checked(model)      # NaN or non-probabilities stop the run with the fix
    p = _check_params(method, params)
    image, region, classes = _check_inputs(model, image, region_mask, classes)
    image, n_non_finite, n_absurd = screen_values(image, keep=np.isnan(image))
    if n_non_finite or n_absurd:
        warnings.warn(screening_message(n_non_finite, n_absurd), InputWarning, stacklevel=2)
        image = image.astype(np.float32)
    if method == "shap" and p["hex_size"] is None:
        from .cells import auto_cell_size

        p["hex_size"] = auto_cell_size(np.count_nonzero(region))
    _check_sizes(method, p, region.shape)
    empty = [c for c in range(image.shape[2]) if not np.isfinite(image[..., c]).any()]
    if empty and len(empty) < image.shape[2]:
        raise InputError(f"image: channel(s) {empty} (0-based) hold only nodata (NaN), so the "
                         "model would see no data in them; give bands with data in the window.")
    valid = np.all(np.isfinite(image), axis=2)
    if (region & valid).any():
        region = region & valid
    filled = fill_nodata(image, valid)
    h, w = region.shape
    if p["baseline"] in STATIC_KINDS:
        base_img = baseline_image(filled, p["baseline"], value=p["baseline_value"],
                                  sigma=p["blur_sigma"], valid_mask=valid)
    else:
        base_img = None

    crop_record, full_prediction, n_search = None, None, 0
    win = (0, h, 0, w)
    if p["crop"] == "auto":
        crop_record, full_prediction = _auto_crop(model, filled, base_img, region, classes, p,
                                                  cancel)
        n_search = crop_record["n_evaluations"]
        if crop_record["window"] is not None:
            win = tuple(crop_record["window"])
    # automatic (None): for the images the model sees from now on, the crop's
    p["batch_size"] = batch_size_for(p["batch_size"], win[1] - win[0], win[3] - win[2])
    frame = (slice(win[0], win[1]), slice(win[2], win[3]))
    image_f = filled[frame]
    base_f = base_img[frame] if base_img is not None else None
    scorer = _Scorer(model, image_f, region[frame], classes, p["batch_size"])
    scorer.n_evaluations = n_search

    def images_for(masks):
        """Masks on the frame (the crop, or the whole image) -> images on the frame."""
        if base_f is not None:
            return composite(image_f, base_f, masks)
        # "inpaint" is never cropped: the frame is the whole image
        return np.stack([composite(filled, inpaint_masked(filled, m), m[None])[0]
                         for m in masks])

    return _Prepared(model, p, filled, region, classes, scorer, images_for, win, crop_record,
                     full_prediction)


def occlusion_tree_sizes(model, image, region_mask, classes, *, through_depth=2, cancel=None,
                         **params):
    """A sample of the occlusion trees ``explain_region(..., "occlusion", **params)``
    grows: the same inputs, checks and scores, the sample's offsets
    grown through ``through_depth`` (:func:`~.occlusion.sampled_tree_sizes`); for estimating
    a run's cost before it starts (:func:`~.estimate.measured_occlusion_evaluations`).

    Returns
    -------
    (TreeSample, int)
        The sample (:class:`~.occlusion.TreeSample`), and the model evaluations spent (the
        checks before it included).
    """
    from .occlusion import sampled_tree_sizes

    s = _prepare(model, image, region_mask, "occlusion", classes, params, cancel)
    score_fn, _ = _occlusion_scores(s.scorer, s.image, s.p, s.images_for, s.win)
    sample = sampled_tree_sizes(score_fn, s.image.shape[:2], max_depth=s.p["max_depth"],
                                through_depth=through_depth, batch_size=s.p["batch_size"],
                                cancel=cancel)
    return sample, s.scorer.n_evaluations


# --------------------------------------------------------------------------- cropping

_CHECK_BLOCK = 32      # block size of the random half-masked check image, pixels
_FIRST_MARGIN = 16     # first margin tried around the region, pixels (rounded up)


def check_images(image, baseline, seed=0):
    """The images a crop is checked on: the image, all switched off, half switched off.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        No NaN.
    baseline : ndarray, shape (H, W, C)
        What switched-off pixels become.
    seed : int
        Seed of the half mask (random 32 x 32 pixel blocks, each kept with probability 1/2).

    Returns
    -------
    ndarray, shape (3, H, W, C), float32

    Notes
    -----
    The unperturbed image alone is a weak check: where the model is confident its
    probabilities saturate and hide what lies outside the crop. Switched-off images are
    what the explanation evaluates, and there the region is rarely saturated.
    """
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    n_r, n_c = -(-h // _CHECK_BLOCK), -(-w // _CHECK_BLOCK)
    keep = np.repeat(np.repeat(rng.random((n_r, n_c)) < 0.5, _CHECK_BLOCK, 0),
                     _CHECK_BLOCK, 1)[:h, :w]
    half = np.where(keep[..., None], image, baseline)
    return np.stack([image, np.broadcast_to(baseline, image.shape), half]).astype(np.float32)


def find_crop(predict, images, region, classes, *, tolerance=1e-6, multiple=32, cancel=None):
    """The smallest crop around a region whose prediction over it matches the whole image's.

    Candidates are the region's bounding box grown by a margin on every side, with edges
    moved outwards onto multiples of ``multiple`` pixels from the image's top-left corner
    and clipped to the image (so a crop is centred on the region but for the snapping and
    the image's edges). The margin doubles from 16 pixels (rounded up to ``multiple``) until
    a candidate passes (or reaches the whole image), then the smallest passing margin is
    found by bisection in steps of ``multiple``. A candidate passes when, on every check
    image, the largest absolute difference between its and the whole image's prediction
    over the region - per-pixel probabilities of every class, and the region score of every
    class in ``classes`` - is at most ``tolerance``. The whole image costs one evaluation
    per check image; a candidate is checked one image at a time and rejected at the first
    that fails (the image that failed last is tried first), so a passing candidate costs
    one evaluation of the crop per check image and a failing one usually a single one.

    Parameters
    ----------
    predict : callable
        ``predict(images)`` maps float32 ``[N, h, w, C]`` to probabilities ``[N, h, w, K]``
        for any crop size it is given.
    images : ndarray, shape (N, H, W, C)
        The check images (e.g. :func:`check_images`).
    region : ndarray of bool, shape (H, W)
        Not empty.
    classes : sequence of int
    tolerance : float
        Probability units.
    multiple : int
        Crop edges snap to multiples of this (pixels).
    cancel : callable() -> bool, optional
        Checked before every candidate.

    Returns
    -------
    dict
        ``window``: ``[row0, row1, col0, col1]`` of the crop, or None when no crop smaller
        than the image passed; ``shape``: the crop's (or the image's) ``[height, width]``;
        ``margin`` (pixels, None without a crop); ``max_difference`` of the chosen crop
        (0.0 for the whole image); ``candidates``: every candidate checked, in order, with
        its ``window``, ``max_difference`` (over the check images it was tried on: for a
        rejected candidate, the first difference above the tolerance) and
        ``images_checked``; ``n_evaluations``: images predicted (the whole image's
        included); ``reason`` (str, when no crop is used); and ``prediction``: the
        whole image's probabilities on the check images, ``[N, H, W, K]``.
    """
    images = np.asarray(images, dtype=np.float32)
    n, h, w = images.shape[:3]
    region = np.asarray(region, dtype=bool)
    classes = list(classes)
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    b0, b1, b2, b3 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    step = max(1, int(multiple))
    check_cancel(cancel)
    full_pred = np.asarray(predict(images), dtype=np.float32)
    ref = full_pred[:, region]                                   # (N, R, K)
    ref_score = ref[:, :, classes].mean(axis=1, dtype=np.float64)
    whole = (0, h, 0, w)
    tried = {}
    record = {"candidates": []}

    def window(margin):
        return (max(0, (b0 - margin) // step * step), min(h, -(-(b1 + margin) // step) * step),
                max(0, (b2 - margin) // step * step), min(w, -(-(b3 + margin) // step) * step))

    order = list(range(n))[::-1]          # the half-masked image fails most often: first
    checked = [0]

    def difference(j, win):
        r0, r1, c0, c1 = win
        pred = np.asarray(predict(np.ascontiguousarray(images[j:j + 1, r0:r1, c0:c1])),
                          dtype=np.float32)
        got = pred[0][region[r0:r1, c0:c1]]
        score = got[:, classes].mean(axis=0, dtype=np.float64)
        checked[0] += 1
        return max(float(np.abs(got.astype(np.float64) - ref[j]).max()),
                   float(np.abs(score - ref_score[j]).max()))

    def passes(k):
        win = window(k * step)
        if win == whole:
            return True
        if win not in tried:
            diff, n_checked = 0.0, 0
            for j in list(order):         # stop at the first check image that fails
                check_cancel(cancel)
                diff = max(diff, difference(j, win))
                n_checked += 1
                if diff > tolerance:
                    order.remove(j)
                    order.insert(0, j)
                    break
            tried[win] = diff
            record["candidates"].append({"window": list(win), "max_difference": diff,
                                         "images_checked": n_checked})
        return tried[win] <= tolerance

    lo, hi = -1, -(-_FIRST_MARGIN // step)         # margins in units of `step`
    while not passes(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    win = window(hi * step)
    used = win != whole
    record.update(
        window=list(win) if used else None,
        shape=[win[1] - win[0], win[3] - win[2]] if used else [h, w],
        margin=hi * step if used else None,
        max_difference=tried[win] if used else 0.0,
        n_evaluations=n + checked[0],
        reason=None if used else "no crop smaller than the image matches its prediction "
                                 f"over the region within {tolerance:g}",
        prediction=full_pred)
    return record


def _auto_crop(model, image, base_img, region, classes, p, cancel):
    """Run :func:`find_crop` for explain_region; (record, whole-image prediction or None)."""
    def skip(reason):
        return {"window": None, "shape": list(region.shape), "margin": None,
                "max_difference": None, "candidates": [], "n_evaluations": 0,
                "reason": reason}, None

    if getattr(model, "fixed_size", None) is not None:
        return skip("the model takes inputs of a fixed size only")
    if p["baseline"] == "inpaint":
        return skip("baseline 'inpaint' depends on pixels outside any crop")
    if base_img is None:                     # infill: the whole image occluded = band means
        base_img = baseline_image(image, "mean")
    images = check_images(image, base_img, seed=p["seed"])
    def predict(x):                  # the candidates differ in size: each its own batch
        return model.predict(x, batch_size=batch_size_for(p["batch_size"], *x.shape[1:3]))

    record = find_crop(predict, images, region, classes, tolerance=p["crop_tolerance"],
                       multiple=p["crop_multiple"], cancel=cancel)
    prediction = record.pop("prediction")[0]
    record["tolerance"] = p["crop_tolerance"]
    return record, prediction


def _as_rows(values):
    v = np.asarray(values, dtype=np.float64)
    return v[:, None] if v.ndim == 1 else v


def _run_shap(scorer, image, p, images_for, prog, cancel, win, region):
    from .cells import hexagon_grid, square_grid
    from .kernel_shap import kernel_shap

    grid = hexagon_grid if p["cell_shape"] == "hexagon" else square_grid
    cells = grid(*image.shape[:2], p["hex_size"])
    m = cells.n_cells
    r0, r1, c0, c1 = win
    labels = cells.labels[r0:r1, c0:c1]
    # the players: cells meeting the frame; the others are dummies (exactly 0)
    present = np.zeros(m, dtype=bool)
    present[labels.ravel()] = True
    players = np.flatnonzero(present)
    local = np.full(m, -1, dtype=np.int64)
    local[players] = np.arange(len(players))
    local_labels = local[labels]
    n_players = len(players)
    if p["n_samples"] is None:
        p["n_samples"] = default_samples(n_players)
    _check_samples(p["n_samples"], n_players)

    def prepare(coalitions):
        z = np.asarray(coalitions, dtype=bool)
        # np.take: z[:, local_labels] in C order, twice as fast
        return scorer.prepare(images_for(np.take(z, local_labels, axis=1))), z.all(axis=1)

    value_fn = Staged(prepare, lambda prepared: scorer(*prepared))
    res = kernel_shap(value_fn, n_players, p["n_samples"], seed=p["seed"],
                      batch_size=p["batch_size"], progress=prog, cancel=cancel)
    played, played_se = _as_rows(res.values), _as_rows(res.standard_errors)
    values = np.zeros((m, played.shape[1]))
    se = np.zeros((m, played.shape[1]))
    values[players] = played
    se[players] = played_se
    polygons = cells.polygons()
    areas = cells.areas
    table = [Cell(id=i, polygon=polygons[i], value=values[i].copy(),
                  standard_error=se[i].copy(), area=int(areas[i])) for i in range(m)]
    return {"signed": cells.paint(values), "cells": table,
            "base_value": np.atleast_1d(np.asarray(res.base_value, float)),
            "details": {"n_cells": m, "n_players": n_players, "exact": bool(res.exact)}}


def _run_rise(scorer, image, p, images_for, prog, cancel, win, region):
    from .rise import rise

    r0, r1, c0, c1 = win

    def prepare(masks):
        masks = np.asarray(masks, dtype=np.float32)[:, r0:r1, c0:c1]
        # unmasked where the smallest value is 1 (one pass, no temporary array)
        return scorer.prepare(images_for(masks)), masks.min(axis=(1, 2)) >= 1.0

    score_fn = Staged(prepare, lambda prepared: scorer(*prepared))
    res = rise(score_fn, image.shape[:2], p["n_masks"], grid_size=p["grid_size"],
               p_keep=p["p_keep"], seed=p["seed"], batch_size=p["batch_size"], progress=prog,
               cancel=cancel)
    mean = np.atleast_1d(np.asarray(res.mean_score, float))
    return {"signed": res.signed, "cells": [], "base_value": mean,
            "details": {"mean_score": mean}}


def _occlusion_scores(scorer, image, p, images_for, win):
    """Occlusion's ``score_fn`` on the image (rectangles in image pixels, evaluated on the
    frame ``win``), and the list that receives the score with everything occluded."""
    h, w = image.shape[:2]
    f0, f1, g0, g1 = win
    low, high = np.array([f0, f0, g0, g0]), np.array([f1, f1, g1, g1])
    everything_occluded = []     # the root rectangle's score: the base value
    unoccluded = []              # the frame's unoccluded score, computed once

    def prepare(rects):
        rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        # each rectangle's part inside the frame, in frame pixels
        local = np.minimum(np.maximum(rects, low), high) - low
        hits = (local[:, 1] > local[:, 0]) & (local[:, 3] > local[:, 2])
        images = None
        if hits.any():
            sel = local[hits]
            if p["baseline"] == "infill":
                images = infill_rects(image, rects[hits], window=win)
            else:
                masks = np.ones((len(sel), f1 - f0, g1 - g0), dtype=bool)
                for i, (r0, r1, c0, c1) in enumerate(sel):
                    masks[i, r0:r1, c0:c1] = False
                images = images_for(masks)
            images = scorer.prepare(images)
        return rects, hits, images

    def finish(prepared):
        rects, hits, images = prepared
        scores = np.empty((len(rects), len(scorer.classes)))
        if images is not None:
            scores[hits] = scorer(images, keep_all=np.zeros(int(hits.sum()), dtype=bool))
        if not hits.all():       # nothing of the frame occluded: the unoccluded score
            if not unoccluded:
                unoccluded.append(scorer(scorer.image[None], keep_all=np.ones(1, bool))[0])
            scores[~hits] = unoccluded[0]
        whole = np.all(rects == (0, h, 0, w), axis=1)
        if whole.any() and not everything_occluded:
            everything_occluded.append(np.atleast_1d(scores[int(np.argmax(whole))]).copy())
        return scores

    return Staged(prepare, finish), everything_occluded


def _run_occlusion(scorer, image, p, images_for, prog, cancel, win, region):
    from .estimate import expected_by_depth, occlusion_shares
    from .occlusion import multiscale_occlusion
    from .region import mask_extent
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    h, w = image.shape[:2]
    score_fn, everything_occluded = _occlusion_scores(scorer, image, p, images_for, win)
    window, side = max(h, w), mask_extent(region)
    shares = occlusion_shares(window, p["max_depth"], side)
    res = multiscale_occlusion(
        score_fn, (h, w), max_depth=p["max_depth"], n_best=p["n_best"],
        batch_size=p["batch_size"], progress=prog, cancel=cancel,
        expected_by_depth=expected_by_depth(window, p["max_depth"], side),
        forecast=lambda real: expected_by_depth(window, p["max_depth"], side, shares(real)))
    table = []
    for i, leaf in enumerate(res.leaves):
        r0, r1, c0, c1 = (int(v) for v in leaf.rect)
        table.append(Cell(id=i, polygon=shapely.box(c0, r0, c1, r1),
                          value=np.atleast_1d(np.asarray(leaf.importance, float)),
                          standard_error=None, area=(r1 - r0) * (c1 - c0),
                          depth=int(leaf.depth), offset=tuple(int(v) for v in leaf.offset)))
    base = everything_occluded[0] if everything_occluded else None
    return {"signed": res.heatmap, "cells": table, "base_value": base,
            "details": {"n_naive_evaluations": int(res.n_naive_evaluations),
                        "evaluations_by_depth": list(res.evaluations_by_depth),
                        "n_offsets": int(res.n_offsets),
                        "best_offsets": [tuple(int(v) for v in o) for o in res.best_offsets]}}
