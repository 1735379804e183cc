r"""A2C and PPO on the engine: many users per learner are the parallel actors.

Both agents collect a rollout of ``T = rollout_length`` steps of the learner's
``N = num_envs`` users in the learner state (``[T, N, ...]``) and learn every
``T`` steps (``learn_every = T``), so the engine's blocks are the rollouts:

* **A2C** (the synchronous form of A3C, Mnih et al., ICML 2016): one
  gradient step on the whole rollout of
  :math:`L = -\frac1{TN}\sum \log\pi(a|s)\,\hat A + c_v L_V - c_e H`.
* **PPO** (clipped surrogate, Schulman et al. 2017, Eq. 7 and Alg. 1):
  ``num_epochs`` passes over ``num_minibatches`` shuffled minibatches of the
  ``T·N`` samples with
  :math:`L^{CLIP} = -\mathbb E\big[\min(\rho \hat A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon)\hat A)\big]`,
  :math:`\rho = \pi_\theta(a|s) / \pi_{\text{old}}(a|s)`, advantages
  normalised per minibatch.

Advantages are GAE (:func:`mtrlrec.train.rollout.gae`, Schulman et al. 2016) per
feedback task: the critic has one head per task, :math:`V_t(s)`, each regressed
on its own λ-return, and the policy follows the scalarised advantage
:math:`\hat A = \sum_t w_t \hat A_t` (GAE is linear in the rewards and values, so
this is the GAE of the scalarised reward under the scalarised value
:math:`V = \sum_t w_t V_t`). ``L_V = \frac12 \sum_t (V_t - G_t)^2``. Rollouts
cut episodes anywhere: the value of the observation after the last step
bootstraps them. A truncated episode (a time limit) is treated as terminated
(``final_values=None``), which is exact for the slate simulator's budget
endings and biased only at its 27,000-step cap.

Policies: slates are drawn by sequential sampling without replacement from the
item softmax (:mod:`mtrlrec.models.policies`), with the ordered slate's
log-probability in the ratio; ``entropy`` is that of the first position's item
softmax. ``greedy=True`` shows the ``k`` most probable items (evaluation).

``learn`` returns ``loss``, ``policy_loss``, ``value_loss``, ``entropy``,
``approx_kl`` (:math:`\mathbb E[(\rho - 1) - \log\rho]`), ``clip_fraction``,
``explained_variance`` (of the scalarised value), ``grad_norm`` and ``value``
(mean scalarised value), logged as ``agent/<name>``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.agents.policy_gradient import (PolicyGradientBase, _zeros_like_spec,
                                             explained_variance)
from mtrlrec.agents.warm_start import SlateWarmStart
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.models import policies
from mtrlrec.train.rollout import gae


@flax.struct.dataclass
class ActorCriticHParams:
    learning_rate: jax.Array
    clip_epsilon: jax.Array
    entropy_coef: jax.Array
    value_coef: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array


@flax.struct.dataclass
class Rollout:
    """``T`` steps of ``N`` users, time-major."""

    obs: Any  # [T, N, ...]
    action: jax.Array  # [T, N, k] slates or [T, N] items
    log_prob: jax.Array  # [T, N] log π_old(a|s)
    values: jax.Array  # [T, N, num_tasks]
    rewards: jax.Array  # [T, N, num_tasks]
    terminated: jax.Array  # [T, N]
    truncated: jax.Array  # [T, N]
    last_obs: Any  # [N, ...] observation after the last step


@flax.struct.dataclass
class ActorCriticState:
    hparams: ActorCriticHParams
    params: Any
    opt_state: Any
    rollout: Rollout
    t: jax.Array  # steps observed
    updates: jax.Array  # learn calls


class _ActorCritic(PolicyGradientBase):
    """Shared by A2C and PPO (see the module docstring)."""

    clipped = False

    def __init__(self, rollout_length, num_epochs, num_minibatches, learning_rate, clip_epsilon,
                 entropy_coef, value_coef, gamma, gae_lambda, max_grad_norm, hidden_sizes,
                 tasks, task_weights, warm_start=None):
        o = self._owner
        self._common_init(hidden_sizes, learning_rate, max_grad_norm, tasks, task_weights)
        if warm_start is not None and not isinstance(warm_start, SlateWarmStart):
            raise ConfigError(f"{o}.warm_start must be @SlateWarmStart() or None, got "
                              f"{warm_start!r}.")
        self.warm_start = warm_start
        self.rollout_length = check_int(f"{o}.rollout_length", rollout_length, min_value=1)
        self.learn_every = self.rollout_length
        self.num_epochs = check_int(f"{o}.num_epochs", num_epochs, min_value=1)
        self.num_minibatches = check_int(f"{o}.num_minibatches", num_minibatches, min_value=1)
        self.clip_epsilon = check_float(f"{o}.clip_epsilon", clip_epsilon, low=0.0,
                                        low_open=True)
        self.entropy_coef = check_float(f"{o}.entropy_coef", entropy_coef, low=0.0)
        self.value_coef = check_float(f"{o}.value_coef", value_coef, low=0.0)
        self.gamma = check_float(f"{o}.gamma", gamma, low=0.0, high=1.0)
        self.gae_lambda = check_float(f"{o}.gae_lambda", gae_lambda, low=0.0, high=1.0)

    def hparams(self):
        f = jnp.float32
        return ActorCriticHParams(f(self.learning_rate), f(self.clip_epsilon),
                                  f(self.entropy_coef), f(self.value_coef), f(self.gamma),
                                  f(self.gae_lambda))

    def check_num_envs(self, num_envs):
        super().check_num_envs(num_envs)
        samples = self.rollout_length * num_envs
        if samples % self.num_minibatches:
            raise ConfigError(
                f"{self._owner}.num_minibatches={self.num_minibatches} must divide the rollout's "
                f"{samples} samples ({self._owner}.rollout_length={self.rollout_length} x "
                f"num_envs={num_envs}).")

    # -- the contract ------------------------------------------------------------------
    def check_compatible(self, obs_spec, action_spec):
        super().check_compatible(obs_spec, action_spec)
        if self.warm_start is not None and not self.slate:
            raise ConfigError(f"{self._owner}.warm_start needs a slate environment.")

    def init(self, key, obs_spec, action_spec):
        params = self.init_params(key, obs_spec, action_spec)
        if self.warm_start is not None:  # supervised pretraining on a log, per seed
            params = self.warm_start.pretrain(jax.random.fold_in(key, 1), self.network(), params)
        n, t, nt = self.num_envs, self.rollout_length, self.num_tasks

        def zeros(spec_shape, dtype=jnp.float32):
            return jnp.zeros((t, n) + tuple(spec_shape), dtype)

        obs0 = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype),
                            _zeros_like_spec(obs_spec))
        act_shape = (self.slate_size,) if self.slate else ()
        rollout = Rollout(
            obs=jax.tree.map(lambda a: jnp.zeros((t,) + a.shape, a.dtype), obs0),
            action=zeros(act_shape, jnp.int32), log_prob=zeros(()), values=zeros((nt,)),
            rewards=zeros((nt,)), terminated=zeros((), jnp.bool_),
            truncated=zeros((), jnp.bool_), last_obs=obs0)
        return ActorCriticState(self.hparams(), params, self.optimizer.init(params), rollout,
                                jnp.int32(0), jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        out = self.apply(state.params, self.batch(obs))
        if greedy:
            return self.unbatch(self.greedy(out["log_probs"])), state, {}
        action = self.sample(key, out["log_probs"])
        info = {"log_prob": self.log_prob(out["log_probs"], action), "values": out["values"]}
        return self.unbatch(action), state, self.unbatch(info)

    def observe(self, key, state, transition):
        tr = self.batch(transition)
        i = state.t % self.rollout_length
        ro = state.rollout
        put = lambda buf, x: buf.at[i].set(jnp.asarray(x, buf.dtype))  # noqa: E731
        ro = ro.replace(
            obs=jax.tree.map(put, ro.obs, tr.obs),
            action=put(ro.action, tr.action),
            log_prob=put(ro.log_prob, tr.act_info["log_prob"]),
            values=put(ro.values, tr.act_info["values"]),
            rewards=put(ro.rewards, self.task_rewards(tr)),
            terminated=put(ro.terminated, tr.terminated),
            truncated=put(ro.truncated, tr.truncated),
            last_obs=jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tr.next_obs))
        return state.replace(rollout=ro, t=state.t + 1)

    def learn(self, key, state):
        ro, hp = state.rollout, state.hparams
        w = self.weights()
        last_values = self.apply(state.params, ro.last_obs)["values"]  # [N, nt]
        adv, ret = gae(ro.rewards, ro.values, last_values, ro.terminated, ro.truncated,
                       final_values=None, gamma=hp.gamma, lam=hp.gae_lambda)
        adv_s = adv @ w  # [T, N] scalarised advantage
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
        data = (jax.tree.map(flat, ro.obs), flat(ro.action), flat(ro.log_prob), flat(adv_s),
                flat(ret))
        size = adv_s.size
        mb = size // self.num_minibatches

        def loss_fn(params, batch):
            obs, action, old_logp, a, g = batch
            out = self.apply(params, obs)
            logp = self.log_prob(out["log_probs"], action)
            ratio = jnp.exp(logp - old_logp)
            if self.clipped:
                a = (a - a.mean()) / (a.std() + 1e-8)
                clipped = jnp.clip(ratio, 1.0 - hp.clip_epsilon, 1.0 + hp.clip_epsilon)
                pg = -jnp.mean(jnp.minimum(ratio * a, clipped * a))
            else:
                pg = -jnp.mean(logp * a)
            v_loss = 0.5 * jnp.mean(jnp.sum((out["values"] - g) ** 2, axis=-1))
            ent = jnp.mean(policies.entropy(out["log_probs"]))
            loss = pg + hp.value_coef * v_loss - hp.entropy_coef * ent
            log_ratio = logp - old_logp
            stats = {"policy_loss": pg, "value_loss": v_loss, "entropy": ent,
                     "approx_kl": jnp.mean(ratio - 1.0 - log_ratio),
                     "clip_fraction": jnp.mean(
                         (jnp.abs(ratio - 1.0) > hp.clip_epsilon).astype(jnp.float32))}
            return loss, stats

        def minibatch(carry, idx):
            params, opt_state = carry
            batch = jax.tree.map(lambda x: x[idx], data)
            (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
            params, opt_state, gnorm = self.adam_step(params, opt_state, g, hp.learning_rate)
            return (params, opt_state), {"loss": loss, "grad_norm": gnorm, **stats}

        def epoch(carry, k):
            perm = jax.random.permutation(k, size) if self.num_minibatches > 1 else \
                jnp.arange(size)
            return jax.lax.scan(minibatch, carry, perm.reshape(self.num_minibatches, mb))

        (params, opt_state), stats = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(key, self.num_epochs))
        metrics = jax.tree.map(jnp.mean, stats)
        v_s = ro.values @ w
        metrics["explained_variance"] = explained_variance(v_s, ret @ w)
        metrics["value"] = jnp.mean(v_s)
        return state.replace(params=params, opt_state=opt_state,
                             updates=state.updates + 1), metrics


_DOC_ARGS = """
    Args:
      rollout_length: ``T`` steps per user between updates (``learn_every``).
      num_epochs: passes over the rollout per update.
      num_minibatches: minibatches per pass; must divide ``T · num_envs``.
      learning_rate: Adam step size (``state.hparams``, sweepable), > 0.
      clip_epsilon: PPO's ``ε`` (> 0; also the threshold of ``clip_fraction``).
      entropy_coef: ``c_e`` of the entropy bonus.
      value_coef: ``c_v`` of the value loss.
      gamma: discount ``γ``.
      gae_lambda: GAE ``λ``.
      max_grad_norm: gradients are clipped to this global norm.
      hidden_sizes: units of the item encoder and the critic torso.
      tasks: ``info`` entries that are the feedback tasks (one value head each);
        ``()``: the reward is the task (its components for a vector reward).
      task_weights: scalarisation ``w_t`` of the tasks.
      warm_start: optional ``@SlateWarmStart()``: supervised pretraining of the
        policy on a logged simulator run, in ``init`` (:mod:`mtrlrec.agents.warm_start`).
