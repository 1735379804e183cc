r"""SlateQ (Ie et al. 2019, arXiv:1905.12767; RecSim 0.2.4 ``SlateDecompQAgent``).

SlateQ learns an item-wise long-term value :math:`\bar Q(s, i)`, the value of
the user consuming item ``i`` in state ``s``, and combines it with a
conditional choice model (§3–4) into the value of a slate,
:math:`Q(s, A) = \sum_{i \in A} P(i \mid s, A) \bar Q(s, i)`
(:mod:`mtrlrec.agents.slate_optim`). Only transitions with a click update
:math:`\bar Q` (§4.2, Eq. 7), on the clicked item ``i``:

.. math::

    \bar Q(s, i) \leftarrow r + \gamma (1 - d)\, V(s'), \qquad
    V(s') = \begin{cases}
       \sum_{j \in A'} P(j \mid s', A') \bar Q^-(s', j) & \text{SARSA (on-policy, } A' \text{ the next slate shown)}\\
       \max_{A} \sum_{j \in A} P(j \mid s', A) \bar Q^-(s', j) & \text{Q-learning, } \max \text{ by top-k, greedy or exhaustive search}
    \end{cases}

with :math:`\bar Q^-` the target network, trained with a squared loss (RecSim's
``_build_train_op``). The agents of §7 are configurations (``target`` and
``select``): SARSA-TS = (``'sarsa'``, ``'topk'``), QL-OT-GS = (``'optimal'``,
``'greedy'``), ..., and the myopic MYOP-* are γ = 0.

The choice model is the known one (RecSim's agent recomputes
:math:`v_i = u \cdot d_i - n_{\min}` and :math:`v_\varnothing = m_\varnothing - n_{\min}`
from the fully observed user, §6.2), or ``choice_model = 'learned'``: a
multinomial logit :math:`v_i = \exp f_\phi([u; d_i])`, :math:`v_\varnothing = \exp b_\phi`
fitted by cross-entropy to which position (or none) was clicked, in the same
gradient step as :math:`\bar Q`.

One difference from RecSim 0.2.4: its target network is evaluated on the
*current* states of the replayed transitions (``_network_adapter(self._replay.states,
'Target')`` in ``_build_networks``), while the choice scores come from the next
states; here both come from the next state, as Eq. 7 states.
"""

from __future__ import annotations

import types
from typing import Sequence

import gin
import jax
import jax.numpy as jnp

from mtrlrec.agents import slate_optim
from mtrlrec.agents.dqn import _DOPAMINE
from mtrlrec.agents.q_learning import SlateQLearner
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.choice import ChoiceModel, MultinomialProportional
from mtrlrec.models.heads import ItemwiseQ

TARGETS = ("sarsa",) + slate_optim.SELECTORS


