"""Gradient-boosted regression trees on coalitions, with their exact Shapley values.

A surrogate of a cooperative game for Kernel SHAP's regression adjustment (numpy only).
Features are bool (a player present or not), so every split is "player j in or out" and
every leaf of a tree is the product of its path's literals: ``prod_{j in A} z_j *
prod_{j in B} (1 - z_j)``. The Shapley value of that product is closed-form: over a
random order of the players, player ``i`` in ``A`` turns it on exactly when the rest of
``A`` comes before ``i`` and all of ``B`` after, with probability ``(a - 1)! b! / (a +
b)!``; a player of ``B`` turns it off (a present literal ``1 - z_j`` vanishes) when all
of ``A`` comes before it and the rest of ``B`` after, ``a! (b - 1)! / (a + b)!``. So a
boosted model's Shapley values are exact for any number of players, at a cost linear in
its leaves.

Trees are grown level by level (all nodes of a level at once: the sums of the second
children by one matrix product over their rows, those of the first as their parent's less
them), with a squared loss, leaf values shrunk by ``lam`` (as XGBoost's L2 penalty) and the
learning rate ``rate``; a player is split on at most once on a path.
"""

import functools
import math

import numpy as np

DEPTH = 6
ROUNDS = 100
RATE = 0.3
LAM = 1.0


class BoostedTrees:
    """``c + sum of trees``; every tree is ``(splits, values)``: per level, the player
    each node splits on (-1: no split, every row goes to the node's first child), and the
    ``2**depth`` leaf values."""

    def __init__(self, base, trees, n_features):
        self.base = base
        self.trees = trees
        self.n_features = n_features

    def predict(self, z):
        rows = _Rows(z)
        out = np.full(rows.n, self.base)
        for splits, values in self.trees:
            node = np.zeros(rows.n, dtype=np.int64)
            for split in splits:
                node = rows.child(node, split)
            out += values[node]
        return out

    def shapley(self):
        """Exact Shapley values of the model as a game on its players, (M,).

        Every leaf of every tree at once (:func:`_leaf_terms`); each player's terms are
        added in the order of the trees and their leaves, one after another
        (``np.add.at``), as a loop over the leaves adds them: the same values bit for bit."""
        phi = np.zeros(self.n_features)
        if self.trees:                       # fit's trees: all of one depth
            depth = len(self.trees[0][0])
            splits = [np.stack([s[level] for s, _ in self.trees]) for level in range(depth)]
            players, terms = _leaf_terms(splits, np.stack([v for _, v in self.trees]))
            np.add.at(phi, players, terms)
        return phi


@functools.lru_cache(maxsize=8)
def _factorials(depth):
    """``k!`` for ``k = 0 .. depth``, float64: a path has at most ``depth`` literals."""
    return np.array([math.factorial(k) for k in range(depth + 1)], dtype=np.float64)


def _leaf_terms(splits, values):
    """The Shapley terms of trees of one depth: ``splits[level]`` (T, 2**level) and
    ``values`` (T, leaves) stacked over the trees. Returns ``(players, terms)``, tree after
    tree, leaf after leaf, each leaf's players in the order of its path. A nonzero leaf of
    literals ``on`` (``a`` of them) and ``off`` (``b``) gives ``+ v (a - 1)! b! / (a + b)!``
    to each player of ``on`` and ``- v a! (b - 1)! / (a + b)!`` to each of ``off`` (module
    notes); a leaf under an unsplit node's empty second child, or with no literal, none."""
    depth = len(splits)
    tree, leaves = np.nonzero(values)                         # row-major: tree, then leaf
    shift = depth - 1 - np.arange(depth)
    bits = (leaves[:, None] >> shift) & 1                     # (L, depth): the path's turns
    nodes = leaves[:, None] >> (shift + 1)                    # the node at each level
    split = np.zeros((len(leaves), depth), dtype=np.int64)    # the player split on there
    for level in range(depth):
        split[:, level] = splits[level][tree, nodes[:, level]]
    keep = ~((split < 0) & (bits == 1)).any(axis=1)
    on, off = (split >= 0) & (bits == 1), (split >= 0) & (bits == 0)
    a, b = on.sum(axis=1), off.sum(axis=1)
    keep &= a + b > 0
    v, a, b, fact = values[tree, leaves], a[:, None], b[:, None], _factorials(depth)
    total = fact[a + b]
    # as a loop over the leaves computes them: ((v * x!) * y!) / (a + b)!
    plus = v[:, None] * fact[np.maximum(a - 1, 0)] * fact[b] / total
    minus = v[:, None] * fact[a] * fact[np.maximum(b - 1, 0)] / total
    literal = (on | off) & keep[:, None]                      # row-major: leaf after leaf
    terms = np.where(on, plus, -minus)
    return split[literal], terms[literal]


