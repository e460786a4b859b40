"""RISE: saliency from randomly masked inputs (Petsiuk, Das & Saenko 2018).

Each mask is a coarse ``s x s`` grid of Bernoulli(``p_keep``) cells, upsampled bilinearly
to ``(s + 1) * C`` pixels per axis (``C = ceil(size / s)``, the cell size), randomly
shifted by ``[0, C)`` pixels and cropped to the image. The saliency is the mean of the
masks weighted by the model's score on each masked input.
"""

import functools
import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from .batching import Staged, batch_size_for, run_batched
from .parameters import by_name

_D = {n: by_name(n).default for n in ("grid_size", "p_keep", "seed", "batch_size")}


@dataclass(frozen=True)
class RiseResult:
    """Result of :func:`rise`.

    Attributes
    ----------
    saliency : ndarray, shape (H, W) or (D, H, W)
        ``sum_i score_i * mask_i / (N * p_keep)``: the RISE saliency map.
    signed : ndarray, same shape as ``saliency``
        ``sum_i (score_i - mean_score) * mask_i / (N * p_keep)``: positive where keeping
        a pixel raises the score (excitation), negative where it lowers it (inhibition).
    n_evaluations : int
        Masks scored (``N``).
    mean_score : float or ndarray, shape (D,)
        Mean score over the masks.
    """

    saliency: np.ndarray
    signed: np.ndarray
    n_evaluations: int
    mean_score: Union[float, np.ndarray]


def rise_masks(rng, n, shape, grid_size=8, p_keep=0.5):
    """Draw ``n`` RISE masks.

    Parameters
    ----------
    rng : numpy.random.Generator
        Consumes exactly ``n * (grid_size**2 + 2)`` uniform doubles, mask after mask,
        so drawing ``a`` then ``b`` masks gives the same masks as drawing ``a + b``.
    n : int
    shape : tuple of int
        ``(H, W)`` of the image, pixels.
    grid_size : int
        Cells per axis of the coarse grid, ``s``.
    p_keep : float
        Probability that a grid cell is kept (1).

    Returns
    -------
    ndarray of float32, shape (n, H, W), values in [0, 1], 1 = keep.
    """
    return _upsample(*_draw(rng, n, shape, grid_size, p_keep), shape)


def _draw(rng, n, shape, grid_size, p_keep):
    """The random part of ``n`` masks: grids (n, s, s) of 0/1 (float64), and the shifts
    ``dy``, ``dx`` (n,) of the upsampled grid, in [0, C) pixels."""
    s = int(grid_size)
    ch, cw = _cells(shape, s)
    u = rng.random((int(n), s * s + 2))
    grid = (u[:, :s * s] < p_keep).reshape(-1, s, s).astype(np.float64)
    dy = np.minimum((u[:, -2] * ch).astype(int), ch - 1)
    dx = np.minimum((u[:, -1] * cw).astype(int), cw - 1)
    return grid, dy, dx


def _cells(shape, s):
    """Pixels per grid cell along each axis, ``ceil(size / s)``."""
    return math.ceil(int(shape[0]) / s), math.ceil(int(shape[1]) / s)


def _shifted(weights, start, stop, n_shifts):
    """The resampling rows of pixels ``start .. stop - 1`` for every shift in
    ``[0, n_shifts)``: ``weights[shift + pixel]``, laid out (pixels, shift * s + cell)."""
    pixels = np.arange(start, stop)
    return weights[pixels[:, None] + np.arange(n_shifts)].reshape(len(pixels), -1)


def _upsample(grid, dy, dx, shape):
    """Masks (n, H, W), float32: each grid upsampled bilinearly, shifted and cropped."""
    h, w = (int(v) for v in shape)
    s = grid.shape[1]
    ch, cw = _cells(shape, s)
    ry = _linear_weights(s, (s + 1) * ch)          # (out_h, s)
    rx = _linear_weights(s, (s + 1) * cw)          # (out_w, s)
    rows = ry[dy[:, None] + np.arange(h)]          # (n, H, s)
    # (n, s, W), contiguous: numpy's matmul falls back to a slow loop on a transposed view
    cols_t = np.ascontiguousarray(rx[dx[:, None] + np.arange(w)].transpose(0, 2, 1))
    return np.matmul(np.matmul(rows, grid), cols_t).astype(np.float32)


def _upsample_sums(coarse, s, shape, block=1024):
    """Full-size sums of masks from their grids' sums per shift.

    ``coarse`` (C_h * C_w, G, s * s) holds, for each shift ``(dy, dx)`` (row ``dy * C_w +
    dx``), G weighted sums of the grids drawn with it. Returns (G, H, W): ``Ry A Rx^T``,
    where ``A`` (G, C_h * s, C_w * s) puts the shifts' grid sums side by side and ``Ry``
    (H, C_h * s) holds each pixel row's resampling weights for every shift (``Rx`` alike),
    computed ``block`` rows and columns at a time so that no H x H matrix is made.
    """
    h, w = (int(v) for v in shape)
    g = coarse.shape[1]
    ch, cw = _cells(shape, s)
    ry = _linear_weights(s, (s + 1) * ch)
    rx = _linear_weights(s, (s + 1) * cw)
    grids = coarse.reshape(ch, cw, g, s, s).transpose(2, 0, 3, 1, 4).reshape(g, ch * s, cw * s)
    half = np.empty((g, ch * s, w))          # A Rx^T
    for x0 in range(0, w, block):
        x1 = min(w, x0 + block)
        half[:, :, x0:x1] = grids @ _shifted(rx, x0, x1, cw).T
    out = np.empty((g, h, w))
    for y0 in range(0, h, block):
        y1 = min(h, y0 + block)
        out[:, y0:y1] = _shifted(ry, y0, y1, ch) @ half
    return out


