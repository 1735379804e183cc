r"""Initial strategies: how a bandit agent behaves before it has data.

* :class:`UniformPrior`: Beta(s, s) on every arm (s = 1: the uniform prior).
* :class:`ExpertPrior`: an expert's belief as Beta pseudo-counts, given either
  directly (``alpha``, ``beta``), as prior means with a strength
  (:math:`\alpha_a = 1 + n\,m_a`, :math:`\beta_a = 1 + n(1 - m_a)`), or as
  logits (:math:`m_a = \sigma(\ell_a)`). Pass it as ``ThompsonSampling.prior``.
* :class:`SoftmaxWarmStart`: for the first ``num_steps`` pulls act with a
  softmax policy :math:`\pi = \mathrm{softmax}(\ell)` whose logits live in the
  agent state (so a meta-learner can learn them across tasks, and they are
  also learned online by the gradient-bandit rule of Sutton & Barto 2018,
  §2.8, with step size ``step_size``), while the wrapped agent learns from
  every transition; afterwards the wrapped agent acts.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.agents.bandits import _BanditAgent, _categorical, _scalar_reward
from mtrlrec.core.agent import FLOAT32_EXACT_STEPS
from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import num_actions


@gin.configurable
class UniformPrior:
    """Beta(strength, strength) on every arm (strength 1: uniform on [0, 1])."""

    def __init__(self, strength: float = 1.0):
        self.strength = check_float("UniformPrior.strength", strength, low=0.0, low_open=True)

    def pseudo_counts(self, num_arms: int) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha [K], beta [K])``."""
        v = np.full(num_arms, self.strength, np.float32)
        return v, v.copy()


@gin.configurable
class ExpertPrior:
    """An expert's prior over Bernoulli arm means, as Beta pseudo-counts.

    Give exactly one of: ``alpha`` and ``beta`` (K pseudo-counts > 0 each);
    ``means`` (K values in [0, 1]); ``logits`` (K reals). With means or logits,
    :math:`\\alpha = 1 + n m`, :math:`\\beta = 1 + n (1 - m)` with n = ``strength``.

    Args:
      alpha, beta: pseudo-successes / pseudo-failures.
      means: prior means.
      logits: prior log-odds.
      strength: n >= 0 pseudo-observations behind ``means``/``logits``.
    """

    def __init__(self, alpha: Sequence[float] | None = None,
                 beta: Sequence[float] | None = None,
                 means: Sequence[float] | None = None,
                 logits: Sequence[float] | None = None, strength: float = 10.0):
        given = [x is not None for x in ((alpha, beta), means, logits)]
        given[0] = alpha is not None or beta is not None
        if sum(given) != 1:
            raise ConfigError(
                "ExpertPrior needs exactly one of (alpha and beta), means or logits."
            )
        self.strength = check_float("ExpertPrior.strength", strength, low=0.0)
        if given[0]:
            if alpha is None or beta is None:
                raise ConfigError("ExpertPrior.alpha and ExpertPrior.beta must be given together.")
            a = check_floats("ExpertPrior.alpha", alpha)
            b = check_floats("ExpertPrior.beta", beta, length=len(a))
            for name, vals in (("alpha", a), ("beta", b)):
                for i, v in enumerate(vals):
                    if not v > 0:
                        raise ConfigError(f"ExpertPrior.{name}[{i}] must be > 0, got {v}.")
            self._alpha, self._beta = np.asarray(a, np.float32), np.asarray(b, np.float32)
        else:
            if means is not None:
                m = np.asarray(check_floats("ExpertPrior.means", means, low=0.0, high=1.0))
            else:
                m = 1.0 / (1.0 + np.exp(-np.asarray(check_floats("ExpertPrior.logits", logits))))
            self._alpha = (1.0 + self.strength * m).astype(np.float32)
            self._beta = (1.0 + self.strength * (1.0 - m)).astype(np.float32)

    def pseudo_counts(self, num_arms: int) -> tuple[np.ndarray, np.ndarray]:
        if self._alpha.shape[0] != num_arms:
            raise ConfigError(
                f"ExpertPrior has {self._alpha.shape[0]} entries but the bandit has "
                f"{num_arms} arms."
            )
        return self._alpha.copy(), self._beta.copy()


