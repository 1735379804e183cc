"""Per-step PRNG keys for the online loops.

A step of an online loop hands three keys to its parts: the agent's ``act``,
the environment's ``step`` and the agent's ``update``. Deriving them by a
batched ``split`` costs one Threefry block per key whether or not the part
draws anything, and on CPU Threefry is the largest cost of a cheap bandit
step. :func:`step_keys` derives each key by ``fold_in`` *inside* the step, so
XLA removes the derivation of every key that is never consumed (a UCB1 agent
draws nothing: only the environment's key is computed).
"""

from __future__ import annotations

import jax

ACT, ENV, UPDATE = 0, 1, 2


def step_keys(window_key: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(k_act, k_env, k_update)`` of step ``i`` of a window: ``fold_in(window_key, 3i + c)``.

    Distinct steps and parts get distinct ``fold_in`` data, so all keys of a
    window are independent; call it inside the ``lax.scan`` body (``i`` from
    the scanned ``arange``) so unused keys are dead code.
    """
    base = 3 * i
    return tuple(jax.random.fold_in(window_key, base + c) for c in (ACT, ENV, UPDATE))
