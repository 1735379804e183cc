"""Training throughput of SlateQ: ours against RecSim 0.2.4's own SlateQ agent (issue 16).

Environment steps per second *including learning* of SlateQ SARSA-TS on RecSim
interest evolution (m = 10, k = 3) with RecSim's network, optimiser and update
period (one minibatch of 32 every 4 steps), after the replay warm-up:

* ``recsim``: RecSim's ``SlateDecompQAgent`` (``slate_topk_sarsa``, TF 2.15 in graph
  mode) on RecSim's gym env, one user stream, run in the RecSim virtualenv
  (``benchmarks/perf/setup_recsim_venv.sh``) by this same file (``--recsim-worker``);
* ``ours ×S``: :class:`mtrlrec.agents.slateq.SlateQ` on the engine
  (``mtrlrec.train.loop.run``), one user stream per learner, ``S`` independent
  learners (seeds) in one compiled program;
* ``random ×S``: the same loop with uniformly random slates and no learning: the
  simulator's own throughput in the same configuration, the ceiling of a
  learning agent.

and prints ours / RecSim and ours / random. Both sides warm up first (ours:
compilation; RecSim: its 500-step replay warm-up and graph building), and both
time only steady-state training steps.

Usage::

    python benchmarks/perf/slateq.py [--steps 20000] [--seeds 1 8]
        [--recsim-python ~/.cache/mtrlrec/recsim-venv/bin/python] [--recsim-steps 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DEFAULT_RECSIM_PYTHON = os.path.join(
    os.environ.get("MTRLREC_CACHE", os.path.expanduser("~/.cache/mtrlrec")),
    "recsim-venv", "bin", "python")
WARMUP = 500  # replay warm-up (steps before the first update), both sides


# --------------------------------------------------------------------------
# RecSim side (runs inside the RecSim venv)
# --------------------------------------------------------------------------
def recsim_worker(steps: int, seed: int) -> dict:
    """RecSim's SlateQ SARSA-TS training loop (``runner_lib.TrainRunner``'s episode loop)."""
    import numpy as np
    import tensorflow as tf
    from recsim.agents import slate_decomp_q_agent
    from recsim.environments import interest_evolution as ie

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    env = ie.create_environment({"num_candidates": 10, "slate_size": 3,
                                 "resample_documents": True, "seed": seed})
    sess = tf.compat.v1.Session()
    agent = slate_decomp_q_agent.create_agent(
        "slate_topk_sarsa", sess, observation_space=env.observation_space,
        action_space=env.action_space, min_replay_history=WARMUP, summary_writer=None)
    sess.run(tf.compat.v1.global_variables_initializer())
    np.random.seed(seed)

    def run(n):
        obs = env.reset()
        action = agent.begin_episode(obs)
        for _ in range(n):
            obs, reward, done, _ = env.step(action)
            if done:
                agent.end_episode(reward, obs)
                obs = env.reset()
                action = agent.begin_episode(obs)
            else:
                action = agent.step(reward, obs)

    run(WARMUP + 200)  # fill the replay, build and warm the training graph
    t0 = time.perf_counter()
    run(steps)
    sec = time.perf_counter() - t0
    return {"steps": steps, "seconds": sec, "steps_per_s": steps / sec,
            "training_steps": int(agent.training_steps)}


def run_recsim(python: str, steps: int, seed: int = 0) -> dict | None:
    if not os.path.exists(python):
        return None
    cmd = [python, os.path.abspath(__file__), "--recsim-worker", "--recsim-steps", str(steps),
           "--seed", str(seed)]
    # RecSim 0.2.4's select-slate op has a tf.Print of every slate: its stderr is discarded.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__" and "--recsim-worker" in sys.argv:
    p = argparse.ArgumentParser()
    p.add_argument("--recsim-worker", action="store_true")
    p.add_argument("--recsim-steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(json.dumps(recsim_worker(a.recsim_steps, a.seed)))
    sys.exit(0)


# --------------------------------------------------------------------------
# mtrlrec side
# --------------------------------------------------------------------------
def measure_ours(agent_name: str, seeds: int, steps: int, repeats: int) -> float:
    """Best env steps/s (all seeds) of ``steps`` training steps per seed, compilation excluded."""
    from mtrlrec.agents.slate_baselines import RandomSlate
    from mtrlrec.agents.slateq import SlateQ
    from mtrlrec.core.wrappers import EpisodeStatistics
    from mtrlrec.envs.slate import recsim_interest_evolution
    from mtrlrec.train import loop

    env = EpisodeStatistics(recsim_interest_evolution(num_candidates=10, slate_size=3))
    if agent_name == "slateq":
        agent = SlateQ(min_replay=WARMUP, epsilon_decay_steps=steps, replay_capacity=steps)
    else:
        agent = RandomSlate()
    log_every = 1000 if steps % 1000 == 0 else steps
    best = 0.0
    for _ in range(repeats + 1):  # the first call compiles
        out = loop.run(env, agent, num_steps=steps, num_seeds=seeds, log_every=log_every,
                       num_chunks=1, devices=1)
        best = max(best, seeds * steps / out.seconds)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000, help="training steps per seed (ours)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--recsim-python", default=DEFAULT_RECSIM_PYTHON)
    p.add_argument("--recsim-steps", type=int, default=3000)
    a = p.parse_args(argv)

    import jax

    from mtrlrec import config
    config.use_cpu_cores(1)  # one device: both sides on the same footing
    print(f"SlateQ SARSA-TS training throughput, RecSim interest evolution m=10 k=3, "
          f"update every 4 steps (batch 32); jax {jax.__version__} on {jax.default_backend()}")
    recsim = run_recsim(a.recsim_python, a.recsim_steps)
    base = recsim["steps_per_s"] if recsim else float("nan")
    if recsim:
        print(f"RecSim 0.2.4 SlateDecompQAgent: {base:,.0f} steps/s over {a.recsim_steps} "
              f"training steps ({recsim['training_steps']} updates in total)")
    else:
        print(f"RecSim baseline: not available (no venv at {a.recsim_python}; run "
              "benchmarks/perf/setup_recsim_venv.sh)")
    print(f"{'learners':>8}  {'ours steps/s':>13}  {'random steps/s':>15}  {'ours/RecSim':>11}  "
          f"{'ours/random':>11}")
    for s in a.seeds:
        ours = measure_ours("slateq", s, a.steps, a.repeats)
        ceiling = measure_ours("random", s, a.steps, a.repeats)
        print(f"{s:>8}  {ours:>13,.0f}  {ceiling:>15,.0f}  {ours / base:>11.1f}  "
              f"{ours / ceiling:>11.1%}", flush=True)


if __name__ == "__main__":
    main()