class _Rows:
    """Bool rows (n, M) laid out for sending each row down a tree: a column M that no row
    holds, where a node that does not split (``-1``) sends all its rows (its first child)."""

    def __init__(self, z):
        xb = np.asarray(z, dtype=bool)
        self.n, self.m = xb.shape
        held = np.zeros((self.n, self.m + 1), dtype=np.int64)
        held[:, :self.m] = xb
        self.flat = held.ravel()
        self.start = np.arange(self.n) * (self.m + 1)

    def child(self, node, split):
        """Every row's node on the next level: the second child of its node when the node
        splits on a player (``split[node] >= 0``) the row holds, else the first."""
        return 2 * node + self.flat[self.start + np.where(split >= 0, split, self.m)[node]]


def _children_sums(x, r, node, s1, n1):
    """The next level's sums over each node's rows with player ``j`` in, of the residuals
    ``r`` and of the rows (M, 2 * nodes), from the level's ``s1, n1`` (M, nodes) and the
    rows' new nodes: the second children's from their rows alone (a row is in one node,
    so about half the rows and half the nodes), the first children's as their parent's
    less them (the counts exactly)."""
    sel = np.flatnonzero(node & 1)
    half = s1.shape[1]
    member = np.zeros((len(sel), half))
    member[np.arange(len(sel)), node[sel] >> 1] = 1.0
    xs = x[sel]
    s_two, n_two = xs.T @ (member * r[sel, None]), xs.T @ member
    s_next, n_next = np.empty((x.shape[1], 2 * half)), np.empty((x.shape[1], 2 * half))
    s_next[:, 0::2], s_next[:, 1::2] = s1 - s_two, s_two
    n_next[:, 0::2], n_next[:, 1::2] = n1 - n_two, n_two
    return s_next, n_next


def fit(z, y, *, depth=DEPTH, rounds=ROUNDS, rate=RATE, lam=LAM):
    """Boosted trees fitted to ``y`` (n,) on bool rows ``z`` (n, M) by least squares."""
    xb = np.asarray(z, dtype=bool)
    x = xb.astype(np.float64)
    n, m = x.shape
    rows = _Rows(xb)
    base = float(np.mean(y)) if n else 0.0
    r = np.asarray(y, dtype=np.float64) - base
    trees = []
    counts = x.sum(axis=0)[:, None]
    for _ in range(rounds):
        node = np.zeros(n, dtype=np.int64)
        used = np.zeros((m, 1), dtype=bool)             # (M, nodes): split on above the node
        splits = []
        s1, n1 = (x.T @ r)[:, None], counts             # (M, nodes): sums with player j in
        least = 1e-12 * max(float(r @ r), 1e-300)       # the smallest gain that splits
        for level in range(depth):
            width = 1 << level
            if level:
                s1, n1 = _children_sums(x, r, node, s1, n1)
            st, nt = np.bincount(node, r, width), np.bincount(node, None, width)
            s0, n0 = st - s1, nt - n1
            gain = s1 ** 2 / (n1 + lam) + s0 ** 2 / (n0 + lam) - st ** 2 / (nt + lam)
            gain[(n1 < 1) | (n0 < 1) | used] = -np.inf
            best = np.argmax(gain, axis=0)
            split = gain[best, np.arange(width)] > least
            best[~split] = -1
            splits.append(best)
            node = rows.child(node, best)
            used = np.repeat(used, 2, axis=1)
            idx = np.flatnonzero(split)
            used[best[idx], 2 * idx] = True
            used[best[idx], 2 * idx + 1] = True
        leaves = 1 << depth
        values = rate * np.bincount(node, r, leaves) / (np.bincount(node, None, leaves) + lam)
        r = r - values[node]
        trees.append((splits, values))
    return BoostedTrees(base, trees, m)
