r"""What the policy-gradient agents share: networks, batches of users, rollouts, Adam.

:class:`PolicyGradientBase` is the common part of :class:`~mtrlrec.agents.actor_critic.A2C`,
:class:`~mtrlrec.agents.actor_critic.PPO` and
:class:`~mtrlrec.agents.reinforce.TopKReinforce`:

* the network (:mod:`mtrlrec.models.policies`): :class:`~mtrlrec.models.policies.SlatePolicyNet`
  on slate environments (``Slate`` actions, ``{'user', 'doc'}`` observations),
  :class:`~mtrlrec.models.policies.TabularPolicyNet` for ``Discrete`` actions with a
  constant observation (context-free item sets such as the top-K toy);
* the users: the agents are ``batched``; ``num_envs`` users per learner are the
  parallel actors (PureJaxRL's ``NUM_ENVS``). The batch size is read in
  :meth:`check_num_envs` (called by the loop before anything compiles) because
  the rollout buffer in the learner state is ``[T, num_envs, ...]``. With one
  user the loop passes unbatched values; they are given a user axis here;
* feedback tasks: with ``tasks = ()`` the reward is the one task. With
  ``tasks = ('click', 'purchase')`` each task's reward is the env's ``info`` entry of
  that name and ``task_weights`` scalarise them (they should match the env's own
  scalarisation, e.g. click + 5·purchase). A vector reward (``SlateEnv.reward_weights
  = None``) makes its components the tasks, scalarised with ``task_weights``;
* the optimiser: Adam's scaling (optax), gradient-norm clipping, and the step size
  ``state.hparams.learning_rate`` applied in ``learn``, so a sweep over the learning
  rate is one compiled call (as the neural bandits of :mod:`mtrlrec.agents.neural`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax

from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import Dict, Discrete, Slate
from mtrlrec.models import policies


class PolicyGradientBase(Agent):
    """Network, user batches, task rewards and the Adam step of the policy-gradient agents.

    Subclasses set ``_owner`` (the Gin name used in error messages) and implement
    the contract's ``init``/``act``/``observe``/``learn``.
    """

    batched = True
    _owner = "PolicyGradient"
    behaviour_head = False

    def _common_init(self, hidden_sizes: Sequence[int], learning_rate: float,
                     max_grad_norm: float, tasks: Sequence[str],
                     task_weights: Sequence[float] | None) -> None:
        o = self._owner
        hidden_sizes = tuple(hidden_sizes)
        if not hidden_sizes:
            raise ConfigError(f"{o}.hidden_sizes must have at least one layer.")
        self.hidden_sizes = tuple(check_int(f"{o}.hidden_sizes[{i}]", h, min_value=1)
                                  for i, h in enumerate(hidden_sizes))
        self.learning_rate = check_float(f"{o}.learning_rate", learning_rate, low=0.0,
                                         low_open=True)
        self.max_grad_norm = check_float(f"{o}.max_grad_norm", max_grad_norm, low=0.0,
                                         low_open=True)
        if isinstance(tasks, str):
            tasks = (tasks,)
        self.tasks = tuple(str(t) for t in tasks)
        if task_weights is None:
            task_weights = (1.0,) * max(len(self.tasks), 1)
        self.task_weights = check_floats(f"{o}.task_weights", task_weights)
        if self.tasks and len(self.task_weights) != len(self.tasks):
            raise ConfigError(
                f"{o}.task_weights has {len(self.task_weights)} entries for "
                f"{len(self.tasks)} tasks {list(self.tasks)}; give one weight per task.")
        self.num_tasks = len(self.task_weights)
        self.num_envs = 1
        self.optimizer = optax.chain(optax.clip_by_global_norm(self.max_grad_norm),
                                     optax.scale_by_adam(eps=1e-5))

    # -- spaces and users ------------------------------------------------------------
    def _spaces(self, obs_spec, action_spec) -> None:
        o = self._owner
        if isinstance(action_spec, Slate):
            if not (isinstance(obs_spec, Dict) and {"user", "doc"} <= set(obs_spec.spaces)):
                raise ConfigError(
                    f"{o} on slates needs observations {{'user': [D], 'doc': [m, D]}} "
                    f"(a SlateEnv), got {obs_spec}.")
            self.slate = True
            self.num_items = int(action_spec.num_candidates)
            self.slate_size = int(action_spec.slate_size)
        elif isinstance(action_spec, Discrete):
            self.slate = False
            self.num_items = int(action_spec.n)
            self.slate_size = 1
        else:
            raise ConfigError(f"{o} needs Slate or Discrete actions, got {action_spec}.")

    def check_compatible(self, obs_spec, action_spec):
        self._spaces(obs_spec, action_spec)

    def check_num_envs(self, num_envs: int) -> None:
        self.num_envs = int(num_envs)

    def network(self):
        if self.slate:
            return policies.SlatePolicyNet(self.hidden_sizes, self.num_tasks, self.behaviour_head)
        return policies.TabularPolicyNet(self.num_items, self.num_tasks, self.behaviour_head)

    def init_params(self, key, obs_spec, action_spec):
        self._spaces(obs_spec, action_spec)
        return self.network().init(key, _zeros_like_spec(obs_spec))

    def apply(self, params, obs):
        """The network for a batch of users: obs ``[N, ...]`` -> outputs ``[N, ...]``."""
        net = self.network()
        return jax.vmap(lambda o: net.apply(params, o))(obs)

    def batch(self, x):
        """A user axis for the unbatched values the loop passes with one user."""
        return jax.tree.map(lambda a: jnp.asarray(a)[None], x) if self.num_envs == 1 else x

    def unbatch(self, x):
        return jax.tree.map(lambda a: a[0], x) if self.num_envs == 1 else x

    # -- actions ---------------------------------------------------------------------
    def sample(self, key, log_probs):
        """Actions ``[N, k]`` (slates) or ``[N]`` (items) from ``log_probs [N, m]``."""
        keys = jax.random.split(key, log_probs.shape[0])
        if self.slate:
            return jax.vmap(lambda k, lp: policies.sample_slate(k, lp, self.slate_size))(
                keys, log_probs)
        return jax.vmap(jax.random.categorical)(keys, log_probs).astype(jnp.int32)

    def greedy(self, log_probs):
        if self.slate:
            return jax.vmap(lambda lp: policies.greedy_slate(lp, self.slate_size))(log_probs)
        return jnp.argmax(log_probs, axis=-1).astype(jnp.int32)

    def log_prob(self, log_probs, action):
        """``log π(action)`` ``[N]``: the slate's sequential probability, or the item's."""
        if self.slate:
            return jax.vmap(policies.slate_log_prob)(log_probs, action)
        return jnp.take_along_axis(log_probs, action[:, None], axis=1)[:, 0]

    # -- rewards -----------------------------------------------------------------------
    def task_rewards(self, transition) -> jax.Array:
        """Per-task rewards ``[N, num_tasks]`` of a batched transition."""
        o = self._owner
        if self.tasks:
            missing = [t for t in self.tasks if t not in transition.info]
            if missing:
                raise ConfigError(
                    f"{o}.tasks {missing} are not info entries of this environment; it reports "
                    f"{sorted(k for k in transition.info if k != 'final_observation')}.")
            return jnp.stack([jnp.asarray(transition.info[t], jnp.float32) for t in self.tasks],
                             axis=-1)
        r = jnp.asarray(transition.reward, jnp.float32)
        if r.ndim == 1:
            r = r[:, None]
        if r.shape[-1] != self.num_tasks:
            raise ConfigError(
                f"{o}: the environment's reward has {r.shape[-1]} components; set "
                f"{o}.task_weights to {r.shape[-1]} weights (or scalarise the reward in the env).")
        return r

    def weights(self) -> jax.Array:
        return jnp.asarray(self.task_weights, jnp.float32)

    # -- the Adam step -------------------------------------------------------------------
    def adam_step(self, params, opt_state, grads, learning_rate):
        """One step ``θ ← θ − lr · adam(clip(g))`` with ``lr`` from the hparams."""
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: -learning_rate * u, updates)
        return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def _zeros_like_spec(spec) -> Any:
    if isinstance(spec, Dict):
        return {k: _zeros_like_spec(s) for k, s in spec.spaces.items()}
    return jnp.zeros(spec.shape, jnp.float32)


def explained_variance(pred: jax.Array, target: jax.Array) -> jax.Array:
    """``1 − Var[target − pred] / Var[target]`` (0 where the targets do not vary)."""
    var = jnp.var(target)
    return jnp.where(var > 1e-8, 1.0 - jnp.var(target - pred) / jnp.maximum(var, 1e-8), 0.0)


__all__ = ["PolicyGradientBase", "explained_variance"]
