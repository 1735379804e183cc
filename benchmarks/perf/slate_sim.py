"""Throughput of the slate simulator vs RecSim 0.2.4 (issue 5).

Measures user·steps per second of the uniform-random slate policy on
``recsim_interest_evolution`` (m = 10 candidates, k = 2) for 1, 1,000 and
100,000 users stepped together (one ``jit(vmap(scan))`` program), and, when a
RecSim virtualenv is given (``benchmarks/perf/setup_recsim_venv.sh``), RecSim's
own gym environment with its ``RandomAgent`` in the same script run, and prints
the ratio. Also prints the peak memory per user (device buffers of the carried
state, plus the process' peak RSS growth).

Usage::

    python benchmarks/perf/slate_sim.py [--users 1 1000 100000] [--steps 200]
        [--recsim-python ~/.cache/mtrlrec/recsim-venv/bin/python]

The same file is the RecSim worker (``--recsim-worker``), run by the RecSim
venv's Python; the top level imports only the standard library for that reason.
``--recsim-fidelity N`` makes the worker also play N full episodes and print
their statistics as JSON (the fidelity reference of
``benchmarks/tables/recsim_fidelity.toml``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

DEFAULT_RECSIM_PYTHON = os.path.join(
    os.environ.get("MTRLREC_CACHE", os.path.expanduser("~/.cache/mtrlrec")),
    "recsim-venv", "bin", "python")


# --------------------------------------------------------------------------
# RecSim side (runs inside the RecSim venv: numpy < 1.24, TF 2.15, gym 0.25)
# --------------------------------------------------------------------------
def recsim_worker(num_candidates: int, slate_size: int, steps: int, episodes: int,
                  seed: int, max_steps_per_episode: int = 27000,
                  choice: str = "proportional") -> dict:
    """Steps RecSim's interest-evolution gym env with its RandomAgent.

    Follows ``runner_lib.Runner._run_one_episode``: an episode ends when the
    env says ``done`` (budget <= 0) or after ``max_steps_per_episode`` steps.
    ``choice='cascade'`` builds the same env as ``create_environment`` but with
    ``ExponentialCascadeChoiceModel`` (the user sampler's attention_prob 0.65,
    score_scaling 0.05).
    """
    import numpy as np
    from recsim import choice_model
    from recsim.agents import random_agent
    from recsim.environments import interest_evolution as ie
    from recsim.simulator import environment, recsim_gym

    ctor = {"proportional": choice_model.MultinomialProportionalChoiceModel,
            "cascade": choice_model.ExponentialCascadeChoiceModel}[choice]
    user_model = ie.IEvUserModel(slate_size, choice_model_ctor=ctor,
                                 response_model_ctor=ie.IEvResponse,
                                 user_state_ctor=ie.IEvUserState, seed=seed)
    sampler = ie.UtilityModelVideoSampler(doc_ctor=ie.IEvVideo, seed=seed)
    env = recsim_gym.RecSimGymEnv(
        environment.Environment(user_model, sampler, num_candidates, slate_size,
                                resample_documents=True),
        ie.clicked_watchtime_reward, ie.utils.aggregate_video_cluster_metrics,
        ie.utils.write_video_cluster_metrics)
    env.seed(seed)  # numpy's global RNG: the choice draw and interest coin
    agent = random_agent.RandomAgent(env.action_space, random_seed=seed)
    out = {"num_candidates": num_candidates, "slate_size": slate_size, "seed": seed,
           "choice": choice}

    # Throughput: `steps` env+agent steps, resetting when an episode ends.
    obs = env.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, reward, done, _ = env.step(agent.step(0.0, obs))
        if done:
            obs = env.reset()
    out["steps_per_s"] = steps / (time.perf_counter() - t0)

    if episodes:
        returns, lengths, clicks, qsum = [], [], [], []
        for _ in range(episodes):
            obs = env.reset()
            total, n, c, q = 0.0, 0, 0, 0.0
            while True:
                obs, reward, done, _ = env.step(agent.step(0.0, obs))
                total += reward
                n += 1
                for r in obs["response"]:
                    if r["click"]:
                        c += 1
                        q += float(r["quality"])
                if done or n == max_steps_per_episode:
                    break
            returns.append(total)
            lengths.append(n)
            clicks.append(c)
            qsum.append(q)
        returns, lengths = np.array(returns), np.array(lengths)
        clicks, qsum = np.array(clicks), np.array(qsum)
        se = lambda a: float(a.std(ddof=1) / np.sqrt(len(a)))  # noqa: E731
        out["episodes"] = episodes
        out["episode_return"] = [float(returns.mean()), se(returns)]
        out["episode_length"] = [float(lengths.mean()), se(lengths)]
        out["clicks"] = [float(clicks.mean()), se(clicks)]
        # RecSim's CTR and AverageQuality pool all steps / all clicks; standard
        # errors by the delta method over episodes (as mtrlrec.runners.episodes).
        for name, x, y in (("ctr", clicks, lengths), ("avg_quality", qsum, clicks)):
            ratio = x.sum() / max(y.sum(), 1e-12)
            out[name] = [float(ratio), se((x - ratio * y) / y.mean())]
    return out


def run_recsim(python: str, num_candidates: int, slate_size: int, steps: int,
               episodes: int = 0, seed: int = 0) -> dict | None:
    """Runs :func:`recsim_worker` in the RecSim venv; None if it is missing."""
    if not os.path.exists(python):
        return None
    cmd = [python, os.path.abspath(__file__), "--recsim-worker", "--m", str(num_candidates),
           "--k", str(slate_size), "--steps", str(steps), "--recsim-fidelity", str(episodes),
           "--seed", str(seed)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        print(res.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def _worker_main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--recsim-worker", action="store_true")
    p.add_argument("--m", type=int, default=10)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--recsim-fidelity", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--choice", default="proportional")
    a = p.parse_args(argv)
    print(json.dumps(recsim_worker(a.m, a.k, a.steps, a.recsim_fidelity, a.seed,
                                   choice=a.choice)))


if __name__ == "__main__" and "--recsim-worker" in sys.argv:
    _worker_main(sys.argv[1:])


# --------------------------------------------------------------------------
# mtrlrec side
# --------------------------------------------------------------------------
def make_rollout(env, agent, num_users: int, num_steps: int, block: int = 0):
    """``jit(scan(vmap(act + step)))``: ``num_steps`` steps of ``num_users`` users.

    Users auto-reset when their episode ends; the total reward is returned so
    nothing is dead code. With ``block`` > 0 and ``num_users`` a multiple of
    it, users are processed in ``lax.map``-ped blocks of ``block`` users, each
    scanned over all steps: the same computation (users are independent) with a
    working set that stays in cache. Returns ``(init_fn, rollout_fn)``.
    """
    import jax
    import jax.numpy as jnp

    params = env.default_params()
    obs_spec, act_spec = env.observation_spec(params), env.action_spec(params)
    agent.check_compatible(obs_spec, act_spec)
    if block <= 0 or num_users <= block or num_users % block:
        block = num_users
    num_blocks = num_users // block

    def init(key):
        keys = jax.random.split(key, num_users)
        obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)
        a_state = agent.init(key, obs_spec, act_spec)
        return obs, state, a_state

    def one(key, obs, state, a_state):
        k_act, k_env = jax.random.split(key)
        action, a_state, _ = agent.act(k_act, a_state, obs)
        obs, state, reward, *_ = env.step(k_env, state, action, params)
        return obs, state, reward

    def scan_block(key, obs, state, a_state):
        def body(carry, k):
            obs, state, total = carry
            keys = jax.random.split(k, block)
            obs, state, r = jax.vmap(one, in_axes=(0, 0, 0, None))(keys, obs, state, a_state)
            return (obs, state, total + jnp.sum(r)), None

        (obs, state, total), _ = jax.lax.scan(
            body, (obs, state, jnp.float32(0.0)), jax.random.split(key, num_steps))
        return obs, state, total

    def rollout(key, obs, state, a_state):
        if num_blocks == 1:
            return scan_block(key, obs, state, a_state)
        split = lambda x: x.reshape((num_blocks, block) + x.shape[1:])  # noqa: E731
        obs_b, state_b = jax.tree.map(split, (obs, state))
        keys = jax.random.split(key, num_blocks)
        obs_b, state_b, totals = jax.lax.map(
            lambda a: scan_block(a[0], a[1], a[2], a_state), (keys, obs_b, state_b))
        merge = lambda x: x.reshape((num_users,) + x.shape[2:])  # noqa: E731
        obs, state = jax.tree.map(merge, (obs_b, state_b))
        return obs, state, jnp.sum(totals)

    return jax.jit(init), jax.jit(rollout, donate_argnums=(1, 2))


def measure_mtrlrec(num_users: int, num_steps: int, repeats: int = 3,
                    num_candidates: int = 10, slate_size: int = 2, block: int = 0) -> dict:
    """Best-of-``repeats`` user·steps/s after a compile call, and memory per user."""
    import jax

    from mtrlrec.agents.slate_baselines import RandomSlate
    from mtrlrec.envs.slate import recsim_interest_evolution

    env = recsim_interest_evolution(num_candidates, slate_size)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    init, rollout = make_rollout(env, RandomSlate(), num_users, num_steps, block)
    obs, state, a_state = init(jax.random.PRNGKey(0))
    state_bytes = sum(x.nbytes for x in jax.tree.leaves((obs, state)))
    t0 = time.perf_counter()
    obs, state, total = rollout(jax.random.PRNGKey(1), obs, state, a_state)
    total.block_until_ready()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        obs, state, total = rollout(jax.random.PRNGKey(2 + i), obs, state, a_state)
        total.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "users": num_users, "steps": num_steps, "block": block,
        "user_steps_per_s": num_users * num_steps / best,
        "seconds": best, "first_call_s": compile_s,
        "state_bytes_per_user": state_bytes / num_users,
        "peak_rss_growth_bytes_per_user": (rss1 - rss0) * 1024 / num_users,
        "mean_reward": float(total) / (num_users * num_steps),
        "device": str(jax.devices()[0]),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, nargs="+", default=[1, 1_000, 100_000])
    p.add_argument("--user-steps", type=int, default=2_000_000,
                   help="user·steps per timed call (steps = this / users, 20..5000)")
    p.add_argument("--recsim-python", default=DEFAULT_RECSIM_PYTHON)
    p.add_argument("--recsim-steps", type=int, default=20_000)
    p.add_argument("--m", type=int, default=10)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--block", type=int, default=1000,
                   help="users per lax.map-ped block for large batches (0 = one vmap)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)

    print(f"slate simulator throughput, random slates, recsim_interest_evolution "
          f"m={a.m} k={a.k}")
    recsim = run_recsim(a.recsim_python, a.m, a.k, a.recsim_steps)
    if recsim is None:
        print(f"RecSim baseline: not available (no venv at {a.recsim_python}; run "
              "benchmarks/perf/setup_recsim_venv.sh)")
        base = None
    else:
        base = recsim["steps_per_s"]
        print(f"RecSim 0.2.4 (one Python process, 1 user): {base:,.0f} steps/s "
              f"over {a.recsim_steps} steps")
    rows = []
    for users in a.users:
        steps = max(20, min(5000, a.user_steps // users))
        r = measure_mtrlrec(users, steps, num_candidates=a.m, slate_size=a.k, block=a.block)
        rows.append(r)
        ratio = f"{r['user_steps_per_s'] / base:8.1f}x RecSim" if base else "   (no baseline)"
        blk = f" (blocks of {a.block})" if 0 < a.block < users and users % a.block == 0 else ""
        print(f"mtrlrec {users:>7,d} users{blk} x {steps:>5d} steps: "
              f"{r['user_steps_per_s']:>13,.0f} user·steps/s  {ratio}  "
              f"state {r['state_bytes_per_user']:,.0f} B/user, peak RSS growth "
              f"{r['peak_rss_growth_bytes_per_user']:,.0f} B/user  "
              f"(first call {r['first_call_s']:.1f} s) [{r['device']}]")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"recsim": recsim, "mtrlrec": rows}, f, indent=1)


if __name__ == "__main__" and "--recsim-worker" not in sys.argv:
    main()
