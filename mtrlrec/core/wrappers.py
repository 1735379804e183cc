"""Environment wrappers: episode statistics, time limits, reward scalarisation
and meta-RL trials (the Gymnasium adapters are in :mod:`mtrlrec.interop.gymnasium`).

Wrappers are themselves pure :class:`Environment` s; they keep their own
bookkeeping in a wrapper state that holds the inner state.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError


class Wrapper(Environment):
    """Delegates everything to ``env``; subclasses override what they change."""

    def __init__(self, env: Environment):
        self.env = env
        self.reward_names = env.reward_names
        self.cumulative_metrics = env.cumulative_metrics
        self.episodic = env.episodic

    def default_params(self):
        return self.env.default_params()

    def reset_env(self, key, params):
        return self.env.reset_env(key, params)

    def step_env(self, key, state, action, params):
        return self.env.step_env(key, state, action, params)

    def observation_spec(self, params=None):
        return self.env.observation_spec(params)

    def action_spec(self, params=None):
        return self.env.action_spec(params)

    def check_params(self, params):
        self.env.check_params(params)

    @property
    def name(self):
        return f"{type(self).__name__}({self.env.name})"

    def __getattr__(self, item):  # static attributes of the inner env (num_arms, ...)
        if item == "env":
            raise AttributeError(item)
        return getattr(self.env, item)


@flax.struct.dataclass
class EpisodeStatsState:
    inner: Any
    episode_return: jax.Array
    episode_length: jax.Array


class EpisodeStatistics(Wrapper):
    """Tracks the return and length of each episode.

    Adds to ``info``: ``episode_done`` (bool), ``episode_return`` and
    ``episode_length`` of the episode that ended at this step (meaningful only
    where ``episode_done``; the loop averages ``episode_*`` keys over those steps).
    For vector rewards the return is that of the first component unless
    ``reward_index`` is given.
    """

    def __init__(self, env: Environment, reward_index: int = 0):
        super().__init__(env)
        self.reward_index = reward_index

    def reset_env(self, key, params):
        obs, inner = self.env.reset_env(key, params)
        return obs, EpisodeStatsState(inner, jnp.float32(0.0), jnp.int32(0))

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step_env(
            key, state.inner, action, params
        )
        r = reward if jnp.ndim(reward) == 0 else reward[self.reward_index]
        ret = state.episode_return + r
        length = state.episode_length + 1
        info = dict(info)
        info["episode_done"] = jnp.logical_or(terminated, truncated)
        info["episode_return"] = ret
        info["episode_length"] = length.astype(jnp.float32)
        return obs, EpisodeStatsState(inner, ret, length), reward, terminated, truncated, info


@flax.struct.dataclass
class TimeLimitState:
    inner: Any
    t: jax.Array


class TimeLimit(Wrapper):
    """Truncates episodes after ``max_steps`` steps (``truncated=True``)."""

    def __init__(self, env: Environment, max_steps: int):
        super().__init__(env)
        if int(max_steps) < 1:
            raise ConfigError(f"TimeLimit.max_steps must be >= 1, got {max_steps}.")
        self.max_steps = int(max_steps)
        self.episodic = True

    def reset_env(self, key, params):
        obs, inner = self.env.reset_env(key, params)
        return obs, TimeLimitState(inner, jnp.int32(0))

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step_env(
            key, state.inner, action, params
        )
        t = state.t + 1
        truncated = jnp.logical_or(truncated, t >= self.max_steps)
        return obs, TimeLimitState(inner, t), reward, terminated, truncated, info


class ScalarizeReward(Wrapper):
    """Turns a vector reward into ``weights · reward``; keeps the vector in ``info``.

    ``info['reward/<name>']`` holds each component so the loop logs them.
    """

    def __init__(self, env: Environment, weights: Sequence[float]):
        super().__init__(env)
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(env.reward_names):
            raise ConfigError(
                f"ScalarizeReward.weights has {len(weights)} entries but {env.name} has "
                f"{len(env.reward_names)} reward components {list(env.reward_names)}."
            )
        self.weights = weights
        self.reward_names = ("reward",)

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self.env.step_env(
            key, state, action, params
        )
        info = dict(info)
        for i, n in enumerate(self.env.reward_names):
            info[f"reward/{n}"] = reward[i]
        scalar = jnp.dot(jnp.asarray(self.weights, reward.dtype), reward)
        return obs, state, scalar, terminated, truncated, info


@flax.struct.dataclass
class TrialState:
    inner: Any
    task: Any          # the env params of the current trial
    count: jax.Array   # episodes (episodic envs) or steps done in this trial


class Trials(Wrapper):
    """Meta-RL trials: a task sampled at each trial start, kept for ``length`` units.

    A trial is ``length`` episodes (episodic envs) or ``length`` steps (bandits:
    pulls) on one task (Duan et al. 2016, RL², §2.2). The task (the inner env's
    params, drawn by ``sampler``) lives in the wrapper state, so every user and
    seed has its own sequence of tasks; the params passed to ``step`` are
    ignored. Episodes end and reset inside a trial on the same task; at a
    trial's end ``info['trial_done']`` is True, a new task is drawn and the env
    reset. The loop then calls the learner's ``reset_trial`` (a recurrent
    learner resets its hidden state, a bandit its statistics).

    Put it outermost (``OnlineRunner.trials``), outside ``EpisodeStatistics``.

    Args:
      env: the environment.
      sampler: ``sampler(key) -> params`` for one task, or an object with
        ``sample(key, n)`` returning ``n`` tasks (e.g. ``@BanditTaskDistribution()``).
      length: episodes (episodic envs) or steps per trial, >= 1.
    """

    has_trials = True

    def __init__(self, env: Environment, sampler: Any, length: int):
        super().__init__(env)
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ConfigError(f"Trials.length must be an integer >= 1 (episodes or steps per "
                              f"trial), got {length!r}.")
        if hasattr(sampler, "sample"):
            dist = sampler
            sampler = lambda key: jax.tree.map(lambda a: a[0], dist.sample(key, 1))  # noqa: E731
        if not callable(sampler):
            raise ConfigError(f"Trials.sampler must be a task sampler (a function of a key, or "
                              f"an object with sample(key, n)), got {sampler!r}.")
        self.sampler = sampler
        self.length = length
        self.episodic = True  # step() does its own resets

    def reset_env(self, key, params):
        k_task, k_env = jax.random.split(key)
        task = self.sampler(k_task)
        obs, inner = self.env.reset_env(k_env, task)
        return obs, TrialState(inner, task, jnp.int32(0))

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step_env(
            key, state.inner, action, state.task)
        return obs, state.replace(inner=inner), reward, terminated, truncated, info

    def step(self, key, state, action, params=None):
        """One step; episode resets keep the task, trial ends draw a new one."""
        k_step, k_reset, k_task = jax.random.split(key, 3)
        obs, inner, reward, terminated, truncated, info = self.env.step_env(
            k_step, state.inner, action, state.task)
        done = jnp.logical_or(terminated, truncated)
        inner_episodic = self.env.episodic
        count = state.count + (done.astype(jnp.int32) if inner_episodic else 1)
        trial_done = count >= self.length
        task = jax.tree.map(lambda n, o: jax.lax.select(trial_done, n, o),
                            self.sampler(k_task), state.task)
        reset_obs, reset_inner = self.env.reset_env(k_reset, task)
        reset = jnp.logical_or(done, trial_done) if inner_episodic else trial_done
        info = dict(info)
        info["final_observation"] = obs
        info["trial_done"] = trial_done
        inner = jax.tree.map(lambda r, s: jax.lax.select(reset, r, s), reset_inner, inner)
        obs = jax.tree.map(lambda r, s: jax.lax.select(reset, r, s), reset_obs, obs)
        count = jnp.where(trial_done, 0, count)
        return obs, TrialState(inner, task, count), reward, terminated, truncated, info
