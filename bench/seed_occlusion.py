"""The seed's multi-scale occlusion, as its paper describes it: an oracle and a baseline.

Used by ``tests/test_core_occlusion.py`` (ours must give the same heatmap and leaves) and by
``bench_occlusion.py`` (how many evaluations ours saves). Not part of the plugin: it shares
only the cell geometry and the final ranking of trees with ``core.occlusion``.
"""

import numpy as np

from seg_explainer.core.batching import check_cancel, run_batched
from seg_explainer.core.occlusion import OffsetGrid, combine_trees

_EMPTY = (0, 0, 0, 0)


def naive_multiscale_occlusion(score_fn, shape, *, max_depth=4, n_best=5, offsets=True,
                               min_importance=0.01, unoccluded_score=None, batch_size=1,
                               progress=None, cancel=None):
    """The seed's algorithm, for comparison: every offset tree grown whole, then pruned.

    As in the seed paper (sections 4.4 and 4.5): each offset's quadtree is built to
    ``max_depth`` with every node evaluated, one tree after the other, and only then pruned
    top-down by the same rules as :func:`multiscale_occlusion` (near-zero children dropped,
    children kept where their summed importance reaches the parent's). Same parameters and
    result as ``core.occlusion.multiscale_occlusion``; ``n_evaluations ==
    n_naive_evaluations``. Gives the same heatmap and leaves, at the seed's cost.
    """
    h, w = (int(v) for v in shape)
    depth_max = int(max_depth)
    if h < 1 or w < 1 or depth_max < 1:
        raise ValueError("shape must be positive and max_depth at least 1")
    grid = OffsetGrid(h, w, depth_max, bool(offsets))
    total = grid.full_tree_evaluations() + (unoccluded_score is None)
    count = 0

    def evaluate(rects):
        nonlocal count
        arr = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        res = run_batched(score_fn, arr, batch_size, progress=progress, cancel=cancel,
                          done=count, total=total)
        count += len(arr)
        return np.asarray(res, dtype=np.float64).reshape(len(arr), -1)

    check_cancel(cancel)
    if unoccluded_score is None:
        s0 = evaluate([_EMPTY])[0]
    else:
        s0 = np.atleast_1d(np.asarray(unoccluded_score, dtype=np.float64))
    root = (0, grid.t, 0, grid.t)
    trees = []
    for i in range(grid.n_offsets):                   # one whole tree per offset
        levels = [([root], np.zeros(0, dtype=int))]
        for depth in range(depth_max):
            kids, parents = [], []
            for p, node in enumerate(levels[-1][0]):
                cs = grid.children(i, node, depth)
                kids.extend(cs)
                parents.extend([p] * len(cs))
            levels.append((kids, np.asarray(parents, dtype=int)))
        nodes = [n for lv, _ in levels for n in lv]
        imps = s0 - evaluate([grid.rect(n) for n in nodes])
        bounds = np.cumsum([0] + [len(lv) for lv, _ in levels])
        trees.append([(lv, par, imps[a:b]) for (lv, par), a, b
                      in zip(levels, bounds[:-1], bounds[1:])])
    scale = max(abs(trees[0][0][2][0, 0]),
                max(np.abs(t[1][2][:, 0]).max(initial=0.0) for t in trees))
    threshold = float(min_importance) * scale
    pruned = [_prune_whole_tree(tree, threshold) for tree in trees]
    unshared = (unoccluded_score is None) + grid.n_offsets + sum(n for _, n in pruned)
    if progress is not None:
        progress(1.0)
    return combine_trees(grid, [lv for lv, _ in pruned], s0, int(n_best), count, count, unshared)


def _prune_whole_tree(levels, threshold):
    """Top-down pruning of a fully evaluated tree.

    Returns the leaves in breadth-first order and how many of the tree's non-root nodes
    have a parent that pruning reaches (what growing and pruning together evaluates: a
    reached node's children are scored to decide whether to keep them).
    """
    leaves, expanded_kids = [], 0
    reached = np.ones(1, dtype=bool)
    for depth in range(len(levels) - 1):
        nodes, _, imp = levels[depth]
        _, parent, kid_imp = levels[depth + 1]
        live = np.abs(kid_imp[:, 0]) > threshold
        total = np.zeros(len(nodes))
        mag = np.zeros(len(nodes))
        np.add.at(total, parent[live], kid_imp[live, 0])
        np.add.at(mag, parent[live], np.abs(kid_imp[live, 0]))
        stop = imp[:, 0] > total + 1e-9 * (np.abs(imp[:, 0]) + mag)
        for k in np.flatnonzero(reached & stop & (np.abs(imp[:, 0]) > threshold)):
            leaves.append((nodes[k], depth, imp[k]))
        expanded_kids += int(reached[parent].sum())
        reached = (reached & ~stop)[parent] & live
    nodes, _, imp = levels[-1]
    leaves.extend((nodes[k], len(levels) - 1, imp[k]) for k in np.flatnonzero(reached))
    return leaves, expanded_kids
