"""The next batch composed while the model runs: ``batching.Staged``, ``ahead`` and the
explanations that use them (the same results as one batch after the other); and Kernel
SHAP's second phase evaluated while its first phase's fits run (``batching.alongside``)."""

import contextlib
import importlib
import sys
import threading
import time
import traceback
import types

import numpy as np
import pytest

from seg_explainer.core import batching
from seg_explainer.core.batching import Staged, run_batched
from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.explain import explain_region
from seg_explainer.core.kernel_shap import kernel_shap
from seg_explainer.core.rise import rise

WAIT = 60.0     # seconds: a guard against a hang if the stages never overlap, not a timing


def _workers():
    return [t for t in threading.enumerate() if t.name.startswith("seg-explainer-ahead")]


def _serial(fn, args):
    return (fn(a) for a in args)


def test_the_next_batch_is_prepared_while_this_one_finishes():
    items = np.arange(23)
    started = {}                        # first item of a batch -> set when its prepare starts
    log = []

    def prepare(batch):
        log.append(("prepare", int(batch[0]), threading.current_thread().name))
        started.setdefault(int(batch[0]), threading.Event()).set()
        return batch * 10

    def finish(prepared):
        first = int(prepared[0]) // 10
        log.append(("finish", first, threading.current_thread().name))
        if first + 5 < len(items):
            # the next batch's prepare runs while this finish waits for it
            assert started.setdefault(first + 5, threading.Event()).wait(WAIT)
        return prepared + 1

    out = run_batched(Staged(prepare, finish), items, 5)
    np.testing.assert_array_equal(out, items * 10 + 1)
    main = threading.current_thread().name
    assert [f for kind, f, _ in log if kind == "prepare"] == [0, 5, 10, 15, 20]
    assert [f for kind, f, _ in log if kind == "finish"] == [0, 5, 10, 15, 20]
    assert all(name != main for kind, _, name in log if kind == "prepare")
    assert all(name == main for kind, _, name in log if kind == "finish")
    assert _workers() == []


def test_a_single_batch_and_a_plain_function_run_on_the_callers_thread():
    names = []

    def prepare(batch):
        names.append(threading.current_thread().name)
        return batch

    out = run_batched(Staged(prepare, lambda b: b * 2.0), np.arange(4), 8)
    np.testing.assert_array_equal(out, np.arange(4) * 2.0)
    assert names == [threading.current_thread().name]
    assert Staged(prepare, lambda b: b + 1)(np.arange(3)).tolist() == [1, 2, 3]


def test_a_failing_prepare_raises_its_own_error_with_its_traceback():
    finished = []

    def prepare(batch):
        if batch[0] == 9:
            raise ZeroDivisionError("a bug in prepare")
        return batch

    with pytest.raises(ZeroDivisionError, match="a bug in prepare") as info:
        run_batched(Staged(prepare, lambda b: finished.append(int(b[0])) or b),
                    np.arange(20), 3)
    assert finished == [0, 3, 6]                 # the batches before it, in order
    assert "prepare" in [frame.name for frame in traceback.extract_tb(info.tb)]
    assert _workers() == []


def test_a_cancel_drops_the_batch_prepared_ahead_and_leaves_no_thread():
    prepared, finished = [], []
    calls = iter(range(100))

    def cancel():
        return next(calls) >= 3                  # three batches finish, then a cancel

    def prepare(batch):
        prepared.append(int(batch[0]))
        return batch

    with pytest.raises(ExplanationCancelled):
        run_batched(Staged(prepare, lambda b: finished.append(int(b[0])) or b),
                    np.arange(40), 4, cancel=cancel)
    assert finished == [0, 4, 8]
    assert prepared[:4] == [0, 4, 8, 12] and len(prepared) <= 5
    assert _workers() == []


