r"""What every value-based slate learner shares: replay, target network, ε, optimiser.

:class:`SlateQLearner` implements the learner contract (:mod:`mtrlrec.core.agent`)
for agents that learn action values from a replay buffer in their state, as
Dopamine's DQN (Mnih et al. 2015; Castro et al. 2018) and RecSim's SlateQ agent:

* ``act``: ε-greedy over slates. With probability ε a user is shown ``k``
  distinct candidates uniformly at random, otherwise the slate the subclass
  selects from its Q-values. ε follows Dopamine's ``linearly_decaying_epsilon``:
  1 during the ``min_replay`` warm-up, then linear to ``epsilon_train`` over
  ``epsilon_decay_steps`` steps; ``greedy=True`` uses ``epsilon_eval``.
* ``observe``: writes the users' transitions into the ring buffer
  (:mod:`mtrlrec.train.replay`) with the per-position clicks ``info['slate_click']``.
* ``learn`` (every ``learn_every`` steps, Dopamine's ``update_period``): one
  gradient step on a minibatch once ``min_replay`` transitions are stored; the
  target network is copied every ``target_update_period`` steps, or follows
  :math:`\bar\theta \leftarrow \tau\theta + (1-\tau)\bar\theta` with ``target_tau``.

Steps are loop steps of one learner (its ``num_envs`` users act together). The
learning rate and γ are ``state.hparams``, so sweeping them is one compiled call.
The optimiser is RMSProp as TF1 implements it (Dopamine's and RecSim's default:
decay 0.95, ε 1e-5 inside the root, centred, mean square started at 1) or Adam.

Rewards: a scalar reward is used as is. A vector of per-task rewards (the slate
simulator with ``reward_weights = None``: click, purchase, watch time, return) is
scalarised with ``reward_weights``, or, with ``multi_task = True``, gets one Q
head per task trained on its own TD target while the agent acts on the
scalarisation :math:`\sum_t w_t Q_t`.

State: the networks condition on ``user_state``: the observed interests (RecSim's
fully observed user), or ``'gru'``/``'transformer'`` over the user's recent clicks
(:class:`mtrlrec.envs.slate_history.ClickHistory`), learned end to end.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import Dict, Slate
from mtrlrec.models.state import USER_STATES
from mtrlrec.train import replay


MAX_REPLAY_BYTES = 2 * 2**30


@flax.struct.dataclass
class QHParams:
    learning_rate: jax.Array
    gamma: jax.Array


@flax.struct.dataclass
class QState:
    """Learner state. ``params``/``target`` are network parameters (a dict of networks)."""

    hparams: QHParams
    params: Any
    target: Any
    opt_state: Any
    buffer: replay.ReplayBuffer
    t: jax.Array        # loop steps observed
    updates: jax.Array  # gradient steps taken


def linearly_decaying_epsilon(t, decay_steps: int, warmup: int, final: float) -> jax.Array:
    """Dopamine's schedule: 1 for ``warmup`` steps, then linear to ``final`` over ``decay_steps``."""
    left = decay_steps + warmup - jnp.asarray(t, jnp.float32)
    bonus = jnp.clip((1.0 - final) * left / decay_steps, 0.0, 1.0 - final)
    return final + bonus


def random_slates(key, n: int, m: int, k: int) -> jax.Array:
    """``[n, k]`` slates of ``k`` distinct candidates of ``m``, uniformly at random."""
    return jax.lax.top_k(jax.random.uniform(key, (n, m)), k)[1].astype(jnp.int32)


def batched(obs) -> tuple[Any, bool]:
    """The observation with a leading user axis, and whether one was added."""
    single = jnp.ndim(obs["user"]) == 1
    return (jax.tree.map(lambda x: x[None], obs) if single else obs), single


