"""Training throughput of PPO and A2C on the slate simulator (issue 17).

Environment steps per second *including learning* (acting, stepping the users,
writing the rollout, and the updates every ``rollout_length`` steps) of PPO and
A2C on ``recsim_interest_evolution`` (m = 10 candidates, k = 3), as a fraction
of the random-policy simulator throughput measured in the same run:

* ``sim``: the simulator alone with uniformly random slates,
  ``jit(scan(vmap(act + step)))`` (``benchmarks/perf/slate_sim.py``'s program);
* ``engine/random``: random slates through the engine's training window
  (``mtrlrec.train.step.make_window_fn``: metrics, episode statistics);
* ``engine/ppo``, ``engine/a2c``: the learners through the same window program.

Each figure is the best of ``--repeats`` timed calls after two warm-up calls
(compilation; the second call has the carry's final structure). The target of
issue 17 is PPO/A2C >= 25 % of ``sim``.

Usage::

    python benchmarks/perf/policy_gradient.py [--users 1000] [--steps 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import best_seconds  # noqa: E402


def measure_engine(agent, num_users: int, num_steps: int, repeats: int) -> dict:
    import jax

    from mtrlrec.core.agent import PerUser
    from mtrlrec.core.wrappers import EpisodeStatistics
    from mtrlrec.envs.slate import recsim_interest_evolution
    from mtrlrec.train.step import init_carry, make_window_fn

    env = EpisodeStatistics(recsim_interest_evolution(10, 3))
    params = env.default_params()
    agent.check_num_envs(num_users)
    agent.check_compatible(env.observation_spec(params), env.action_spec(params))
    if num_users > 1 and not agent.batched:
        agent = PerUser(agent)
    carry = jax.jit(lambda k: init_carry(env, agent, params, k, {}, num_users))(
        jax.random.PRNGKey(0))
    window = jax.jit(make_window_fn(env, agent, num_steps, num_users))
    state = {"carry": carry}

    def call():
        state["carry"], m = window(state["carry"], params)
        jax.block_until_ready(m)
        return m

    t0 = time.perf_counter()
    call()
    call()  # the cumulative metrics join the carry after the first window
    warm = time.perf_counter() - t0
    best = best_seconds(call, repeats)
    m = call()
    return {"user_steps_per_s": num_users * num_steps / best, "seconds": best,
            "warmup_s": warm, "reward": float(m["reward"])}


def measure_sim(num_users: int, num_steps: int, repeats: int) -> dict:
    import jax

    from slate_sim import make_rollout

    from mtrlrec.agents.slate_baselines import RandomSlate
    from mtrlrec.envs.slate import recsim_interest_evolution

    env = recsim_interest_evolution(10, 3)
    init, rollout = make_rollout(env, RandomSlate(), num_users, num_steps)
    state = {"s": init(jax.random.PRNGKey(0)), "i": 0}

    def call():
        obs, st, a_state = state["s"]
        state["i"] += 1
        obs, st, total = rollout(jax.random.PRNGKey(state["i"]), obs, st, a_state)
        total.block_until_ready()
        state["s"] = (obs, st, a_state)

    call()
    best = best_seconds(call, repeats)
    return {"user_steps_per_s": num_users * num_steps / best, "seconds": best}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--steps", type=int, default=256, help="steps per timed call (multiple of 16)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    import jax

    from mtrlrec.agents.actor_critic import A2C, PPO
    from mtrlrec.agents.slate_baselines import RandomSlate

    n, s, r = args.users, args.steps, args.repeats
    res = {"device": str(jax.devices()[0]), "users": n, "steps": s}
    res["sim"] = measure_sim(n, s, r)
    res["engine/random"] = measure_engine(RandomSlate(), n, s, r)
    res["engine/ppo"] = measure_engine(PPO(), n, s, r)
    res["engine/a2c"] = measure_engine(A2C(), n, s, r)
    base = res["sim"]["user_steps_per_s"]
    print(f"device {res['device']}, {n} users, {s} steps per call, best of {r}")
    print(f"{'program':<16}{'user-steps/s':>16}{'vs random sim':>16}")
    for k in ("sim", "engine/random", "engine/ppo", "engine/a2c"):
        v = res[k]["user_steps_per_s"]
        res[k]["fraction_of_sim"] = v / base
        print(f"{k:<16}{v:>16,.0f}{v / base:>15.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
