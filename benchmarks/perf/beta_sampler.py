"""Throughput of the exact Beta sampler alone, against NumPy and ``jax.random.beta``.

Thompson sampling on K arms draws 2K Gamma variates per pull; this script times
just those draws: R runs × K arms per step, T steps in one ``lax.scan`` (the
parameters grow every step, as posterior counts do), for

* ``mtrlrec``: :func:`mtrlrec.core.sampling.beta` (Marsaglia–Tsang with hashed
  words, Box–Muller pairs and the exact fallback), vmapped over runs;
* ``mtrlrec, threefry words``: the same with ``source='threefry'`` (the
  reference bit source);
* ``jax.random.beta``;
* NumPy's ``Generator.beta`` on the same ``[R, K]`` arrays.

Each rate is the best of ``--repeats`` timings (3 by default), ours and NumPy alike.

    python benchmarks/perf/beta_sampler.py               # R = 1,000, K = 10, T = 2,000
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core import sampling
from mtrlrec.core import rng
from timing import best_seconds  # benchmarks/perf/timing.py (this folder is on sys.path)


def _program(kind: str, runs: int, k: int, steps: int):
    def one(key, a, b):
        if kind == "mtrlrec":
            return sampling.beta(key, a, b, "hash", True)
        if kind == "mtrlrec, threefry words":
            return sampling.beta(key, a, b, "threefry", True)
        return jax.random.beta(key, a, b)

    draw = jax.vmap(one)

    def run(keys, a, b):
        def step(total, i):
            ks = jax.vmap(lambda kk: rng.fold_in(kk, i))(keys)
            return total + jnp.sum(draw(ks, a + i, b + 2 * i)), None

        return jax.lax.scan(step, jnp.float32(0.0), jnp.arange(steps))[0]

    return jax.jit(run)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--arms", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3,
                    help="timings per measurement, the best is kept (default 3)")
    args = ap.parse_args(argv)
    r, k, t = args.runs, args.arms, args.steps
    keys = jax.random.split(jax.random.PRNGKey(0), r)
    a = jnp.full((r, k), 3.0)
    b = jnp.full((r, k), 5.0)
    print(f"{r} runs × {k} arms × {t} steps ({r * k * t:,} Beta draws); {jax.devices()}")
    rates = {}
    for kind in ("mtrlrec", "mtrlrec, threefry words", "jax.random.beta"):
        f = _program(kind, r, k, t)
        jax.block_until_ready(f(keys, a, b))
        rates[kind] = r * k * t / best_seconds(lambda: jax.block_until_ready(f(keys, a, b)),
                                                args.repeats)
    rng = np.random.default_rng(0)
    an, bn = np.asarray(a), np.asarray(b)

    def numpy_draws():
        for i in range(t):
            rng.beta(an + i, bn + 2 * i)

    rates["NumPy Generator.beta"] = r * k * t / best_seconds(numpy_draws, args.repeats)
    base = rates["NumPy Generator.beta"]
    for kind, v in rates.items():
        print(f"  {kind:24s} {v / 1e6:7.2f} M Beta/s   {v / base:5.2f}× NumPy")


if __name__ == "__main__":
    main()
