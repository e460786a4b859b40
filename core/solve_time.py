"""The Kernel SHAP estimator's own time: a cost model of its unit of work on this machine,
and the progress clock of a run.

:func:`round_seconds` is the time of one boosted-trees round on ``n`` coalitions of ``m``
players, ``a + n (b + c m)``: a fixed cost per level of a tree, and the level's sums, a pass
over the rows and a product over rows and players. The three coefficients are timed once per
process (:func:`calibrate`, about 50 ms); the dock calls it in its background timing task so
that no estimate times anything on the GUI thread. Against rounds timed directly at 50-2,000
players and 512-6,000 rows, in three processes on the shared machine of the benchmarks
(/tmp script, 2026-12-06): within 0.63-1.51, mostly 0.8-1.3; a timing's own noise there is
as large (the same round 2.7-14 ms in one process).

:class:`Clock` turns a run's evaluations and fits into one fraction of its expected time;
:data:`NO_CLOCK` does nothing, for runs without progress.
"""

import threading
import time

import numpy as np

from . import boosted_trees

__all__ = ["NO_CLOCK", "Clock", "calibrate", "round_seconds"]

#: Sizes of the timed rounds, ``(players, rows)``: two player counts at two row counts.
_CALIBRATION = ((32, 256), (32, 1024), (256, 256), (256, 1024))

_lock = threading.Lock()
_coefficients = None


def calibrate():
    """``(a, b, c)`` of :func:`round_seconds` on this machine, timed the first time it is
    called in a process (thread-safe; every later call returns the same)."""
    global _coefficients
    with _lock:
        if _coefficients is None:
            _coefficients = _fit(_timed_rounds(_CALIBRATION))
        return _coefficients


def _fit(timings):
    """``(a, b, c)`` from rounds timed at ``_CALIBRATION``'s sizes: per player count, the
    cost per row (the slope between the two row counts) and the fixed cost (the intercept);
    the cost per row is ``b + c m``, and ``a`` the intercepts' mean. None is negative
    (timing noise cannot make a larger round cheaper)."""
    (m1, n1), (_, n2), (m2, _), _ = _CALIBRATION
    slope = {m: (timings[m, n2] - timings[m, n1]) / (n2 - n1) for m in (m1, m2)}
    c = max(0.0, (slope[m2] - slope[m1]) / (m2 - m1))
    b = max(0.0, slope[m1] - c * m1)
    a = max(0.0, float(np.mean([timings[m, n1] - n1 * (b + c * m) for m in (m1, m2)])))
    return a, b, c


def _timed_rounds(sizes, repeats=5):
    """``{(m, rows): seconds}``: per size, the median of ``repeats`` timings of two
    boosted-trees rounds on ``rows`` random coalitions of ``m`` players, per round, after
    one round not timed (the first calls are slower). The sizes take turns, so that a burst
    of load on the shared machine slows one timing of each rather than all of one (which
    would tilt the fitted slopes)."""
    rng = np.random.default_rng(0)
    data = {}
    for m, rows in sizes:
        data[m, rows] = (rng.random((rows, m)) < 0.5, rng.random(rows))
        boosted_trees.fit(*data[m, rows], rounds=1)
    times = {size: [] for size in data}
    for _ in range(repeats):
        for size, (z, y) in data.items():
            start = time.perf_counter()
            boosted_trees.fit(z, y, rounds=2)
            times[size].append((time.perf_counter() - start) / 2)
    return {size: float(np.median(t)) for size, t in times.items()}


def round_seconds(m, n):
    """Seconds of one boosted-trees round on ``n`` coalitions of ``m`` players on this
    machine (:func:`calibrate` on the first call)."""
    a, b, c = calibrate()
    return a + max(int(n), 2) * (b + c * int(m))


class Clock:
    """Progress of a run over its expected time: the evaluations at the pace they go, then
    the estimator's own work (``solve``, its expected seconds), so the fraction follows the
    clock instead of waiting at 1 while the fits run. Fractions never go back."""

    def __init__(self, progress, solve):
        self.progress_fn, self.solve = progress, float(solve)
        self.start = time.perf_counter()
        self.shown = 0.0
        self.fraction = 0.0             # of the evaluations
        self.eval_seconds = None        # the evaluations' time, once they are all done
        self.between = 0.0              # the estimator's time between two phases
        self.paused = None
        self.fit_seconds = 0.0          # the first fit's after the evaluations
        self.trees_start = None

    def progress(self, fraction):
        fraction = min(1.0, float(fraction))
        if fraction > self.shown:
            self.shown = fraction
            self.progress_fn(fraction)

    def evaluations(self, fraction):
        """``run_batched``'s fraction of the evaluations done."""
        self.fraction = max(self.fraction, float(fraction))
        self.tick()

    def pause(self):
        """The estimator works between two phases of evaluations (part of ``solve``)."""
        self.paused = time.perf_counter()

    def resume(self):
        self.between += time.perf_counter() - self.paused
        self.paused = None

    def evaluated(self):
        """Every evaluation is done; the rest is the estimator's."""
        self.eval_seconds = time.perf_counter() - self.start - self.between

    def solved(self, seconds):
        """The first fit after the evaluations took ``seconds`` (the trees' adjustment ends
        with one like it)."""
        self.fit_seconds = seconds

    def fits(self, done, total):
        """``done`` of the trees' ``total`` fits are done: the rest is predicted from
        their pace, and one fit more."""
        now = time.perf_counter()
        if done == 0:
            self.trees_start = now
            return
        pace = (now - self.trees_start) / done
        self.tick(remaining=(total - done) * pace + self.fit_seconds)

    def tick(self, remaining=None):
        now = time.perf_counter()
        elapsed = now - self.start
        if remaining is not None:
            expected = elapsed + remaining
        elif self.eval_seconds is None:
            if self.fraction <= 0:
                return
            evaluating = elapsed - self.between - (now - self.paused if self.paused else 0.0)
            expected = evaluating / self.fraction + self.solve
        else:
            expected = self.eval_seconds + self.solve
        self.progress(min(elapsed / max(expected, 1e-12), 0.99))


class _NoClock:
    """A run without progress: every call does nothing."""

    def _nothing(self, *args, **kwargs):
        return None

    progress = evaluations = pause = resume = evaluated = solved = fits = tick = _nothing


NO_CLOCK = _NoClock()
