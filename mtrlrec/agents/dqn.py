r"""Deep Q-learning recommenders on the slate simulator: item-wise (multi-task) DQN and full-slate Q.

:class:`SlateDQN` learns an item-wise value :math:`Q_t(s, i)` for every candidate
``i`` and task ``t`` (:class:`~mtrlrec.models.heads.ItemwiseQ`: ``[user; item]``
through an MLP, shared-bottom or MMoE torso) and shows the ``k`` candidates with
the largest scalarised value :math:`\sum_t w_t Q_t(s, i)`. Without a user choice
model, every shown item is treated as an action of its own (the independent-items
decomposition that SlateQ improves on): its reward is the step's reward when
the user clicked it (all of it when nobody clicked, e.g. a ``return`` at the end
of a session; nothing when another item was clicked), and its target bootstraps
from the best single item of the next state,

.. math::

    y_{i,t} = c_i\, r_t + (R^{(n)}_t - r_t) + \gamma^{m}(1 - d)\,
              \bar Q_t\!\left(s', \arg\max_j \textstyle\sum_u w_u Q_u(s', j)\right),

with :math:`c_i` the click on position ``i``, :math:`R^{(n)}` the ``n``-step
return (:func:`mtrlrec.train.replay.sample_n_step`), :math:`\bar Q` the target
network and the argmax taken by the online network (double DQN, van Hasselt et
al. 2016) or the target network (``double = False``). The per-task targets use
the action of the scalarised greedy policy, so each head evaluates the policy
the agent follows. ``multi_task = False`` learns one head on the scalarised
reward; ``multi_task = True`` one head per task.

:class:`FullSlateQ` is the full-slate Q baseline of SlateQ §7.2 (RecSim's
``FullSlateQAgent``): one output per ordered slate (``m!/(m-k)!``, 720 for m = 10,
k = 3) from the flattened observation, and a standard DQN target
:math:`r + \gamma (1 - d) \bar Q(s', \arg\max_a Q(s', a))`.

Both run on :mod:`mtrlrec.agents.q_learning` (replay, target network, ε,
RMSProp); Dopamine's DQN defaults are the defaults here, except the replay
capacity (100,000 steps per learner instead of 10^6, which no run of 300,000
steps would reach the end of by more than 3x).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.agents.q_learning import SlateQLearner
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.models.encoders import MLP
from mtrlrec.models.heads import TORSOS, ItemwiseQ
from mtrlrec.train import replay

_DOPAMINE = dict(gamma=0.99, learning_rate=2.5e-4, optimizer="rmsprop", batch_size=32,
                 replay_capacity=100_000, min_replay=20_000, update_period=4,
                 target_update_period=8_000, target_tau=None, epsilon_train=0.01,
                 epsilon_eval=0.0, epsilon_decay_steps=250_000)


@gin.configurable
class SlateDQN(SlateQLearner):
    """Item-wise (multi-task) double DQN for slates (module docstring).

    Args:
      hidden: hidden sizes of the item network (RecSim's (256, 32)); with the
        ``'shared_bottom'``/``'mmoe'`` torsos the last one is the task towers.
      torso: ``'mlp'``, ``'shared_bottom'`` or ``'mmoe'``.
      num_experts: experts of the MMoE torso.
      user_state: ``'observed'`` (the user's interests), or ``'gru'``/``'transformer'``
        over the recent clicks of a :class:`~mtrlrec.envs.slate_history.ClickHistory` env.
      state_features: size of that encoded state.
      n_step: steps of the bootstrapped return.
      double: double DQN (online argmax, target value).
      reward_weights: scalarisation of a vector reward (click 1, purchase 5, ...);
        None for a scalar reward.
      multi_task: one Q head per reward component (needs ``reward_weights``).
      gamma, learning_rate, optimizer, batch_size, replay_capacity, min_replay,
      update_period, target_update_period, target_tau, epsilon_train,
      epsilon_eval, epsilon_decay_steps, loss: as in
        :class:`~mtrlrec.agents.q_learning.SlateQLearner` (Dopamine's defaults).
    """

    def __init__(self, hidden: Sequence[int] = (256, 32), torso: str = "mlp",
                 num_experts: int = 4, n_step: int = 1, double: bool = True,
                 reward_weights: Sequence[float] | None = None, multi_task: bool = False,
                 loss: str = "huber", **kwargs):
        super().__init__(hidden=hidden, loss=loss, reward_weights=reward_weights,
                         multi_task=multi_task, **{**_DOPAMINE, **kwargs})
        if torso not in TORSOS:
            raise ConfigError(f"SlateDQN.torso must be one of {TORSOS}, got {torso!r}.")
        if torso != "mlp" and len(self.hidden) < 2:
            raise ConfigError(f"SlateDQN.torso={torso!r} needs at least two hidden sizes "
                              f"(bottom or experts, then towers), got {self.hidden}.")
        self.torso = torso
        self.num_experts = check_int("SlateDQN.num_experts", num_experts, min_value=1)
        self.n_step = check_int("SlateDQN.n_step", n_step, min_value=1)
        self.window = self.n_step
        self.double = bool(double)

    def _network(self):
        return ItemwiseQ(self.hidden, self.num_tasks, self.torso, self.num_experts,
                         self.user_state, self.state_features)

    def _init_params(self, key, obs):
        return self._network().init(key, obs)

    def _greedy_slates(self, params, obs):
        q = self.scalarise(self._network().apply(params, obs))  # [N, m]
        return jax.lax.top_k(q, self.slate_size)[1].astype(jnp.int32)

    def _sample(self, key, state):
        return replay.sample_n_step(state.buffer, key, self.batch_size, self.n_step,
                                    state.hparams.gamma)

    def _loss(self, params, target, batch, hparams, key):
        net = self._network()
        q = net.apply(params, batch.obs)                                           # [B, m, T]
        q_shown = jnp.take_along_axis(q, batch.action[..., None], axis=1)          # [B, k, T]
        nxt = batch.next_obs
        q_next_target = net.apply(target, nxt)                                     # [B, m, T]
        q_next_select = net.apply(params, nxt) if self.double else q_next_target
        best = jnp.argmax(self.scalarise(jax.lax.stop_gradient(q_next_select)), -1)  # [B]
        v_next = jnp.take_along_axis(q_next_target, best[:, None, None], axis=1)[:, 0]  # [B, T]
        click = batch.extras["click"]                                              # [B, k]
        r1 = batch.extras["reward"]                                                # [B, T]
        share = jnp.where(jnp.sum(click, -1, keepdims=True) > 0, click, 1.0)       # [B, k]
        y = (share[..., None] * r1[:, None, :] + (batch.reward - r1)[:, None, :]
             + batch.discount[:, None, None] * v_next[:, None, :])
        err = jax.lax.stop_gradient(y) - q_shown
        return jnp.mean(self.td_loss(err)), {"q_mean": jnp.mean(q_shown),
                                            "td_abs": jnp.mean(jnp.abs(err))}

    def _extras(self, click, rewards):
        # The first step's own reward rides along: the n-step return mixes in later
        # steps' rewards, which no single item of this slate earned alone.
        return {"click": click, "reward": rewards}


@functools.lru_cache(maxsize=16)
def ordered_slates(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All ordered slates ``[A, k]`` and the index of each as a base-``m`` code ``[m^k]`` (-1: none)."""
    perms = np.asarray(list(itertools.permutations(range(m), k)), np.int32).reshape(-1, k)
    codes = perms @ (m ** np.arange(k - 1, -1, -1))
    index = np.full(m ** k, -1, np.int32)
    index[codes] = np.arange(len(perms), dtype=np.int32)
    return perms, index


MAX_FULL_SLATES = 100_000


@gin.configurable
class FullSlateQ(SlateQLearner):
    """Full-slate Q-learning (FSQ, SlateQ §7.2): DQN with one action per ordered slate.

    Args:
      hidden: hidden sizes of the network on the flattened observation.
      double: double DQN targets (Dopamine's DQN uses the target network's max: False).
      reward_weights: scalarisation of a vector reward; None for a scalar reward.
      gamma, learning_rate, ...: as :class:`SlateDQN`.
    """

    def __init__(self, hidden: Sequence[int] = (256, 32), double: bool = False,
                 reward_weights: Sequence[float] | None = None, loss: str = "huber", **kwargs):
        super().__init__(hidden=hidden, loss=loss, reward_weights=reward_weights,
                         multi_task=False, **{**_DOPAMINE, **kwargs})
        self.double = bool(double)

    def _check_slate(self, m, k):
        if self.user_state != "observed":
            raise ConfigError("FullSlateQ reads the observed user and candidates; "
                              f"FullSlateQ.user_state={self.user_state!r} is not supported.")
        count = math.perm(m, k)
        if count > MAX_FULL_SLATES or m ** k > 10 * MAX_FULL_SLATES:
            raise ConfigError(
                f"FullSlateQ needs one output per ordered slate: {m}!/({m}-{k})! = {count:,} for "
                f"m={m} candidates and k={k}, more than {MAX_FULL_SLATES:,}; use SlateQ.")

    def _network(self):
        return MLP(self.hidden, output=len(ordered_slates(self.num_candidates,
                                                          self.slate_size)[0]))

    @staticmethod
    def _flat(obs):
        return jnp.concatenate([obs["user"], obs["doc"].reshape(obs["doc"].shape[:-2] + (-1,))], -1)

    def _init_params(self, key, obs):
        return self._network().init(key, self._flat(obs))

    def _greedy_slates(self, params, obs):
        perms, _ = ordered_slates(self.num_candidates, self.slate_size)
        q = self._network().apply(params, self._flat(obs))
        return jnp.asarray(perms)[jnp.argmax(q, -1)]

    def _loss(self, params, target, batch, hparams, key):
        perms, index = ordered_slates(self.num_candidates, self.slate_size)
        net = self._network()
        m, k = self.num_candidates, self.slate_size
        codes = batch.action @ jnp.asarray(m ** np.arange(k - 1, -1, -1), jnp.int32)
        a = jnp.asarray(index)[codes]                                             # [B]
        q = jnp.take_along_axis(net.apply(params, self._flat(batch.obs)), a[:, None], 1)[:, 0]
        q_next = net.apply(target, self._flat(batch.next_obs))
        if self.double:
            best = jnp.argmax(net.apply(params, self._flat(batch.next_obs)), -1)
            v_next = jnp.take_along_axis(q_next, best[:, None], 1)[:, 0]
        else:
            v_next = jnp.max(q_next, -1)
        y = batch.reward[:, 0] + hparams.gamma * (1.0 - batch.terminated) * v_next
        err = jax.lax.stop_gradient(y) - q
        return jnp.mean(self.td_loss(err)), {"q_mean": jnp.mean(q),
                                            "td_abs": jnp.mean(jnp.abs(err))}
