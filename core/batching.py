"""Run a function over items in batches, with progress and cancellation."""

import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np

from .errors import ExplanationCancelled

# Pixels a model call takes when the batch size is automatic (BATCH_SIZE 0): the sample model
# on 2 CPU cores is fastest at 100,000-300,000 pixels a call (docs/benchmarks.md,
# 2026-12-06); more images a call also spread the engine's own cost of a call (about 1 ms).
AUTO_BATCH_PIXELS = 200_000
# The most images an automatic batch holds (tiny windows: progress and cancel stay prompt).
AUTO_BATCH_MAX = 16


def batch_size_for(batch_size, height, width):
    """Images per model call for ``height`` x ``width`` images: ``batch_size``, or when it is
    None (automatic) as many as hold about :data:`AUTO_BATCH_PIXELS` pixels, from 1 to
    :data:`AUTO_BATCH_MAX` (7 at 160 x 160, 3 at 256 x 256, 1 from 317 x 317 up)."""
    if batch_size is not None:
        return max(1, int(batch_size))
    return int(min(AUTO_BATCH_MAX, max(1, AUTO_BATCH_PIXELS // max(1, int(height) * int(width)))))


def check_cancel(cancel):
    """Raise :class:`ExplanationCancelled` if ``cancel`` is given and returns True, or a
    signal asked the run to stop (:mod:`.interrupt`)."""
    from .interrupt import requested

    if requested():
        raise ExplanationCancelled(f"stopped by {requested()}")
    if cancel is not None and cancel():
        raise ExplanationCancelled("cancelled by the user")


class Staged:
    """A batch function in two stages, ``finish(prepare(items))``.

    :func:`run_batched` runs the next batch's ``prepare`` in a worker thread while this
    batch's ``finish`` runs (see :func:`ahead`): the perturbed images of the next call are
    composed while the model runs on these. ``prepare`` must be a function of its items
    (and of state that only it changes, such as a random generator: the worker calls it in
    the batches' order); progress, cancellation and anything ``finish`` changes stay out of
    it. Called directly, a ``Staged`` is one function.
    """

    __slots__ = ("prepare", "finish")

    def __init__(self, prepare, finish):
        self.prepare = prepare
        self.finish = finish

    def __call__(self, items):
        return self.finish(self.prepare(items))


def ahead(fn, args):
    """``fn(a)`` for every ``a`` of ``args``, in order, each computed in a worker thread while
    the caller works on the one before (numpy and onnxruntime release the GIL, so the two
    overlap on a machine with cores to spare).

    A generator: an exception of ``fn`` is raised where its result is taken, with its
    traceback. When the caller stops early (an exception, a cancel), the one result being
    computed ahead is waited for and dropped, so no thread outlives the loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seg-explainer-ahead") as pool:
        futures = (pool.submit(fn, a) for a in args)      # submitted one at a time
        pending = next(futures, None)
        try:
            while pending is not None:
                current, pending = pending, next(futures, None)
                yield current.result()
        finally:
            if pending is not None:         # not started: not run; started: waited for
                pending.cancel()


@contextmanager
def alongside(fn, *args):
    """``fn(*args)`` computed in a worker thread while the ``with`` block runs; the block gets
    a function that waits for its result (an exception of ``fn`` is raised there, with its
    traceback). Leaving the block waits for the worker, so no thread outlives it; when the
    block raises, ``fn``'s result is dropped.

    Within the block BLAS runs on one thread (:func:`blas_threads`): the worker's linear
    algebra takes one core beside the block's work (the model, with its own threads), not a
    pool of BLAS threads contending with the model's for the same cores (on 2 cores that
    made the sample model's first-phase fits 3-4 times slower than alone).
    """
    with blas_threads(1), \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="seg-explainer-alongside") as pool:
        yield pool.submit(fn, *args).result


def blas_threads(limit):
    """A context manager: within its block, the BLAS libraries loaded in the process
    (numpy's and scipy's: OpenBLAS, MKL, BLIS) use at most ``limit`` threads; their settings
    come back after it. The limit is the library's, so it holds for every thread of the
    process. Through threadpoolctl (requirements.txt); without it, or with a BLAS that has
    no threads (the reference BLAS), nothing changes."""
    controller = _blas_controller()
    if controller is None:
        return nullcontext()
    return controller.limit(limits=limit, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's controller of the thread pools of the libraries loaded at its first
    call (numpy's BLAS is loaded with numpy), made once: finding them takes 0.5-2 ms; or
    None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def run_batched(fn, items, batch_size, *, progress=None, cancel=None, done=0, total=None):
    """Evaluate ``fn`` on consecutive slices of ``items`` and stack the results.

    Parameters
    ----------
    fn : callable
        Takes ``items[i:j]`` (length <= ``batch_size``) and returns an array whose first
        axis has length ``j - i``. A :class:`Staged` one has the next batch prepared in a
        worker thread while this one finishes.
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
    starts = range(0, n, batch_size)
    if isinstance(fn, Staged) and len(starts) > 1:
        finish = fn.finish
        prepared = ahead(lambda s: fn.prepare(items[s:s + batch_size]), starts)
    else:
        finish = fn
        prepared = (items[s:s + batch_size] for s in starts)
    out = []
    try:
        for start, batch in zip(starts, prepared):
            check_cancel(cancel)
            res = np.asarray(finish(batch))
            if res.shape[:1] != (min(batch_size, n - start),):
                raise ValueError(
                    f"the evaluated function returned shape {res.shape} for a batch of "
                    f"{min(batch_size, n - start)} inputs")
            out.append(res)
            if progress is not None:
                progress(min(1.0, (done + start + len(res)) / max(total, 1)))
    finally:
        prepared.close()        # a batch prepared ahead is dropped now, not when collected
    if not out:
        return np.zeros((0,), dtype=np.float64)
    return np.concatenate(out, axis=0)
