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

from .batching import batch_size_for, check_cancel, run_batched
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
    h, w = (int(v) for v in shape)
    s = int(grid_size)
    u = rng.random((int(n), s * s + 2))
    grid = (u[:, :s * s] < p_keep).reshape(-1, s, s).astype(np.float64)
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    dy = np.minimum((u[:, -2] * ch).astype(int), ch - 1)
    dx = np.minimum((u[:, -1] * cw).astype(int), cw - 1)
    ry = _linear_weights(s, (s + 1) * ch)          # (out_h, s)
    rx = _linear_weights(s, (s + 1) * cw)          # (out_w, s)
    rows = ry[dy[:, None] + np.arange(h)]          # (n, H, s)
    # (n, s, W), contiguous: numpy's matmul falls back to a slow loop on a transposed view
    cols_t = np.ascontiguousarray(rx[dx[:, None] + np.arange(w)].transpose(0, 2, 1))
    return np.matmul(np.matmul(rows, grid), cols_t).astype(np.float32)


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
        (n, D). Called with at most ``batch_size`` masks.
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
    weighted = None                      # sum_i score_i mask_i, (D, H*W)
    mask_sum = np.zeros(h * w)           # sum_i mask_i
    score_sum = None
    scalar = True
    for start in range(0, n_masks, batch_size):
        check_cancel(cancel)
        masks = rise_masks(rng, min(batch_size, n_masks - start), (h, w), grid_size, p_keep)
        scores = run_batched(score_fn, masks, batch_size, progress=progress, cancel=cancel,
                             done=start, total=n_masks)
        scores = np.asarray(scores, dtype=np.float64)
        scalar = scores.ndim == 1
        scores = scores.reshape(len(masks), -1)
        flat = masks.reshape(len(masks), -1).astype(np.float64)
        if weighted is None:
            weighted = np.zeros((scores.shape[1], h * w))
            score_sum = np.zeros(scores.shape[1])
        weighted += scores.T @ flat
        mask_sum += flat.sum(axis=0)
        score_sum += scores.sum(axis=0)
    mean = score_sum / n_masks
    norm = n_masks * p_keep
    saliency = (weighted / norm).reshape(-1, h, w)
    signed = ((weighted - mean[:, None] * mask_sum) / norm).reshape(-1, h, w)
    if scalar:
        return RiseResult(saliency[0], signed[0], n_masks, float(mean[0]))
    return RiseResult(saliency, signed, n_masks, mean)