@gin.configurable
class SlateQ(SlateQLearner):
    """SlateQ with the known or a learned choice model (module docstring).

    Args:
      target: ``'sarsa'``, or the Q-learning maximiser ``'topk'``, ``'greedy'``
        or ``'optimal'``.
      select: the slate optimiser used to act: ``'topk'``, ``'greedy'`` or ``'optimal'``.
      choice_model: a conditional :class:`~mtrlrec.envs.choice.ChoiceModel`
        (default ``MultinomialProportional()``, the environment's), or
        ``'learned'``.
      choice_hidden: hidden sizes of the learned choice model's scorer.
      hidden: hidden sizes of the :math:`\\bar Q` network (RecSim's (256, 32)).
      reward_weights: scalarisation of a vector reward (None: scalar reward).
      gamma, learning_rate, optimizer, batch_size, replay_capacity, min_replay,
      update_period, target_update_period, target_tau, epsilon_train,
      epsilon_eval, epsilon_decay_steps, loss: Dopamine's DQN defaults, as RecSim's
        agent (:class:`~mtrlrec.agents.q_learning.SlateQLearner`), squared loss.
    """

    window = 2  # the next step's slate, for SARSA

    def __init__(self, target: str = "sarsa", select: str = "topk",
                 choice_model: ChoiceModel | str | None = None,
                 choice_hidden: Sequence[int] = (32,), hidden: Sequence[int] = (256, 32),
                 reward_weights: Sequence[float] | None = None, loss: str = "mse", **kwargs):
        super().__init__(hidden=hidden, loss=loss, reward_weights=reward_weights,
                         multi_task=False, **{**_DOPAMINE, **kwargs})
        if target not in TARGETS:
            raise ConfigError(f"SlateQ.target must be one of {TARGETS}, got {target!r}.")
        if select not in slate_optim.SELECTORS:
            raise ConfigError(
                f"SlateQ.select must be one of {slate_optim.SELECTORS}, got {select!r}.")
        self.target, self.select = target, select
        self.learned_choice = choice_model == "learned"
        if not self.learned_choice:
            cm = MultinomialProportional() if choice_model is None else choice_model
            if not isinstance(cm, ChoiceModel):
                raise ConfigError(f"SlateQ.choice_model must be a ChoiceModel (e.g. "
                                  f"@MultinomialProportional()) or 'learned', got {choice_model!r}.")
            values = dict(no_click_mass=1.0, min_normalizer=-1.0, temperature=1.0)
            values.update(cm.param_values())
            self._choice_params = types.SimpleNamespace(**values)
            cm.weights(jnp.zeros((1,)), self._choice_params)  # not conditional: one line now
            self.choice_model = cm
        self.choice_hidden = tuple(choice_hidden)

    def _check_slate(self, m, k):
        for name, how in (("select", self.select), ("target", self.target)):
            if how != "sarsa":
                slate_optim.check_selector(f"SlateQ.{name}", how, m, k)

    # -- networks ------------------------------------------------------------------
    def _q_net(self):
        return ItemwiseQ(self.hidden, 1, user_state=self.user_state,
                         state_features=self.state_features)

    def _choice_net(self):
        # The learned choice model scores [user state; item] like the Q network.
        return ItemwiseQ(self.choice_hidden, 1, user_state=self.user_state,
                         state_features=self.state_features)

    def _init_params(self, key, obs):
        kq, kc = jax.random.split(key)
        params = {"q": self._q_net().init(kq, obs)}
        if self.learned_choice:
            params["choice"] = {"f": self._choice_net().init(kc, obs), "null": jnp.zeros(())}
        return params

    def q_values(self, params, obs) -> jax.Array:
        """:math:`\\bar Q(s, i)` ``[N, m]``."""
        return self._q_net().apply(params["q"], obs)[..., 0]

    def choice_logits(self, params, obs) -> tuple[jax.Array, jax.Array]:
        """Learned model: logits ``[N, m]`` of the items and ``[N]`` of no click."""
        f = self._choice_net().apply(params["choice"]["f"], obs)[..., 0]
        return f, jnp.broadcast_to(params["choice"]["null"], f.shape[:1])

    def choice_weights(self, params, obs) -> tuple[jax.Array, jax.Array]:
        """``(v [N, m], v_null [N])`` of the conditional choice model."""
        if self.learned_choice:
            f, null = self.choice_logits(params, obs)
            c = jnp.maximum(jnp.max(f, -1), null)
            return jnp.exp(f - c[:, None]), jnp.exp(null - c)
        scores = jnp.einsum("nmd,nd->nm", obs["doc"], obs["user"])
        return self.choice_model.weights(scores, self._choice_params)

    # -- acting --------------------------------------------------------------------
    def _greedy_slates(self, params, obs):
        q = self.q_values(params, obs)
        v, v_null = jax.lax.stop_gradient(self.choice_weights(params, obs))
        k = self.slate_size
        return jax.vmap(lambda a, b, c: slate_optim.select(self.select, a, b, c, k))(q, v, v_null)

    # -- learning ------------------------------------------------------------------
    def _loss(self, params, target, batch, hparams, key):
        k = self.slate_size
        first = jax.tree.map(lambda x: x[:, 0], batch)  # the sampled transition
        click = first.extras["click"]                                     # [B, k]
        clicked = jnp.sum(click, -1)                                      # [B] 0 or 1
        q = self.q_values(params, first.obs)                              # [B, m]
        q_click = jnp.sum(jnp.take_along_axis(q, first.action, 1) * click, -1)
        nxt = first.next_obs
        q_next = self.q_values(target, nxt)
        v, v_null = jax.lax.stop_gradient(self.choice_weights(params, nxt))
        best = jax.vmap(lambda a, b, c: slate_optim.max_value(
            self.select if self.target == "sarsa" else self.target, a, b, c, k))(q_next, v, v_null)
        if self.target == "sarsa":
            on_policy = jax.vmap(slate_optim.slate_value)(q_next, v, v_null, batch.action[:, 1])
            # After a time limit the next slate in the buffer is the next user's: bootstrap
            # from the slate the agent would show instead.
            v_next = jnp.where(first.truncated, best, on_policy)
        else:
            v_next = best
        y = first.reward[:, 0] + hparams.gamma * (1.0 - first.terminated) * v_next
        err = jax.lax.stop_gradient(y) - q_click
        loss = jnp.sum(clicked * self.td_loss(err)) / jnp.maximum(jnp.sum(clicked), 1.0)
        aux = {"q_mean": jnp.mean(q), "clicked_share": jnp.mean(clicked)}
        if self.learned_choice:
            f, null = self.choice_logits(params, first.obs)
            logits = jnp.concatenate([jnp.take_along_axis(f, first.action, 1), null[:, None]], -1)
            outcome = jnp.concatenate([click, 1.0 - clicked[:, None]], -1)
            nll = -jnp.mean(jnp.sum(outcome * jax.nn.log_softmax(logits), -1))
            loss, aux["choice_nll"] = loss + nll, nll
        return loss, aux
