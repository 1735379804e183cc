"""Throughput through the Gymnasium API vs RecSim 0.2.4 (issue 22).

User·steps per second of ``recsim_interest_evolution`` (m = 10 candidates,
k = 2) driven as a Gymnasium user would drive it: a uniform-random slate from
``action_space.sample()``, ``step`` (NumPy conversion included) and ``reset``
when an episode ends. Measured for the single-environment adapter
(``mtrlrec.interop.to_gymnasium``) and the native vector adapter
(``to_gymnasium_vector``, 1,000 users by default, NumPy and jax outputs), and for
RecSim's own gym environment with its ``RandomAgent`` in the same script run (in
its own venv, made by ``benchmarks/perf/setup_recsim_venv.sh``; driven by
``slate_sim.py``'s worker). Prints the ratios against the targets of issue 22:
single env >= 1x RecSim, vector with 1,000 users >= 100x RecSim.

Usage::

    python benchmarks/perf/gymnasium_adapter.py [--users 1000] [--steps 20000]
        [--vector-steps 300] [--repeats 3] [--sync-dispatch]
        [--recsim-python ~/.cache/mtrlrec/recsim-venv/bin/python]

``--sync-dispatch`` sets ``jax_cpu_enable_async_dispatch = False`` first (a
process-wide JAX setting a library must not flip for its users): on CPU a
one-user step then runs in the calling thread instead of being handed to XLA's
worker thread and waited for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slate_sim import DEFAULT_RECSIM_PYTHON, run_recsim  # noqa: E402
from timing import best_seconds  # noqa: E402


def measure_single(m: int, k: int, steps: int, repeats: int) -> dict:
    """Best-of-``repeats`` steps/s of one user through ``gymnasium.Env``."""
    from mtrlrec.envs.slate import recsim_interest_evolution
    from mtrlrec.interop import to_gymnasium

    env = to_gymnasium(recsim_interest_evolution(m, k), seed=0)
    env.action_space.seed(0)
    t0 = time.perf_counter()
    env.reset(seed=0)
    env.step(env.action_space.sample())
    first = time.perf_counter() - t0
    episodes = [0]

    def run():
        sample, step, reset = env.action_space.sample, env.step, env.reset
        for _ in range(steps):
            _, _, term, trunc, _ = step(sample())
            if term or trunc:
                reset()
                episodes[0] += 1

    best = best_seconds(run, repeats)
    return {"steps_per_s": steps / best, "first_call_s": first,
            "episodes": episodes[0] / repeats}


def measure_vector(m: int, k: int, users: int, steps: int, repeats: int,
                   array_type: str) -> dict:
    """Best-of-``repeats`` user·steps/s of ``users`` users through ``VectorEnv.step``."""
    from mtrlrec.envs.slate import recsim_interest_evolution
    from mtrlrec.interop import to_gymnasium_vector

    env = to_gymnasium_vector(recsim_interest_evolution(m, k), users, seed=0,
                              array_type=array_type)
    env.action_space.seed(0)
    t0 = time.perf_counter()
    env.reset(seed=0)
    out = env.step(env.action_space.sample())
    out[1].block_until_ready() if array_type == "jax" else None
    first = time.perf_counter() - t0

    def run():
        sample, step = env.action_space.sample, env.step
        for _ in range(steps):
            _, reward, _, _, _ = step(sample())
        if array_type == "jax":  # NumPy results are on the host already
            reward.block_until_ready()

    best = best_seconds(run, repeats)
    return {"user_steps_per_s": users * steps / best, "first_call_s": first}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, nargs="+", default=[1000])
    p.add_argument("--steps", type=int, default=20_000, help="single-env steps per timing")
    p.add_argument("--vector-steps", type=int, default=300, help="vector steps per timing")
    p.add_argument("--repeats", type=int, default=3, help="timings kept at their best, both sides")
    p.add_argument("--m", type=int, default=10)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--recsim-python", default=DEFAULT_RECSIM_PYTHON)
    p.add_argument("--recsim-steps", type=int, default=20_000)
    p.add_argument("--sync-dispatch", action="store_true",
                   help="jax_cpu_enable_async_dispatch = False (process-wide)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)

    import jax

    if a.sync_dispatch:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    import gymnasium

    print(f"Gymnasium adapters vs RecSim, random slates, recsim_interest_evolution "
          f"m={a.m} k={a.k} (JAX {jax.__version__}, Gymnasium {gymnasium.__version__}, "
          f"{jax.devices()[0]}, async dispatch {'off' if a.sync_dispatch else 'on'})")
    # Best of a few RecSim processes, as ours is the best of a few timings (on a shared
    # CPU a run is only ever slowed down).
    runs = [run_recsim(a.recsim_python, a.m, a.k, a.recsim_steps) for _ in range(a.repeats)]
    runs = [r for r in runs if r is not None]
    recsim = max(runs, key=lambda r: r["steps_per_s"]) if runs else None
    if recsim is None:
        print(f"RecSim baseline: not available (no venv at {a.recsim_python}; run "
              "benchmarks/perf/setup_recsim_venv.sh)")
        base = None
    else:
        base = recsim["steps_per_s"]
        print(f"RecSim 0.2.4 gym env + RandomAgent (1 user): {base:>11,.0f} steps/s "
              f"(best of {len(runs)} processes x {a.recsim_steps} steps)")

    def ratio(x, target):
        if not base:
            return "(no baseline)"
        r = x / base
        return f"{r:8.2f}x RecSim (target >= {target}x: {'met' if r >= target else 'NOT met'})"

    results = {"recsim": recsim, "recsim_runs": runs, "sync_dispatch": a.sync_dispatch}
    s = measure_single(a.m, a.k, a.steps, a.repeats)
    results["single"] = s
    print(f"to_gymnasium, 1 user:             {s['steps_per_s']:>11,.0f} steps/s       "
          f"{ratio(s['steps_per_s'], 1)}  (first call {s['first_call_s']:.1f} s)")
    results["vector"] = []
    for users in a.users:
        for array_type in ("numpy", "jax"):
            v = measure_vector(a.m, a.k, users, a.vector_steps, a.repeats, array_type)
            v.update(users=users, array_type=array_type)
            results["vector"].append(v)
            print(f"to_gymnasium_vector, {users:>6,d} users, {array_type:5s}: "
                  f"{v['user_steps_per_s']:>11,.0f} user·steps/s  "
                  f"{ratio(v['user_steps_per_s'], 100)}  (first call {v['first_call_s']:.1f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
