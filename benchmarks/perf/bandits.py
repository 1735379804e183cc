"""Throughput of the bandit agents: ours against vectorised NumPy and MABWiser.

K = 10 Bernoulli arms (means linspace(0.1, 0.9, 10)), R runs × T steps, for
Thompson sampling, UCB1, KL-UCB and ε-greedy. For each algorithm it measures
pulls per second (runs × steps / seconds, compilation excluded) of

* ``loop``: our jitted, vmapped online loop (``mtrlrec.train.loop.run``, which
  also logs windowed metrics and cumulative regret), on one CPU core: the
  one-core columns are measured in a child process restricted to one core
  (Linux ``sched_setaffinity``), because XLA's CPU runtime otherwise spreads
  parts of one device's work over the other cores (while NumPy uses one), and
  unpinned single-device timings flipped between two speeds 2x apart from
  process to process;
* ``loop×N``: the same with the runs spread over N CPU devices, one per core
  (``mtrlrec.config.use_cpu_cores``, as ``mtrlrec run``/``bench`` do by default);
* ``scan``: the same env and agent objects in a minimal ``jit(vmap(scan))``
  that keeps only reward and optimal-pull sums (the loop without its logging,
  from :mod:`mtrlrec.agents.bandit_runners`), to show the loop's overhead;
* ``numpy``: a vectorised NumPy implementation of the same algorithm in this
  script (all runs as one array, one Python iteration per step), same arms and
  horizon, in one process;
* ``numpy×N``: the same in N processes at once, each with 1/N of the runs: the
  whole-machine baseline to compare ``loop×N`` with;
* ``mabwiser``: MABWiser (``pip install mabwiser``; the ``peers`` extra), one
  run, ``predict`` + ``partial_fit`` per pull, as practitioners use it.

and prints the ratios (``×N`` against ``numpy×N``). Every rate is the best of ``--repeats`` timings (3 by
default) for ours and for NumPy alike: on a shared CPU a run is only ever slowed
down, and single timings of the same program varied by up to 2x here. MABWiser is
timed once (it is three orders of magnitude slower). Run::

    python benchmarks/perf/bandits.py            # 1,000 runs × 10,000 steps
    python benchmarks/perf/bandits.py --quick    # 200 runs × 2,000 steps
    python benchmarks/perf/bandits.py --cpu-devices 1   # one core only (no ×N columns)

The regret column is the mean over the loop's runs: it changes only when the
random streams or an algorithm change, so it doubles as a check that a speed-up
left the numbers alone.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec import config
from mtrlrec.agents import bandits as A
from mtrlrec.core.agent import with_hparams
from mtrlrec.core.rng import step_keys
from mtrlrec.core.types import Transition
from mtrlrec.log import provenance
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.train import loop
from timing import best_seconds  # benchmarks/perf/timing.py (this folder is on sys.path)

K = 10
MEANS = np.linspace(0.1, 0.9, K)


# -- NumPy, vectorised over runs ---------------------------------------------------------


def _np_klucb_index(p, n, level, iters=3):
    """Same algorithm as ``kl_ucb_index``: Newton in s = -ln(1 - q) from a Bernstein-type bound."""
    target = level / n
    p1 = np.minimum(p, 1 - 1e-7)
    with np.errstate(all="ignore"):
        s_p = -np.log(1 - p1)
        log_p = np.log(np.where(p > 0, p, 1))
        x = np.where(p >= 0.5, p, np.minimum(p + np.sqrt(0.5 * target), 0.5))
        q0 = p + np.sqrt(2 * target * x * (1 - x))
        s_start = np.where(q0 < 1, s_p + (q0 - p) / np.maximum(1 - q0, 1e-30), np.inf)
        s = np.maximum(np.minimum(s_start, (target - p * log_p) / (1 - p1) + s_p), s_p)
        for _ in range(iters):
            e = np.exp(-s)
            q = 1 - e
            d = q - p
            f = p * (log_p - np.log(np.maximum(q, 1e-30))) + (1 - p) * (s - s_p) - target
            step = np.maximum(np.where(d > 0, f * q / np.where(d > 0, d, 1), 0), 0)
            s = np.maximum(s - step, s_p)
    return np.where(p >= 1, 1.0, np.clip(1 - e * (1 + step), p, 1))


def numpy_run(name: str, runs: int, steps: int, seed: int = 0) -> float:
    """Runs ``name`` vectorised over ``runs``; returns seconds."""
    rng = np.random.default_rng(seed)
    rows = np.arange(runs)
    n = np.zeros((runs, K))
    q = np.zeros((runs, K))
    succ = np.ones((runs, K))
    fail = np.ones((runs, K))
    regret = np.zeros(runs)
    t0 = time.perf_counter()
    for t in range(steps):
        if name == "TS":
            a = np.argmax(rng.beta(succ, fail), 1)
        elif name == "UCB1":
            idx = q + math.sqrt(2) * np.sqrt(math.log(max(t, 1)) / np.maximum(n, 1))
            a = np.argmax(np.where(n > 0, idx, np.inf), 1)
        elif name == "KL-UCB":
            idx = _np_klucb_index(q, np.maximum(n, 1), math.log(max(t, 1)))
            a = np.argmax(np.where(n > 0, idx, np.inf), 1)
        else:  # ε-greedy, ε = 0.1, random tie-break
            noise = rng.random((runs, K))
            greedy = np.argmax(np.where(q >= q.max(1, keepdims=True), noise, -1), 1)
            a = np.where(rng.random(runs) < 0.1, rng.integers(0, K, runs), greedy)
        r = rng.random(runs) < MEANS[a]
        regret += MEANS.max() - MEANS[a]
        n[rows, a] += 1
        q[rows, a] += (r - q[rows, a]) / n[rows, a]
        succ[rows, a] += r
        fail[rows, a] += ~r
    return time.perf_counter() - t0


def mabwiser_run(name: str, pulls: int, seed: int = 0) -> float | None:
    """One MABWiser run of ``pulls`` predict/partial_fit pairs; seconds (None if absent)."""
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    policies = {
        "TS": LearningPolicy.ThompsonSampling(),
        "UCB1": LearningPolicy.UCB1(alpha=math.sqrt(2)),
        "ε-greedy": LearningPolicy.EpsilonGreedy(epsilon=0.1),
    }
    if name not in policies:
        return None
    rng = np.random.default_rng(seed)
    mab = MAB(arms=list(range(K)), learning_policy=policies[name], seed=seed)
    mab.fit(decisions=list(range(K)), rewards=[0] * K)
    t0 = time.perf_counter()
    for _ in range(pulls):
        a = mab.predict()
        mab.partial_fit([a], [int(rng.random() < MEANS[a])])
    return time.perf_counter() - t0


AGENTS = {
    "TS": lambda: A.ThompsonSampling(),
    "UCB1": lambda: A.UCB1(),
    "KL-UCB": lambda: A.KLUCB(),
    "ε-greedy": lambda: A.EpsilonGreedy(0.1),
}


def ours_loop(name: str, runs: int, steps: int, repeats: int,
              devices: int | None = None) -> tuple[float, float]:
    """Best pulls/s of ``loop.run`` on ``devices`` devices over ``repeats`` runs (each
    timing its 10 chunks; compilation is timed apart), and the mean regret at T."""
    env, agent = BernoulliBandit(K, means=MEANS.tolist()), AGENTS[name]()
    best = 0.0
    for _ in range(repeats):
        out = loop.run(env, agent, num_steps=steps, num_seeds=runs,
                       log_every=steps // 10, num_chunks=10, devices=devices)
        best = max(best, runs * steps / out.seconds)
    return best, float(out.metrics["cumulative_regret"][:, -1].mean())


def numpy_processes(name: str, runs: int, steps: int, procs: int, seed: int) -> float:
    """Pulls/s of ``procs`` NumPy processes at once, each with runs/procs runs (a fresh
    interpreter each, so no JAX threads are forked)."""
    ctx = multiprocessing.get_context("spawn")
    share = runs // procs
    with ctx.Pool(procs) as pool:
        pool.starmap(_sleep, [(0.0,)] * procs)  # start every worker before timing
        t0 = time.perf_counter()
        pool.starmap(numpy_run, [(name, share, steps, seed * procs + i) for i in range(procs)])
        return share * procs * steps / (time.perf_counter() - t0)


def _sleep(sec: float) -> None:
    time.sleep(sec)


def seed_program(env, agent, num_steps: int):
    """``f(keys [S], params [S], hp) -> (avg reward, frac optimal) [S]``: a lean loop.

    The env and agent in a ``vmap`` over seeds of a ``lax.scan`` over steps that
    keeps only two running sums (no per-window metrics, no chunks): the floor
    under which the library's loop cannot go, measured beside it.
    """

    def one(key, params, hp):
        k_env, k_agent, key = jax.random.split(key, 3)
        obs, es = env.reset_env(k_env, params)
        st = agent.init(k_agent, env.observation_spec(), env.action_spec())
        st = with_hparams(st, hp)

        def step(carry, i):
            es, st, obs, key, total, opt = carry
            ka, ke, ku = step_keys(key, i)
            a, st, ai = agent.act(ka, st, obs)
            obs2, es, r, te, tr, info = env.step_env(ke, es, a, params)
            st = agent.observe(ku, st, Transition(obs, a, r, obs2, te, tr, ai, info))
            return (es, st, obs2, key, total + r, opt + info["optimal_action"]), None

        init = (es, st, obs, key, jnp.float32(0.0), jnp.float32(0.0))
        (_, _, _, _, total, opt), _ = jax.lax.scan(step, init, jnp.arange(num_steps))
        return total / num_steps, opt / num_steps

    return jax.vmap(one, in_axes=(0, 0, None))


def _avg_reward_program(env: Environment, agent: Agent, num_steps: int):
    """``f(keys [S], params [S], hp {name: [H]}) -> (avg reward, frac optimal) [H, S]``."""
    return jax.vmap(seed_program(env, agent, num_steps), in_axes=(None, None, 0))


def ours_scan(name: str, runs: int, steps: int, repeats: int) -> float:
    """Best pulls/s of a minimal jit(vmap(scan)) over the same env and agent (after compiling)."""
    env = BernoulliBandit(K, means=MEANS.tolist())
    fn = jax.jit(seed_program(env, AGENTS[name](), steps))
    keys = jax.random.split(jax.random.PRNGKey(0), runs)
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (runs,) + x.shape), env.default_params())
    hp = {}
    jax.block_until_ready(fn(keys, params, hp))  # compile
    return runs * steps / best_seconds(lambda: jax.block_until_ready(fn(keys, params, hp)),
                                        repeats)


def measure(part: str, name: str, args) -> dict:
    """The measurements of one ``part`` ('one-core' or 'all-cores') for one algorithm."""
    np_steps = args.numpy_steps or args.steps
    if part == "one-core":
        v_loop, regret = ours_loop(name, args.runs, args.steps, args.repeats)
        sec = mabwiser_run(name, args.mabwiser_pulls)
        return {
            "loop": v_loop, "regret": regret,
            "scan": ours_scan(name, args.runs, args.steps, args.repeats),
            "numpy": args.runs * np_steps / min(numpy_run(name, args.runs, np_steps, seed=i)
                                                for i in range(args.repeats)),
            "mabwiser": args.mabwiser_pulls / sec if sec else float("nan"),
        }
    cores = jax.local_device_count()
    v_all, regret = ours_loop(name, args.runs, args.steps, args.repeats)
    return {"loop_all": v_all, "regret_all": regret, "cores": cores,
            "numpy_all": max(numpy_processes(name, args.runs, np_steps, cores, seed=i)
                             for i in range(args.repeats))}


def run_part(part: str, argv: list[str]) -> dict[str, dict]:
    """Runs this script with ``--part`` in a fresh process; its results by algorithm.

    A fresh process, because XLA sizes its CPU thread pool from the cores the
    process may use when its backend starts: restricting a running process's
    threads to one core afterwards left two pool threads sharing it (2x slower
    than starting restricted).
    """
    proc = subprocess.run([sys.executable, __file__, *argv, "--part", part], check=True,
                          stdout=subprocess.PIPE, text=True)
    return {d["algorithm"]: d for d in map(json.loads, proc.stdout.splitlines())}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--numpy-steps", type=int, default=None,
                    help="steps timed for NumPy (default: --steps)")
    ap.add_argument("--mabwiser-pulls", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3,
                    help="timings per measurement, the best is kept (default 3)")
    ap.add_argument("--cpu-devices", type=int, default=None,
                    help="CPU devices (cores) for the ×N columns (default: all cores; 1: none)")
    ap.add_argument("--quick", action="store_true", help="200 runs × 2,000 steps")
    ap.add_argument("--algos", default="TS,UCB1,KL-UCB,ε-greedy")
    ap.add_argument("--part", choices=["one-core", "all-cores"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.steps, args.mabwiser_pulls = 200, 2000, 500
    if args.part:  # a child: JSON lines only
        if args.part == "one-core" and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before JAX starts
        config.use_cpu_cores(1 if args.part == "one-core" else args.cpu_devices)
        for name in args.algos.split(","):
            print(json.dumps({"algorithm": name, **measure(args.part, name, args)}), flush=True)
        return

    one = run_part("one-core", argv)
    multi = args.cpu_devices != 1 and config.cpu_cores() > 1
    every = run_part("all-cores", argv) if multi else {}
    print(f"K = {K} Bernoulli arms, {args.runs} runs × {args.steps} steps; "
          f"{provenance.describe(provenance.code_version())}")
    cores = next(iter(every.values()))["cores"] if every else 1
    cols = [("loop", 12), ("scan", 12), ("numpy", 12), ("mabwiser", 10), ("loop/np", 8),
            ("scan/np", 8), ("loop/mabw", 10)]
    if every:
        cols += [(f"loop×{cores}", 12), (f"numpy×{cores}", 12), (f"×{cores}/np×{cores}", 12)]
    print(f"{'algorithm':10s} " + " ".join(f"{c:>{w}s}" for c, w in cols) + f" {'regret(T)':>10s}")
    for name, m in one.items():
        row = [f"{m['loop']:12,.0f}", f"{m['scan']:12,.0f}", f"{m['numpy']:12,.0f}",
               f"{m['mabwiser']:10,.0f}", f"{m['loop'] / m['numpy']:8.2f}",
               f"{m['scan'] / m['numpy']:8.2f}", f"{m['loop'] / m['mabwiser']:10,.0f}"]
        if every:
            e = every[name]
            if e["regret_all"] != m["regret"]:
                raise SystemExit(f"{name}: {cores} devices changed the regret "
                                 f"({e['regret_all']} vs {m['regret']})")
            row += [f"{e['loop_all']:12,.0f}", f"{e['numpy_all']:12,.0f}",
                    f"{e['loop_all'] / e['numpy_all']:12.2f}"]
        print(f"{name:10s} " + " ".join(row) + f" {m['regret']:10.2f}", flush=True)
    pinned = ("one process pinned to one core" if hasattr(os, "sched_setaffinity")
              else "one process (NOT pinned)")
    print(f"(pulls/s; ratios > 1 mean ours is faster; nan: MABWiser missing or lacks the policy;"
          f" loop, scan, numpy, mabwiser: {pinned}"
          + (f"; ×{cores}: all {cores} cores, our runs spread over {cores} CPU devices, NumPy in"
             f" {cores} processes" if every else "")
          + "; regret(T): mean over the loop's runs)")


if __name__ == "__main__":
    main()
