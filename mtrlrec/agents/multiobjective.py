r"""Multi-objective and constrained linear Thompson sampling.

Both agents keep one NIG Bayesian linear regression per objective and arm
(the :class:`mtrlrec.agents.linear.LinTS` model, stacked over the M reward
components, e.g. ``(click, conversion)`` or ``(revenue, discount spend)``),
draw one Thompson sample :math:`\tilde r_{m,a}(x)` per objective and arm,
and act on a scalarisation of the samples:

* :class:`MultiObjectiveLinTS`:
  :math:`a_t = \arg\max_a \sum_m w_m \tilde r_{m,a}(x_t)` (linear
  scalarisation; e.g. clicks only ``w = (1, 0)`` or clicks + 5·conversions
  ``w = (1, 5)``).
* :class:`ConstrainedLinTS`: maximise :math:`E[w^\top r]` subject to
  :math:`E[u^\top r] \le \kappa` via the Lagrangian
  :math:`w^\top \tilde r - \lambda\,u^\top \tilde r`, with the multiplier
  updated online by projected (sub)gradient ascent on the dual,
  :math:`\lambda \leftarrow \mathrm{clip}(\lambda + \eta (u^\top r_t - \kappa), 0, \lambda_{max})`
  (the primal-dual scheme of Agrawal & Devanur, "Bandits with concave
  rewards and convex knapsacks", EC 2014, §3, specialised to one linear
  constraint). Examples: a maximum discount spend per round,
  :math:`u = (0, 1)`, :math:`\kappa = b` on ``(revenue, spend)``; a minimum
  conversion rate :math:`c`: :math:`E[\mathrm{conv}] \ge c\,E[\mathrm{click}]`
  is :math:`u = (c, -1)`, :math:`\kappa = 0` on ``(click, conversion)``.

Per step each objective's model gets the rank-one update of
:func:`mtrlrec.agents.linear.nig_observe`, :math:`O(M d^2)`.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.agents.linear import (
    NIGPosterior, _check_nig, _features, _round_robin, argmax_random_tiebreak, context_dim,
    nig_observe, nig_prior, nig_sample_values,
)
from mtrlrec.core.agent import FLOAT32_EXACT_STEPS, Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats
from mtrlrec.core.spaces import num_actions


@flax.struct.dataclass
class MOHParams:
    a0: jax.Array
    b0: jax.Array
    lagrange_lr: jax.Array  # η (ConstrainedLinTS only)


@flax.struct.dataclass
class MOState:
    hparams: MOHParams
    post: NIGPosterior  # every leaf has a leading [M] objective axis
    lam: jax.Array  # [] Lagrange multiplier (0 for the unconstrained agent)
    gap: jax.Array  # [] last constraint gap u·r - κ (0 for the unconstrained agent)
    t: jax.Array


def _reward_vector(reward, m, owner):
    reward = jnp.asarray(reward, jnp.float32)
    if reward.ndim != 1 or reward.shape[0] != m:
        raise ConfigError(
            f"{owner} has {m} objective weights but the environment's reward has shape "
            f"{tuple(reward.shape)}; the reward must be a vector of {m} components.")
    return reward


@gin.configurable
class MultiObjectiveLinTS(Agent):
    r"""One LinTS model per objective, acting on :math:`\sum_m w_m \tilde r_{m,a}(x)`.

    Args:
      objective_weights: w, one weight per reward component (e.g. (1, 5)).
      a0, b0, lambda_prior, initial_pulls, fit_intercept: as in ``LinTS``.
    """

    max_exact_steps = FLOAT32_EXACT_STEPS  # float32 posterior sums (see Agent)

    _owner = "MultiObjectiveLinTS"

    def __init__(self, objective_weights: Sequence[float] = (1.0, 0.0), a0: float = 6.0,
                 b0: float = 6.0, lambda_prior: float = 0.25, initial_pulls: int = 2,
                 fit_intercept: bool = True):
        o = self._owner
        self.objective_weights = check_floats(f"{o}.objective_weights", objective_weights)
        if not self.objective_weights:
            raise ConfigError(f"{o}.objective_weights must not be empty.")
        self.a0, self.b0, self.lambda_prior, self.initial_pulls = _check_nig(
            o, a0, b0, lambda_prior, initial_pulls)
        self.fit_intercept = bool(fit_intercept)
        self.num_objectives = len(self.objective_weights)

    def hparams(self):
        return MOHParams(jnp.float32(self.a0), jnp.float32(self.b0), jnp.float32(0.0))

    def check_compatible(self, obs_spec, action_spec):
        context_dim(obs_spec, self._owner)
        num_actions(action_spec)

    def init(self, key, obs_spec, action_spec):
        d = context_dim(obs_spec, self._owner) + int(self.fit_intercept)
        k = num_actions(action_spec)
        prior = nig_prior(k, d, self.lambda_prior)
        post = jax.tree.map(lambda a: jnp.broadcast_to(a, (self.num_objectives,) + a.shape),
                            prior)
        return MOState(self.hparams(), post, jnp.float32(0.0), jnp.float32(0.0), jnp.int32(0))

    def sampled_rewards(self, key, state, obs) -> jax.Array:
        """Thompson samples of every objective for every arm, ``[M, K]``."""
        x = _features(obs, self.fit_intercept)
        keys = jax.random.split(key, self.num_objectives)
        return jax.vmap(lambda k, p: nig_sample_values(k, p, x, state.hparams.a0,
                                                       state.hparams.b0))(keys, state.post)

    def _scores(self, samples, state):
        return jnp.asarray(self.objective_weights, jnp.float32) @ samples

    def act(self, key, state, obs, *, greedy=False):
        k_s, k_t = jax.random.split(key)
        samples = self.sampled_rewards(k_s, state, obs)
        action = argmax_random_tiebreak(k_t, self._scores(samples, state))
        return _round_robin(state.t, self.initial_pulls, samples.shape[1], action), state, {}

    def _observe(self, state, transition):
        x = _features(transition.obs, self.fit_intercept)
        r = _reward_vector(transition.reward, self.num_objectives, self._owner)
        post = jax.vmap(lambda p, rm: nig_observe(p, transition.action, x, rm))(state.post, r)
        return state.replace(post=post, t=state.t + 1), r

    def observe(self, key, state, transition):
        state, _ = self._observe(state, transition)
        return state


@gin.configurable
class ConstrainedLinTS(MultiObjectiveLinTS):
    r"""Lagrangian LinTS: maximise :math:`E[w^\top r]` s.t. :math:`E[u^\top r] \le \kappa`.

    Args:
      objective_weights: w (e.g. (1, 0) for the first component).
      constraint_weights: u, one weight per reward component.
      constraint_level: κ, the bound on :math:`E[u^\top r]` per round.
      lagrange_lr: dual step size η > 0 (swept as ``hparams.lagrange_lr``).
      max_multiplier: upper clip of λ (> 0).
      a0, b0, lambda_prior, initial_pulls, fit_intercept: as in ``LinTS``.
    """

    _owner = "ConstrainedLinTS"

    def __init__(self, objective_weights: Sequence[float] = (1.0, 0.0),
                 constraint_weights: Sequence[float] = (0.0, 1.0),
                 constraint_level: float = 0.0, lagrange_lr: float = 0.01,
                 max_multiplier: float = 100.0, a0: float = 6.0, b0: float = 6.0,
                 lambda_prior: float = 0.25, initial_pulls: int = 2,
                 fit_intercept: bool = True):
        super().__init__(objective_weights, a0, b0, lambda_prior, initial_pulls, fit_intercept)
        o = self._owner
        self.constraint_weights = check_floats(f"{o}.constraint_weights", constraint_weights,
                                               length=self.num_objectives)
        self.constraint_level = check_float(f"{o}.constraint_level", constraint_level)
        self.lagrange_lr = check_float(f"{o}.lagrange_lr", lagrange_lr, low=0.0, low_open=True)
        self.max_multiplier = check_float(f"{o}.max_multiplier", max_multiplier, low=0.0,
                                          low_open=True)

    def hparams(self):
        return MOHParams(jnp.float32(self.a0), jnp.float32(self.b0),
                         jnp.float32(self.lagrange_lr))

    def _scores(self, samples, state):
        w = jnp.asarray(self.objective_weights, jnp.float32)
        u = jnp.asarray(self.constraint_weights, jnp.float32)
        return (w - state.lam * u) @ samples

    def observe(self, key, state, transition):
        state, r = self._observe(state, transition)
        g = jnp.dot(jnp.asarray(self.constraint_weights, jnp.float32), r) - self.constraint_level
        lam = jnp.clip(state.lam + state.hparams.lagrange_lr * g, 0.0, self.max_multiplier)
        return state.replace(lam=lam, gap=g)

    def learn(self, key, state):
        # learn_every = 1: the multiplier after every step, logged as agent/lambda.
        return state, {"lambda": state.lam, "constraint_gap": state.gap}
