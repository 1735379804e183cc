"""A maximum over a short last axis (the arms) that stays cheap inside vmapped steps.

XLA's CPU backend hands a small ``jnp.max`` over the arms of a vmapped batch to a
library fusion (YNNPACK) whose fixed cost dominated a cheap bandit step: an
ε-greedy step over 1,000 runs × 10 arms took 7.3 M pulls/s with ``jnp.max`` and
12.4 M with :func:`max_last` (the lean scan of ``benchmarks/perf/bandits.py``,
1,000 runs × 3,000 steps, same results).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def max_last(values: jax.Array) -> jax.Array:
    """``jnp.max(values, axis=-1)`` as a tree of elementwise maxima.

    ``ceil(log2 K)`` levels of ``jnp.maximum`` over neighbouring entries, which
    XLA fuses into the surrounding loop instead of calling a reduction. Equal
    to ``jnp.max`` on NaN-free values; a NaN makes the maximum NaN, as
    ``jnp.max`` documents (its CPU reduction here skips NaNs instead).
    """
    v = jnp.asarray(values)
    while (k := v.shape[-1]) > 1:
        m = jnp.maximum(v[..., 0:k - 1:2], v[..., 1:k:2])
        v = jnp.concatenate([m, v[..., k - 1:]], axis=-1) if k % 2 else m
    return v[..., 0]
