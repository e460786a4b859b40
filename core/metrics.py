"""Causal faithfulness metrics of an attribution map: deletion and insertion (RISE paper)."""

from dataclasses import dataclass
from typing import Union

import numpy as np

from .batching import check_cancel, run_batched


@dataclass(frozen=True)
class CausalMetrics:
    """Deletion and insertion curves of an attribution map.

    Attributes
    ----------
    fractions : ndarray, shape (n_steps + 1,)
        Fraction of the ranked pixels removed (deletion) or kept (insertion), 0 to 1.
    deletion : ndarray, shape (n_steps + 1,) or (n_steps + 1, D)
        Score with the top ``fraction`` of pixels removed, all others kept.
    insertion : ndarray, same shape as ``deletion``
        Score with only the top ``fraction`` of the ranked pixels kept.
    deletion_auc, insertion_auc : float or ndarray, shape (D,)
        Trapezoidal area under each curve over ``fractions`` in [0, 1]. A faithful
        attribution has a low deletion AUC and a high insertion AUC.
    n_evaluations : int
        Masks scored: ``2 * (n_steps + 1)``.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: Union[float, np.ndarray]
    insertion_auc: Union[float, np.ndarray]
    n_evaluations: int


def deletion_insertion(score_fn, attribution, *, n_steps=50, batch_size=64, region_mask=None,
                       progress=None, cancel=None):
    """Deletion and insertion curves (Petsiuk et al. 2018) of ``attribution``.

    Pixels are ranked by decreasing attribution (ties in raster order). Deletion starts
    from the full input and removes the top-ranked pixels step by step; insertion
    starts with every ranked pixel removed and restores them in the same order.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(masks)`` takes float32 masks of shape (n, H, W), 1 = keep the pixel,
        0 = remove it, and returns scores of shape (n,) or (n, D).
    attribution : ndarray, shape (H, W)
        Higher = more important for the score.
    n_steps : int
        The curves have ``n_steps + 1`` points; step ``k`` changes
        ``round(k / n_steps * P)`` pixels, ``P`` the number of ranked pixels.
    batch_size : int
    region_mask : ndarray of bool, shape (H, W), optional
        Rank, remove and insert only these pixels; the others stay kept throughout.
        Default: every pixel.
    progress : callable(float), optional
        Called after every batch with the fraction of masks scored.
    cancel : callable() -> bool, optional
        Checked before every batch; True raises ``ExplanationCancelled``.

    Returns
    -------
    CausalMetrics
    """
    attribution = np.asarray(attribution, dtype=np.float64)
    if attribution.ndim != 2:
        raise ValueError(f"attribution must be (H, W), got shape {attribution.shape}")
    shape = attribution.shape
    region = (np.ones(shape, bool) if region_mask is None
              else np.asarray(region_mask, bool).reshape(shape))
    pixels = np.flatnonzero(region.ravel())
    order = pixels[np.argsort(-attribution.ravel()[pixels], kind="stable")]
    rank = np.full(attribution.size, attribution.size)      # unranked: never changed
    rank[order] = np.arange(len(order))
    n_steps = max(1, int(n_steps))
    fractions = np.linspace(0.0, 1.0, n_steps + 1)
    counts = np.rint(fractions * len(order)).astype(int)
    # rows 0..n_steps: deletion; rows n_steps+1..: insertion
    plan = np.concatenate([counts, counts])
    deleting = np.arange(len(plan)) <= n_steps
    batch_size = max(1, int(batch_size))
    scores = []
    for start in range(0, len(plan), batch_size):
        check_cancel(cancel)
        sl = slice(start, start + batch_size)
        masks = _masks(rank, region.ravel(), plan[sl], deleting[sl], shape)
        scores.append(run_batched(score_fn, masks, batch_size, progress=progress,
                                  cancel=cancel, done=start, total=len(plan)))
    scores = np.asarray(np.concatenate(scores), dtype=np.float64)
    deletion, insertion = scores[:n_steps + 1], scores[n_steps + 1:]
    return CausalMetrics(
        fractions=fractions, deletion=deletion, insertion=insertion,
        deletion_auc=_auc(deletion, fractions), insertion_auc=_auc(insertion, fractions),
        n_evaluations=len(plan))


def _masks(rank, region, counts, deleting, shape):
    """Keep-masks, float32 (n, H, W): top ``count`` ranked pixels removed or kept."""
    top = rank[None, :] < counts[:, None]                   # (n, H*W)
    keep = np.where(deleting[:, None], ~top, top | ~region[None, :])
    return keep.reshape((len(counts),) + shape).astype(np.float32)


def _auc(curve, x):
    """Trapezoid-rule area under ``curve`` (n, ...) over ``x`` (n,); numpy-version independent
    (``np.trapz`` is gone from numpy 2.4, ``np.trapezoid`` absent before 2.0)."""
    curve = np.asarray(curve, dtype=np.float64)
    widths = np.diff(np.asarray(x, dtype=np.float64)).reshape((-1,) + (1,) * (curve.ndim - 1))
    area = (widths * (curve[1:] + curve[:-1]) / 2).sum(axis=0)
    return float(area) if np.ndim(area) == 0 else area
