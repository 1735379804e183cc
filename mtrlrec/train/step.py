r"""One seed's programs: a training window and an evaluation phase.

:func:`make_window_fn` builds ``window(carry, env_params) -> (carry, metrics)``:
``log_every`` steps of the learner contract (:mod:`mtrlrec.core.agent`)::

    action, agent_state, act_info = agent.act(k_act, agent_state, obs)
    obs', env_state, reward, terminated, truncated, info = env.step(k_env, env_state, action)
    agent_state = agent.observe(k_upd, agent_state, transition)
    every learn_every steps: agent_state, learn_metrics = agent.learn(k_learn, agent_state)

With ``num_envs > 1`` the users are a leading axis of the env state and the
observation: the env is stepped in a ``vmap`` and the learner gets the batch
(agents not written for batches are wrapped in :class:`~mtrlrec.core.agent.PerUser`
by the loop). ``num_envs = 1`` keeps the unbatched shapes.

:func:`make_eval_fn` builds ``evaluate(agent_state, key, env_params) -> metrics``:
fresh users (``num_envs`` of them, their own PRNG streams) served with
``act(..., greedy=True)`` and learning off (no ``observe``, no ``learn``) until
every user has finished ``episodes`` episodes (or ``max_steps`` steps; for
non-episodic envs, exactly ``max_steps`` steps), as Dopamine's evaluation phase.

Metrics, per step and user, then reduced (:func:`step_metrics`):

* every scalar ``info`` entry; a small vector entry (at most 16 values, e.g.
  the clicks per slate position) as one metric per component ``<key>/<i>``;
  anything larger must be reduced by the env (``Environment.info_reductions``)
  or the step fails before compilation, naming the key;
* the reward, or ``reward/<name>`` per task for vector rewards;
* ``agent/<name>`` for the metrics ``learn`` returns, averaged over the calls
  of ``learn`` in the window.

Over users, ``episode_*`` entries are summed where ``episode_done`` (and divided
by the episodes that ended), every other entry is averaged.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp

from mtrlrec.core.agent import Agent, with_hparams
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.rng import step_keys as derive_step_keys
from mtrlrec.core.types import Transition

MAX_COMPONENTS = 16  # vector info entries up to this size are logged per component


@flax.struct.dataclass
class LoopCarry:
    """Everything that is carried from one step to the next, for one seed."""

    env_state: Any
    agent_state: Any
    obs: Any
    key: jax.Array
    cumulative: dict[str, jax.Array]
    t: jax.Array


def _info_metrics(env: Environment, d: Mapping[str, Any]) -> dict[str, jax.Array]:
    reductions = getattr(env, "info_reductions", {}) or {}
    out = {}
    for k, v in d.items():
        if k == "final_observation":
            continue
        v = jnp.asarray(v)
        if not (jnp.issubdtype(v.dtype, jnp.number) or v.dtype == jnp.bool_):
            continue
        v = v.astype(jnp.float32)
        how = reductions.get(k)
        if how == "drop":
            continue
        if v.ndim == 0:
            out[k] = v
        elif how == "mean":
            out[k] = jnp.mean(v)
        elif how == "sum":
            out[k] = jnp.sum(v)
        elif v.size <= MAX_COMPONENTS and how in (None, "components"):
            for i, x in enumerate(v.reshape(-1)):
                out[f"{k}/{i}"] = x
        else:
            raise ConfigError(
                f"{env.name} reports info[{k!r}] with shape {v.shape}; say how to log it in "
                f"{type(env).__name__}.info_reductions ('mean', 'sum', 'components' or 'drop')."
            )
    return out


def step_metrics(env: Environment, reward, info) -> dict[str, jax.Array]:
    """The scalars logged for one step of one user: info entries and the reward (per task)."""
    m = _info_metrics(env, info)
    reward = jnp.asarray(reward, jnp.float32)
    if reward.ndim == 0:
        m["reward"] = reward
    else:
        for i, name in enumerate(env.reward_names):
            m[f"reward/{name}"] = reward[i]
    return m


def per_episode(name: str) -> bool:
    """Whether metric ``name`` is averaged over the episodes that ended, not the steps."""
    return name.startswith("episode_") and name != "episode_done"


def episode_weighted(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-episode entries count only where ``episode_done`` (so that their sum
    over a window divided by the episodes ended is their mean)."""
    done = metrics.get("episode_done")
    if done is None:
        return metrics
    return {k: v * done if per_episode(k) else v for k, v in metrics.items()}


