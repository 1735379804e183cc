r"""Exact Bayes-optimal finite-horizon value of Bernoulli bandits (NumPy, host side).

The ceiling of every column of the RL² bandit table (Duan et al. 2016,
arXiv:1611.02779, §4.1, Table 1): tasks are k-armed Bernoulli bandits with
:math:`p_i \sim \mathrm{Uniform}[0, 1] = \mathrm{Beta}(1, 1)` independently, a
trial is n pulls, the score is the undiscounted total reward. The Bayes-optimal
policy maximises the expected score under that prior; its value is the expected
total reward over tasks drawn from the prior, which is what the table reports.

The posterior after t pulls is the list of per-arm counts
:math:`(s_i, f_i)` (successes, failures), :math:`\sum_i s_i + f_i = t`; arm i
pays 1 with posterior mean :math:`\hat p_i = (s_i + 1)/(s_i + f_i + 2)`. By
backward induction over the horizon (Bellman's equation on the belief MDP),

.. math::

    V_n(\cdot) = 0, \qquad
    V_t(c) = \max_i \; \hat p_i \,[1 + V_{t+1}(c + e_i^s)]
             + (1 - \hat p_i)\, V_{t+1}(c + e_i^f),

and the table's value is :math:`V_0(0)`. Arms are exchangeable under the prior,
so a state is the *multiset* of the k pairs: each pair is coded by its index
among the pairs with :math:`s + f \le n`, a state is the sorted vector of the
k codes, and a level (all states after t pulls) is a sorted array of integer
keys. Each level is computed from the next one in a few vectorised NumPy
operations (sort, ``searchsorted``), so the cost is the state count, printed
by :func:`state_count` (``BayesOptimal.num_states``):

==  ===  ===================  =====================
k   n    states (all t)       V_0 (expected total)
==  ===  ===================  =====================
2   10   511                  6.0218
2   100  2,299,726            64.918
5   10   3,519                6.6600
10  10   4,435                6.7140
==  ===  ===================  =====================

(values from ``solve(k, n).value``, states from ``state_count``; checked in
``tests/eval/test_bayes_optimal.py``).
k = 5 at n = 100
has 3.99 · 10¹¹ states and is refused (``max_states``).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import numpy as np

from mtrlrec.core.errors import ConfigError, check_int


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Codes of the pairs (s, f), s + f <= n: ``(s, f, code_after_success, code_after_failure)``.

    Codes are ordered by pulls s + f, then s; successors of pairs with s + f = n
    point to themselves (never used: no pull follows the last one).
    """
    s, f = [], []
    for t in range(n + 1):
        for si in range(t + 1):
            s.append(si)
            f.append(t - si)
    s = np.asarray(s, np.int64)
    f = np.asarray(f, np.int64)
    index = {(a, b): i for i, (a, b) in enumerate(zip(s.tolist(), f.tolist()))}
    succ_s = np.asarray([index.get((a + 1, b), i) for i, (a, b) in enumerate(zip(s, f))])
    succ_f = np.asarray([index.get((a, b + 1), i) for i, (a, b) in enumerate(zip(s, f))])
    return s, f, succ_s, succ_f


@dataclasses.dataclass
class BayesOptimal:
    """The solved belief MDP of one (k, n).

    Attributes:
      num_arms: k.
      horizon: n.
      value: :math:`V_0` of the empty posterior: the Bayes-optimal expected total reward.
      num_states: states over all levels t = 0..n.
      keys: per level t, the sorted keys of its states ``[M_t]``.
      codes: per level t, the states as sorted pair codes ``[M_t, k]``.
      best: per level t < n, the position (into ``codes[t]``) of an optimal arm ``[M_t]``.
      values: per level t, :math:`V_t` ``[M_t]``.
    """

    num_arms: int
    horizon: int
    value: float
    num_states: int
    keys: list[np.ndarray]
    codes: list[np.ndarray]
    best: list[np.ndarray]
    values: list[np.ndarray]
    pair_s: np.ndarray
    pair_f: np.ndarray
    radix: int

    def encode(self, codes: np.ndarray) -> np.ndarray:
        return _encode(np.sort(codes, axis=-1), self.radix)

    def act(self, succ: np.ndarray, fail: np.ndarray) -> np.ndarray:
        """Optimal arms ``[B]`` for posterior counts ``succ, fail`` ``[B, k]`` (all at one level).

        Among arms with the same counts (exchangeable) the lowest index is played.
        """
        succ = np.asarray(succ, np.int64)
        fail = np.asarray(fail, np.int64)
        t = int((succ + fail).sum(-1)[0])
        pulls = succ + fail
        # code of (s, f): pairs are ordered by pulls, then s.
        codes = pulls * (pulls + 1) // 2 + succ
        idx = np.searchsorted(self.keys[t], self.encode(codes))
        pos = self.best[t][idx]
        chosen = np.take_along_axis(np.sort(codes, axis=-1), pos[:, None], axis=-1)
        return np.argmax(codes == chosen, axis=-1)


def _encode(sorted_codes: np.ndarray, radix: int) -> np.ndarray:
    key = np.zeros(sorted_codes.shape[:-1], np.int64)
    for j in range(sorted_codes.shape[-1]):
        key = key * radix + sorted_codes[..., j]
    return key


