"""The cost model of the Kernel SHAP estimator's own work (core/solve_time.py)."""

import importlib
import threading

import pytest

solve_time = importlib.import_module("seg_explainer.core.solve_time")


def _timings(a, b, c):
    return {(m, n): a + n * (b + c * m) for m, n in solve_time._CALIBRATION}


def test_the_fit_recovers_the_coefficients_of_exact_timings():
    a, b, c = 6e-4, 2.4e-7, 4.8e-9
    assert solve_time._fit(_timings(a, b, c)) == pytest.approx((a, b, c), rel=1e-9)


def test_noise_never_makes_a_coefficient_negative():
    """Timings where more players look cheaper (noise) give no negative cost per player, and
    the rest is fitted without it."""
    timings = _timings(6e-4, 2.4e-7, 0.0)
    (_, n1), (_, n2), (m2, _), _ = solve_time._CALIBRATION
    timings[m2, n2] -= 1e-4                      # the larger round timed faster than it is
    a, b, c = solve_time._fit(timings)
    assert c == 0.0 and a >= 0 and b > 0


def test_calibrate_times_once_per_process_whatever_the_threads(monkeypatch):
    calls = []
    lock = threading.Lock()
    a, b, c = 5e-4, 3e-7, 6e-9

    def timed_rounds(sizes):
        with lock:
            calls.extend(sizes)
        return {(m, n): a + n * (b + c * m) for m, n in sizes}

    monkeypatch.setattr(solve_time, "_coefficients", None)
    monkeypatch.setattr(solve_time, "_timed_rounds", timed_rounds)
    results = []
    threads = [threading.Thread(target=lambda: results.append(solve_time.calibrate()))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(calls) == sorted(solve_time._CALIBRATION)
    assert len(set(results)) == 1 and results[0] == pytest.approx((a, b, c))
    assert solve_time.round_seconds(100, 2000) == pytest.approx(a + 2000 * (b + c * 100))