class SlateQLearner(Agent):
    """Base of the replay-based slate agents (see the module docstring).

    Subclasses define ``_network()``, ``_init_params(key, obs)`` (``obs`` with a batch axis of 1),
    ``_greedy_slates(params, obs) -> [N, k]`` and
    ``_loss(params, target, batch, hparams) -> (loss, aux)``, and may set
    ``window`` (consecutive steps sampled per transition, 2 for SARSA) or
    ``n_step``.
    """

    batched = True
    window = 1

    def __init__(self, *, hidden: Sequence[int], gamma: float, learning_rate: float,
                 optimizer: str, batch_size: int, replay_capacity: int, min_replay: int,
                 update_period: int, target_update_period: int, target_tau: float | None,
                 epsilon_train: float, epsilon_eval: float, epsilon_decay_steps: int,
                 loss: str, reward_weights: Sequence[float] | None, multi_task: bool,
                 user_state: str = "observed", state_features: int = 32):
        n = self.name
        if user_state not in USER_STATES:
            raise ConfigError(f"{n}.user_state must be one of {USER_STATES}, got {user_state!r}.")
        self.user_state = user_state
        self.state_features = check_int(f"{n}.state_features", state_features, min_value=1)
        self.hidden = tuple(check_int(f"{n}.hidden[{i}]", h, min_value=1)
                            for i, h in enumerate(hidden))
        if not self.hidden:
            raise ConfigError(f"{n}.hidden must have at least one layer.")
        self.gamma = check_float(f"{n}.gamma", gamma, low=0.0, high=1.0)
        self.learning_rate = check_float(f"{n}.learning_rate", learning_rate, low=0.0,
                                         low_open=True)
        if optimizer not in ("rmsprop", "adam"):
            raise ConfigError(f"{n}.optimizer must be 'rmsprop' or 'adam', got {optimizer!r}.")
        self.optimizer_name = optimizer
        self.batch_size = check_int(f"{n}.batch_size", batch_size, min_value=1)
        self.replay_capacity = check_int(f"{n}.replay_capacity", replay_capacity, min_value=1)
        self.min_replay = check_int(f"{n}.min_replay", min_replay, min_value=0)
        self.learn_every = check_int(f"{n}.update_period", update_period, min_value=1)
        self.target_update_period = check_int(f"{n}.target_update_period",
                                              target_update_period, min_value=1)
        self.target_tau = None if target_tau is None else check_float(
            f"{n}.target_tau", target_tau, low=0.0, high=1.0, low_open=True)
        self.epsilon_train = check_float(f"{n}.epsilon_train", epsilon_train, low=0.0, high=1.0)
        self.epsilon_eval = check_float(f"{n}.epsilon_eval", epsilon_eval, low=0.0, high=1.0)
        self.epsilon_decay_steps = check_int(f"{n}.epsilon_decay_steps", epsilon_decay_steps,
                                             min_value=1)
        if loss not in ("mse", "huber"):
            raise ConfigError(f"{n}.loss must be 'mse' or 'huber', got {loss!r}.")
        self.loss_kind = loss
        self.reward_weights = None if reward_weights is None else check_floats(
            f"{n}.reward_weights", reward_weights)
        self.multi_task = bool(multi_task)
        if self.multi_task and self.reward_weights is None:
            raise ConfigError(f"{n}.multi_task = True needs {n}.reward_weights (the "
                              "scalarisation the agent acts on), one weight per task.")
        self.num_tasks = len(self.reward_weights) if self.multi_task else 1
        self._num_envs = 1
        if self.optimizer_name == "rmsprop":
            # TF1 RMSProp (Dopamine, RecSim): the step size is applied from state.hparams.
            self.optimizer = optax.scale_by_stddev(decay=0.95, eps=1e-5, initial_scale=1.0)
        else:
            self.optimizer = optax.scale_by_adam(eps=1e-8)

    # -- checks before compilation -------------------------------------------------
    def check_compatible(self, obs_spec, action_spec):
        n = self.name
        if not isinstance(action_spec, Slate) or not (
                isinstance(obs_spec, Dict) and {"user", "doc"} <= set(obs_spec.spaces)):
            raise ConfigError(f"{n} needs a slate environment (observations {{'user', 'doc'}} "
                              f"and Slate actions), got {obs_spec} and {action_spec}.")
        if self.user_state != "observed" and "history" not in obs_spec.spaces:
            raise ConfigError(
                f"{n}.user_state={self.user_state!r} encodes the user's recent clicks: wrap the "
                "environment in ClickHistory (OnlineRunner.wrappers = [@ClickHistory]).")
        self.num_candidates = int(action_spec.num_candidates)
        self.slate_size = int(action_spec.slate_size)
        self._check_slate(self.num_candidates, self.slate_size)
        if self.replay_capacity < self.window + 1:
            raise ConfigError(f"{n}.replay_capacity={self.replay_capacity} is too small for "
                              f"windows of {self.window} steps.")
        # Observation and next observation of every stored transition, float32.
        per = 8 * sum(math.prod(sp.shape) for sp in obs_spec.spaces.values())
        total = self.replay_capacity * self._num_envs * per
        if total > MAX_REPLAY_BYTES:
            raise ConfigError(
                f"{n}.replay_capacity={self.replay_capacity:,} slots x {self._num_envs} users x "
                f"{per:,} bytes = {total / 2**30:.1f} GiB of replay per learner (and per seed), "
                f"more than {MAX_REPLAY_BYTES / 2**30:.0f} GiB; lower {n}.replay_capacity (it "
                "counts loop steps, each holding num_envs transitions).")

    def _check_slate(self, m: int, k: int) -> None:
        """Subclasses refuse slate sizes and candidate counts they cannot serve."""

    def check_num_envs(self, num_envs: int) -> None:
        stored = self.replay_capacity * num_envs
        if stored < self.batch_size:
            raise ConfigError(
                f"{self.name}.replay_capacity={self.replay_capacity} x {num_envs} users holds "
                f"{stored} transitions, fewer than {self.name}.batch_size={self.batch_size}.")
        self._num_envs = num_envs  # the buffer stores one slot of num_envs users per step

    def hparams(self):
        return QHParams(jnp.float32(self.learning_rate), jnp.float32(self.gamma))

    # -- rewards -------------------------------------------------------------------
    def task_rewards(self, reward: jax.Array) -> jax.Array:
        """``[N]`` or ``[N, C]`` rewards of a batch of users -> ``[N, T]``, what the heads
        learn: the tasks (``multi_task``) or the scalarisation (``T = 1``)."""
        reward = jnp.asarray(reward, jnp.float32)
        w, n = self.reward_weights, self.name
        comps = 1 if reward.ndim == 1 else reward.shape[-1]
        if w is None:
            if comps > 1:
                raise ConfigError(
                    f"{n} got a vector of {comps} per-task rewards; set {n}.reward_weights "
                    "to scalarise them (one weight per task).")
            return reward.reshape(reward.shape[0], 1)
        if reward.ndim == 1 or comps != len(w):
            raise ConfigError(
                f"{n}.reward_weights has {len(w)} weights, but the environment gives {comps} "
                "reward component(s); expected one weight per component.")
        return reward if self.multi_task else (reward @ jnp.asarray(w, jnp.float32))[:, None]

    def scalarise(self, q: jax.Array) -> jax.Array:
        """``[..., T]`` per-head values -> ``[...]`` the values the agent acts on."""
        if self.multi_task:
            return q @ jnp.asarray(self.reward_weights, jnp.float32)
        return q[..., 0]

    def td_loss(self, err: jax.Array) -> jax.Array:
        return optax.huber_loss(err) if self.loss_kind == "huber" else 0.5 * jnp.square(err)

    # -- the contract --------------------------------------------------------------
    def init(self, key, obs_spec, action_spec):
        self.check_compatible(obs_spec, action_spec)
        obs = {k: jnp.zeros(sp.shape, jnp.float32) for k, sp in obs_spec.spaces.items()}
        params = self._init_params(key, jax.tree.map(lambda x: x[None], obs))
        example = replay.Experience(
            obs=obs,
            action=jnp.zeros((self.slate_size,), jnp.int32),
            reward=jnp.zeros((self.num_tasks,), jnp.float32),
            next_obs=obs,
            terminated=False, truncated=False,
            extras=self._extras(jnp.zeros((self.slate_size,), jnp.float32),
                                jnp.zeros((self.num_tasks,), jnp.float32)),
        )
        buffer = replay.init(self.replay_capacity, example, self._num_envs)
        return QState(hparams=self.hparams(), params=params, target=params,
                      opt_state=self.optimizer.init(params), buffer=buffer,
                      t=jnp.int32(0), updates=jnp.int32(0))

    def epsilon(self, state: QState) -> jax.Array:
        return linearly_decaying_epsilon(state.t, self.epsilon_decay_steps,
                                         self.min_replay // max(self._num_envs, 1),
                                         self.epsilon_train)

    def act(self, key, state: QState, obs, *, greedy=False):
        obs, single = batched(obs)
        n = obs["user"].shape[0]
        k_explore, k_slate = jax.random.split(key)
        best = self._greedy_slates(state.params, obs)
        eps = jnp.float32(self.epsilon_eval) if greedy else self.epsilon(state)
        explore = jax.random.uniform(k_explore, (n,)) < eps
        slates = jnp.where(explore[:, None],
                           random_slates(k_slate, n, self.num_candidates, self.slate_size), best)
        if single:
            slates = slates[0]
        return slates, state, {"epsilon": eps}

    def observe(self, key, state: QState, transition):
        tr = transition
        if jnp.ndim(tr.terminated) == 0:  # one user: the buffer stores [1, ...]
            tr = jax.tree.map(lambda x: jnp.asarray(x)[None], tr)
        info = tr.info if isinstance(tr.info, dict) else {}
        if "slate_click" not in info:
            raise ConfigError(f"{self.name} needs info['slate_click'] (the clicks per slate "
                              "position) from a slate environment.")
        # Stored as the rewards the heads learn, [N, T] (validated against reward_weights).
        tr = tr._replace(reward=self.task_rewards(tr.reward))
        item = replay.Experience.from_transition(
            tr, extras=self._extras(jnp.asarray(info["slate_click"], jnp.float32), tr.reward))
        return state.replace(buffer=replay.add_batch(state.buffer, item), t=state.t + 1)

    def learn(self, key, state: QState):
        k_sample, k_loss = jax.random.split(key)
        ready = replay.can_sample(state.buffer, max(self.min_replay, self.batch_size),
                                  self.window)
        batch = self._sample(k_sample, state)
        (loss, aux), grads = jax.value_and_grad(self._loss, has_aux=True)(
            state.params, state.target, batch, state.hparams, k_loss)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(lambda u: -state.hparams.learning_rate * u, updates)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ready, a, b), new, old)  # noqa: E731
        params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        count = state.updates + ready.astype(jnp.int32)
        if self.target_tau is not None:
            tau = self.target_tau
            target = keep(jax.tree.map(lambda p, t: tau * p + (1 - tau) * t, params,
                                       state.target), state.target)
        else:
            # Dopamine syncs every target_update_period training steps (each learn is
            # learn_every of them): copy once per that many learn calls.
            every = max(self.target_update_period // self.learn_every, 1)
            sync = ready & (count % every == 0)
            target = jax.tree.map(lambda p, t: jnp.where(sync, p, t), params, state.target)
        metrics = {"loss": jnp.where(ready, loss, 0.0), "epsilon": self.epsilon(state),
                   "updates": count.astype(jnp.float32)}
        metrics.update({k: jnp.where(ready, v, 0.0) for k, v in aux.items()})
        return state.replace(params=params, target=target, opt_state=opt_state,
                             updates=count), metrics

    def _sample(self, key, state: QState):
        if self.window > 1:
            return replay.sample_windows(state.buffer, key, self.batch_size, self.window)
        return replay.sample(state.buffer, key, self.batch_size)

    # -- subclass hooks --------------------------------------------------------------
    def _extras(self, click: jax.Array, rewards: jax.Array) -> dict:
        """What is stored per transition besides the Experience fields."""
        return {"click": click}

    def _init_params(self, key, obs):
        raise NotImplementedError

    def _greedy_slates(self, params, obs) -> jax.Array:
        raise NotImplementedError

    def _loss(self, params, target, batch, hparams, key):
        raise NotImplementedError
