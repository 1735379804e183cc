"""Spreading the seed (or user) axis over devices, in one process or several.

Seeds are independent, so the loop places the seed-indexed inputs (PRNG keys,
per-seed env params, the carry) with a ``NamedSharding`` over a 1-D mesh of
devices and ``shard_map``-s its compiled program over that axis: each device
runs the unchanged vmapped program on its own seeds, with no communication.
On one device every function here is a no-op.

A run with fewer seeds than devices uses only as many devices as it has seeds
(:func:`seed_devices`), so a one-seed run is not padded to a seed per device.
On a CPU, :func:`mtrlrec.config.use_cpu_cores` makes one JAX device per core,
so the seeds of one run spread over all cores.

Several processes (``jax.distributed``, multi-controller: one process per host,
or several on one host; see :func:`initialize` and ``docs/scaling.md``): the
mesh spans the devices of every process (``jax.devices()``), every process runs
the same program on its own share of the seeds, and the host-side values the
loop needs (a window's metrics, a checkpoint's carry) are gathered with
:func:`to_host` so that every process holds the same numbers. Only process 0
writes files (:func:`is_main`). Every process must take part in every run,
so a multi-process run always spans all devices (padding seeds if needed).
A seed's numbers do not depend on the number of processes or devices, bit for
bit (``tests/train/test_multiprocess.py``).
"""

from __future__ import annotations

import contextlib
import os
import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtrlrec.core.errors import ConfigError, check_int

AXIS = "seeds"


def num_devices() -> int:
    return jax.device_count()


def num_processes() -> int:
    return jax.process_count()


def multi_process() -> bool:
    """Whether this run spans several JAX processes (``jax.distributed``); never starts
    JAX's backend itself."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def process_index() -> int:
    return jax.process_index()


def is_main() -> bool:
    """Process 0, the one that writes run directories, TensorBoard and tables."""
    return not multi_process() or jax.process_index() == 0


def seed_devices(num_seeds: int, limit: int | None = None) -> int:
    """Devices a run of ``num_seeds`` seeds is spread over: all (or ``limit``), at most one per seed.

    On several processes: always all devices of all processes (each process runs
    its part of every program), whatever ``limit`` or ``num_seeds``.
    """
    if limit is not None:
        limit = check_int("loop.run(devices=...)", limit, min_value=1)
    if multi_process():
        return num_devices()
    return max(1, min(num_devices(), num_seeds, limit or num_devices()))


def padded_size(n: int, devices: int | None = None) -> int:
    """The smallest multiple of ``devices`` (default: all devices) that is >= ``n``."""
    d = devices or num_devices()
    return -(-n // d) * d


def seed_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``devices`` devices (default: all)."""
    return Mesh(np.asarray(jax.devices()[:devices or num_devices()]), (AXIS,))


def put(a, sharding: NamedSharding):
    """A host (or local) array placed with ``sharding``; on several processes every
    process passes the same value and keeps the shards on its own devices."""
    if not multi_process():
        return jax.device_put(a, sharding)
    host = np.asarray(jax.device_get(a))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_along(x, axis: int = 0, devices: int | None = None):
    """Places every leaf of ``x`` split along ``axis`` over ``devices`` devices (default all)."""
    if (devices or num_devices()) == 1:
        return x
    mesh = seed_mesh(devices)
    return jax.tree.map(lambda a: put(a, NamedSharding(mesh, spec_along(axis))), x)


def replicate(x, devices: int | None = None):
    """Every leaf of ``x`` on every device of the mesh (a no-op in one process, where
    ``jit`` places such inputs itself)."""
    if not multi_process() or x is None:
        return x
    mesh = seed_mesh(devices)
    return jax.tree.map(lambda a: put(a, NamedSharding(mesh, P())), x)


def spec_along(axis: int) -> P:
    """The partition spec that splits ``axis`` (and only it) over the seed mesh."""
    return P(*([None] * axis), AXIS)


def to_host(x):
    """``jax.device_get`` that also works on arrays spread over several processes: their
    shards are gathered (a collective: every process must call it), so every process
    gets the whole array."""
    if not multi_process():
        return jax.device_get(x)
    from jax.experimental import multihost_utils

    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return jax.device_get(a)

    return jax.tree.map(get, x)


def agree(n: int, flag: bool) -> tuple[int, bool]:
    """Process 0's ``n`` and whether any process raised ``flag`` (one small collective):
    the length of the next compiled call and Ctrl-C, which every process must share."""
    if not multi_process():
        return n, flag
    from jax.experimental import multihost_utils

    both = np.asarray(multihost_utils.process_allgather(np.asarray([n, int(flag)], np.int64)))
    both = both.reshape(jax.process_count(), 2)
    return int(both[0, 0]), bool(both[:, 1].any())


