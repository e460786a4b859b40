"""Multi-scale occlusion with dynamic granularity and offsets.

After the seed paper's sections 4.3-4.12: the image is occluded recursively by quadrants
(depth 1 = the four quadrants of the image, each depth halves the cell size, down to
``max_depth``); every node's importance is the score drop its occlusion causes; a node's
children are kept only where their summed importance reaches the node's own, and
near-zero nodes are dropped; the grid is shifted by every multiple of half the smallest
cell up to the largest cell, one tree (and heatmap) per offset, cropped to the image;
the ``n_best`` heatmaps with the most importance per covered area are averaged.

Beyond the seed, the trees of all offsets are grown together, breadth first: a
rectangle shared by several offsets or depths is evaluated once, children of pruned
nodes are never evaluated, and all rectangles of one depth are evaluated in batches.
"""

from dataclasses import dataclass
from typing import List, NamedTuple, Tuple, Union

import numpy as np

from .batching import batch_size_for, check_cancel, run_batched
from .parameters import by_name

_D = {n: by_name(n).default for n in ("max_depth", "n_best", "batch_size")}

_EMPTY = (0, 0, 0, 0)

#: Offset trees in the sample that forecasts a run's size (:func:`sampled_tree_sizes`, and
#: the ``forecast`` of :func:`multiscale_occlusion`).
SAMPLE_TREES = 16


@dataclass(frozen=True)
class Leaf:
    """A leaf of a pruned occlusion tree.

    Attributes
    ----------
    rect : tuple of int
        ``(row0, row1, col0, col1)``, half-open, pixels.
    depth : int
        0 for the whole image, 1 for quadrants, ...
    importance : float or ndarray, shape (D,)
        Unoccluded score minus the score with ``rect`` occluded.
    offset : tuple of int
        ``(rows, cols)`` shift of the grid of the tree holding this leaf, pixels.
    """

    rect: Tuple[int, int, int, int]
    depth: int
    importance: Union[float, np.ndarray]
    offset: Tuple[int, int]


@dataclass(frozen=True)
class OcclusionResult:
    """Result of :func:`multiscale_occlusion`.

    Attributes
    ----------
    heatmap : ndarray, shape (H, W) or (D, H, W)
        Mean of the ``n_best`` selected offset heatmaps; each paints its leaves'
        importance (score units) and 0 where no leaf survives.
    leaves : list of Leaf
        Leaves of the selected offset trees, best tree first.
    n_evaluations : int
        Rectangles passed to ``score_fn`` (the unoccluded one included, if evaluated).
    n_naive_evaluations : int
        Evaluations the seed's algorithm spends on the same heatmap: every offset's tree
        grown whole to ``max_depth`` and evaluated node by node before it is pruned
        (``bench/seed_occlusion.py`` runs it), the unoccluded score included.
    n_unshared_evaluations : int
        Evaluations of pruning while growing, as here, but without sharing rectangles
        between trees and depths: every offset evaluates its own root and every child
        it expands.
    evaluations_by_depth : tuple of int
        ``n_evaluations`` by depth: depth 0 (the unoccluded image and the root) to
        ``max_depth``.
    n_offsets : int
        Offset trees built.
    unoccluded_score : float or ndarray, shape (D,)
    best_offsets : list of tuple of int
        ``(rows, cols)`` pixel offsets of the selected trees, best first.
    """

    heatmap: np.ndarray
    leaves: List[Leaf]
    n_evaluations: int
    n_naive_evaluations: int
    n_unshared_evaluations: int
    evaluations_by_depth: Tuple[int, ...]
    n_offsets: int
    unoccluded_score: Union[float, np.ndarray]
    best_offsets: List[Tuple[int, int]]


