r"""Episode evaluation: N users, one full episode each, all stepped together.

:func:`evaluate_episodes` runs ``num_users`` independent users (each its own
episode, with its own PRNG stream) of a :class:`~mtrlrec.envs.slate.SlateEnv`
under a fixed policy until every episode has ended (budget exhausted or the
step cap ``max_steps``, RecSim's ``runner_lib.Runner.max_steps_per_episode`` =
27,000), as one compiled ``lax.while_loop`` over chunks of ``chunk`` steps
vmapped over users. Users whose episode ended are frozen, so each user
contributes exactly one episode, as RecSim's ``EvalRunner`` does.

Per-episode statistics (RecSim ``runner_lib`` / ``utils`` names in brackets):

* ``episode_return`` [AverageEpisodeRewards]: sum of the scalar reward;
* ``episode_length`` [AverageEpisodeLength]: steps;
* ``clicks``: clicks in the episode; ``purchases``, ``returned``;
* ``ctr`` [CTR]: total clicks / total steps (pooled over users, as RecSim);
* ``avg_quality`` [AverageQuality]: mean quality of clicked items, pooled;
* ``truncated``: fraction of episodes cut by the step cap.

:class:`SlateEpisodeRunner` wraps this as an experiment runner
(``Experiment.runner = @SlateEpisodeRunner()``).
"""

from __future__ import annotations

import time
from typing import Any

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int


@flax.struct.dataclass
class _EpisodeCarry:
    env_state: Any
    agent_state: Any
    obs: Any
    key: jax.Array
    active: jax.Array  # bool: episode still running
    ret: jax.Array
    length: jax.Array
    clicks: jax.Array
    purchases: jax.Array
    quality_sum: jax.Array
    returned: jax.Array
    truncated: jax.Array


def make_episode_fn(env: Environment, agent: Agent, *, max_steps: int, chunk: int = 16,
                    learn: bool = False):
    """Returns ``fn(keys [N, 2], params) -> per-user stats dict`` (not jitted).

    Args:
      env: the environment (its own ``max_episode_steps`` also truncates).
      agent: a policy; with ``learn=True`` its ``update`` runs every step.
      max_steps: cap on the episode length (steps).
      chunk: steps per iteration of the while loop.
    """

    def init(key, params):
        k_env, k_agent, k_loop = jax.random.split(key, 3)
        obs, state = env.reset_env(k_env, params)
        a_state = agent.init(k_agent, env.observation_spec(params), env.action_spec(params))
        z = jnp.float32(0.0)
        return _EpisodeCarry(state, a_state, obs, k_loop, jnp.bool_(True), z, jnp.int32(0),
                             z, z, z, z, z)

    def step(c: _EpisodeCarry, params):
        key, k_act, k_env, k_upd = jax.random.split(c.key, 4)
        action, a_state, act_info = agent.act(k_act, c.agent_state, c.obs)
        obs, state, reward, term, trunc, info = env.step_env(k_env, c.env_state, action, params)
        if learn:
            from mtrlrec.core.types import Transition
            a_state = agent.observe(k_upd, a_state, Transition(
                c.obs, action, reward, obs, term, trunc, act_info, info))
        length = c.length + 1
        capped = length >= max_steps
        done = term | trunc | capped
        act = c.active.astype(jnp.float32)
        r = jnp.asarray(reward, jnp.float32)
        r = r if r.ndim == 0 else jnp.sum(r)
        new = _EpisodeCarry(
            env_state=state, agent_state=a_state, obs=obs, key=key,
            active=c.active & ~done,
            ret=c.ret + act * r,
            length=jnp.where(c.active, length, c.length),
            clicks=c.clicks + act * info.get("click", 0.0),
            purchases=c.purchases + act * info.get("purchase", 0.0),
            quality_sum=c.quality_sum + act * info.get("clicked_quality", 0.0),
            returned=c.returned + act * info.get("return", 0.0),
            truncated=jnp.where(c.active & ~term & (trunc | capped), 1.0, c.truncated))
        # Users whose episode ended keep stepping (cheaper than freezing them),
        # but ``active`` masks everything they would add to their statistics.
        return new

    def run(keys, params):
        carry = jax.vmap(init, in_axes=(0, None))(keys, params)
        vstep = jax.vmap(step, in_axes=(0, None))

        def body(state):
            c, i = state
            c = jax.lax.fori_loop(0, chunk, lambda _, x: vstep(x, params), c)
            return c, i + chunk

        def cond(state):
            c, i = state
            return jnp.any(c.active) & (i < max_steps)

        carry, _ = jax.lax.while_loop(cond, body, (carry, jnp.int32(0)))
        return {
            "episode_return": carry.ret, "episode_length": carry.length.astype(jnp.float32),
            "clicks": carry.clicks, "purchases": carry.purchases,
            "quality_sum": carry.quality_sum, "returned": carry.returned,
            "truncated": carry.truncated,
        }

    return run


_COMPILED: dict = {}


