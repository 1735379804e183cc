r"""A pure ring buffer of transitions that lives inside a learner state.

The buffer is a ``flax.struct`` pytree (:class:`ReplayBuffer`) and every
operation is a pure function returning a new buffer, so it can be carried in an
agent state through ``jit``, ``lax.scan`` and ``vmap`` over independent learners
(seeds, sweep points). Capacity, number of users and batch sizes are static
Python ints; write position and fill level are int32 scalars per learner.

Layout: each leaf is stored as ``[capacity, num_envs, ...]``. One *slot* holds
the ``num_envs`` transitions of one loop step (the users a learner steps in a
``vmap``), so column ``e`` is user ``e``'s own sequence in time and an n-step
window follows that user, never its neighbours. The buffer holds up to
``capacity * num_envs`` transitions; when full, the oldest slot is overwritten.

What a transition holds is an :class:`Experience`: observation, action (any
pytrees: dicts of arrays, slates of ints), reward (a scalar or a vector of
per-task rewards ``[num_tasks]``), the true next observation (after an
auto-reset, ``info['final_observation']``, which
:meth:`Experience.from_transition` picks), ``terminated``, ``truncated`` and
optional ``extras`` (behaviour log-probabilities, propensities, ...).

n-step targets (Sutton & Barto 2018, §7.1), for a window starting at slot ``i``
of user ``e``: with ``m`` the number of steps up to and including the first
terminated or truncated step in ``i .. i+n-1`` (``m = n`` if none),

.. math::

    R_i = \sum_{k<m} \gamma^k r_{i+k}, \qquad
    \text{discount}_i = \gamma^m (1 - \text{terminated}_{i+m-1}),

and the bootstrap observation is ``next_obs[i+m-1]``, so a target is
``R_i + discount_i * V(next_obs)``: no bootstrap after a termination, a
bootstrap from the final observation after a truncation (time limit).

The operations are jitted (static ``batch_size`` and ``n``); called inside an
agent's jitted ``observe``/``learn`` they are simply inlined.

Sampling is uniform **with replacement** over the valid ``(slot, user)`` pairs.
A start slot is valid when its whole n-step window has been written: the newest
``n - 1`` slots are excluded (their window is not complete yet; they become
valid as soon as the following steps arrive), and so are unwritten slots. With
``n = 1`` every stored transition is valid. Gate learning with
:func:`can_sample`; sampling an empty buffer returns slot 0 (zeros), never an
error, because shapes are static under ``jit``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import check_int
from mtrlrec.core.types import Array, PRNGKey, Transition


class Experience(NamedTuple):
    """One stored transition (one user, one step); leaves get leading axes when batched.

    Attributes:
      obs: observation ``s_t`` (any pytree).
      action: action ``a_t`` (any pytree: an int, a slate ``[k]`` of ints, ...).
      reward: ``r_t``, float32 scalar or per-task vector ``[num_tasks]``.
      next_obs: the true next observation ``s_{t+1}``; after an auto-reset
        this is the last observation of the finished episode
        (``info['final_observation']``), not the first of the new one.
      terminated: bool, the episode ended by the environment's own dynamics.
      truncated: bool, the episode was cut by a time limit.
      extras: anything else stored per transition (``None`` for nothing).
    """

    obs: Any
    action: Any
    reward: Array
    next_obs: Any
    terminated: Array
    truncated: Array
    extras: Any = None

    @classmethod
    def from_transition(cls, transition: Transition, extras: Any = None) -> "Experience":
        """The experience of a loop ``Transition``, with ``final_observation`` as next obs."""
        info = transition.info if isinstance(transition.info, dict) else {}
        next_obs = info.get("final_observation", transition.next_obs)
        return cls(
            transition.obs,
            transition.action,
            transition.reward,
            next_obs,
            transition.terminated,
            transition.truncated,
            extras,
        )


class NStepBatch(NamedTuple):
    """A sampled batch of n-step transitions (leading axis ``[batch_size]``).

    Attributes:
      obs: ``s_i``, the observation at the window start.
      action: ``a_i``.
      reward: ``R_i = sum_{k<m} gamma^k r_{i+k}``, ``[B]`` or ``[B, num_tasks]``.
      next_obs: the bootstrap observation ``next_obs[i+m-1]``.
      discount: ``gamma^m`` (0 when step ``i+m-1`` terminated), ``[B]`` float32.
      steps: ``m``, the number of rewards summed, ``[B]`` int32 (1 <= m <= n).
      extras: ``extras`` at the window start.
    """

    obs: Any
    action: Any
    reward: Array
    next_obs: Any
    discount: Array
    steps: Array
    extras: Any


@flax.struct.dataclass
class ReplayBuffer:
    """Ring buffer state (see the module docstring for layout and sampling).

    Attributes:
      data: an :class:`Experience` whose leaves are ``[capacity, num_envs, ...]``.
      index: int32 scalar, the slot the next step is written to.
      size: int32 scalar, the number of written slots (<= capacity).
      capacity: static, number of slots (loop steps) kept.
      num_envs: static, transitions per slot (users stepped together).
    """

    data: Experience
    index: Array
    size: Array
    capacity: int = flax.struct.field(pytree_node=False)
    num_envs: int = flax.struct.field(pytree_node=False)


def _spec(x: Any, dtype: Any = None) -> jax.ShapeDtypeStruct:
    if not isinstance(x, jax.ShapeDtypeStruct):
        x = jnp.asarray(x)
    return jax.ShapeDtypeStruct(tuple(x.shape), dtype or x.dtype)


def init(capacity: int, example: Experience, num_envs: int = 1) -> ReplayBuffer:
    """An empty buffer for transitions shaped like ``example``.

    Args:
      capacity: slots (loop steps) kept; the buffer holds ``capacity * num_envs``
        transitions.
      example: one transition of one user (no env axis); leaves may be arrays,
        Python scalars or ``jax.ShapeDtypeStruct``. ``reward`` is stored as
        float32, ``terminated``/``truncated`` as bool, the rest in their dtype.
      num_envs: users per loop step (``add_batch`` writes ``[num_envs, ...]``).

    Returns:
      A ``ReplayBuffer`` with zero-filled leaves ``[capacity, num_envs, ...]``.
    """
    capacity = check_int("replay capacity", capacity, min_value=1)
    num_envs = check_int("replay num_envs", num_envs, min_value=1)
    example = Experience(*example)
    spec = example._replace(
        reward=_spec(example.reward, jnp.float32),
        terminated=_spec(example.terminated, jnp.bool_),
        truncated=_spec(example.truncated, jnp.bool_),
    )
    lead = (capacity, num_envs)
    data = jax.tree.map(lambda s: jnp.zeros(lead + _spec(s).shape, _spec(s).dtype), spec)
    zero = jnp.zeros((), jnp.int32)
    return ReplayBuffer(data=data, index=zero, size=zero, capacity=capacity, num_envs=num_envs)


def _check_items(buf: ReplayBuffer, items: Experience, lead: tuple[int, ...]) -> Experience:
    """Casts ``items`` to the stored dtypes; raises naming the leaf on a shape/kind mismatch."""
    items = Experience(*items)
    if jax.tree.structure(items) != jax.tree.structure(buf.data):
        raise ValueError(
            f"replay item structure {jax.tree.structure(items)} differs from the stored "
            f"{jax.tree.structure(buf.data)}."
        )

    def cast(path, x, d):
        x = jnp.asarray(x)
        want = lead + d.shape[2:]
        name = jax.tree_util.keystr(path)
        if x.shape != want:
            raise ValueError(f"replay item{name} has shape {x.shape}, expected {want}.")
        if not np.can_cast(x.dtype, d.dtype, casting="same_kind"):
            raise TypeError(f"replay item{name} has dtype {x.dtype}, stored as {d.dtype}.")
        return x.astype(d.dtype)

    return jax.tree_util.tree_map_with_path(cast, items, buf.data)


@jax.jit
def add_batch(buf: ReplayBuffer, items: Experience) -> ReplayBuffer:
    """Writes one loop step: ``items`` leaves are ``[num_envs, ...]`` (one row per user)."""
    items = _check_items(buf, items, (buf.num_envs,))
    data = jax.tree.map(
        lambda d, x: jax.lax.dynamic_update_index_in_dim(d, x, buf.index, 0), buf.data, items
    )
    return buf.replace(
        data=data,
        index=(buf.index + 1) % buf.capacity,
        size=jnp.minimum(buf.size + 1, buf.capacity),
    )


def add(buf: ReplayBuffer, item: Experience) -> ReplayBuffer:
    """Writes one transition of a single-user buffer (``num_envs == 1``)."""
    if buf.num_envs != 1:
        raise ValueError(
            f"add() writes one user; this buffer has num_envs={buf.num_envs}, use add_batch."
        )
    return add_batch(buf, jax.tree.map(lambda x: jnp.asarray(x)[None], Experience(*item)))


@jax.jit
def add_steps(buf: ReplayBuffer, items: Experience) -> ReplayBuffer:
    """Writes ``T <= capacity`` loop steps at once: leaves ``[T, num_envs, ...]``, oldest first."""
    steps = jax.tree.leaves(items)[0].shape[0]
    if steps > buf.capacity:
        raise ValueError(f"add_steps got {steps} steps, more than the capacity {buf.capacity}.")
    items = _check_items(buf, items, (steps, buf.num_envs))
    slots = (buf.index + jnp.arange(steps, dtype=jnp.int32)) % buf.capacity
    data = jax.tree.map(lambda d, x: d.at[slots].set(x), buf.data, items)
    return buf.replace(
        data=data,
        index=(buf.index + steps) % buf.capacity,
        size=jnp.minimum(buf.size + steps, buf.capacity),
    )


def num_valid(buf: ReplayBuffer, n: int = 1) -> Array:
    """int32 scalar: the number of ``(slot, user)`` pairs whose n-step window is complete."""
    return jnp.maximum(buf.size - (n - 1), 0) * buf.num_envs


def can_sample(buf: ReplayBuffer, min_size: int, n: int = 1) -> Array:
    """bool scalar: at least ``min_size`` transitions stored and one complete n-step window."""
    return jnp.logical_and(buf.size * buf.num_envs >= min_size, num_valid(buf, n) > 0)


def _draw(buf: ReplayBuffer, key: PRNGKey, batch_size: int, n: int) -> tuple[Array, Array]:
    """Uniform valid pairs, with replacement: logical slots (0 = oldest) and users, ``[B]``."""
    batch_size = check_int("replay batch_size", batch_size, min_value=1)
    j = jax.random.randint(key, (batch_size,), 0, jnp.maximum(num_valid(buf, n), 1), jnp.int32)
    return j // buf.num_envs, j % buf.num_envs


def _physical(buf: ReplayBuffer, slot: Array) -> Array:
    """Ring position of logical slot ``slot`` (0 = oldest written)."""
    return (buf.index - buf.size + slot) % buf.capacity


@jax.jit
def transitions_at(buf: ReplayBuffer, slot: Array, env: Array) -> Experience:
    """The transitions at logical slots ``slot`` ``[B]`` (0 = oldest) of users ``env`` ``[B]``."""
    t = _physical(buf, jnp.asarray(slot, jnp.int32))
    return jax.tree.map(lambda x: x[t, env], buf.data)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def sample(buf: ReplayBuffer, key: PRNGKey, batch_size: int) -> Experience:
    """``batch_size`` one-step transitions, uniform with replacement over stored ones.

    Returns:
      An ``Experience`` with leading axis ``[batch_size]`` (``terminated`` is the
      flag to cut the bootstrap; ``next_obs`` is the true next observation).
    """
    slot, env = _draw(buf, key, batch_size, 1)
    return transitions_at(buf, slot, env)


def n_step_return(
    rewards: Array, terminated: Array, truncated: Array, gamma: Array | float
) -> tuple[Array, Array, Array]:
    r"""The n-step return of one window, cut at the first episode end (Sutton & Barto §7.1).

    Args:
      rewards: ``[n]`` or ``[n, num_tasks]`` rewards ``r_i .. r_{i+n-1}``.
      terminated: ``[n]`` bool.
      truncated: ``[n]`` bool.
      gamma: scalar discount.

    Returns:
      ``(R, discount, m)``: ``R = sum_{k<m} gamma^k r_{i+k}`` (shape of one
      reward), ``discount = gamma^m (1 - terminated_{i+m-1})`` (float32 scalar)
      and ``m`` (int32 scalar), where ``m - 1`` is the index of the first
      terminated or truncated step, or ``m = n`` when there is none.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    n = rewards.shape[0]
    done = jnp.logical_or(terminated, truncated).astype(jnp.float32)
    # include[k] = 1 while no earlier step of the window ended the episode.
    include = jnp.concatenate([jnp.ones((1,), jnp.float32), jnp.cumprod(1.0 - done)[:-1]])
    m = include.sum().astype(jnp.int32)
    gamma = jnp.asarray(gamma, jnp.float32)
    weights = include * gamma ** jnp.arange(n, dtype=jnp.float32)
    ret = jnp.tensordot(weights, rewards, axes=1)
    discount = gamma ** m.astype(jnp.float32) * (1.0 - jnp.asarray(terminated, jnp.float32)[m - 1])
    return ret, discount, m