def multiscale_occlusion(score_fn, shape, *, max_depth=_D["max_depth"], n_best=_D["n_best"],
                         offsets=True, min_importance=0.01, unoccluded_score=None,
                         batch_size=_D["batch_size"], progress=None, cancel=None,
                         expected_by_depth=None, forecast=None):
    """Explain a score by multi-scale occlusion.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(rects)`` takes int rectangles of shape (n, 4), rows
        ``(row0, row1, col0, col1)`` half-open in pixels, and returns the model score
        with each rectangle occluded, shape (n,) or (n, D). An empty rectangle
        ``(0, 0, 0, 0)`` must mean "nothing occluded": it is asked for once to get
        the unoccluded score, unless ``unoccluded_score`` is given. All other
        rectangles are non-empty and inside the image. With D > 1 the tree is built
        on column 0 and every column gets a heatmap from the same evaluations.
    shape : tuple of int
        ``(H, W)``, pixels.
    max_depth : int
        Deepest level; depth ``d`` cells are ``H / 2**d`` by ``W / 2**d`` pixels.
    n_best : int
        Offset heatmaps averaged into ``heatmap``.
    offsets : bool
        If True, one tree per grid shift ``(i, j) * half the smallest cell`` for
        ``0 <= i, j < 2**max_depth`` (so up to the largest cell); if False, one tree.
    min_importance : float
        A node whose importance magnitude (column 0) is at most ``min_importance``
        times the largest importance magnitude among the root and the depth-1 cells of
        all offsets is dropped with its subtree (its area stays 0). 0 drops only
        exact zeros.
    unoccluded_score : float or array_like of shape (D,), optional
        The model's score on the unoccluded input, if already known.
    batch_size : int, optional
        None (the default): automatic, :func:`~.batching.batch_size_for` the shape.
    progress : callable(float), optional
        Called after every batch with the fraction of the expected evaluations done,
        below 1 until the end, then with 1.0.
    cancel : callable() -> bool, optional
        Checked before every batch; True raises ``ExplanationCancelled``.
    expected_by_depth : sequence of float, optional
        Evaluations the run is expected to spend at each depth, ``max_depth + 1`` values
        (depth 0: the unoccluded image and the root), e.g. from
        :func:`~.estimate.occlusion_profile`; only their proportions matter once the run
        is under way. Progress counts against their sum until the rectangles of depth 1
        are known; from then on against the evaluations done, those of the depth about
        to be evaluated (known exactly once the previous depth is pruned) and a forecast
        of the deeper ones: during depth 1, their expected counts scaled by the share of
        its expectation that depth has; below it, the run's own growth from one depth to
        the next, continued geometrically. Default: :func:`evaluation_bound`, the
        unpruned trees.
    forecast : callable, optional
        Refines ``expected_by_depth`` before depth 1 ends. With it, depth 1 starts with the
        trees of :func:`sampled_tree_sizes`'s sample (rectangles the run needs anyway), which
        are pruned as that function does; ``forecast(sample)``, given the sample (a
        :class:`TreeSample` through depth 1), returns the expected evaluations by depth
        that progress counts against from then on. Without it, the deeper depths'
        expectation is known only when depth 1 ends, and progress can jump there.

    Returns
    -------
    OcclusionResult
    """
    h, w = (int(v) for v in shape)
    depth_max = int(max_depth)
    if h < 1 or w < 1 or depth_max < 1:
        raise ValueError("shape must be positive and max_depth at least 1")
    grid = OffsetGrid(h, w, depth_max, bool(offsets))
    ev = _Evaluator(score_fn, batch_size_for(batch_size, h, w), progress, cancel,
                    expected_by_depth, grid)
    trees = _Trees(grid, ev, unoccluded_score, min_importance)
    ev.end_depth()
    for depth in range(1, depth_max + 1):
        rects = ev.expect(depth, trees.next_rects())
        if depth == 1 and forecast is not None and depth_max > 1 and grid.n_offsets > 1:
            sample = _sample_sizes(h, w, depth_max, SAMPLE_TREES, ev, trees.s0, 1,
                                   min_importance)
            ev.reprofile(forecast(sample), rects)
        trees.grow(rects)
        ev.end_depth()
    trees.finish()
    ev.finish()
    seed = grid.full_tree_evaluations() + (unoccluded_score is None)
    return combine_trees(grid, trees.leaves, trees.s0, int(n_best), ev.count, seed,
                         trees.naive, tuple(ev.by_depth))


class TreeSample(NamedTuple):
    """A sample of occlusion's offset trees (:func:`sampled_tree_sizes`).

    Attributes
    ----------
    nodes : tuple of int
        Nodes at depths 0 (the roots) to ``through_depth + 1``, summed over the sample; the
        last depth is counted, not evaluated.
    new : tuple of int
        Rectangles first evaluated at depths 0 to ``through_depth``: the sample's nodes
        less those it shares with another tree or depth. A run pays for these, not for
        nodes, and the kept nodes of different scores share rectangles in different
        proportions (a score that keeps few, scattered nodes shares few).
    evaluations : int
        Scores the sample evaluated (the unoccluded image included when it was).
    """

    nodes: Tuple[int, ...]
    new: Tuple[int, ...]
    evaluations: int