def users_reduced(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Episode-weighted metrics of a batch of users ``[N]`` -> one step's values.

    Episode entries and ``episode_done`` are summed (the window divides by the
    episodes ended); every other entry is the mean over users.
    """
    return {k: jnp.sum(v) if k == "episode_done" or per_episode(k) else jnp.mean(v)
            for k, v in metrics.items()}


def kahan_add(sums, x):
    """Compensated summation: ``sums`` maps a name to ``(total, compensation)``."""
    out = {}
    for k, v in x.items():
        total, comp = sums[k]
        y = v - comp
        t = total + y
        out[k] = (t, (t - total) - y)
    return out


def choose_divisor(n: int, target: int = 10) -> int:
    """The largest divisor of ``n`` that is <= ``target`` (chunks, or block lengths)."""
    return max(d for d in range(1, min(n, target) + 1) if n % d == 0)


def env_reset(env: Environment, key, params, num_envs: int):
    """``env.reset`` for one user (``num_envs = 1``) or a batch ``[num_envs]``."""
    if num_envs == 1:
        return env.reset(key, params)
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)


def env_step(env: Environment, key, state, action, params, num_envs: int):
    """``env.step`` for one user or a batch, with auto-reset."""
    if num_envs == 1:
        return env.step(key, state, action, params)
    keys = jax.random.split(key, num_envs)
    return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)


def user_metrics(env: Environment, reward, info, num_envs: int) -> dict[str, jax.Array]:
    """One step's metrics, reduced over the users."""
    if num_envs == 1:
        return episode_weighted(step_metrics(env, reward, info))
    m = jax.vmap(lambda r, i: episode_weighted(step_metrics(env, r, i)))(reward, info)
    return users_reduced(m)


def trial_reset(agent: Agent, key, agent_state, info):
    """Resets the per-task part of the learner where a trial ended (envs with trials only)."""
    if "trial_done" not in info:
        return agent_state
    return agent.reset_trial(key, agent_state, info["trial_done"])


def init_carry(env: Environment, agent: Agent, env_params, key, hparams, num_envs: int
               ) -> LoopCarry:
    k_env, k_agent, k_loop = jax.random.split(key, 3)
    obs, env_state = env_reset(env, k_env, env_params, num_envs)
    agent_state = agent.init(k_agent, env.observation_spec(env_params), env.action_spec(env_params))
    agent_state = with_hparams(agent_state, hparams)
    return LoopCarry(env_state, agent_state, obs, k_loop, {}, jnp.int32(0))


def make_window_fn(env: Environment, agent: Agent, log_every: int, num_envs: int = 1):
    """Returns ``window(carry, env_params) -> (carry, window_metrics)`` for one seed.

    A window is a scan over blocks of steps. For ``learn_every > 1`` a block is
    the training period followed by ``learn``; for ``learn_every = 1``, ``learn``
    runs inside every step and blocks only group the metric sums.
    """
    n = agent.learn_every
    if log_every % n:
        raise ConfigError(
            f"log_every={log_every} must be a multiple of the agent's learn_every={n} "
            f"(its training period)."
        )
    learn_in_step = n == 1
    num_learns = log_every // n

    def one_step(carry, env_params, window_key, i):
        k_act, k_env, k_upd = derive_step_keys(window_key, i)
        action, agent_state, act_info = agent.act(k_act, carry.agent_state, carry.obs)
        obs, env_state, reward, terminated, truncated, info = env_step(
            env, k_env, carry.env_state, action, env_params, num_envs)
        transition = Transition(carry.obs, action, reward, obs, terminated, truncated, act_info,
                                info)
        agent_state = agent.observe(k_upd, agent_state, transition)
        learn_metrics = {}
        if learn_in_step:
            # fold_in is dead code for agents whose learn ignores its key (bandits).
            agent_state, learn_metrics = agent.learn(jax.random.fold_in(k_upd, 1), agent_state)
        agent_state = trial_reset(agent, jax.random.fold_in(k_upd, 2), agent_state, info)
        metrics = user_metrics(env, reward, info, num_envs)
        metrics.update(_agent_metrics(learn_metrics))
        new = carry.replace(env_state=env_state, agent_state=agent_state, obs=obs, t=carry.t + 1)
        return new, metrics

    # Metrics are summed step by step in the carry, plainly within a block and with
    # Kahan compensation across blocks. Unlike stacking them and reducing (XLA orders a
    # reduction by the batch shape) this gives a seed the same sums in any batch and
    # on any number of devices, within about an ulp of the exact sums.
    block_len = choose_divisor(log_every, 16) if learn_in_step else n

    def step(state, i):
        carry, env_params, window_key, partial = state
        carry, metrics = one_step(carry, env_params, window_key, i)
        return (carry, env_params, window_key, jax.tree.map(jnp.add, partial, metrics)), None

    def window(carry: LoopCarry, env_params):
        key, window_key = jax.random.split(carry.key)
        carry = carry.replace(key=key)
        shapes = jax.eval_shape(lambda c: one_step(c, env_params, window_key, 0)[1], carry)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        learn_zeros = {}
        if not learn_in_step:
            learn_shapes = jax.eval_shape(
                lambda c: _agent_metrics(agent.learn(window_key, c.agent_state)[1]), carry)
            learn_zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), learn_shapes)

        def block(state, b):
            # Steps of block b are numbered b·block_len + j within the window; their
            # keys use fold_in data < 3·log_every, so the learn keys start above that.
            carry, sums = state
            (carry, _, _, partial), _ = jax.lax.scan(
                step, (carry, env_params, window_key, zeros),
                b * block_len + jnp.arange(block_len))
            if not learn_in_step:
                learn_key = jax.random.fold_in(window_key, 3 * log_every + b)
                agent_state, lm = agent.learn(learn_key, carry.agent_state)
                carry = carry.replace(agent_state=agent_state)
                partial = {**partial, **_agent_metrics(lm)}
            return (carry, kahan_add(sums, partial)), None

        sums = {k: (z, z) for k, z in {**zeros, **learn_zeros}.items()}
        (carry, sums), _ = jax.lax.scan(block, (carry, sums), jnp.arange(log_every // block_len))
        sums = {k: total - comp for k, (total, comp) in sums.items()}
        out = window_means(sums, log_every, num_learns)
        cumulative = dict(carry.cumulative)
        for k in env.cumulative_metrics:
            if k in sums:
                cumulative[k] = cumulative.get(k, jnp.float32(0.0)) + sums[k]
                out[f"cumulative_{k}"] = cumulative[k]
        return carry.replace(cumulative=cumulative), out

    return window


def _agent_metrics(metrics: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {f"agent/{k}": jnp.asarray(v, jnp.float32) for k, v in metrics.items()
            if jnp.ndim(v) == 0}


def window_means(sums: Mapping[str, jax.Array], steps: Any, num_learns: int | None = None
                 ) -> dict[str, jax.Array]:
    """Window sums -> means: per episode for ``episode_*``, per ``learn`` call for
    ``agent/*``, per step otherwise; ``episode_done`` becomes ``episodes``."""
    out = {}
    episodes = sums.get("episode_done")
    for k, v in sums.items():
        if per_episode(k) and episodes is not None:
            out[k] = jnp.where(episodes > 0, v / jnp.maximum(episodes, 1.0), jnp.nan)
        elif k == "episode_done":
            out["episodes"] = v
        elif k.startswith("agent/") and num_learns is not None:
            out[k] = v / num_learns
        else:
            out[k] = v / steps
    return out


def make_eval_fn(env: Environment, agent: Agent, *, episodes: int, max_steps: int,
                 num_envs: int = 1, chunk: int = 16):
    """Returns ``evaluate(agent_state, key, env_params) -> (metrics, per_user)`` for one seed.

    ``num_envs`` fresh users are served greedily with learning off until each
    has finished ``episodes`` episodes (episodic envs; at most ``max_steps``
    steps each) or for ``max_steps`` steps. A user that has finished keeps
    stepping (cheaper than stopping it) but adds nothing to the statistics.

    Returns:
      metrics: ``{name: scalar}``: step metrics pooled over the users' evaluated
        steps, ``episode_*`` over their evaluated episodes, ``episodes`` and
        ``steps`` (means per user).
      per_user: ``{name: [num_envs]}``: each user's sums of the step metrics over
        its evaluated steps, ``steps``, ``episodes``, ``truncated`` (steps the
        env truncated) and ``unfinished`` (1 where the step cap came first), for
        statistics over users (e.g. RecSim's per-episode table).
    """
    if not agent.has_greedy:
        raise ConfigError(
            f"{agent.name} has no greedy (evaluation) mode, so it cannot be evaluated with "
            "learning off; remove the evaluation phase (OnlineRunner.eval_every)."
        )
    episodic = env.episodic

    def metrics_of(reward, info):
        return jax.vmap(lambda r, i: episode_weighted(step_metrics(env, r, i)))(reward, info)

    def batch(x):  # the users as a leading axis, also for num_envs = 1
        return x if num_envs > 1 else jax.tree.map(lambda a: a[None], x)

    def evaluate(agent_state, key, env_params):
        k_env, k_trial, k_loop = jax.random.split(key, 3)
        obs, env_state = env_reset(env, k_env, env_params, num_envs)
        if getattr(env, "has_trials", False):
            agent_state = agent.reset_trial(k_trial, agent_state,
                                            jnp.ones((num_envs,), bool) if num_envs > 1
                                            else jnp.bool_(True))
        def step_metrics_of(env_state, agent_state, obs):
            action, _, _ = agent.act(k_loop, agent_state, obs, greedy=True)
            _, _, reward, _, _, info = env_step(env, k_loop, env_state, action, env_params,
                                                num_envs)
            return metrics_of(batch(reward), batch(info))

        probe = jax.eval_shape(step_metrics_of, env_state, agent_state, obs)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, jnp.float32), probe)
        users = jnp.zeros((num_envs,), jnp.float32)
        zeros["truncated_steps"] = users

        def one(state, i):
            env_state, agent_state, obs, sums, done_eps, steps, active = state
            k_act, k_step, k_reset = derive_step_keys(k_loop, i)
            action, agent_state, _ = agent.act(k_act, agent_state, obs, greedy=True)
            obs, env_state, reward, term, trunc, info = env_step(
                env, k_step, env_state, action, env_params, num_envs)
            agent_state = trial_reset(agent, k_reset, agent_state, info)
            m = metrics_of(batch(reward), batch(info))
            m["truncated_steps"] = batch(trunc).astype(jnp.float32)
            w = active.astype(jnp.float32)
            sums = {k: sums[k] + v * w for k, v in m.items()}
            steps = steps + w
            if episodic:
                done_eps = done_eps + w * batch(term | trunc).astype(jnp.float32)
                active = active & (done_eps < episodes)
            active = active & (steps < max_steps)
            return env_state, agent_state, obs, sums, done_eps, steps, active

        def body(c):
            state, i = c
            state = jax.lax.fori_loop(0, chunk, lambda j, s: one(s, i + j), state)
            return state, i + chunk

        def cond(c):
            state, i = c
            return jnp.any(state[-1]) & (i < max_steps)

        init = (env_state, agent_state, obs, zeros, users, users, jnp.ones((num_envs,), bool))
        state, _ = jax.lax.while_loop(cond, body, (init, jnp.int32(0)))
        _, _, _, sums, done_eps, steps, _ = state
        truncated = sums.pop("truncated_steps")
        total = {k: jnp.sum(v) for k, v in sums.items()}
        out = window_means(total, jnp.sum(steps))
        out["episodes"] = jnp.mean(done_eps) if episodic else jnp.float32(0.0)
        out["steps"] = jnp.mean(steps)
        unfinished = (done_eps < episodes) if episodic else jnp.zeros((num_envs,), bool)
        per_user = {**sums, "steps": steps, "episodes": done_eps, "truncated": truncated,
                    "unfinished": unfinished.astype(jnp.float32)}
        return out, per_user

    return evaluate