@functools.partial(jax.jit, static_argnames=("n",))
def n_step_at(
    buf: ReplayBuffer, slot: Array, env: Array, n: int, gamma: Array | float
) -> NStepBatch:
    """The n-step transitions starting at logical slots ``slot`` ``[B]`` of users ``env`` ``[B]``.

    A window reads slots ``slot .. slot + n - 1`` of its user's column, across
    the ring's end; ``slot`` must be < ``buf.size - n + 1`` (a complete window),
    which :func:`sample_n_step` guarantees.

    Args:
      buf: the buffer.
      slot: ``[B]`` int, logical slots (0 = the oldest written).
      env: ``[B]`` int, users.
      n: static number of steps (>= 1).
      gamma: scalar discount (may be a traced, swept value).

    Returns:
      An :class:`NStepBatch` with leading axis ``[B]``.
    """
    n = check_int("n-step n", n, min_value=1)
    if n > buf.capacity:
        raise ValueError(f"n-step n={n} exceeds the replay capacity {buf.capacity}.")
    first = _physical(buf, jnp.asarray(slot, jnp.int32))
    window = (first[:, None] + jnp.arange(n, dtype=jnp.int32)) % buf.capacity  # [B, n]
    col = env[:, None]
    ret, discount, m = jax.vmap(n_step_return, in_axes=(0, 0, 0, None))(
        buf.data.reward[window, col],
        buf.data.terminated[window, col],
        buf.data.truncated[window, col],
        gamma,
    )
    last = jnp.take_along_axis(window, (m - 1)[:, None], axis=1)[:, 0]
    return NStepBatch(
        obs=jax.tree.map(lambda x: x[first, env], buf.data.obs),
        action=jax.tree.map(lambda x: x[first, env], buf.data.action),
        reward=ret,
        next_obs=jax.tree.map(lambda x: x[last, env], buf.data.next_obs),
        discount=discount,
        steps=m,
        extras=jax.tree.map(lambda x: x[first, env], buf.data.extras),
    )


