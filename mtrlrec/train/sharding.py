"""Spreading the seed (or user) axis over devices.

The loop vmaps over seeds; placing the seed-indexed inputs (PRNG keys, per-seed
env params) with a ``NamedSharding`` over a 1-D mesh of all devices makes XLA
partition the whole compiled program along that axis (GSPMD), with no change
to the program. On one device every function here is a no-op.

Multi-host: call ``jax.distributed.initialize()`` before anything else; the
mesh then spans ``jax.devices()`` of all hosts. Tested on CPU with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "seeds"


def num_devices() -> int:
    return jax.device_count()


def padded_size(n: int, devices: int | None = None) -> int:
    """The smallest multiple of the device count that is >= ``n``."""
    d = devices or num_devices()
    return -(-n // d) * d


def seed_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def shard_along(x, axis: int = 0):
    """Places every leaf of ``x`` split along ``axis`` over all devices."""
    if num_devices() == 1:
        return x
    mesh = seed_mesh()

    def place(a):
        spec = [None] * a.ndim
        spec[axis] = AXIS
        return jax.device_put(a, NamedSharding(mesh, P(*spec)))

    return jax.tree.map(place, x)