def test_rise_with_a_staged_score_equals_rise_with_the_plain_one():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(19, 26))
    threads = set()

    def plain(masks):
        return np.stack([(masks * weights).sum(axis=(1, 2)), masks.mean(axis=(1, 2))], axis=1)

    def prepare(masks):
        threads.add(threading.current_thread().name)
        return masks.copy()

    want = rise(plain, (19, 26), 60, seed=4, batch_size=7)
    got = rise(Staged(prepare, plain), (19, 26), 60, seed=4, batch_size=7)
    np.testing.assert_array_equal(got.signed, want.signed)
    np.testing.assert_array_equal(got.saliency, want.saliency)
    np.testing.assert_array_equal(got.mean_score, want.mean_score)
    assert threads and threading.current_thread().name not in threads


class _Model:
    """A small segmentation model with a preparation stage of its own, as
    ``SegmentationModel`` has: the probability of class 1 is a sigmoid of a local mean."""

    class_names = ["sea", "oil"]
    n_channels = 1

    def __init__(self):
        self.prepared = 0

    def prepare_images(self, images):         # predict takes its result or the images
        self.prepared += len(images)
        return np.array(images, dtype=np.float32)

    def predict(self, images, batch_size=None):
        x = np.asarray(images, dtype=np.float32)
        smooth = (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3.0
        p = 1.0 / (1.0 + np.exp(-smooth[..., 0]))
        return np.stack([1.0 - p, p], axis=-1).astype(np.float32)


@pytest.mark.parametrize("method, params", [
    ("shap", {"hex_size": 6, "n_samples": 150, "batch_size": 4}),
    ("rise", {"n_masks": 40, "batch_size": 3}),
    ("occlusion", {"max_depth": 2, "batch_size": 5}),
    ("occlusion", {"max_depth": 1, "batch_size": 2, "baseline": "infill"})])
def test_explanations_are_the_same_with_the_batches_prepared_ahead(monkeypatch, method,
                                                                   params):
    rng = np.random.default_rng(8)
    image = rng.normal(size=(40, 44, 1)).astype(np.float32)
    region = np.zeros((40, 44), dtype=bool)
    region[14:26, 15:30] = True
    model = _Model()
    ahead = explain_region(model, image, region, 1, method, **params)
    assert model.prepared >= ahead.n_evaluations - 1      # the model's own stage was used
    monkeypatch.setattr(batching, "ahead", _serial)
    serial = explain_region(_Model(), image, region, 1, method, **params)
    np.testing.assert_array_equal(ahead.signed, serial.signed)
    assert ahead.n_evaluations == serial.n_evaluations
    for a, b in zip(ahead.cells, serial.cells):
        np.testing.assert_array_equal(a.value, b.value)


# --------------------------------------------------------------------------- Kernel SHAP

ks = importlib.import_module("seg_explainer.core.kernel_shap")


def _alongside_workers():
    return [t for t in threading.enumerate() if t.name.startswith("seg-explainer-alongside")]


def test_alongside_gives_the_result_its_error_with_its_traceback_and_leaves_no_thread():
    with batching.alongside(lambda a, b: (threading.current_thread().name, a + b), 2, 3) as got:
        name, value = got()
    assert value == 5 and name != threading.current_thread().name

    def bug():
        raise KeyError("a bug in the worker")

    with pytest.raises(KeyError, match="a bug in the worker") as info:
        with batching.alongside(bug) as got:
            got()
    assert "bug" in [frame.name for frame in traceback.extract_tb(info.tb)]
    finished = threading.Event()
    with pytest.raises(ExplanationCancelled):
        with batching.alongside(lambda: finished.wait(0.2) or finished.set()):
            raise ExplanationCancelled("stopped")
    assert finished.is_set()              # the worker was waited for, its result dropped
    assert _alongside_workers() == []


def test_alongside_keeps_blas_to_one_thread_while_the_worker_runs(monkeypatch):
    """The worker's fits run beside the model: BLAS on one thread for the block, the
    library's setting back after it (threadpoolctl's own report where a BLAS with threads is
    loaded, and a stand-in module recording the calls everywhere); without threadpoolctl the
    block runs unlimited."""
    import threadpoolctl

    def blas():
        return [(i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas()
    with batching.alongside(blas) as got:
        during = got()
    assert [n for _, n in during] == [1] * len(before)
    assert blas() == before
    calls = []

    class Controller:
        def limit(self, limits, user_api):
            calls.append(("limit", limits, user_api))
            return self

        def __enter__(self):
            calls.append("enter")

        def __exit__(self, *exc):
            calls.append("exit")

    fake = types.ModuleType("threadpoolctl")
    fake.ThreadpoolController = Controller
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    batching._blas_controller.cache_clear()
    try:
        with pytest.raises(ExplanationCancelled):
            with batching.alongside(lambda: calls.append("fits")):
                raise ExplanationCancelled("stopped")
        assert calls == [("limit", 1, "blas"), "enter", "fits", "exit"]
        monkeypatch.setitem(sys.modules, "threadpoolctl", None)        # not installed
        batching._blas_controller.cache_clear()
        with batching.alongside(lambda: 7) as got:
            assert got() == 7
    finally:
        monkeypatch.undo()
        batching._blas_controller.cache_clear()


def _sigmoid(m, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=m) * 2.0 / np.sqrt(m)
    return lambda z: 1.0 / (1.0 + np.exp(-(z @ w - w.sum() / 2)))


def _noisy_even(m, seed):
    """A linear game plus an even part (the same for a coalition and its complement) that
    no model of few terms captures: pairs beat single coalitions."""
    w = np.random.default_rng(seed).normal(size=m)

    def v(z):
        canon = np.where(z[:, :1], z, ~z)             # the side holding feature 0
        keys = np.packbits(canon, axis=1).astype(np.uint64)
        noise = np.sin((keys * np.arange(1, keys.shape[1] + 1, dtype=np.uint64)).sum(1) * 7.1)
        return z @ w + 2.0 * noise
    return v


@pytest.mark.parametrize("game, singles", [(_noisy_even, False), (_sigmoid, True)])
def test_kernel_shaps_second_phase_starts_while_the_first_phases_fits_run(monkeypatch, game,
                                                                          singles):
    # one side of every pair the first phase left is needed whichever way the rest of the
    # budget goes (pairs or single coalitions): it is evaluated while the fits choose
    m, budget = 12, 400
    v = game(m, 5)
    if singles:         # without the surrogate a sigmoid takes single coalitions
        monkeypatch.setattr(ks, "_first_surrogates",
                            lambda d, f, y, delta, s: ([None] * len(delta), []))
    started, overlapped, log, seen = threading.Event(), threading.Event(), [], []
    real = ks._first_fits

    def first_fits(*args):
        log.append(threading.current_thread().name)
        started.set()
        assert overlapped.wait(WAIT)          # a serial run never gets past here
        out = real(*args)
        log.append(out[2] is not None)
        return out

    def value_fn(z):
        if started.is_set():
            overlapped.set()
        seen.extend(row.tobytes() for row in np.packbits(z, axis=1))
        return v(z)

    monkeypatch.setattr(ks, "_first_fits", first_fits)
    res = kernel_shap(value_fn, m, budget, seed=3, batch_size=16)
    assert log == [log[0], singles] and log[0] != threading.current_thread().name
    assert len(seen) == len(set(seen)) == res.n_evaluations == budget + 2
    assert abs(res.values.sum() - (res.full_value - res.base_value)) < 1e-12
    assert _alongside_workers() == []


def test_kernel_shaps_single_coalitions_are_drawn_while_the_first_phase_is_evaluated(
        monkeypatch):
    # the second phase's single coalitions depend on the design and the random generator
    # only: drawn in a worker while the model evaluates the first phase, the same rows and
    # values as drawn before it; a model error there leaves no thread
    m, budget, v = 12, 400, _sigmoid(12, 4)
    started, overlapped, log = threading.Event(), threading.Event(), []
    real = ks._single_rows

    def single_rows(*args):
        log.append(threading.current_thread().name)
        started.set()
        assert overlapped.wait(WAIT)          # a serial run never gets past here
        return real(*args)

    def value_fn(z):
        if started.is_set():
            overlapped.set()
        return v(z)

    monkeypatch.setattr(ks, "_single_rows", single_rows)
    res = kernel_shap(value_fn, m, budget, seed=3, batch_size=16)
    assert len(log) == 1 and log[0] != threading.current_thread().name
    monkeypatch.setattr(ks, "_single_rows", real)

    @contextlib.contextmanager
    def serial(fn, *args):              # alongside but in the calling thread
        with batching.blas_threads(1):
            out = fn(*args)
            yield lambda: out

    monkeypatch.setattr(ks, "alongside", serial)
    again = kernel_shap(v, m, budget, seed=3, batch_size=16)
    assert np.array_equal(res.values, again.values)
    assert np.array_equal(res.standard_errors, again.standard_errors)
    monkeypatch.undo()

    def broken(z):
        raise RuntimeError("the model failed")

    with pytest.raises(RuntimeError, match="the model failed"):
        kernel_shap(broken, m, budget, seed=3, batch_size=16)
    assert _alongside_workers() == []


def test_the_final_fits_first_order_factorisation_is_made_while_the_last_rows_run(
        monkeypatch):
    # the pairs way: the final design is known before its last rows are evaluated, so its
    # first-order columns are factorised in a worker meanwhile, once, and the final fit
    # reads them (the same values as made there, on one BLAS thread)
    m, budget, v = 12, 400, _noisy_even(12, 5)
    real_qr, factored = np.linalg.qr, []

    def qr(a, *args, **kwargs):
        factored.append((threading.current_thread().name, np.array(a)))
        return real_qr(a, *args, **kwargs)

    designs, real_design = [], ks._design

    def design(*args):
        designs.append(real_design(*args))
        return designs[-1]

    monkeypatch.setattr(np.linalg, "qr", qr)
    monkeypatch.setattr(ks, "_design", design)
    with batching.blas_threads(1):
        ahead = kernel_shap(v, m, budget, seed=3, batch_size=16)
        base = ks._base_columns(*ks._pair_columns(designs[-1]))
        made = [name for name, a in factored if a.shape == base.shape and
                np.array_equal(a, base)]
        assert len(made) == 1 and made[0] != threading.current_thread().name
        monkeypatch.setattr(ks, "_prepare_solve", lambda design: None)
        factored.clear()
        later = kernel_shap(v, m, budget, seed=3, batch_size=16)
    assert [name for name, a in factored if a.shape == base.shape and
            np.array_equal(a, base)] == [threading.current_thread().name]
    assert np.array_equal(ahead.values, later.values)
    assert np.array_equal(ahead.standard_errors, later.standard_errors)


def test_kernel_shap_raises_a_bug_in_the_first_phases_fits_with_its_traceback(monkeypatch):
    def broken(*args):
        raise IndexError("a bug in the first fits")

    monkeypatch.setattr(ks, "_first_surrogates", broken)
    with pytest.raises(IndexError, match="a bug in the first fits") as info:
        kernel_shap(_sigmoid(12, 1), 12, 400, seed=0, batch_size=16)
    assert "broken" in [frame.name for frame in traceback.extract_tb(info.tb)]
    assert _alongside_workers() == []


def test_a_cancel_during_the_first_phases_fits_waits_for_them_and_leaves_no_thread(
        monkeypatch):
    started, cancelled, done = threading.Event(), threading.Event(), []
    real = ks._first_fits

    def first_fits(*args):
        started.set()
        assert cancelled.wait(WAIT)
        time.sleep(0.2)                      # still working when the cancel is raised
        done.append(real(*args))
        return done[-1]

    def cancel():
        if started.is_set():
            cancelled.set()
            return True
        return False

    monkeypatch.setattr(ks, "_first_fits", first_fits)
    with pytest.raises(ExplanationCancelled):
        kernel_shap(_sigmoid(12, 2), 12, 400, seed=1, batch_size=16, cancel=cancel)
    assert len(done) == 1                 # the fits ran to their end before the error left
    assert _alongside_workers() == []
