"""Meta-training throughput of RL² against the environment alone, in one process.

Three programs on the same tasks (k-armed Bernoulli bandits, p ~ U[0, 1], trials of
n pulls, ``num_envs`` tasks in parallel, wrapped in ``Trials(RL2Inputs(...))``):

1. **meta-training**: ``mtrlrec.train.loop.run`` with the RL² learner (act: one GRU
   step per task and pull; learn: PPO/A2C over each rollout with BPTT), compilation
   excluded (``LoopOutput.seconds``);
2. **acting only**: a jitted ``lax.scan`` of ``RL2.act`` + the vmapped env step
   (the forward pass without learning);
3. **environment only**: a jitted ``lax.scan`` of the vmapped env step with
   uniformly random arms.

Prints task-steps/s (tasks x pulls per second) of each and the ratio of
meta-training to environment-only throughput (the issue's target: >= 25 %).

    python benchmarks/perf/meta.py                     # k = 5, n = 10, 250 tasks, 4,000 steps
    python benchmarks/perf/meta.py --arms 2 --pulls 100 --rollout 100
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from timing import best_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", type=int, default=5)
    p.add_argument("--pulls", type=int, default=10, help="trial length n")
    p.add_argument("--tasks", type=int, default=250, help="tasks in parallel (num_envs)")
    p.add_argument("--steps", type=int, default=4000, help="loop steps per run")
    p.add_argument("--rollout", type=int, default=20)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    from mtrlrec.agents.rl2 import RL2
    from mtrlrec.core.wrappers import Trials
    from mtrlrec.envs.bandits import BanditTaskDistribution, BernoulliBandit
    from mtrlrec.envs.meta import RL2Inputs
    from mtrlrec.train import loop

    k, n, tasks, steps = args.arms, args.pulls, args.tasks, args.steps
    env = Trials(RL2Inputs(BernoulliBandit(num_arms=k)), BanditTaskDistribution(num_arms=k), n)
    params = env.default_params()
    agent = RL2(hidden_size=args.hidden, rollout_length=args.rollout, epochs=args.epochs)

    # 1. meta-training on the engine (compiled once; the best of the timed repeats).
    kw = dict(num_steps=steps, num_seeds=1, num_envs=tasks, log_every=steps // 4,
              num_chunks=1)
    t0 = time.perf_counter()
    out = loop.run(env, agent, **kw)
    compile_s = time.perf_counter() - t0 - out.seconds
    train_s = min([out.seconds] + [loop.run(env, agent, seed=s, **kw).seconds
                                   for s in range(1, args.repeats)])
    train_rate = tasks * steps / train_s

    # 2./3. acting only and environment only: one jitted scan each.
    agent.check_num_envs(tasks)
    state0 = agent.init(jax.random.PRNGKey(0), env.observation_spec(params),
                        env.action_spec(params))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def run_env(key, with_agent: bool):
        obs, es = reset(jax.random.split(key, tasks), params)

        def body(c, key):
            obs, es, st, total = c
            k_act, k_env = jax.random.split(key)
            if with_agent:
                a, st, _ = agent.act(k_act, st, obs)
            else:
                a = jax.random.randint(k_act, (tasks,), 0, k)
            obs, es, r, *_ = step(jax.random.split(k_env, tasks), es, a, params)
            return (obs, es, st, total + r.sum()), None

        c, _ = jax.lax.scan(body, (obs, es, state0, jnp.float32(0)),
                            jax.random.split(key, steps))
        return c[-1]

    rates = {}
    for name, with_agent in (("acting only", True), ("environment only", False)):
        f = jax.jit(lambda key, w=with_agent: run_env(key, w))
        f(jax.random.PRNGKey(0)).block_until_ready()
        s = best_seconds(lambda: f(jax.random.PRNGKey(1)).block_until_ready(), args.repeats)
        rates[name] = tasks * steps / s

    print(f"RL² meta-training throughput: k={k} arms, trials of n={n} pulls, {tasks} tasks in "
          f"parallel, {steps} steps; GRU {args.hidden}, rollout {args.rollout}, "
          f"{args.epochs} epoch(s) per rollout")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"JAX {jax.__version__} on {jax.default_backend()}; best of {args.repeats}")
    print(f"compile (meta-training program): {compile_s:.1f} s")
    print("| program | task-steps/s | ÷ environment only |")
    print("|---|---|---|")
    env_rate = rates["environment only"]
    for name, rate in (("meta-training (act + learn)", train_rate),
                       ("acting only (GRU forward)", rates["acting only"]),
                       ("environment only", env_rate)):
        print(f"| {name} | {rate:,.0f} | {rate / env_rate:.1%} |")


if __name__ == "__main__":
    main()
