"""Placing a loop carry: restoring a checkpoint, starting from a given learner state,
and dropping the padding seeds of a sharded run (:mod:`mtrlrec.train.sharding`)."""

from __future__ import annotations

import jax
import numpy as np

from mtrlrec.core.errors import ConfigError
from mtrlrec.train import sharding


def place_agent_state(template, state, seed_axis: int, num_seeds: int):
    """``state`` (one learner state, or one per seed) in place of the template's.

    A single state is broadcast to every seed (and sweep point); a batched one
    must hold ``num_seeds`` seeds, like a checkpoint's carry.
    """
    from flax import serialization

    host_template = sharding.to_host(template)
    if not isinstance(state, dict):
        state = serialization.to_state_dict(state)
    try:
        host = serialization.from_state_dict(host_template, state)
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"the learner state to start from does not fit this agent: {e}") from None

    def place(t, h):
        h = np.asarray(h, dtype=np.asarray(t).dtype)
        full = np.array(t)
        if h.shape == full.shape[seed_axis + 1:]:  # one state for all seeds
            full[...] = h
        else:
            index = [slice(None)] * full.ndim
            index[seed_axis] = slice(0, num_seeds)
            try:
                full[tuple(index)] = h
            except ValueError:
                raise ConfigError(
                    f"the learner state to start from has an array of shape {h.shape}; this "
                    f"configuration needs {full.shape[seed_axis + 1:]} (or one per seed).") from None
        return sharding.put(full, t.sharding)

    return jax.tree.map(place, template, host)


def restore_carry(template, restored, seed_axis: int, num_seeds: int):
    """``template`` with its first ``num_seeds`` seeds taken from ``restored``.

    Checkpoints hold the real seeds only, so a run resumes on any number of
    devices; padding seeds (see :mod:`mtrlrec.train.sharding`) keep the
    template's fresh values, which no real seed reads.
    """
    from flax import serialization

    if not isinstance(restored, dict):
        restored = serialization.to_state_dict(restored)
    host_template = sharding.to_host(template)
    try:
        host = serialization.from_state_dict(host_template, restored)
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(
            f"the checkpoint does not match this configuration (different agent, env or seeds?): {e}"
        ) from None

    def expected(t):
        shape = list(np.shape(t))
        shape[seed_axis] = num_seeds
        return tuple(shape)

    shapes_ok = jax.tree.map(lambda t, h: np.shape(h) in (np.shape(t), expected(t)),
                             host_template, host)
    if not all(jax.tree.leaves(shapes_ok)):
        raise ConfigError("the checkpoint's array shapes differ from this configuration.")

    def place(t, h):
        full = np.array(t)
        h = np.asarray(h, dtype=full.dtype)
        index = [slice(None)] * full.ndim
        index[seed_axis] = slice(0, h.shape[seed_axis])
        full[tuple(index)] = h
        return sharding.put(full, t.sharding)

    return jax.tree.map(place, template, host)


def real_seeds(carry, seed_axis: int, num_seeds: int):
    """The carry without its padding seeds (a no-op when there are none)."""
    def take(a):
        if a.shape[seed_axis] == num_seeds:
            return a
        return jax.lax.slice_in_dim(a, 0, num_seeds, axis=seed_axis)

    return jax.tree.map(take, carry)


def trim(a: np.ndarray, seed_axis: int, num_seeds: int) -> np.ndarray:
    """Drops the padding seeds of a chunk's metrics ``[..., S_padded, W]``."""
    return np.take(a, np.arange(num_seeds), axis=seed_axis)