@functools.lru_cache(maxsize=16)
def _linear_weights(n_in, n_out):
    """Bilinear (pixel-centre aligned, edge-clamped) resampling matrix, (n_out, n_in),
    read-only: made once per size (every batch of a run asks for the same two; at one mask
    a batch, making them again was a third of the masks' time)."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    out = np.zeros((n_out, n_in))
    out[np.arange(n_out), i0] += 1 - frac
    out[np.arange(n_out), i1] += frac
    out.setflags(write=False)
    return out


def rise(score_fn, shape, n_masks, *, grid_size=_D["grid_size"], p_keep=_D["p_keep"],
         seed=_D["seed"], batch_size=_D["batch_size"], progress=None, cancel=None):
    """Explain a score by RISE.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(masks)`` takes float32 masks of shape (n, H, W) in [0, 1] (1 = keep
        the pixel) and returns the model's score on each masked input, shape (n,) or
        (n, D). Called with at most ``batch_size`` masks. A :class:`~.batching.Staged` one
        has its ``prepare`` run on the next batch's masks, which are drawn then too, while
        this batch's ``finish`` runs.
    shape : tuple of int
        ``(H, W)``, pixels.
    n_masks : int
        Number of masks ``N``.
    grid_size, p_keep
        See :func:`rise_masks`.
    seed : int
        The masks are ``rise_masks(numpy.random.default_rng(seed), N, ...)``, drawn
        ``batch_size`` at a time, so the result does not depend on ``batch_size``.
    batch_size : int, optional
        None (the default): automatic, :func:`~.batching.batch_size_for` the shape.
    progress : callable(float), optional
        Called after every batch with the fraction of masks scored.
    cancel : callable() -> bool, optional
        Checked before every batch; True raises ``ExplanationCancelled``.

    Returns
    -------
    RiseResult
    """
    h, w = (int(v) for v in shape)
    n_masks = by_name("n_masks").check(n_masks)
    p_keep = by_name("p_keep").check(p_keep)
    rng = np.random.default_rng(seed)
    batch_size = batch_size_for(batch_size, h, w)
    s = int(grid_size)
    ch, cw = _cells((h, w), s)
    # sum_i [score_i, 1] grid_i per shift (dy, dx): a mask is linear in its grid, so the
    # masks of one shift add up as their grids do, and their sums are upsampled once at the
    # end instead of adding up every full-size mask (a pass over the image each batch)
    acc = {}                             # "coarse": (ch * cw, D + 1, s * s), "sum": (D,)
    staged = isinstance(score_fn, Staged)
    score = score_fn.finish if staged else score_fn

    def prepare(index):                  # the next batch's masks drawn while the model runs
        grid, dy, dx = _draw(rng, len(index), (h, w), s, p_keep)
        masks = _upsample(grid, dy, dx, (h, w))
        return grid, dy, dx, score_fn.prepare(masks) if staged else masks

    def finish(prepared):
        grid, dy, dx, masks = prepared
        raw = np.asarray(score(masks))
        if raw.shape[:1] != (len(grid),):
            return raw                   # run_batched names the wrong shape
        scores = raw.astype(np.float64).reshape(len(grid), -1)
        if not acc:
            acc["coarse"] = np.zeros((ch * cw, scores.shape[1] + 1, s * s))
            acc["sum"] = np.zeros(scores.shape[1])
        terms = np.concatenate([scores, np.ones((len(grid), 1))], axis=1)
        np.add.at(acc["coarse"], dy * cw + dx, terms[:, :, None] * grid.reshape(len(grid), 1, -1))
        acc["sum"] += scores.sum(axis=0)
        return raw

    scores = run_batched(Staged(prepare, finish), np.arange(n_masks), batch_size,
                         progress=progress, cancel=cancel)
    scalar = scores.ndim == 1
    coarse, score_sum = acc["coarse"], acc["sum"]
    sums = _upsample_sums(coarse, s, (h, w))     # (D + 1, H, W)
    weighted, mask_sum = sums[:-1], sums[-1]
    mean = score_sum / n_masks
    norm = n_masks * p_keep
    saliency = weighted / norm
    signed = (weighted - mean[:, None, None] * mask_sum) / norm
    if scalar:
        return RiseResult(saliency[0], signed[0], n_masks, float(mean[0]))
    return RiseResult(saliency, signed, n_masks, mean)
