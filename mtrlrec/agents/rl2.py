r"""RL²: a recurrent policy meta-trained across tasks (Duan et al. 2016, arXiv:1611.02779).

Each user (a task: a k-armed Bernoulli bandit with :math:`p_i \sim U[0, 1]`) is
served for a trial of n pulls; the learner's GRU hidden state carries what it
has learned about the task and is reset at the trial's end
(:meth:`RL2.reset_trial`), while the network parameters, trained across all
tasks, encode *how* to explore and exploit (§2.2). ``num_envs`` users per
learner are ``num_envs`` tasks in parallel (vmapped by the engine).

Inputs: ``mtrlrec.envs.meta.RL2Inputs`` makes the observation
:math:`x_t = [o_t, \mathrm{onehot}(a_{t-1}), r_{t-1}, d_{t-1}]`, so ``act``
alone advances the hidden state (also in the evaluation phase, which calls no
``observe``). Network: ``mtrlrec.models.recurrent.RL2Network`` (GRU, softmax
policy and value heads).

Learning (§3 uses TRPO with GAE; here the smallest PPO/A2C, written inside this
module because the policy-gradient issue (#17) had not landed): every
``rollout_length`` steps,

1. the GRU is re-run over the stored inputs from the hidden state at the
   rollout's start, with the trial resets the learner applied while acting
   (:func:`mtrlrec.models.recurrent.unroll`; backpropagation through the whole
   rollout, truncated at its start when a trial is longer);
2. advantages :math:`\hat A_t` by GAE(γ, λ) (:func:`mtrlrec.train.rollout.gae`),
   a trial end terminating the return (no bootstrap across tasks);
3. ``epochs`` gradient steps (Adam, global-norm clipping) on

.. math::

   L = -\frac{1}{TN}\sum_{t,i} \min\big(\rho\hat A,\ \mathrm{clip}(\rho, 1\pm\epsilon)\hat A\big)
       + c_V \tfrac12 (V - \hat R)^2 - c_H\, \mathcal H[\pi],
   \qquad \rho = \pi_\theta(a \mid h) / \pi_{\mathrm{old}}(a \mid h),

which is A2C for ``epochs = 1`` (then :math:`\rho = 1` and the gradient is the
advantage actor-critic's) and PPO for more.

Evaluation: ``act(..., greedy=True)`` samples from the policy when
``eval_policy = 'sample'`` (the paper's evaluation samples) or takes its mode
with ``'greedy'``.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import gin
import jax
import jax.numpy as jnp
import optax

from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.core.spaces import Box, num_actions
from mtrlrec.models.recurrent import RL2Network, unroll
from mtrlrec.train.rollout import gae


@flax.struct.dataclass
class RL2HParams:
    learning_rate: jax.Array
    gamma: jax.Array
    lam: jax.Array
    entropy_coef: jax.Array
    value_coef: jax.Array
    reward_scale: jax.Array


@flax.struct.dataclass
class RL2Rollout:
    """The last ``rollout_length`` steps of the ``N`` users (time-major)."""

    xs: jax.Array       # [T, N, D] inputs the policy acted on
    actions: jax.Array  # [T, N] int32
    rewards: jax.Array  # [T, N]
    resets: jax.Array   # [T, N] bool: a trial ended after step t
    logp: jax.Array     # [T, N] log π_old(a_t)
    h0: jax.Array       # [N, H] hidden state before the rollout's first step
    last_x: jax.Array   # [N, D] the input after the last step (for the bootstrap value)
    ptr: jax.Array      # steps stored in this rollout


@flax.struct.dataclass
class RL2State:
    hparams: RL2HParams
    params: Any
    opt_state: Any
    h: jax.Array        # [N, H] the users' hidden states
    rollout: RL2Rollout
    updates: jax.Array  # gradient steps taken


@gin.configurable
class RL2(Agent):
    """GRU actor-critic meta-learner (module docstring).

    Args:
      hidden_size: GRU units H >= 1.
      rollout_length: steps per update T >= 1 (``learn_every``); best a multiple
        of the trial length, so whole trials are backpropagated through.
      learning_rate: Adam step size > 0 (swept).
      gamma: discount in [0, 1] (swept); the table's score is undiscounted (1).
      lam: GAE λ in [0, 1] (swept); the replication quoted by Duan et al.'s
        setting used 0.3.
      entropy_coef: c_H >= 0 (swept).
      value_coef: c_V >= 0 (swept).
      reward_scale: rewards are multiplied by this > 0 for the critic and GAE
        (swept). Returns of long trials (up to n = 100 with γ = 1) give value
        gradients that swamp the policy's under global-norm clipping; 0.02 keeps
        the value targets O(1) at n = 100. At n = 10 the unscaled rewards learned
        faster (k = 5: 6.54 against 5.76 with 0.1, same budget). Advantages are
        standardised, so the policy gradient does not depend on it otherwise.
      epochs: gradient steps per rollout (1: A2C; > 1: PPO with ``clip``).
      clip: PPO ratio clip ε > 0.
      max_grad_norm: global-norm gradient clip > 0.
      normalize_advantages: standardise :math:`\\hat A` over the rollout.
      eval_policy: 'sample' (the paper) or 'greedy' (the policy's mode), the
        policy of ``act(..., greedy=True)``.
    """

    batched = True

    def __init__(self, hidden_size: int = 128, rollout_length: int = 100,
                 learning_rate: float = 1e-3, gamma: float = 1.0, lam: float = 0.3,
                 entropy_coef: float = 0.01, value_coef: float = 0.5,
                 reward_scale: float = 1.0, epochs: int = 1,
                 clip: float = 0.2, max_grad_norm: float = 1.0,
                 normalize_advantages: bool = True, eval_policy: str = "sample"):
        self.hidden_size = check_int("RL2.hidden_size", hidden_size, min_value=1)
        self.rollout_length = check_int("RL2.rollout_length", rollout_length, min_value=1)
        self.learn_every = self.rollout_length
        self.learning_rate = check_float("RL2.learning_rate", learning_rate, low=0.0,
                                         low_open=True)
        self.gamma = check_float("RL2.gamma", gamma, low=0.0, high=1.0)
        self.lam = check_float("RL2.lam", lam, low=0.0, high=1.0)
        self.entropy_coef = check_float("RL2.entropy_coef", entropy_coef, low=0.0)
        self.value_coef = check_float("RL2.value_coef", value_coef, low=0.0)
        self.reward_scale = check_float("RL2.reward_scale", reward_scale, low=0.0, low_open=True)
        self.epochs = check_int("RL2.epochs", epochs, min_value=1)
        self.clip = check_float("RL2.clip", clip, low=0.0, low_open=True)
        self.max_grad_norm = check_float("RL2.max_grad_norm", max_grad_norm, low=0.0,
                                         low_open=True)
        self.normalize_advantages = bool(normalize_advantages)
        if eval_policy not in ("sample", "greedy"):
            raise ConfigError(f"RL2.eval_policy must be 'sample' or 'greedy', got {eval_policy!r}.")
        self.eval_policy = eval_policy
        self.num_envs = None
        # Adam without its step size: the swept learning rate scales the update.
        self.optimizer = optax.chain(optax.clip_by_global_norm(self.max_grad_norm),
                                     optax.scale_by_adam())

    # -- checks before compilation ---------------------------------------------------
    def check_compatible(self, obs_spec, action_spec) -> None:
        if not isinstance(obs_spec, Box) or len(obs_spec.shape) != 1:
            raise ConfigError(
                "RL2 needs the RL² inputs as a vector observation: add "
                "OnlineRunner.wrappers = [@RL2Inputs] (mtrlrec.envs.meta).")
        if num_actions(action_spec) < 2:
            raise ConfigError(f"RL2 needs at least 2 actions, got {num_actions(action_spec)}.")

    def check_num_envs(self, num_envs: int) -> None:
        # The hidden states and the rollout are [num_envs, ...] arrays of the state.
        self.num_envs = int(num_envs)

    def hparams(self):
        f = jnp.float32
        return RL2HParams(f(self.learning_rate), f(self.gamma), f(self.lam),
                          f(self.entropy_coef), f(self.value_coef), f(self.reward_scale))

    # -- the contract ------------------------------------------------------------------
    def network(self, k: int) -> RL2Network:
        return RL2Network(self.hidden_size, k)

    def init(self, key, obs_spec, action_spec):
        n = self.num_envs or 1
        k = num_actions(action_spec)
        d = int(obs_spec.shape[0])
        h = jnp.zeros((n, self.hidden_size), jnp.float32)
        params = self.network(k).init(key, h, jnp.zeros((n, d), jnp.float32))
        t = self.rollout_length
        rollout = RL2Rollout(
            xs=jnp.zeros((t, n, d), jnp.float32), actions=jnp.zeros((t, n), jnp.int32),
            rewards=jnp.zeros((t, n), jnp.float32), resets=jnp.zeros((t, n), bool),
            logp=jnp.zeros((t, n), jnp.float32), h0=h, last_x=jnp.zeros((n, d), jnp.float32),
            ptr=jnp.int32(0))
        return RL2State(self.hparams(), params, self.optimizer.init(params), h, rollout,
                        jnp.int32(0))

    def _batch(self, state, obs):
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim == 1:
            obs = obs[None]
        if obs.shape[0] != state.h.shape[0]:
            raise ConfigError(
                f"RL2 keeps one hidden state per user: it trains on {state.h.shape[0]} users and "
                f"cannot act for {obs.shape[0]}; leave OnlineRunner.eval_users unset.")
        return obs

    def act(self, key, state, obs, *, greedy=False):
        x = self._batch(state, obs)
        k = state.params["params"]["policy"]["bias"].shape[0]
        h, logits, value = self.network(k).apply(state.params, state.h, x)
        if greedy and self.eval_policy == "greedy":
            action = jnp.argmax(logits, -1).astype(jnp.int32)
        else:
            action = jax.random.categorical(key, logits).astype(jnp.int32)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        if jnp.ndim(obs) == 1:  # one user
            action = action[0]
        return action, state.replace(h=h), {"logp": logp, "value": value}

    def observe(self, key, state, transition):
        ro = state.rollout
        i = ro.ptr
        x = self._batch(state, transition.obs)
        n = x.shape[0]
        info = transition.info
        resets = info.get("trial_done", jnp.zeros((n,), bool)) if isinstance(info, dict) \
            else jnp.zeros((n,), bool)
        ro = ro.replace(
            xs=ro.xs.at[i].set(x),
            actions=ro.actions.at[i].set(jnp.reshape(transition.action, (n,))),
            rewards=ro.rewards.at[i].set(jnp.reshape(transition.reward, (n,)).astype(jnp.float32)),
            resets=ro.resets.at[i].set(jnp.reshape(resets, (n,))),
            logp=ro.logp.at[i].set(jnp.reshape(transition.act_info["logp"], (n,))),
            last_x=jnp.reshape(jnp.asarray(transition.next_obs, jnp.float32), x.shape),
            ptr=i + 1)
        return state.replace(rollout=ro)

    def reset_trial(self, key, state, mask):
        # The task changed: forget it (hidden state), keep how to learn (params).
        mask = jnp.reshape(jnp.asarray(mask), (-1, 1))
        return state.replace(h=jnp.where(mask, jnp.zeros_like(state.h), state.h))

    def learn(self, key, state):
        ro, hp = state.rollout, state.hparams
        k = state.params["params"]["policy"]["bias"].shape[0]
        net = self.network(k)
        # Advantages from the policy that acted (before this update's steps).
        _, values, _ = unroll(net, state.params, ro.h0, ro.xs, ro.resets)
        _, _, last_value = net.apply(state.params, state.h, ro.last_x)
        zeros = jnp.zeros_like(ro.resets)
        adv, returns = gae(ro.rewards * hp.reward_scale, values, last_value, ro.resets, zeros,
                           final_values=None, gamma=hp.gamma, lam=hp.lam)
        if self.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        def loss_fn(params):
            logits, v, _ = unroll(net, params, ro.h0, ro.xs, ro.resets)
            logp_all = jax.nn.log_softmax(logits)
            logp = jnp.take_along_axis(logp_all, ro.actions[..., None], -1)[..., 0]
            ratio = jnp.exp(logp - ro.logp)
            pg = -jnp.mean(jnp.minimum(ratio * adv,
                                       jnp.clip(ratio, 1 - self.clip, 1 + self.clip) * adv))
            value_loss = 0.5 * jnp.mean((v - returns) ** 2)
            entropy = -jnp.mean(jnp.sum(jnp.exp(logp_all) * logp_all, -1))
            loss = pg + hp.value_coef * value_loss - hp.entropy_coef * entropy
            return loss, {"policy_loss": pg, "value_loss": value_loss, "entropy": entropy,
                          "ratio": jnp.mean(ratio)}

        def epoch(carry, _):
            params, opt_state = carry
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            updates = jax.tree.map(lambda u: -hp.learning_rate * u, updates)
            return (optax.apply_updates(params, updates), opt_state), {"loss": loss, **aux}

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), None, length=self.epochs)
        metrics = {k_: v_[-1] for k_, v_ in metrics.items()}
        metrics["trial_return_rate"] = jnp.mean(ro.rewards)
        # The next rollout starts from the current hidden states (after any reset).
        ro = ro.replace(h0=state.h, ptr=jnp.int32(0))
        return state.replace(params=params, opt_state=opt_state, rollout=ro,
                             updates=state.updates + self.epochs), metrics


__all__ = ["RL2", "RL2HParams", "RL2State"]