"""


@gin.configurable
class PPO(_ActorCritic):
    __doc__ = "Proximal policy optimisation with the clipped surrogate and GAE.\n" + _DOC_ARGS
    _owner = "PPO"
    clipped = True

    def __init__(self, rollout_length: int = 16, num_epochs: int = 4, num_minibatches: int = 4,
                 learning_rate: float = 3e-4, clip_epsilon: float = 0.2,
                 entropy_coef: float = 0.01, value_coef: float = 0.5, gamma: float = 0.99,
                 gae_lambda: float = 0.95, max_grad_norm: float = 0.5,
                 hidden_sizes: Sequence[int] = (64,), tasks: Sequence[str] = (),
                 task_weights: Sequence[float] | None = None,
                 warm_start: SlateWarmStart | None = None):
        super().__init__(rollout_length, num_epochs, num_minibatches, learning_rate,
                         clip_epsilon, entropy_coef, value_coef, gamma, gae_lambda,
                         max_grad_norm, hidden_sizes, tasks, task_weights, warm_start)


@gin.configurable
class A2C(_ActorCritic):
    __doc__ = ("Advantage actor-critic: synchronous A3C, one step per rollout (``num_epochs`` "
               "= ``num_minibatches`` = 1; ``clip_epsilon`` only sets the ``clip_fraction`` "
               "threshold).\n" + _DOC_ARGS)
    _owner = "A2C"
    clipped = False

    def __init__(self, rollout_length: int = 8, learning_rate: float = 7e-4,
                 entropy_coef: float = 0.01, value_coef: float = 0.5, gamma: float = 0.99,
                 gae_lambda: float = 1.0, max_grad_norm: float = 0.5,
                 hidden_sizes: Sequence[int] = (64,), tasks: Sequence[str] = (),
                 task_weights: Sequence[float] | None = None, clip_epsilon: float = 0.2,
                 warm_start: SlateWarmStart | None = None):
        super().__init__(rollout_length, 1, 1, learning_rate, clip_epsilon, entropy_coef,
                         value_coef, gamma, gae_lambda, max_grad_norm, hidden_sizes, tasks,
                         task_weights, warm_start)


__all__ = ["A2C", "PPO", "ActorCriticHParams", "ActorCriticState", "Rollout"]
