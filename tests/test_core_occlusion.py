"""Multi-scale occlusion: grid-occlusion oracle, pruning rules, cache equivalence."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sys
from pathlib import Path

from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.occlusion import multiscale_occlusion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from seed_occlusion import naive_multiscale_occlusion  # noqa: E402  (the seed's, an oracle)

H, W = 24, 32


class MapScore:
    """Score = f(sum of a weight map over the unoccluded pixels); records every call."""

    def __init__(self, wmap, f=lambda x: x):
        self.wmap, self.f, self.calls = wmap, f, []

    def __call__(self, rects):
        rects = np.asarray(rects)
        self.calls.append(rects.copy())
        out = []
        for r0, r1, c0, c1 in rects:
            keep = np.ones(self.wmap.shape[-2:])
            keep[r0:r1, c0:c1] = 0
            out.append(self.f((self.wmap * keep).sum(axis=(-2, -1))))
        return np.asarray(out)

    def rects(self):
        return np.concatenate(self.calls)


def blob_map():
    w = np.zeros((H, W))
    w[2:9, 3:10] = 1.0
    w[15:22, 20:29] = 0.6
    w[12, 5] = 3.0
    return w


def test_depth_one_without_offsets_is_grid_occlusion():
    wmap = blob_map() + 0.01
    score = MapScore(wmap, lambda x: x ** 1.5)
    res = multiscale_occlusion(score, (H, W), max_depth=1, offsets=False, min_importance=0)
    s0 = wmap.sum() ** 1.5
    expected = np.zeros((H, W))
    for r0, r1 in ((0, H // 2), (H // 2, H)):
        for c0, c1 in ((0, W // 2), (W // 2, W)):
            keep = np.ones((H, W))
            keep[r0:r1, c0:c1] = 0
            expected[r0:r1, c0:c1] = s0 - (wmap * keep).sum() ** 1.5
    np.testing.assert_allclose(res.heatmap, expected, atol=1e-9)
    assert res.n_offsets == 1 and res.n_evaluations == 6      # unoccluded, root, 4


def quadrant_score(importances, root_importance, s0=10.0):
    """Score whose importance is set per quadrant (and for the whole image)."""
    def score(rects):
        out = []
        for r0, r1, c0, c1 in rects:
            if r0 == r1:
                out.append(s0)
            elif (r0, r1, c0, c1) == (0, H, 0, W):
                out.append(s0 - root_importance)
            else:
                q = 2 * (r0 >= H // 2) + (c0 >= W // 2)
                out.append(s0 - importances[q])
        return np.array(out)
    return score


@pytest.mark.parametrize("children,root,kept", [
    ((3.0, 2.0, 1.0, 0.0), 4.0, (0, 1, 2)),   # Fig. 14A: children sum 6 > 4; zero dropped
    ((1.0, 0.5, 0.5, 0.0), 4.0, None),        # Fig. 14B: parent 4 > sum 2: children pruned
    ((1.0, 1.0, 1.0, 1.0), 4.0, (0, 1, 2, 3)),  # tie: smaller areas preferred
])
def test_pruning_like_figure_14(children, root, kept):
    res = multiscale_occlusion(quadrant_score(children, root), (H, W), max_depth=1,
                               offsets=False, min_importance=0)
    if kept is None:
        assert [(lf.rect, lf.depth) for lf in res.leaves] == [((0, H, 0, W), 0)]
        np.testing.assert_allclose(res.heatmap, root)
    else:
        quads = [(0, H // 2, 0, W // 2), (0, H // 2, W // 2, W),
                 (H // 2, H, 0, W // 2), (H // 2, H, W // 2, W)]
        assert sorted(lf.rect for lf in res.leaves) == sorted(quads[q] for q in kept)
        assert all(lf.depth == 1 for lf in res.leaves)
        for q, imp in enumerate(children):
            r0, r1, c0, c1 = quads[q]
            np.testing.assert_allclose(res.heatmap[r0:r1, c0:c1], imp)


def test_near_zero_nodes_are_dropped_and_not_expanded():
    wmap = np.zeros((H, W))
    wmap[:H // 2, :W // 2] = 1.0
    wmap[H // 2:, W // 2:] = 1e-4                      # near zero: 1e-4 of the top node
    base = MapScore(wmap)

    def score(rects):                                  # the whole image matters less
        out = base(rects)
        whole = [tuple(r) == (0, H, 0, W) for r in np.asarray(rects)]
        return np.where(whole, wmap.sum() / 2, out)

    res = multiscale_occlusion(score, (H, W), max_depth=3, offsets=False,
                               min_importance=0.01)
    assert np.all(res.heatmap[H // 2:, W // 2:] == 0)
    cell = (H // 8) * (W // 8)                         # finest cells kept, each 12 px
    np.testing.assert_allclose(res.heatmap[:H // 2, :W // 2], cell)
    assert {lf.depth for lf in res.leaves} == {3}
    # nothing below the dropped quadrants was evaluated
    below = [r for r in base.rects()[1:] if r[0] >= H // 2 or r[2] >= W // 2]
    assert all((r[1] - r[0], r[3] - r[2]) == (H // 2, W // 2) for r in below)


@pytest.mark.parametrize("f", [lambda x: x, lambda x: np.sqrt(x + 1.0), lambda x: x ** 2])
def test_cache_matches_naive_with_fewer_evaluations(f):
    wmap = blob_map()
    cached, naive = MapScore(wmap, f), MapScore(wmap, f)
    a = multiscale_occlusion(cached, (H, W), max_depth=3, n_best=4)
    b = naive_multiscale_occlusion(naive, (H, W), max_depth=3, n_best=4)
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-12)
    assert [lf.rect for lf in a.leaves] == [lf.rect for lf in b.leaves]
    assert a.n_offsets == b.n_offsets == 64
    assert b.n_evaluations == b.n_naive_evaluations == a.n_naive_evaluations
    assert b.n_unshared_evaluations == a.n_unshared_evaluations
    assert a.n_evaluations < a.n_unshared_evaluations < b.n_evaluations
    assert len(cached.rects()) == a.n_evaluations
    assert len(naive.rects()) == b.n_evaluations


def _whole_tree_rects(h, w, depth, shift):
    """Every node of one offset's whole tree, from the seed's description (an oracle)."""
    t = 2 ** (depth + 1)
    out = []
    for d in range(depth + 1):
        step = t // 2 ** d
        cuts = [[0] + [v for v in range(1, t) if d and v % step == s % step] + [t]
                for s in shift]
        rows = {(a * h // t, b * h // t) for a, b in zip(cuts[0][:-1], cuts[0][1:])}
        cols = {(a * w // t, b * w // t) for a, b in zip(cuts[1][:-1], cuts[1][1:])}
        out += [(r0, r1, c0, c1) for r0, r1 in rows for c0, c1 in cols
                if r1 > r0 and c1 > c0]
    return out


@pytest.mark.parametrize("depth,offsets", [(1, True), (2, True), (3, False), (3, True)])
def test_naive_grows_every_whole_tree(depth, offsets):
    score = MapScore(blob_map())
    res = naive_multiscale_occlusion(score, (H, W), max_depth=depth, offsets=offsets)
    n = 2 ** depth if offsets else 1
    expected = [r for a in range(n) for b in range(n)
                for r in _whole_tree_rects(H, W, depth, (a, b))]
    got = [tuple(int(v) for v in r) for r in score.rects()[1:]]
    assert sorted(got) == sorted(expected)
    assert res.n_evaluations == len(expected) + 1 == res.n_naive_evaluations


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31), depth=st.integers(1, 3), offsets=st.booleans(),
       power=st.floats(0.3, 3.0), n_best=st.integers(1, 6),
       min_importance=st.sampled_from([0.0, 0.01, 0.1]))
def test_ours_equals_the_seeds_algorithm(seed, depth, offsets, power, n_best, min_importance):
    rng = np.random.default_rng(seed)
    wmap = rng.gamma(0.3, size=(H, W)) * (rng.random((H, W)) < 0.3)
    wmap -= 0.2 * rng.random((H, W)) * (rng.random((H, W)) < 0.1)   # some negative pixels
    f = lambda x: np.sign(x) * np.abs(x) ** power                       # noqa: E731
    kw = dict(max_depth=depth, offsets=offsets, n_best=n_best, min_importance=min_importance)
    a = multiscale_occlusion(MapScore(wmap, f), (H, W), **kw)
    b = naive_multiscale_occlusion(MapScore(wmap, f), (H, W), **kw)
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert [(lf.rect, lf.depth, lf.offset) for lf in a.leaves] == \
        [(lf.rect, lf.depth, lf.offset) for lf in b.leaves]
    assert a.best_offsets == b.best_offsets
    assert a.n_naive_evaluations == b.n_evaluations
    assert a.n_evaluations <= a.n_unshared_evaluations == b.n_unshared_evaluations


def test_cache_saves_most_evaluations_on_an_additive_score():
    a = multiscale_occlusion(MapScore(blob_map()), (H, W), max_depth=3)
    assert a.n_evaluations < a.n_naive_evaluations / 3


def test_no_rectangle_twice_all_inside_and_batched():
    score = MapScore(blob_map(), lambda x: x ** 1.3)
    res = multiscale_occlusion(score, (H, W), max_depth=4, batch_size=10)
    rects = score.rects()
    assert all(len(c) <= 10 for c in score.calls)
    assert len({tuple(r) for r in rects}) == len(rects) == res.n_evaluations
    assert tuple(rects[0]) == (0, 0, 0, 0)                 # the unoccluded score
    body = rects[1:]
    assert np.all(body[:, 0] < body[:, 1]) and np.all(body[:, 2] < body[:, 3])
    assert np.all(body[:, [0, 2]] >= 0)
    assert np.all(body[:, 1] <= H) and np.all(body[:, 3] <= W)


def test_best_heatmaps_and_leaves_consistent():
    res = multiscale_occlusion(MapScore(blob_map()), (H, W), max_depth=3, n_best=3)
    assert len(res.best_offsets) == 3
    rebuilt = np.zeros((H, W))
    for lf in res.leaves:
        r0, r1, c0, c1 = lf.rect
        rebuilt[r0:r1, c0:c1] += lf.importance
    np.testing.assert_allclose(rebuilt / 3, res.heatmap, atol=1e-12)
    # the heat lies on the planted blobs
    assert res.heatmap[2:9, 3:10].mean() > 5 * np.abs(res.heatmap[:, 12:18]).mean()


def test_vector_scores_use_column_zero_for_the_tree():
    wmap = np.stack([blob_map(), blob_map()[::-1]])
    multi = multiscale_occlusion(MapScore(wmap), (H, W), max_depth=2)
    single = multiscale_occlusion(MapScore(wmap[0]), (H, W), max_depth=2)
    assert multi.heatmap.shape == (2, H, W)
    np.testing.assert_allclose(multi.heatmap[0], single.heatmap, atol=1e-12)
    assert multi.n_evaluations == single.n_evaluations


def test_given_unoccluded_score_skips_the_empty_rectangle():
    wmap = blob_map()
    score = MapScore(wmap)
    res = multiscale_occlusion(score, (H, W), max_depth=2, unoccluded_score=wmap.sum())
    assert not any(r[0] == r[1] for r in score.rects())
    ref = multiscale_occlusion(MapScore(wmap), (H, W), max_depth=2)
    np.testing.assert_allclose(res.heatmap, ref.heatmap)


def test_cancel_and_progress():
    score = MapScore(blob_map())
    with pytest.raises(ExplanationCancelled):
        multiscale_occlusion(score, (H, W), cancel=lambda: True)
    assert score.calls == []
    seen = []
    multiscale_occlusion(MapScore(blob_map()), (H, W), max_depth=3, batch_size=8,
                         progress=seen.append)
    assert seen[-1] == 1.0
    assert all(0 <= a <= b <= 1 for a, b in zip(seen, seen[1:]))