def broadcast_text(text: str, size: int = 4096) -> str:
    """Process 0's ``text`` on every process (e.g. a run directory named by the clock)."""
    if not multi_process():
        return text
    from jax.experimental import multihost_utils

    data = text.encode()
    if len(data) > size:
        raise ConfigError(f"a path longer than {size} bytes cannot be shared between processes.")
    buf = np.zeros(size + 4, np.uint8)
    buf[:4] = np.frombuffer(np.uint32(len(data)).tobytes(), np.uint8)
    buf[4:4 + len(data)] = np.frombuffer(data, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    n = int(np.frombuffer(out[:4].tobytes(), np.uint32)[0])
    return out[4:4 + n].tobytes().decode()


# -- jax.distributed -------------------------------------------------------------------

ENV = {"coordinator": "MTRLREC_COORDINATOR", "num_processes": "MTRLREC_NUM_PROCESSES",
       "process_id": "MTRLREC_PROCESS_ID", "timeout": "MTRLREC_INIT_TIMEOUT"}
FLAGS = {"coordinator": "--coordinator", "num_processes": "--num-processes",
         "process_id": "--process-id", "timeout": "--init-timeout"}


def _name(key: str, from_env: bool) -> str:
    return ENV[key] if from_env else FLAGS[key]


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False,
               timeout: int | None = None, cpu_collectives: str = "gloo") -> bool:
    """Starts ``jax.distributed`` from flags or environment variables, before JAX runs anything.

    Each argument falls back to its variable (``MTRLREC_COORDINATOR``,
    ``MTRLREC_NUM_PROCESSES``, ``MTRLREC_PROCESS_ID``, ``MTRLREC_INIT_TIMEOUT``).
    With none of them and ``auto`` (``--distributed``), JAX detects the cluster
    itself (SLURM, Open MPI, Cloud TPU), as ``jax.distributed.initialize()`` does.
    CPU collectives go over gloo (``jax_cpu_collectives_implementation``).

    Every value is checked first (one line naming the flag or variable): a
    process id outside ``[0, num_processes)``, a coordinator without a port.
    A coordinator that cannot be reached, or processes that do not all join,
    fail after ``timeout`` seconds (default 60) with one line, never a hang.

    Returns:
      Whether a multi-process runtime was started.
    """
    values = {"coordinator": coordinator, "num_processes": num_processes,
              "process_id": process_id, "timeout": timeout}
    from_env = {}
    for key, v in list(values.items()):
        from_env[key] = v is None and bool(os.environ.get(ENV[key]))
        if from_env[key]:
            values[key] = os.environ[ENV[key]]
    given = [k for k in ("coordinator", "num_processes", "process_id") if values[k] is not None]
    if not given and not auto:
        return False
    t = values["timeout"]
    t = 60 if t is None else check_int(_name("timeout", from_env["timeout"]), _as_int(t),
                                        min_value=1)
    kwargs: dict = {"initialization_timeout": t}
    if given:
        missing = [k for k in ("coordinator", "num_processes", "process_id")
                   if values[k] is None]
        if missing:
            raise ConfigError(
                "a multi-process run needs the coordinator address, the number of processes and "
                f"this process's id; missing: {', '.join(f'{FLAGS[k]} (or {ENV[k]})' for k in missing)}"
                " (or give none of them and --distributed for SLURM/Open MPI auto-detection).")
        n = check_int(_name("num_processes", from_env["num_processes"]),
                      _as_int(values["num_processes"]), min_value=1)
        pid = check_int(_name("process_id", from_env["process_id"]),
                        _as_int(values["process_id"]), min_value=0)
        if pid >= n:
            raise ConfigError(
                f"{_name('process_id', from_env['process_id'])}={pid} must be below "
                f"{_name('num_processes', from_env['num_processes'])}={n} (process ids are "
                f"0 .. {n - 1}).")
        addr = str(values["coordinator"])
        if not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", addr):
            raise ConfigError(
                f"{_name('coordinator', from_env['coordinator'])}={addr!r} must be HOST:PORT "
                "(process 0's address and a free port, e.g. 10.0.0.1:1234).")
        kwargs.update(coordinator_address=addr, num_processes=n, process_id=pid)
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    where = (f"the coordinator {kwargs['coordinator_address']} "
             f"({_name('coordinator', from_env['coordinator'])})" if given else
             "the cluster (auto-detection)")
    message = (f"mtrlrec: error: the multi-process runtime did not start within {t} s "
               f"({FLAGS['timeout']} / {ENV['timeout']}): {where} cannot be reached, or not "
               "every process joined (a process that never started, or a wrong "
               f"{FLAGS['num_processes']}).")
    # JAX gives up on a coordinator or a process that never comes by aborting the
    # process with a C++ stack trace; this watchdog says it in one line first.
    kwargs["initialization_timeout"] = t + 30
    kwargs["heartbeat_timeout_seconds"] = max(10, t)  # a process that dies later
    kwargs["shutdown_timeout_seconds"] = max(10, t)
    with watchdog(t, message):
        try:
            jax.distributed.initialize(**kwargs)
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"could not start the multi-process runtime with {where}: "
                              f"{first[:300]}") from None
    return True


@contextlib.contextmanager
def watchdog(seconds: float, message: str, status: int = 2):
    """Within the block: after ``seconds``, print ``message`` and end the process with
    ``status`` (for waits that JAX would otherwise end with an abort, or never end)."""
    import sys
    import threading

    def fire():
        print(message, file=sys.stderr, flush=True)
        os._exit(status)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _as_int(v):
    if isinstance(v, str):
        try:
            return int(v.strip().replace("_", ""))
        except ValueError:
            return v
    return v