@flax.struct.dataclass
class WarmStartHParams:
    step_size: jax.Array


@flax.struct.dataclass
class WarmStartState:
    hparams: WarmStartHParams
    inner: Any            # the wrapped agent's state
    logits: jax.Array     # [K] softmax logits of the warm-start policy
    baseline: jax.Array   # average reward during warm start
    t: jax.Array


@gin.configurable
class SoftmaxWarmStart(_BanditAgent):
    """Acts with :math:`\\mathrm{softmax}(\\ell)` for ``num_steps`` pulls, then hands over.

    The wrapped ``agent`` is updated with every transition (also those of the
    warm start). During the warm start the logits follow the gradient-bandit
    rule :math:`\\ell \\leftarrow \\ell + \\alpha (r - \\bar r)(\\mathbb 1_A - \\pi)`
    (``step_size`` α = 0 keeps them fixed, e.g. when they are meta-learned).

    Args:
      agent: the wrapped agent.
      logits: K initial logits (default zeros: uniform).
      num_steps: warm-start length >= 0.
      step_size: α >= 0 (swept as ``step_size``).
    """

    def __init__(self, agent: Agent = gin.REQUIRED, logits: Sequence[float] | None = None,
                 num_steps: int = 100, step_size: float = 0.0):
        if not isinstance(agent, Agent):
            raise ConfigError(f"SoftmaxWarmStart.agent must be an agent, got {agent!r}.")
        self.agent = agent
        self.learn_every = agent.learn_every
        self.has_greedy = agent.has_greedy
        self.max_exact_steps = FLOAT32_EXACT_STEPS  # the warm start's float32 reward baseline
        self.logits = None if logits is None else check_floats("SoftmaxWarmStart.logits", logits)
        self.num_steps = check_int("SoftmaxWarmStart.num_steps", num_steps, min_value=0)
        self.step_size = check_float("SoftmaxWarmStart.step_size", step_size, low=0.0)

    def check_compatible(self, obs_spec, action_spec) -> None:
        super().check_compatible(obs_spec, action_spec)
        k = num_actions(action_spec)
        if self.logits is not None and len(self.logits) != k:
            raise ConfigError(
                f"SoftmaxWarmStart.logits has {len(self.logits)} entries but the bandit has "
                f"{k} arms."
            )
        self.agent.check_compatible(obs_spec, action_spec)

    def hparams(self):
        return WarmStartHParams(jnp.float32(self.step_size))

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        logits = jnp.zeros(k, jnp.float32) if self.logits is None else jnp.asarray(
            self.logits, jnp.float32)
        return WarmStartState(self.hparams(), self.agent.init(key, obs_spec, action_spec),
                              logits, jnp.float32(0.0), jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        k_soft, k_inner = jax.random.split(key)
        a_soft = _categorical(k_soft, jax.nn.softmax(state.logits))
        a_inner, inner, info = self.agent.act(k_inner, state.inner, obs, greedy=greedy)
        if greedy:  # evaluation: the wrapped agent's own greedy policy
            return a_inner, state.replace(inner=inner), info
        warm = state.t < self.num_steps
        action = jnp.where(warm, a_soft, a_inner).astype(jnp.int32)
        return action, state.replace(inner=inner), {"warm_start": warm}

    def learn(self, key, state):
        inner, metrics = self.agent.learn(key, state.inner)
        return state.replace(inner=inner), metrics

    def observe(self, key, state, transition):
        inner = self.agent.observe(key, state.inner, transition)
        a, r = transition.action, _scalar_reward(transition.reward)
        warm = state.t < self.num_steps
        pi = jax.nn.softmax(state.logits)
        base = jnp.where(state.t == 0, r, state.baseline)
        onehot = jax.nn.one_hot(a, pi.shape[0], dtype=jnp.float32)
        step = jnp.where(warm, state.hparams.step_size, 0.0)
        logits = state.logits + step * (r - base) * (onehot - pi)
        t = state.t + 1
        baseline = state.baseline + (r - state.baseline) / t.astype(jnp.float32)
        return state.replace(inner=inner, logits=logits, baseline=baseline, t=t)