def sampled_tree_sizes(score_fn, shape, *, max_depth=_D["max_depth"], through_depth=2,
                       n_trees=SAMPLE_TREES, min_importance=0.01, batch_size=_D["batch_size"],
                       cancel=None):
    """A sample of :func:`multiscale_occlusion`'s offset trees, grown and pruned as in a
    whole run through ``through_depth``.

    The sample is ``n_trees`` offsets spread evenly over the grid shifts (all of them when
    there are fewer); the pruning threshold comes from the sample's own root and depth-1
    importances. The next depth's nodes, which that pruning decides, are counted without
    being evaluated. Comparing the sample with the same sample grown on another score
    tells how much more or less of the trees that score keeps, at a small part of a run's
    cost.

    Returns
    -------
    TreeSample
        Its ``evaluations`` include the unoccluded image.
    """
    h, w = (int(v) for v in shape)
    ev = _Evaluator(score_fn, batch_size_for(batch_size, h, w), None, cancel, None, None)
    s0 = ev.scores([_EMPTY])[0]
    sample = _sample_sizes(h, w, int(max_depth), n_trees, ev, s0, through_depth,
                           min_importance)
    return sample._replace(evaluations=ev.count)


def _sample_sizes(h, w, max_depth, n_trees, ev, s0, through_depth, min_importance):
    """:func:`sampled_tree_sizes`'s sample grown with the evaluator ``ev`` (whose memo it
    shares) from the unoccluded score ``s0``; returns its :class:`TreeSample` (evaluations:
    those it added to ``ev``)."""
    last = max(0, min(int(through_depth), max_depth - 1))
    step = max(1, 2 ** max_depth // max(1, int(round(np.sqrt(max(1, int(n_trees)))))))
    grid = OffsetGrid(h, w, max_depth, True, every=step)
    start = ev.count
    trees = _Trees(grid, ev, s0, min_importance)
    nodes, new = [grid.n_offsets], [ev.count - start]
    for _ in range(last):
        rects = trees.next_rects()
        nodes.append(len(rects))
        before = ev.count
        trees.grow(rects)
        new.append(ev.count - before)
    nodes.append(len(trees.next_rects()))
    return TreeSample(tuple(nodes), tuple(new), ev.count - start)


class _Trees:
    """The offset trees grown together, breadth first, pruned as they grow."""

    def __init__(self, grid, ev, unoccluded_score, min_importance):
        self.grid, self.ev, self.min_importance = grid, ev, float(min_importance)
        if unoccluded_score is None:
            self.s0 = ev.scores([_EMPTY])[0]
            self.naive = 1
        else:
            self.s0 = np.atleast_1d(np.asarray(unoccluded_score, dtype=np.float64))
            self.naive = 0
        root = (0, grid.t, 0, grid.t)
        self.root_imp = self.s0 - ev.scores([grid.rect(root)])[0]
        self.naive += grid.n_offsets
        self.frontier = [(i, root, self.root_imp) for i in range(grid.n_offsets)]
        self.leaves = [[] for _ in range(grid.n_offsets)]
        self.threshold = None
        self.depth = 0
        self.kids = None

    def next_rects(self):
        """The rectangles of the next depth: children of the nodes kept so far."""
        self.kids = [self.grid.children(i, node, self.depth) for i, node, _ in self.frontier]
        rects = [self.grid.rect(c) for cs in self.kids for c in cs]
        self.naive += len(rects)
        return rects

    def grow(self, rects):
        """Evaluate the next depth's ``rects`` and prune."""
        imps = self.s0 - self.ev.scores(rects)
        if self.threshold is None:
            scale = max(np.abs(self.root_imp[0]), np.abs(imps[:, 0]).max(initial=0.0))
            self.threshold = self.min_importance * scale
        self.frontier = _prune(self.frontier, self.kids, imps, self.threshold, self.leaves,
                               self.depth)
        self.depth += 1

    def finish(self):
        for i, node, imp in self.frontier:
            self.leaves[i].append((node, self.depth, imp))


def evaluation_bound(shape, max_depth, offsets=True):
    """Most evaluations :func:`multiscale_occlusion` can spend: every distinct rectangle of
    the unpruned offset trees, the unoccluded image and the root included.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``, pixels.
    max_depth : int
    offsets : bool

    Returns
    -------
    int

    Examples
    --------
    >>> evaluation_bound((512, 512), 4)
    6046
    """
    h, w = (int(v) for v in shape)
    return int(OffsetGrid(h, w, int(max_depth), bool(offsets)).upper_bound())


def _prune(frontier, kids, imps, threshold, leaves, depth):
    """Keep children whose summed importance reaches the parent's; return next frontier."""
    nxt, k = [], 0
    for (i, node, imp), cs in zip(frontier, kids):
        child_imps = imps[k:k + len(cs)]
        k += len(cs)
        live = np.abs(child_imps[:, 0]) > threshold
        total = child_imps[live, 0].sum()
        tol = 1e-9 * (abs(imp[0]) + np.abs(child_imps[live, 0]).sum())
        if imp[0] > total + tol:
            if abs(imp[0]) > threshold:
                leaves[i].append((node, depth, imp))
        else:
            nxt.extend((i, c, ci) for c, ci, ok in zip(cs, child_imps, live) if ok)
    return nxt


def combine_trees(grid, leaves, s0, n_best, n_eval, n_naive, n_unshared, by_depth=()):
    """Rank offset trees by importance per covered area, average the best heatmaps.

    ``leaves[i]`` holds offset tree ``i``'s leaves as ``(node, depth, importance [D])``;
    ``s0`` is the unoccluded score [D]; the counts go into the :class:`OcclusionResult`.
    """
    density = np.full(grid.n_offsets, -np.inf)
    for i, tree in enumerate(leaves):
        if tree:
            area = sum(_area(grid.rect(node)) for node, _, _ in tree)
            density[i] = sum(imp[0] for _, _, imp in tree) / area
    order = np.argsort(-density, kind="stable")[:max(1, min(n_best, grid.n_offsets))]
    heat = np.zeros((len(s0), grid.h, grid.w))
    out_leaves = []
    scalar = len(s0) == 1
    for i in order:
        for node, depth, imp in leaves[i]:
            r0, r1, c0, c1 = grid.rect(node)
            heat[:, r0:r1, c0:c1] += imp[:, None, None]
            out_leaves.append(Leaf((r0, r1, c0, c1), depth,
                                   float(imp[0]) if scalar else imp.copy(), grid.offset_px(i)))
    heat /= len(order)
    return OcclusionResult(
        heatmap=heat[0] if scalar else heat, leaves=out_leaves, n_evaluations=n_eval,
        n_naive_evaluations=n_naive,
        n_unshared_evaluations=n_unshared,
        evaluations_by_depth=tuple(int(v) for v in by_depth),
        n_offsets=grid.n_offsets,
        unoccluded_score=float(s0[0]) if scalar else s0,
        best_offsets=[grid.offset_px(i) for i in order])


def _area(rect):
    return (rect[1] - rect[0]) * (rect[3] - rect[2])


class OffsetGrid:
    """The cells of every offset quadtree, in half-units of the smallest cell
    (``T = 2**(max_depth + 1)``): the geometry :func:`multiscale_occlusion` and the seed's
    algorithm (``bench/seed_occlusion.py``) share.

    Parameters
    ----------
    h, w : int
        Image size, pixels.
    max_depth : int
    offsets : bool
        One tree per grid shift (``2**max_depth`` per axis), or a single tree.
    every : int
        Keep only the shifts that are multiples of ``every`` on both axes (a sample of the
        trees, :func:`sampled_tree_sizes`).
    """

    def __init__(self, h, w, max_depth, offsets, every=1):
        self.h, self.w, self.max_depth = h, w, max_depth
        self.t = 2 ** (max_depth + 1)
        n = 2 ** max_depth if offsets else 1
        self.shifts = [(a, b) for a in range(0, n, every) for b in range(0, n, every)]
        self.n_offsets = len(self.shifts)

    def rect(self, node):
        ty0, ty1, tx0, tx1 = node
        t = self.t
        return (ty0 * self.h // t, ty1 * self.h // t, tx0 * self.w // t, tx1 * self.w // t)

    def offset_px(self, i):
        a, b = self.shifts[i]
        return (a * self.h // self.t, b * self.w // self.t)

    def _cuts(self, t0, t1, shift, step):
        first = shift + ((t0 - shift) // step + 1) * step
        return [t0] + list(range(first, t1, step)) + [t1]

    def children(self, i, node, depth):
        """Non-empty children (depth + 1) of ``node`` in offset tree ``i``."""
        step = 2 ** (self.max_depth - depth)
        ay, ax = self.shifts[i]
        ys = self._cuts(node[0], node[1], ay, step)
        xs = self._cuts(node[2], node[3], ax, step)
        out = []
        for y0, y1 in zip(ys[:-1], ys[1:]):
            for x0, x1 in zip(xs[:-1], xs[1:]):
                c = (y0, y1, x0, x1)
                if _area(self.rect(c)) > 0:
                    out.append(c)
        return out

    def full_tree_evaluations(self):
        """Nodes of every offset's whole tree, roots included (the seed's evaluations)."""
        total = 0
        for a, b in self.shifts:
            for depth in range(self.max_depth + 1):
                step = 2 ** (self.max_depth + 1 - depth)
                rows = self._cuts(0, self.t, a, step) if depth else [0, self.t]
                cols = self._cuts(0, self.t, b, step) if depth else [0, self.t]
                n_r = sum(y1 * self.h // self.t > y0 * self.h // self.t
                          for y0, y1 in zip(rows[:-1], rows[1:]))
                n_c = sum(x1 * self.w // self.t > x0 * self.w // self.t
                          for x0, x1 in zip(cols[:-1], cols[1:]))
                total += n_r * n_c
        return total

    def upper_bound(self):
        """Evaluations of the unpruned trees, each distinct rectangle once, with the
        unoccluded one."""
        total = 2
        for depth in range(1, self.max_depth + 1):
            step = 2 ** (self.max_depth + 1 - depth)
            rows = {(v[0] * self.h // self.t, v[1] * self.h // self.t)
                    for a in {s[0] for s in self.shifts}
                    for cut in [self._cuts(0, self.t, a, step)] for v in zip(cut[:-1], cut[1:])}
            cols = {(v[0] * self.w // self.t, v[1] * self.w // self.t)
                    for b in {s[1] for s in self.shifts}
                    for cut in [self._cuts(0, self.t, b, step)] for v in zip(cut[:-1], cut[1:])}
            total += len(rows) * len(cols)
        return total


class _Evaluator:
    """Scores rectangles in batches, each distinct one once; counts evaluations by depth and
    reports progress against the expected total, refined as the trees grow."""

    def __init__(self, score_fn, batch_size, progress, cancel, expected_by_depth, grid):
        self.fn, self.batch_size = score_fn, batch_size
        self.progress, self.cancel = progress, cancel
        self.profile = None if expected_by_depth is None else \
            [max(0.0, float(v)) for v in expected_by_depth]
        self.bound = grid.upper_bound() if grid is not None else None
        self.total = max(1.0, sum(self.profile) if self.profile else self.bound or 1.0)
        self.memo = {}
        self.count = 0
        self.by_depth = []
        self._depth_start = 0

    def n_new(self, rects):
        """How many of ``rects`` have not been evaluated yet."""
        return len({r for r in rects if r not in self.memo})

    def expect(self, depth, rects):
        """``depth``'s rectangles are known: recount the total expected. Returns ``rects``.

        At depth 1 (never pruned) the deeper depths keep the expectation, scaled by the
        share of its count this depth has. Below it the run's own pruning is known: the
        deeper depths are forecast from its growth, ``n_d / n_(d-1)`` evaluations, as a
        geometric series (a score's pruning departs from any fixed profile's shape, the
        stand-in's included, more at every depth). Never beyond the unpruned trees' count.
        """
        if self.profile is None or depth >= len(self.profile):
            return rects
        n = self.n_new(rects)
        later = self.profile[depth + 1:]
        if depth >= 2 and len(self.by_depth) == depth and self.by_depth[-1] > 0:
            growth = n / self.by_depth[-1]
            rest = sum(n * growth ** k for k in range(1, len(later) + 1))
        else:
            planned = self.profile[depth]
            rest = (n / planned if planned > 0 else 1.0) * sum(later)
        if self.bound is not None:
            rest = min(rest, max(0.0, self.bound - self.count - n))
        self.total = max(1.0, self.count + n + rest)
        return rects

    def reprofile(self, expected_by_depth, rects):
        """A new expectation by depth, during depth 1 whose ``rects`` are known: progress
        counts against the evaluations done, ``rects`` still to evaluate and the deeper
        depths' new expectation."""
        self.profile = [max(0.0, float(v)) for v in expected_by_depth]
        self.total = max(1.0, self.count + self.n_new(rects) + sum(self.profile[2:]))

    def end_depth(self):
        self.by_depth.append(self.count - self._depth_start)
        self._depth_start = self.count

    def scores(self, rects):
        """Scores of ``rects`` (tuples), shape (n, D); new ones are evaluated."""
        new = list(dict.fromkeys(r for r in rects if r not in self.memo))
        check_cancel(self.cancel)
        if new:
            arr = np.asarray(new, dtype=np.int64).reshape(-1, 4)
            res = run_batched(self.fn, arr, self.batch_size, progress=self.progress,
                              cancel=self.cancel, done=self.count,
                              # never past the total: 1 only once the run ends
                              total=max(int(round(self.total)), self.count + len(new) + 1))
            res = np.asarray(res, dtype=np.float64).reshape(len(new), -1)
            for rect, row in zip(new, res):
                self.memo[rect] = row
            self.count += len(new)
        return np.stack([self.memo[r] for r in rects]) if rects else np.zeros((0, 1))

    def finish(self):
        if self.progress is not None:
            self.progress(1.0)