def state_count(num_arms: int, horizon: int) -> int:
    """States of the belief MDP over all levels, counted without building them.

    Multisets of k pairs (s, f) with total pulls t, summed over t = 0..n: the
    coefficient of x^t y^k in prod over pairs of 1/(1 - y x^{s+f}), by a small
    dynamic programme over pull counts (there are c + 1 pairs with s + f = c).
    """
    k, n = int(num_arms), int(horizon)
    # ways[j][t]: multisets of j pairs from the pull classes processed so far, total
    # pulls t. Class c holds c + 1 distinct pairs; i of the j pairs drawn from it (a
    # multiset of size i of c + 1 kinds: C(c + i, i) ways) add i·c pulls.
    ways = [[0] * (n + 1) for _ in range(k + 1)]
    ways[0][0] = 1
    for c in range(n + 1):
        new = [[0] * (n + 1) for _ in range(k + 1)]
        for j in range(k + 1):
            for t in range(n + 1):
                total = 0
                for i in range(j + 1):
                    if t - i * c < 0:
                        break
                    total += ways[j - i][t - i * c] * math.comb(c + i, i)
                new[j][t] = total
        ways = new
    return int(sum(ways[k]))


@lru_cache(maxsize=16)
def solve(num_arms: int, horizon: int, max_states: int = 20_000_000) -> BayesOptimal:
    """Solves the belief MDP of k arms and n pulls by backward induction (module docstring).

    Args:
      num_arms: k >= 1.
      horizon: n >= 1 pulls.
      max_states: refuse larger state spaces (memory grows ~ 100 bytes a state).

    Returns:
      :class:`BayesOptimal`; ``.value`` is the expected total reward of the
      Bayes-optimal policy, tasks drawn from the prior.
    """
    k = check_int("bayes_optimal num_arms", num_arms, min_value=1)
    n = check_int("bayes_optimal horizon", horizon, min_value=1)
    count = state_count(k, n)
    if count > max_states:
        raise ConfigError(f"the Bayes-optimal DP for k={k}, n={n} has {count:,} belief states, "
                          f"more than max_states={max_states:,}.")
    pair_s, pair_f, succ_s, succ_f = _pairs(n)
    radix = len(pair_s)
    if k * math.log2(radix) >= 62:
        raise ConfigError(f"the Bayes-optimal DP for k={k}, n={n}: state keys overflow int64.")
    p_hat = (pair_s + 1.0) / (pair_s + pair_f + 2.0)

    # Forward: the states of each level and, for each (state, arm position,
    # outcome), the index of the successor in the next level.
    codes = [np.zeros((1, k), np.int64)]
    keys = [np.zeros(1, np.int64)]
    succ_index = []
    for _ in range(n):
        c = codes[-1]
        nxt = []
        for table in (succ_s, succ_f):
            for j in range(k):
                d = c.copy()
                d[:, j] = table[c[:, j]]
                nxt.append(np.sort(d, axis=1))
        nxt = np.stack(nxt, axis=1)  # [M, 2k, k]: success for each j, then failure
        flat_keys = _encode(nxt, radix).reshape(-1)
        uniq, first, inverse = np.unique(flat_keys, return_index=True, return_inverse=True)
        codes.append(nxt.reshape(-1, k)[first])
        keys.append(uniq)
        succ_index.append(inverse.reshape(c.shape[0], 2 * k))

    # Backward induction.
    values = [None] * (n + 1)
    best = [None] * n
    values[n] = np.zeros(keys[n].shape[0])
    for t in range(n - 1, -1, -1):
        p = p_hat[codes[t]]  # [M, k]
        v_next = values[t + 1]
        idx = succ_index[t]
        q = p * (1.0 + v_next[idx[:, :k]]) + (1.0 - p) * v_next[idx[:, k:]]
        best[t] = np.argmax(q, axis=1)
        values[t] = q[np.arange(q.shape[0]), best[t]]
    return BayesOptimal(num_arms=k, horizon=n, value=float(values[0][0]),
                        num_states=int(sum(x.shape[0] for x in keys)), keys=keys, codes=codes,
                        best=best, values=values, pair_s=pair_s, pair_f=pair_f, radix=radix)


def bayes_optimal_value(num_arms: int, horizon: int) -> float:
    """The Bayes-optimal expected total reward of n pulls on k Beta(1, 1) Bernoulli arms."""
    return solve(int(num_arms), int(horizon)).value


def simulate(solution: BayesOptimal, num_tasks: int, seed: int = 0) -> np.ndarray:
    """Total rewards ``[num_tasks]`` of the DP's own policy on tasks p ~ U[0, 1]^k.

    A Monte-Carlo check of :func:`solve`: the mean converges to ``solution.value``.
    """
    rng = np.random.default_rng(seed)
    k, n = solution.num_arms, solution.horizon
    p = rng.uniform(size=(num_tasks, k))
    succ = np.zeros((num_tasks, k), np.int64)
    fail = np.zeros((num_tasks, k), np.int64)
    total = np.zeros(num_tasks)
    rows = np.arange(num_tasks)
    for _ in range(n):
        a = solution.act(succ, fail)
        r = rng.uniform(size=num_tasks) < p[rows, a]
        succ[rows, a] += r
        fail[rows, a] += ~r
        total += r
    return total


__all__ = ["BayesOptimal", "bayes_optimal_value", "simulate", "solve", "state_count"]