def evaluate_episodes(env: Environment, agent: Agent, *, num_users: int, seed: int = 0,
                      max_steps: int = 27_000, chunk: int = 16, params: Any = None,
                      learn: bool = False) -> dict[str, np.ndarray]:
    """Runs one episode for each of ``num_users`` users; returns per-user ``[N]`` arrays."""
    num_users = check_int("num_users", num_users, min_value=1)
    max_steps = check_int("max_steps", max_steps, min_value=1)
    chunk = check_int("chunk", chunk, min_value=1)
    params = env.default_params() if params is None else params
    env.check_params(params)
    agent.check_compatible(env.observation_spec(params), env.action_spec(params))
    keys = jax.random.split(jax.random.PRNGKey(seed), num_users)
    cache_key = (id(env), id(agent), max_steps, chunk, learn)
    if cache_key not in _COMPILED:  # same env/agent objects -> reuse the jitted program
        fn = jax.jit(make_episode_fn(env, agent, max_steps=max_steps, chunk=chunk, learn=learn))
        _COMPILED[cache_key] = (env, agent, fn)  # holding env/agent keeps their ids unique
    fn = _COMPILED[cache_key][2]
    return {k: np.asarray(v) for k, v in jax.device_get(fn(keys, params)).items()}


def summarize(stats: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Mean and standard error over users of each statistic, and pooled CTR/quality.

    The pooled ratios get a delta-method standard error over users.
    """
    out = {}
    n = len(stats["episode_return"])
    for k in ("episode_return", "episode_length", "clicks", "purchases", "returned",
              "truncated"):
        v = np.asarray(stats[k], np.float64)
        out[k] = (float(v.mean()), float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
    for name, num, den in (("ctr", "clicks", "episode_length"),
                           ("avg_quality", "quality_sum", "clicks")):
        x = np.asarray(stats[num], np.float64)
        y = np.asarray(stats[den], np.float64)
        ratio = x.sum() / max(y.sum(), 1e-12)
        resid = (x - ratio * y) / max(y.mean(), 1e-12)
        out[name] = (float(ratio), float(resid.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
    return out


@gin.configurable
class SlateEpisodeRunner:
    """Experiment runner: ``num_users`` users × one episode per seed, one compiled call.

    ``Result.final[m]`` holds the per-seed mean of each statistic ``[S]``;
    ``Result.stderr[m]`` the standard error over all ``S × num_users``
    independent episodes (pooled ratios for ``ctr`` and ``avg_quality``).

    Args:
      env: a :class:`~mtrlrec.envs.slate.SlateEnv` (e.g. ``@recsim_interest_evolution()``).
      agent: the policy (e.g. ``@RandomSlate()``).
      num_users: episodes per seed (5,000 as the SlateQ paper's evaluation).
      max_steps: episode step cap (27,000 as RecSim's runner).
      quick_users: ``num_users`` under ``bench --quick``.
      chunk: steps per while-loop iteration.
    """

    def __init__(self, env: Environment = gin.REQUIRED, agent: Agent = gin.REQUIRED,
                 num_users: int = 5_000, max_steps: int = 27_000, quick_users: int = 500,
                 chunk: int = 16):
        if env is gin.REQUIRED or env is None:
            raise ConfigError("SlateEpisodeRunner.env must be bound (e.g. "
                              "'SlateEpisodeRunner.env = @recsim_interest_evolution()').")
        if agent is gin.REQUIRED or agent is None:
            raise ConfigError("SlateEpisodeRunner.agent must be bound (e.g. "
                              "'SlateEpisodeRunner.agent = @RandomSlate()').")
        self.env, self.agent = env, agent
        self.num_users = check_int("SlateEpisodeRunner.num_users", num_users, min_value=1)
        self.max_steps = check_int("SlateEpisodeRunner.max_steps", max_steps, min_value=1)
        self.quick_users = check_int("SlateEpisodeRunner.quick_users", quick_users, min_value=1)
        self.chunk = check_int("SlateEpisodeRunner.chunk", chunk, min_value=1)

    def __call__(self, ctx):
        from mtrlrec.train.result import Result

        users = self.quick_users if getattr(ctx, "quick", False) else self.num_users
        seeds = check_int("num_seeds (--seeds)", ctx.num_seeds, min_value=1)
        t0 = time.perf_counter()
        stats = evaluate_episodes(self.env, self.agent, num_users=seeds * users,
                                  seed=ctx.seed, max_steps=self.max_steps, chunk=self.chunk)
        seconds = time.perf_counter() - t0
        summary = summarize(stats)
        final, stderr = {}, {}
        per_seed = {k: v.reshape(seeds, users) for k, v in stats.items()}
        for k in ("episode_return", "episode_length", "clicks", "purchases", "returned",
                  "truncated"):
            final[k] = per_seed[k].mean(1)
            stderr[k] = np.asarray(summary[k][1])
        for name, num, den in (("ctr", "clicks", "episode_length"),
                               ("avg_quality", "quality_sum", "clicks")):
            final[name] = per_seed[num].sum(1) / np.maximum(per_seed[den].sum(1), 1e-12)
            stderr[name] = np.asarray(summary[name][1])
        steps = float(stats["episode_length"].sum())
        rows = "\n".join(f"| {k} | {m:.4f} | {s:.4f} |" for k, (m, s) in summary.items())
        table = ("| statistic | mean | SE |\n|---|---|---|\n" + rows +
                 f"\n\n{seeds * users} episodes, {steps:.0f} user-steps in {seconds:.1f} s "
                 "(compilation included).")
        if ctx.writer is not None:
            ctx.writer.scalars(0, {f"Eval/{k}": m for k, (m, _) in summary.items()})
        return Result(final=final, stderr=stderr, primary=None,
                      tables={"Episode statistics": table})


__all__ = ["SlateEpisodeRunner", "evaluate_episodes", "make_episode_fn", "summarize"]
