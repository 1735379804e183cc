"""Spreading the seed (or user) axis over devices.

Seeds are independent, so the loop places the seed-indexed inputs (PRNG keys,
per-seed env params, the carry) with a ``NamedSharding`` over a 1-D mesh of
devices and ``shard_map``-s its compiled program over that axis: each device
runs the unchanged vmapped program on its own seeds, with no communication.
On one device every function here is a no-op.

A run with fewer seeds than devices uses only as many devices as it has seeds
(:func:`seed_devices`), so a one-seed run is not padded to a seed per device.
On a CPU, :func:`mtrlrec.config.use_cpu_cores` makes one JAX device per core,
so the seeds of one run spread over all cores.

Multi-host: call ``jax.distributed.initialize()`` before anything else; the
mesh then spans ``jax.devices()`` of all hosts. Tested on CPU with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtrlrec.core.errors import check_int

AXIS = "seeds"


def num_devices() -> int:
    return jax.device_count()


def seed_devices(num_seeds: int, limit: int | None = None) -> int:
    """Devices a run of ``num_seeds`` seeds is spread over: all (or ``limit``), at most one per seed."""
    if limit is not None:
        limit = check_int("loop.run(devices=...)", limit, min_value=1)
    return max(1, min(num_devices(), num_seeds, limit or num_devices()))


def padded_size(n: int, devices: int | None = None) -> int:
    """The smallest multiple of ``devices`` (default: all devices) that is >= ``n``."""
    d = devices or num_devices()
    return -(-n // d) * d


def seed_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``devices`` devices (default: all)."""
    return Mesh(np.asarray(jax.devices()[:devices or num_devices()]), (AXIS,))


def shard_along(x, axis: int = 0, devices: int | None = None):
    """Places every leaf of ``x`` split along ``axis`` over ``devices`` devices (default all)."""
    if (devices or num_devices()) == 1:
        return x
    mesh = seed_mesh(devices)
    return jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, spec_along(axis))), x)


def spec_along(axis: int) -> P:
    """The partition spec that splits ``axis`` (and only it) over the seed mesh."""
    return P(*([None] * axis), AXIS)