@functools.partial(jax.jit, static_argnames=("batch_size", "n"))
def sample_n_step(
    buf: ReplayBuffer, key: PRNGKey, batch_size: int, n: int, gamma: Array | float
) -> NStepBatch:
    """``batch_size`` n-step transitions, uniform with replacement over complete windows.

    The newest ``n - 1`` slots are not sampled as starts (their windows are not
    complete). The target for a value learner is
    ``reward + discount * V(next_obs)``; with ``n = 1`` this is the one-step
    target, ``discount = gamma * (1 - terminated)``.

    Args:
      buf: the buffer.
      key: PRNG key.
      batch_size: static batch size.
      n: static number of steps (>= 1).
      gamma: scalar discount.

    Returns:
      An :class:`NStepBatch` with leading axis ``[batch_size]``.
    """
    slot, env = _draw(buf, key, batch_size, n)
    return n_step_at(buf, slot, env, n, gamma)


@functools.partial(jax.jit, static_argnames=("batch_size", "n"))
def sample_windows(buf: ReplayBuffer, key: PRNGKey, batch_size: int, n: int) -> Experience:
    """``batch_size`` windows of ``n`` consecutive stored steps of one user each.

    Uniform with replacement over complete windows, as :func:`sample_n_step`,
    but raw: leaves are ``[batch_size, n, ...]`` and episode ends inside a
    window are left to the caller. SARSA reads the next action this way
    (``n = 2``: ``window.action[:, 1]`` is ``a_{t+1}``, valid where step ``t``
    did not end its episode).
    """
    n = check_int("window n", n, min_value=1)
    if n > buf.capacity:
        raise ValueError(f"window n={n} exceeds the replay capacity {buf.capacity}.")
    slot, env = _draw(buf, key, batch_size, n)
    first = _physical(buf, slot)
    window = (first[:, None] + jnp.arange(n, dtype=jnp.int32)) % buf.capacity  # [B, n]
    return jax.tree.map(lambda x: x[window, env[:, None]], buf.data)
