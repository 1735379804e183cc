r"""REINFORCE with the top-K off-policy correction (Chen et al., WSDM 2019, arXiv:1812.02353).

A softmax policy over items :math:`\pi_\theta(a|s)` learns from events
:math:`(s, a, R)` (state, item, discounted return) written by a behaviour policy
:math:`\beta`, with the per-event gradient

.. math::

    g = \underbrace{\min\!\Big(\frac{\pi_\theta(a|s)}{\beta(a|s)}, c\Big)}_{\text{capped weight}}
        \;\lambda_K(s, a)\; (R - b(s))\; \nabla_\theta \log \pi_\theta(a|s),
    \qquad \lambda_K(s, a) = K\,(1 - \pi_\theta(a|s))^{K-1},

(``correction='topk'``); ``'standard'`` drops :math:`\lambda_K` (the ordinary
off-policy correction), ``'none'`` drops the weight as well (on-policy REINFORCE).
Weights and :math:`\lambda_K` are constants of the gradient (stopped).

**Why λ_K: the top-K objective.** A policy that shows the top ``K`` of ``K``
independent draws from π shows item ``a`` with probability
:math:`\alpha(a) = 1 - (1 - \pi(a))^K`, so the expected reward of a context-free
set of items is :math:`J(\pi) = \sum_a \alpha(a)\, r(a)`. Since
:math:`\nabla \alpha(a) = K (1-\pi(a))^{K-1} \nabla \pi(a) = \lambda_K(a)\,\pi(a)\nabla\log\pi(a)`,

.. math::

    \mathbb E_{a\sim\beta}\Big[\frac{\pi(a)}{\beta(a)} \lambda_K(a) r(a) \nabla\log\pi(a)\Big]
    = \sum_a \lambda_K(a)\, r(a)\, \nabla\pi(a) = \nabla J(\pi),

while the standard correction's expectation is :math:`\nabla \sum_a \pi(a) r(a)`,
maximised by putting all mass on the best item. :func:`expected_gradient` is this
expectation in closed form (no sampling noise).

**The optimum of J for the toy** (r(a1) = 10, r(a2) = 9, r = 1 for the other 8
of 10 items, K = 2). Maximise :math:`\sum_a (1 - (1-\pi_a)^2) r_a` on the simplex.
The objective is concave (each term is), so the KKT conditions are sufficient:
with multiplier μ, :math:`2 (1 - \pi_a) r_a = \mu` where :math:`\pi_a > 0` and
:math:`2 r_a \le \mu` where :math:`\pi_a = 0`. Guess the support {a1, a2}:
:math:`\pi_a = 1 - \mu / (2 r_a)` and :math:`\pi_1 + \pi_2 = 1` give
:math:`2 - \frac{\mu}{2}(\frac1{10} + \frac19) = 1`, so :math:`\mu/2 = 90/19`,
:math:`\pi(a_1) = 1 - 9/19 = 10/19 \approx 0.526` and
:math:`\pi(a_2) = 1 - 10/19 = 9/19 \approx 0.474`. For the other items
:math:`2 r_a = 2 \le \mu = 180/19 \approx 9.47`, so they get no mass, and the
guess is the optimum. With a softmax the others' logits only tend to
:math:`-\infty`, so the learned probabilities approach (10/19, 9/19) from below.
The standard correction's objective :math:`\sum_a \pi_a r_a` is maximised at
:math:`\pi(a_1) = 1`.

**Behaviour policies** (``behaviour``):

* ``'self'``: online; the agent acts with π (slates by sequential sampling
  without replacement) and β is π at acting time;
* ``'uniform'``: a uniformly random logger (items, or slates of distinct items);
* ``'stratified'``: user ``i`` of the batch logs item ``i mod A`` (``Discrete``
  only; ``num_envs`` a multiple of ``A``): each batch holds every item equally
  often, so the batch gradient *is* the expectation under the uniform logger,
  :func:`expected_gradient` computed by the engine (the toy's "exact" rows);
* an agent (``@OracleGreedySlate()``, ``@RandomSlate()``, ...): a log written by another
  policy in the simulator; its probabilities are unknown.

``behaviour_probs='known'`` uses the logger's probability of the event item
(π at acting time, or ``1/m``); ``'head'`` estimates β with the network's second
softmax, trained by cross-entropy on the logged items with its gradient stopped
into the shared item encoder (Chen et al.'s estimated behaviour policy).
Probabilities below ``min_behaviour_prob`` are raised to it, never divided by
(NaN-free), and counted as ``agent/behaviour_clipped`` (events per learn call).

**Events on slates.** A step shows ``k`` items; the event's item is the clicked
one (``info['slate_click']``), or the first position's when nothing is clicked,
and its π and β are the item softmax's (as the paper treats each logged item as
one draw of the softmax). Returns are discounted within the rollout of
``rollout_length`` steps (no bootstrap), with an optional per-task value baseline
``b(s) = Σ_t w_t V_t(s)`` (``baseline=True``).

Greedy (evaluation) mode shows the ``k`` most probable items.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import optax

from mtrlrec.agents.policy_gradient import PolicyGradientBase, _zeros_like_spec
from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.models import policies
from mtrlrec.train.rollout import discounted_returns

CORRECTIONS = ("topk", "standard", "none")
BEHAVIOURS = ("self", "uniform", "stratified")
MAX_LOGGED_PROBS = 16  # Discrete item sets up to this size log π(a_i) as agent/pi_<i>


def expected_gradient(logits: jax.Array, rewards: jax.Array, k: int,
                      correction: str = "topk") -> jax.Array:
    r"""The expected corrected gradient w.r.t. softmax logits, for any behaviour policy.

    ``Σ_a c_a π_a (e_a − π)`` with ``c_a = λ_K(a) r_a`` (``'topk'``) or ``r_a``
    (``'standard'``): the gradient of ``Σ_a (1 − (1 − π_a)^K) r_a`` or of
    ``Σ_a π_a r_a`` (module docstring). ``[A]`` -> ``[A]``.
    """
    pi = jax.nn.softmax(logits)
    lam = policies.topk_multiplier(pi, k) if correction == "topk" else jnp.ones_like(pi)
    c = lam * rewards * pi
    return c - jnp.sum(c) * pi


def topk_objective(pi: jax.Array, rewards: jax.Array, k: int) -> jax.Array:
    """``J(π) = Σ_a (1 − (1 − π_a)^K) r_a``, the expected reward of the top-K set."""
    return jnp.sum((1.0 - (1.0 - pi) ** k) * rewards)


@flax.struct.dataclass
class ReinforceHParams:
    learning_rate: jax.Array
    gamma: jax.Array
    weight_cap: jax.Array
    entropy_coef: jax.Array
    value_coef: jax.Array


@flax.struct.dataclass
class EventRollout:
    obs: Any  # [T, N, ...]
    item: jax.Array  # [T, N] the event's item
    beta: jax.Array  # [T, N] the logger's probability of it (behaviour_probs='known')
    rewards: jax.Array  # [T, N, num_tasks]
    terminated: jax.Array
    truncated: jax.Array


@flax.struct.dataclass
class ReinforceState:
    hparams: ReinforceHParams
    params: Any
    opt_state: Any
    rollout: EventRollout
    behaviour_state: Any
    t: jax.Array


@gin.configurable
class TopKReinforce(PolicyGradientBase):
    """REINFORCE with the top-K off-policy correction (see the module docstring).

    Args:
      top_k: ``K`` of ``λ_K``, ``1 <= K <=`` the number of candidates.
      correction: ``'topk'``, ``'standard'`` or ``'none'``.
      behaviour: ``'self'``, ``'uniform'``, ``'stratified'`` or an agent (the logger).
      behaviour_probs: ``'known'`` or ``'head'`` (estimated; forced for an agent logger).
      weight_cap: cap ``c`` of ``π/β`` (None: no cap), > 0.
      min_behaviour_prob: β is clipped from below at this value (counted).
      rollout_length: steps per user between updates (``learn_every``).
      learning_rate: step size (``state.hparams``), > 0.
      optimizer: ``'adam'`` or ``'sgd'`` (plain gradient ascent, the toy's).
      gamma: discount of the returns within a rollout.
      baseline: subtract the scalarised per-task value ``Σ_t w_t V_t(s)``.
      entropy_coef, value_coef: entropy bonus and value-loss weights.
      max_grad_norm: gradient clipping (global norm).
      hidden_sizes, tasks, task_weights: as :class:`~mtrlrec.agents.actor_critic.PPO`.
    """

    _owner = "TopKReinforce"

    def __init__(self, top_k: int = 2, correction: str = "topk", behaviour: Any = "self",
                 behaviour_probs: str = "known", weight_cap: float | None = None,
                 min_behaviour_prob: float = 1e-6, rollout_length: int = 8,
                 learning_rate: float = 1e-3, optimizer: str = "adam", gamma: float = 0.9,
                 baseline: bool = False, entropy_coef: float = 0.0, value_coef: float = 0.5,
                 max_grad_norm: float = 10.0, hidden_sizes: Sequence[int] = (64,),
                 tasks: Sequence[str] = (), task_weights: Sequence[float] | None = None):
        o = self._owner
        self.top_k = check_int(f"{o}.top_k", top_k, min_value=1)
        if correction not in CORRECTIONS:
            raise ConfigError(f"{o}.correction must be one of {CORRECTIONS}, got {correction!r}.")
        self.correction = correction
        if isinstance(behaviour, Agent):
            self.behaviour_agent, self.behaviour = behaviour, "agent"
        elif behaviour in BEHAVIOURS:
            self.behaviour_agent, self.behaviour = None, behaviour
        else:
            raise ConfigError(f"{o}.behaviour must be one of {BEHAVIOURS} or an agent "
                              f"(e.g. @RandomSlate()), got {behaviour!r}.")
        if behaviour_probs not in ("known", "head"):
            raise ConfigError(f"{o}.behaviour_probs must be 'known' or 'head', got "
                              f"{behaviour_probs!r}.")
        self.behaviour_head = behaviour_probs == "head" or self.behaviour == "agent"
        self.weight_cap = float("inf") if weight_cap is None else check_float(
            f"{o}.weight_cap", weight_cap, low=0.0, low_open=True)
        self.min_behaviour_prob = check_float(f"{o}.min_behaviour_prob", min_behaviour_prob,
                                              low=0.0, high=1.0, low_open=True)
        self.rollout_length = check_int(f"{o}.rollout_length", rollout_length, min_value=1)
        self.learn_every = self.rollout_length
        self.gamma = check_float(f"{o}.gamma", gamma, low=0.0, high=1.0)
        self.baseline = bool(baseline)
        self.entropy_coef = check_float(f"{o}.entropy_coef", entropy_coef, low=0.0)
        self.value_coef = check_float(f"{o}.value_coef", value_coef, low=0.0)
        self._common_init(hidden_sizes, learning_rate, max_grad_norm, tasks, task_weights)
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"{o}.optimizer must be 'adam' or 'sgd', got {optimizer!r}.")
        if optimizer == "sgd":
            self.optimizer = optax.clip_by_global_norm(self.max_grad_norm)

    def hparams(self):
        f = jnp.float32
        return ReinforceHParams(f(self.learning_rate), f(self.gamma), f(self.weight_cap),
                                f(self.entropy_coef), f(self.value_coef))

    # -- checks before compilation ---------------------------------------------------
    def _spaces(self, obs_spec, action_spec):
        super()._spaces(obs_spec, action_spec)
        o = self._owner
        if self.top_k > self.num_items:
            raise ConfigError(
                f"{o}.top_k K={self.top_k} exceeds the {self.num_items} candidates; expected "
                f"1 <= K <= {self.num_items}.")
        if self.behaviour == "stratified" and self.slate:
            raise ConfigError(f"{o}.behaviour='stratified' needs Discrete items, not slates.")
        self._check_stratified()
        if self.behaviour_agent is not None:
            self.behaviour_agent.check_compatible(obs_spec, action_spec)

    def check_num_envs(self, num_envs):
        super().check_num_envs(num_envs)
        self._check_stratified()

    def _check_stratified(self):
        # The loop checks num_envs before the spaces; whichever comes second checks this.
        a, n = getattr(self, "num_items", None), self.num_envs
        if self.behaviour == "stratified" and a is not None and n % a:
            raise ConfigError(
                f"{self._owner}.behaviour='stratified' needs num_envs a multiple of the "
                f"{a} items (every item logged equally often), got {n}.")

    # -- the contract ------------------------------------------------------------------
    def init(self, key, obs_spec, action_spec):
        k_net, k_beh = jax.random.split(key)
        params = self.init_params(k_net, obs_spec, action_spec)
        n, t = self.num_envs, self.rollout_length
        obs0 = jax.tree.map(lambda a: jnp.zeros((t, n) + a.shape, a.dtype),
                            _zeros_like_spec(obs_spec))
        z = lambda *s, d=jnp.float32: jnp.zeros((t, n) + s, d)  # noqa: E731
        rollout = EventRollout(obs0, z(d=jnp.int32), z(), z(self.num_tasks), z(d=jnp.bool_),
                               z(d=jnp.bool_))
        beh = None
        if self.behaviour_agent is not None:
            beh = self.behaviour_agent.init(k_beh, obs_spec, action_spec)
        return ReinforceState(self.hparams(), params, self.optimizer.init(params), rollout, beh,
                              jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        obs = self.batch(obs)
        n = jax.tree.leaves(obs)[0].shape[0]
        m = self.num_items
        if greedy:
            out = self.apply(state.params, obs)
            return self.unbatch(self.greedy(out["log_probs"])), state, {}
        uniform = jnp.full((n, m), 1.0 / m, jnp.float32)
        if self.behaviour == "self":
            out = self.apply(state.params, obs)
            action, probs = self.sample(key, out["log_probs"]), jnp.exp(out["log_probs"])
        elif self.behaviour == "uniform":
            action, probs = self.sample(key, jnp.zeros((n, m), jnp.float32)), uniform
        elif self.behaviour == "stratified":
            action, probs = jnp.arange(n, dtype=jnp.int32) % m, uniform
        else:  # another policy's log: its probabilities are estimated by the head
            action, beh = self._behaviour_act(key, state.behaviour_state, obs)
            state, probs = state.replace(behaviour_state=beh), uniform
        return self.unbatch(action), state, self.unbatch({"item_probs": probs})

    def _behaviour_act(self, key, beh_state, obs):
        agent = self.behaviour_agent
        if agent.batched:
            action, beh_state, _ = agent.act(key, beh_state, self.unbatch(obs))
            return self.batch(action), beh_state
        keys = jax.random.split(key, jax.tree.leaves(obs)[0].shape[0])
        action, _, _ = jax.vmap(lambda k, o: agent.act(k, beh_state, o))(keys, obs)
        return action, beh_state

    def event_item(self, action, info):
        """The event's item ``[N]``: the clicked slate item, else the first position's."""
        if not self.slate:
            return action
        clicks = info.get("slate_click")
        if clicks is None:
            return action[:, 0]
        pos = jnp.where(jnp.any(clicks > 0, axis=-1), jnp.argmax(clicks, axis=-1), 0)
        return jnp.take_along_axis(action, pos[:, None], axis=1)[:, 0]

    def observe(self, key, state, transition):
        tr = self.batch(transition)
        item = self.event_item(jnp.asarray(tr.action, jnp.int32), tr.info)
        beta = jnp.take_along_axis(tr.act_info["item_probs"], item[:, None], axis=1)[:, 0]
        i = state.t % self.rollout_length
        ro = state.rollout
        put = lambda buf, x: buf.at[i].set(jnp.asarray(x, buf.dtype))  # noqa: E731
        ro = ro.replace(obs=jax.tree.map(put, ro.obs, tr.obs), item=put(ro.item, item),
                        beta=put(ro.beta, beta), rewards=put(ro.rewards, self.task_rewards(tr)),
                        terminated=put(ro.terminated, tr.terminated),
                        truncated=put(ro.truncated, tr.truncated))
        return state.replace(rollout=ro, t=state.t + 1)

    def learn(self, key, state):
        ro, hp = state.rollout, state.hparams
        w = self.weights()
        n = ro.item.shape[1]
        returns = discounted_returns(ro.rewards, jnp.zeros((n, self.num_tasks)), ro.terminated,
                                     ro.truncated, final_values=None, gamma=hp.gamma)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
        obs, item, beta_known, g = (jax.tree.map(flat, ro.obs), flat(ro.item), flat(ro.beta),
                                    flat(returns))

        def loss_fn(params):
            out = self.apply(params, obs)
            logp = jnp.take_along_axis(out["log_probs"], item[:, None], axis=1)[:, 0]
            pi = jax.lax.stop_gradient(jnp.exp(logp))
            if self.behaviour_head:
                blp = jnp.take_along_axis(out["behaviour_log_probs"], item[:, None], axis=1)[:, 0]
                beta, beh_loss = jax.lax.stop_gradient(jnp.exp(blp)), -jnp.mean(blp)
            else:
                beta, beh_loss = beta_known, jnp.float32(0.0)
            clipped = beta < self.min_behaviour_prob
            beta = jnp.maximum(beta, self.min_behaviour_prob)
            weight = jnp.minimum(pi / beta, hp.weight_cap) if self.correction != "none" \
                else jnp.ones_like(pi)
            lam = policies.topk_multiplier(pi, self.top_k) if self.correction == "topk" \
                else jnp.ones_like(pi)
            adv = g @ w
            v_loss = jnp.float32(0.0)
            if self.baseline:
                adv = adv - jax.lax.stop_gradient(out["values"] @ w)
                v_loss = 0.5 * jnp.mean(jnp.sum((out["values"] - g) ** 2, axis=-1))
            pg = -jnp.mean(weight * lam * adv * logp)
            ent = jnp.mean(policies.entropy(out["log_probs"]))
            loss = pg + beh_loss + hp.value_coef * v_loss - hp.entropy_coef * ent
            stats = {"policy_loss": pg, "behaviour_loss": beh_loss, "value_loss": v_loss,
                     "entropy": ent, "weight": jnp.mean(weight), "lambda_k": jnp.mean(lam),
                     "behaviour_clipped": jnp.sum(clipped.astype(jnp.float32))}
            return loss, (stats, out["log_probs"])

        (loss, (stats, log_probs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        params, opt_state, gnorm = self.adam_step(state.params, state.opt_state, grads,
                                                  hp.learning_rate)
        metrics = {"loss": loss, "grad_norm": gnorm, **stats}
        if not self.slate and self.num_items <= MAX_LOGGED_PROBS:
            pi = jnp.exp(log_probs[0])  # context-free: the same π for every event
            metrics.update({f"pi_{i}": pi[i] for i in range(self.num_items)})
        return state.replace(params=params, opt_state=opt_state), metrics


__all__ = ["CORRECTIONS", "ReinforceHParams", "ReinforceState", "TopKReinforce",
           "expected_gradient", "topk_objective"]
