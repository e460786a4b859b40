"""Games with exact Shapley values for the Kernel SHAP comparison (numpy only).

Imported by bench_shap_accuracy.py (the benchmark venv) and by shapley_competitors.py (the
competitors' venv, another Python): nothing here imports the plugin.

Every game is a function of bool coalitions ``z`` (n, M) and is tabulated once over all
``2**M`` coalitions; row ``k`` of a table is the coalition whose bits are ``k``.

* smooth: linear, plus small pairwise products, plus a small smooth term of a weighted sum;
* saturating: a sigmoid of a weighted sum (how a segmentation probability behaves);
* interactions: 2M AND / OR terms of 2-4 random players with normal coefficients, plus a
  small linear part (a game of order <= 4);
* sparse: three strong players (a random function of their 8 coalitions), plus a weak linear
  part and a weak smooth term over every player.

``wide_game`` is not tabulated: its exact values are known in closed form at any number of
players (the plugin's tens to hundreds of cells).
"""

import math

import numpy as np

GAMES = ("smooth", "saturating", "interactions", "sparse")
GAME_SEED = 7           # the generator's seed of the benchmark's instances


def bits(m):
    """All coalitions of ``m`` players as bool rows; row ``k`` holds the bits of ``k``."""
    k = np.arange(2 ** m, dtype=np.int64)
    return ((k[:, None] >> np.arange(m)) & 1).astype(bool)


def smooth_game(m, rng):
    w = rng.normal(size=m)
    pairs = np.array([rng.choice(m, 2, replace=False) for _ in range(m)])
    a = 0.3 * rng.normal(size=len(pairs))
    u = rng.normal(size=m)

    def v(z):
        zf = np.asarray(z, dtype=np.float64)
        quad = (zf[:, pairs[:, 0]] * zf[:, pairs[:, 1]]) @ a
        return zf @ w + quad + 0.5 * np.tanh((zf - 0.5) @ u / math.sqrt(m))

    return v


def saturating_game(m, rng):
    w = rng.normal(size=m) * 8.0 / math.sqrt(m)
    b = rng.normal() - 0.5 * w.sum()

    def v(z):
        return 1.0 / (1.0 + np.exp(-(b + np.asarray(z, dtype=np.float64) @ w)))

    return v


def interaction_game(m, rng):
    terms = []
    for _ in range(2 * m):
        order = int(rng.integers(2, 5))
        members = rng.choice(m, size=order, replace=False)
        terms.append((members, bool(rng.random() < 0.5), rng.normal()))
    return and_or(0.2 * rng.normal(size=m), terms)


def and_or(lin, terms):
    """The game ``z @ lin`` plus ``c`` times the AND (``is_and``) or the OR of ``members``
    for every ``(members, is_and, c)`` of ``terms``."""
    def v(z):
        z = np.asarray(z, dtype=bool)
        out = z @ lin
        for members, is_and, c in terms:
            hit = z[:, members].all(axis=1) if is_and else z[:, members].any(axis=1)
            out = out + c * hit
        return out

    return v


def sparse_game(m, rng):
    strong = rng.choice(m, size=3, replace=False)
    table = 2.0 * rng.normal(size=8)
    lin = 0.05 * rng.normal(size=m)
    u = rng.normal(size=m)

    def v(z):
        zf = np.asarray(z, dtype=np.float64)
        idx = (np.asarray(z, dtype=np.int64)[:, strong] << np.arange(3)).sum(axis=1)
        return table[idx] - table[0] + zf @ lin + 0.05 * np.tanh((zf - 0.5) @ u)

    return v


def wide_game(m, seed):
    """A game of any number of players with exact values in closed form: a weak linear part
    plus ``m // 2`` AND / OR terms of 2-8 random players; a term's coefficient is shared
    equally by its players (symmetry and efficiency, AND and OR alike). Its odd part has
    terms of every odd order up to 7. Returns ``(v, exact values (M,))``."""
    rng = np.random.default_rng([seed, m])
    w = 0.1 * rng.normal(size=m)
    terms = [(rng.choice(m, int(rng.integers(2, 9)), replace=False), bool(rng.random() >= 0.5),
              0.3 * rng.normal()) for _ in range(m // 2)]
    exact = w.copy()
    for members, _, c in terms:
        exact[members] += c / len(members)
    return and_or(w, terms), exact


def majority_game(weights):
    """A weighted majority: 1 when the players present hold at least half the total weight,
    else 0 (a weighted voting game; two levels separated by a hyperplane). Returns
    ``(v, exact values (M,))``, the values by enumeration (at most 20 players)."""
    w = np.asarray(weights, dtype=float)
    m = len(w)
    if m > 20:
        raise ValueError("majority_game enumerates its coalitions: at most 20 players")

    def v(z):
        return (np.asarray(z, dtype=bool) @ w >= w.sum() / 2).astype(float)

    return v, exact_shapley(tabulate(v, m), m)


MAKERS = {"smooth": smooth_game, "saturating": saturating_game,
          "interactions": interaction_game, "sparse": sparse_game}


def tabulate(v, m, chunk=1 << 14):
    """``v`` on every coalition, indexed by the coalition's bits, float64 (2**M,)."""
    out = np.empty(2 ** m)
    z = bits(m)
    for start in range(0, len(z), chunk):
        out[start:start + chunk] = np.asarray(v(z[start:start + chunk]), dtype=np.float64)
    return out


def synthetic_table(name, m, seed=GAME_SEED):
    """Table of the synthetic game ``name`` with ``m`` players (``seed``: the instance)."""
    rng = np.random.default_rng([seed, m, GAMES.index(name)])
    return tabulate(MAKERS[name](m, rng), m)


def exact_shapley(table, m):
    """Exact Shapley values from the full table by the permutation-weight formula."""
    k = np.arange(2 ** m, dtype=np.int64)
    size = np.zeros(2 ** m, dtype=np.int64)
    for j in range(m):
        size += (k >> j) & 1
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
                       for s in range(m)])
    phi = np.empty(m)
    for i in range(m):
        without = k[((k >> i) & 1) == 0]
        phi[i] = np.sum(weight[size[without]] * (table[without | (1 << i)] - table[without]))
    return phi


class TableGame:
    """A tabulated game: value of coalitions (n, M) by lookup; counts the rows it is asked."""

    def __init__(self, table, m):
        self.table, self.m = table, m
        self.powers = 1 << np.arange(m, dtype=np.int64)
        self.rows = 0

    def __call__(self, z):
        z = np.asarray(z)
        if z.ndim == 1:
            z = z[None]
        if z.dtype != bool:
            if not np.all((z == 0) | (z == 1)):
                raise AssertionError("rows passed to the game are not coalition indicators")
            z = z.astype(bool)
        self.rows += len(z)
        return self.table[z.astype(np.int64) @ self.powers]


def result_key(table, budgets):
    """Cache key of a competitor run: the game's table and the budgets."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(table, dtype=np.float64).tobytes())
    h.update(repr([int(b) for b in budgets]).encode())
    return h.hexdigest()[:16]
