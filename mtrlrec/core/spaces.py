"""Action and observation specifications.

Specs are static Python objects (not pytrees): their sizes fix array shapes at
trace time. ``sample`` and ``contains`` are jittable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp


from mtrlrec.core.errors import ConfigError


class Space:
    """Base class of specs."""

    shape: tuple[int, ...] = ()
    dtype: Any = jnp.float32

    def sample(self, key: jax.Array) -> Any:
        raise NotImplementedError

    def contains(self, x: Any) -> jax.Array:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Discrete(Space):
    """Integers ``0 .. n-1`` (an arm, an item, a price level)."""

    n: int
    shape: tuple[int, ...] = ()
    dtype: Any = jnp.int32

    def __post_init__(self):
        if int(self.n) < 1:
            raise ConfigError(f"Discrete space needs n >= 1, got {self.n}.")

    def sample(self, key):
        return jax.random.randint(key, self.shape, 0, self.n, dtype=self.dtype)

    def contains(self, x):
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < self.n)) & (x.shape == self.shape)


@dataclasses.dataclass(frozen=True)
class Box(Space):
    """Real arrays of a fixed shape with elementwise bounds (possibly infinite)."""

    low: Any
    high: Any
    shape: tuple[int, ...] = ()
    dtype: Any = jnp.float32

    def sample(self, key):
        low = jnp.broadcast_to(jnp.asarray(self.low, self.dtype), self.shape)
        high = jnp.broadcast_to(jnp.asarray(self.high, self.dtype), self.shape)
        finite_low = jnp.where(jnp.isfinite(low), low, -1.0)
        finite_high = jnp.where(jnp.isfinite(high), high, finite_low + 2.0)
        return jax.random.uniform(key, self.shape, self.dtype, finite_low, finite_high)

    def contains(self, x):
        x = jnp.asarray(x)
        ok_shape = x.shape == tuple(self.shape)
        return ok_shape & jnp.all((x >= self.low) & (x <= self.high))


@dataclasses.dataclass(frozen=True)
class Slate(Space):
    """``slate_size`` distinct indices into ``num_candidates`` candidates.

    ``distinct=False`` admits repeats (RecSim's ``MultiDiscrete`` action).
    """

    num_candidates: int
    slate_size: int
    distinct: bool = True
    dtype: Any = jnp.int32

    def __post_init__(self):
        if int(self.slate_size) < 1:
            raise ConfigError(f"slate size k must be >= 1, got {self.slate_size}.")
        if self.distinct and self.slate_size > self.num_candidates:
            raise ConfigError(
                f"slate size k={self.slate_size} exceeds the number of candidates "
                f"m={self.num_candidates}; expected 1 <= k <= m."
            )

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.slate_size,)

    def sample(self, key):
        if self.distinct:
            return jax.random.permutation(key, self.num_candidates)[: self.slate_size].astype(
                self.dtype
            )
        return jax.random.randint(key, self.shape, 0, self.num_candidates, dtype=self.dtype)

    def contains(self, x):
        x = jnp.asarray(x)
        ok = (x.shape == self.shape) & jnp.all((x >= 0) & (x < self.num_candidates))
        if self.distinct:
            eq = x[:, None] == x[None, :]
            ok = ok & (jnp.sum(eq) == self.slate_size)
        return ok


@dataclasses.dataclass(frozen=True)
class Dict(Space):
    """A mapping of named sub-spaces (e.g. ``{'user': Box, 'doc': Box}``)."""

    spaces: Mapping[str, Space]

    @property
    def shape(self):  # type: ignore[override]
        return {k: s.shape for k, s in self.spaces.items()}

    def sample(self, key):
        keys = jax.random.split(key, len(self.spaces))
        return {k: s.sample(kk) for (k, s), kk in zip(self.spaces.items(), keys)}

    def contains(self, x):
        return jnp.all(jnp.array([s.contains(x[k]) for k, s in self.spaces.items()]))


def zeros_like_space(space: Space) -> Any:
    """A zero-filled example value of ``space`` (for shape inference at init)."""
    if isinstance(space, Dict):
        return {k: zeros_like_space(s) for k, s in space.spaces.items()}
    return jnp.zeros(space.shape, space.dtype)


def num_actions(space: Space) -> int:
    """The number of discrete actions of a ``Discrete`` space, with a clear error otherwise."""
    if not isinstance(space, Discrete):
        raise ConfigError(f"this agent needs a Discrete action space, got {space}.")
    return int(space.n)


__all__ = ["Box", "Dict", "Discrete", "Slate", "Space", "num_actions", "zeros_like_space"]
