"""Run a function over items in batches, with progress and cancellation."""

import numpy as np

from .errors import ExplanationCancelled


def check_cancel(cancel):
    """Raise :class:`ExplanationCancelled` if ``cancel`` is given and returns True, or a
    signal asked the run to stop (:mod:`.interrupt`)."""
    from .interrupt import requested

    if requested():
        raise ExplanationCancelled(f"stopped by {requested()}")
    if cancel is not None and cancel():
        raise ExplanationCancelled("cancelled by the user")


def run_batched(fn, items, batch_size, *, progress=None, cancel=None, done=0, total=None):
    """Evaluate ``fn`` on consecutive slices of ``items`` and stack the results.

    Parameters
    ----------
    fn : callable
        Takes ``items[i:j]`` (length <= ``batch_size``) and returns an array whose first
        axis has length ``j - i``.
    items : ndarray, shape (n, ...)
    batch_size : int
    progress : callable(float), optional
        Called after every batch with the fraction ``(done + evaluated) / total``.
    cancel : callable() -> bool, optional
        Checked before every batch; a True answer raises ``ExplanationCancelled``.
    done, total : int
        Evaluations already spent before this call, and the run's total, so that one
        progress scale spans several calls. ``total`` defaults to ``done + len(items)``.

    Returns
    -------
    ndarray, shape (n, ...)
    """
    n = len(items)
    batch_size = max(1, int(batch_size))
    total = done + n if total is None else total
    out = []
    for start in range(0, n, batch_size):
        check_cancel(cancel)
        res = np.asarray(fn(items[start:start + batch_size]))
        if res.shape[:1] != (min(batch_size, n - start),):
            raise ValueError(
                f"the evaluated function returned shape {res.shape} for a batch of "
                f"{min(batch_size, n - start)} inputs")
        out.append(res)
        if progress is not None:
            progress(min(1.0, (done + start + len(res)) / max(total, 1)))
    if not out:
        return np.zeros((0,), dtype=np.float64)
    return np.concatenate(out, axis=0)
