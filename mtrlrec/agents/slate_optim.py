r"""Slate optimisation under a conditional choice model (SlateQ, Ie et al. 2019, §4–5).

With item weights :math:`v_i = v(s, i) \ge 0`, the no-click weight
:math:`v_\varnothing` and item-wise long-term values :math:`\bar Q_i = \bar Q(s, i)`,
the value of a slate :math:`A` decomposes (SlateQ §4, Eq. 6) as

.. math::

    Q(s, A) = \sum_{i \in A} P(i \mid s, A)\, \bar Q_i
            = \frac{\sum_{i \in A} v_i \bar Q_i}{v_\varnothing + \sum_{i \in A} v_i}.

Finding the best slate is a fractional mixed-integer program (§5.1); RecSim and
the paper use three solvers, reproduced here (names as in §7):

* ``'topk'`` (TS): the ``k`` items with the largest :math:`v_i \bar Q_i` (§5.2);
* ``'greedy'`` (GS): add, ``k`` times, the item that maximises the value of the
  slate built so far (§5.2, adaptive greedy);
* ``'optimal'`` (OS): every set of ``k`` distinct candidates (``C(m, k)``, 120 for
  m = 10, k = 3), the exact maximum. The value depends on the set only, so sets
  replace RecSim's ``m^k`` ordered tuples with the same maximum.

All functions take one user: ``q, v [m]``, ``v_null`` scalar (``vmap`` them over
users and batches); slates are ``[k]`` int32 candidate indices.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError

SELECTORS = ("topk", "greedy", "optimal")


def slate_value(q: jax.Array, v: jax.Array, v_null: jax.Array, slate: jax.Array) -> jax.Array:
    """:math:`Q(s, A)` of slate ``[k]`` (Eq. 6); ``q`` may carry task axes ``[m, T]`` -> ``[T]``."""
    vs = v[slate]
    p = vs / (v_null + jnp.sum(vs))  # [k] click probabilities
    return jnp.tensordot(p, q[slate], axes=1)


def select_topk(q: jax.Array, v: jax.Array, v_null: jax.Array, k: int) -> jax.Array:
    """Top-k by :math:`v_i \\bar Q_i` (RecSim ``select_slate_topk``)."""
    del v_null
    return jax.lax.top_k(v * q, k)[1].astype(jnp.int32)


def select_greedy(q: jax.Array, v: jax.Array, v_null: jax.Array, k: int) -> jax.Array:
    """Adaptive greedy (RecSim ``select_slate_greedy``): item ``j`` maximising
    :math:`(N + v_j \\bar Q_j) / (D + v_j)` given the numerator ``N`` and denominator
    ``D`` of the slate so far, ``k`` times."""

    def add(carry, _):
        num, den, free = carry
        gain = jnp.where(free, (num + v * q) / (den + v), -jnp.inf)
        j = jnp.argmax(gain)
        return (num + v[j] * q[j], den + v[j], free.at[j].set(False)), j.astype(jnp.int32)

    init = (jnp.float32(0.0), jnp.asarray(v_null, jnp.float32), jnp.ones(q.shape[0], bool))
    return jax.lax.scan(add, init, None, length=k)[1]


@functools.lru_cache(maxsize=32)
def combinations(m: int, k: int) -> np.ndarray:
    """All ``C(m, k)`` sets of ``k`` of ``m`` candidates, ``[C, k]`` int32."""
    return np.asarray(list(itertools.combinations(range(m), k)), np.int32).reshape(-1, k)


MAX_OPTIMAL_SLATES = 100_000


def check_selector(name: str, selector: str, m: int, k: int) -> None:
    """One clear line for an unknown solver, or an exhaustive search too large to enumerate."""
    if selector not in SELECTORS:
        raise ConfigError(f"{name} must be one of {SELECTORS}, got {selector!r}.")
    if selector == "optimal":
        from math import comb
        if comb(m, k) > MAX_OPTIMAL_SLATES:
            raise ConfigError(
                f"{name}='optimal' enumerates C({m}, {k}) = {comb(m, k):,} slates per decision, "
                f"more than {MAX_OPTIMAL_SLATES:,}; use 'greedy' or 'topk'.")


def select_optimal(q: jax.Array, v: jax.Array, v_null: jax.Array, k: int) -> jax.Array:
    """Exhaustive search over the ``C(m, k)`` sets (RecSim ``select_slate_optimal``)."""
    sets = jnp.asarray(combinations(q.shape[0], k))  # [C, k]
    vs = v[sets]
    values = jnp.sum(vs * q[sets], -1) / (v_null + jnp.sum(vs, -1))
    return sets[jnp.argmax(values)]


def select(selector: str, q: jax.Array, v: jax.Array, v_null: jax.Array, k: int) -> jax.Array:
    """The slate ``[k]`` chosen by ``selector`` (``'topk'``, ``'greedy'`` or ``'optimal'``)."""
    fn = {"topk": select_topk, "greedy": select_greedy, "optimal": select_optimal}[selector]
    return fn(q, v, v_null, k)


def max_value(selector: str, q: jax.Array, v: jax.Array, v_null: jax.Array, k: int) -> jax.Array:
    """:math:`\\max_A Q(s, A)` as found by ``selector`` (the Q-learning target's value)."""
    if selector == "optimal":  # the maximum itself, without gathering the argmax
        sets = jnp.asarray(combinations(q.shape[0], k))
        vs = v[sets]
        return jnp.max(jnp.sum(vs * q[sets], -1) / (v_null + jnp.sum(vs, -1)))
    return slate_value(q, v, v_null, select(selector, q, v, v_null, k))
