"""Throughput of the jitted loop: ε-greedy on a 10-armed Bernoulli bandit.

Ours: ``mtrlrec.train.loop.run`` (one jit of vmap over seeds of a lax.scan).
Baseline: the same algorithm vectorised over seeds in NumPy, in this process:
per step a uniform for exploration, a random arm, uniform tie-breaking noise
over the arms, a Bernoulli reward and the incremental sample-mean update.

    python benchmarks/perf/loop.py                    # 1,000 seeds × 10,000 steps
    python benchmarks/perf/loop.py --seeds 100 --steps 1000

Prints seed·steps/s for both and the ratio. Compilation is timed separately.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def numpy_eps_greedy(seeds: int, steps: int, k: int, eps: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.linspace(0.1, 0.9, k)
    counts = np.zeros((seeds, k))
    values = np.zeros((seeds, k))
    regret = np.zeros(seeds)
    rows = np.arange(seeds)
    best = means.max()
    for _ in range(steps):
        explore = rng.random(seeds) < eps
        random_arm = rng.integers(0, k, seeds)
        noise = rng.random((seeds, k))
        ties = values >= values.max(axis=1, keepdims=True)
        greedy = np.argmax(np.where(ties, noise, -1.0), axis=1)
        a = np.where(explore, random_arm, greedy)
        r = (rng.random(seeds) < means[a]).astype(np.float64)
        counts[rows, a] += 1
        values[rows, a] += (r - values[rows, a]) / counts[rows, a]
        regret += best - means[a]
    return regret


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--arms", type=int, default=10)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--numpy-steps", type=int, default=None,
                   help="steps for the NumPy baseline (default: same as --steps)")
    args = p.parse_args()

    import jax

    from mtrlrec.agents.bandits import EpsilonGreedy
    from mtrlrec.envs.bandits import BernoulliBandit
    from mtrlrec.train import loop

    env = BernoulliBandit(num_arms=args.arms)
    agent = EpsilonGreedy(epsilon=args.epsilon)
    kw = dict(num_steps=args.steps, num_seeds=args.seeds, log_every=args.steps // 10,
              num_chunks=1)
    t0 = time.perf_counter()
    out = loop.run(env, agent, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = loop.run(env, agent, seed=1, **kw)
    jax_s = time.perf_counter() - t0
    jax_rate = args.seeds * args.steps / jax_s

    np_steps = args.numpy_steps or args.steps
    t0 = time.perf_counter()
    np_regret = numpy_eps_greedy(args.seeds, np_steps, args.arms, args.epsilon)
    np_s = time.perf_counter() - t0
    np_rate = args.seeds * np_steps / np_s

    ours = out.metrics["cumulative_regret"][:, -1]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, numpy {np.__version__}")
    print(f"ε-greedy (ε={args.epsilon}), K={args.arms} Bernoulli arms, {args.seeds} seeds × "
          f"{args.steps} steps")
    print(f"  mtrlrec loop : {jax_rate / 1e6:8.2f} M seed·steps/s  ({jax_s:.2f} s; first call "
          f"with compilation {first:.2f} s)")
    print(f"  NumPy        : {np_rate / 1e6:8.2f} M seed·steps/s  ({np_s:.2f} s for {np_steps} steps)")
    print(f"  ratio        : {jax_rate / np_rate:8.1f}×")
    if np_steps == args.steps:
        print(f"  sanity: mean regret at T ours {ours.mean():.1f} ± {ours.std() / np.sqrt(len(ours)):.1f},"
              f" NumPy {np_regret.mean():.1f} ± {np_regret.std() / np.sqrt(len(np_regret)):.1f}")


if __name__ == "__main__":
    main()
