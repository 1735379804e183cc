r"""Classic multi-armed bandit agents (pure, jit/vmap friendly).

Every agent keeps per-arm statistics in a ``flax.struct`` state and its swept
hyperparameters as float fields of ``state.hparams``, so a sweep over ε, c, α,
τ, Q₀ is one ``vmap`` (``loop.run(..., hparams={'epsilon': [...]})``).

* :class:`UniformAgent`: pulls arms uniformly at random.
* :class:`EpsilonGreedy`: sample means; explore with probability ε
  (constant) or :math:`\varepsilon_t = \min(1, \varepsilon K / t)` (the
  :math:`\varepsilon_n`-greedy of Auer, Cesa-Bianchi & Fischer 2002, §3, with
  ``epsilon`` = c/d²) (Sutton & Barto 2018, §2.2-2.4).
* :class:`OptimisticGreedy`: constant step size α and optimistic initial
  values :math:`Q_0` (Sutton & Barto 2018, §2.5-2.6).
* :class:`UCB1`: :math:`A_t = \arg\max_a Q_a + c\sqrt{\ln t / N_a}`
  (Auer et al. 2002, Fig. 1 with c = √2; Sutton & Barto §2.7 with c swept).
* :class:`KLUCB`: :math:`\max\{q : N_a\,\mathrm{kl}(\hat\mu_a, q) \le \ln t +
  c \ln\ln t\}` for Bernoulli rewards (Garivier & Cappé 2011, §2), solved by a
  vectorised safeguarded Newton iteration.
* :class:`ThompsonSampling`: Beta–Bernoulli posterior sampling (Chapelle & Li
  2011, Algorithm 2) with the exact fast sampler of :mod:`mtrlrec.core.sampling`.
* :class:`GaussianThompson`: Normal–Normal posterior sampling with known noise.
* :class:`Softmax`: Boltzmann exploration :math:`\pi \propto \exp(Q/\tau)`.
* :class:`EXP3`: exponential weights for adversarial bandits (Auer et al.
  2002b, "The nonstochastic multiarmed bandit problem", Fig. 1).
* :class:`GradientBandit`: preferences :math:`H` with softmax policy and
  baseline (Sutton & Barto 2018, §2.8, eq. 2.12).

Arms are chosen by ``argmax``; index policies break ties by the lowest index
(arms not yet pulled have an infinite index, so they are pulled in order),
sample-mean greedy policies break ties uniformly at random.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import jax.scipy.stats
import numpy as np

from mtrlrec.core import sampling
from mtrlrec.core import rng
from mtrlrec.core.agent import FLOAT32_EXACT_STEPS, Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.layout import flat_vmap
from mtrlrec.core.reductions import max_last
from mtrlrec.core.spaces import num_actions


def argmax_random_tiebreak(key: jax.Array, values: jax.Array) -> jax.Array:
    """Index of a maximum of ``values`` ``[K]``, chosen uniformly among ties."""
    ties = values >= max_last(values)
    noise = rng.uniform(key, values.shape)
    return jnp.argmax(jnp.where(ties, noise, -1.0)).astype(jnp.int32)


def _uniform_among(mask: jax.Array, u: jax.Array) -> jax.Array:
    """The ``floor(u·n)``-th True of ``mask`` ``[K]`` (n Trues): uniform among them for u ~ U[0, 1)."""
    running = jnp.cumsum(mask.astype(jnp.int32))
    j = jnp.minimum(jnp.floor(u * running[-1]), running[-1] - 1).astype(jnp.int32)
    return jnp.argmax(running > j).astype(jnp.int32)


def _categorical(key: jax.Array, probs: jax.Array) -> jax.Array:
    """One draw from ``probs`` ``[K]`` by inverse CDF (one uniform word)."""
    u = rng.uniform(key) * jnp.sum(probs)
    cdf = jnp.cumsum(probs)
    return jnp.minimum(jnp.sum(cdf <= u), probs.shape[0] - 1).astype(jnp.int32)


@flax.struct.dataclass
class ArmStatsState:
    """Per-arm pull counts and sample-mean estimates; shared by index policies."""

    hparams: flax.struct.PyTreeNode
    counts: jax.Array  # [K] int32 pulls N_a
    values: jax.Array  # [K] sample means Q_a
    comp: jax.Array    # [K] Kahan compensation of Q_a (the mean is Q_a - comp_a)
    t: jax.Array       # total pulls


def kahan_add_at(total: jax.Array, comp: jax.Array, i: jax.Array, x: jax.Array):
    """``total[i] += x`` with Kahan compensation ``comp[i]`` (the sum is ``total - comp``).

    A float32 running sum or mean loses the increments below half an ulp: the
    incremental mean of an arm pulled 10^7 times drifted from 0.9 to 0.72 in 4·10^7
    pulls, because positive increments (r - Q)/N rounded to nothing and negative
    ones did not. Compensation keeps what each addition drops.
    """
    y = x - comp[i]
    t = total[i] + y
    return total.at[i].set(t), comp.at[i].set((t - total[i]) - y)


def update_arm_stats(state: ArmStatsState, action: jax.Array, reward: jax.Array) -> ArmStatsState:
    """Incremental sample mean of the pulled arm: :math:`Q \\leftarrow Q + (r - Q)/N`,
    compensated (:func:`kahan_add_at`); counts are int32, exact to 2^31 - 1."""
    n = state.counts[action] + 1
    mean = state.values[action] - state.comp[action]
    values, comp = kahan_add_at(state.values, state.comp, action,
                                (reward - mean) / n.astype(jnp.float32))
    return state.replace(counts=state.counts.at[action].set(n), values=values, comp=comp,
                         t=state.t + 1)


def _arm_stats_init(hparams, k: int, pseudo: tuple[float, int] = (0.0, 0)) -> ArmStatsState:
    """Fresh statistics; ``pseudo = (successes, pulls)`` starts every arm as if it had been
    pulled ``pulls`` times with ``successes`` successes (Duan et al. 2016's baselines: (1, 2))."""
    zeros = jnp.zeros(k, jnp.float32)
    s, n = pseudo
    values = zeros + (s / n if n else 0.0)
    return ArmStatsState(hparams=hparams, counts=jnp.full(k, n, jnp.int32), values=values,
                         comp=zeros, t=jnp.int32(0))


def _check_pseudo(name: str, successes: float, pulls: int) -> tuple[float, int]:
    pulls = check_int(f"{name}.pseudo_pulls", pulls, min_value=0)
    successes = check_float(f"{name}.pseudo_successes", successes, low=0.0, high=float(pulls))
    return successes, pulls


def _scalar_reward(reward: jax.Array) -> jax.Array:
    return jnp.asarray(reward, jnp.float32).reshape(())


class _BanditAgent(Agent):
    """Common checks: a Discrete action space with K >= 2; a new trial (task)
    starts from fresh statistics with the same hyperparameters."""

    def check_compatible(self, obs_spec, action_spec) -> None:
        k = num_actions(action_spec)
        if k < 2:
            raise ConfigError(f"{self.name} needs at least 2 arms, got {k}.")
        self._specs = (obs_spec, action_spec)  # static; for reset_trial

    def reset_trial(self, key, state, mask):
        fresh = self.init(key, *self._specs).replace(hparams=state.hparams)
        return jax.tree.map(lambda f, s: jnp.where(mask, f, s), fresh, state)


# -- uniform -------------------------------------------------------------------


@flax.struct.dataclass
class NoHParams:
    pass


@gin.configurable
class UniformAgent(_BanditAgent):
    """Pulls each arm with probability 1/K (the no-learning baseline)."""

    def hparams(self):
        return NoHParams()

    def init(self, key, obs_spec, action_spec):
        return _arm_stats_init(self.hparams(), num_actions(action_spec))

    def act(self, key, state, obs, *, greedy=False):
        k = state.counts.shape[0]  # greedy too: uniform has no estimate to exploit
        return jax.random.randint(key, (), 0, k, dtype=jnp.int32), state, {}

    def observe(self, key, state, transition):
        return update_arm_stats(state, transition.action, _scalar_reward(transition.reward))


# -- ε-greedy --------------------------------------------------------------------


@flax.struct.dataclass
class EpsilonGreedyHParams:
    epsilon: jax.Array


@gin.configurable
class EpsilonGreedy(_BanditAgent):
    """ε-greedy with sample-mean estimates (Sutton & Barto 2018, §2.2-2.4).

    Args:
      epsilon: exploration probability in [0, 1] for ``decay='constant'``; for
        ``decay='inverse_t'`` the scale c/d² >= 0 of Auer et al. (2002, §3):
        :math:`\\varepsilon_t = \\min(1, \\varepsilon K / t)`. Swept as
        ``hparams.epsilon``.
      decay: 'constant' or 'inverse_t'.
      pseudo_successes, pseudo_pulls: every arm starts with this many pulls and
        successes (sample mean ``pseudo_successes / pseudo_pulls``); 0 pulls: none.
    """

    def __init__(self, epsilon: float = 0.1, decay: str = "constant",
                 pseudo_successes: float = 0.0, pseudo_pulls: int = 0):
        self.pseudo = _check_pseudo("EpsilonGreedy", pseudo_successes, pseudo_pulls)
        if decay not in ("constant", "inverse_t"):
            raise ConfigError(
                f"EpsilonGreedy.decay must be 'constant' or 'inverse_t', got {decay!r}."
            )
        self.decay = decay
        high = 1.0 if decay == "constant" else None
        self.epsilon = check_float("EpsilonGreedy.epsilon", epsilon, low=0.0, high=high)

    def hparams(self):
        return EpsilonGreedyHParams(epsilon=jnp.float32(self.epsilon))

    def init(self, key, obs_spec, action_spec):
        return _arm_stats_init(self.hparams(), num_actions(action_spec), self.pseudo)

    def current_epsilon(self, state: ArmStatsState) -> jax.Array:
        eps = state.hparams.epsilon
        if self.decay == "inverse_t":
            k = state.values.shape[0]
            eps = jnp.minimum(1.0, eps * k / jnp.maximum(state.t, 1).astype(jnp.float32))
        return eps

    def act(self, key, state, obs, *, greedy=False):
        # Two uniforms from one threefry call: u[0] decides exploration; u[1]
        # picks the random arm or the tied greedy arm (only one of them is used,
        # and u[1] is independent of u[0], so both choices stay exactly uniform).
        # Twice the throughput of separate keys for arm, ties and coin.
        u = rng.uniform(key, (2,))
        k = state.values.shape[0]
        random_arm = jnp.minimum(jnp.floor(u[1] * k), k - 1).astype(jnp.int32)
        best = _uniform_among(state.values >= max_last(state.values), u[1])
        if greedy:
            return best, state, {}
        explore = u[0] < self.current_epsilon(state)
        return jnp.where(explore, random_arm, best), state, {}

    def observe(self, key, state, transition):
        return update_arm_stats(state, transition.action, _scalar_reward(transition.reward))


# -- optimistic greedy -------------------------------------------------------------


@flax.struct.dataclass
class OptimisticHParams:
    initial_value: jax.Array
    step_size: jax.Array
    epsilon: jax.Array


@flax.struct.dataclass
class OptimisticState:
    """:math:`Q_a = w_a Q_0 + q_a`: ``w`` is the weight left on the initial value."""

    hparams: OptimisticHParams
    counts: jax.Array  # [K]
    w: jax.Array       # [K] (1 - α)^{N_a}
    q: jax.Array       # [K]
    t: jax.Array


@gin.configurable
class OptimisticGreedy(_BanditAgent):
    """(ε-)greedy with a constant step size and optimistic initial values.

    :math:`Q_a \\leftarrow Q_a + \\alpha (r - Q_a)` from :math:`Q_a = Q_0`
    (Sutton & Barto 2018, §2.5 eq. 2.5, §2.6). ``Q = w Q_0 + q`` with
    :math:`w = (1-\\alpha)^{N_a}` keeps :math:`Q_0` a swept hyperparameter that
    takes effect after ``init``. ``step_size = 0`` means sample averages
    (α = 1/N).

    Args:
      initial_value: Q₀ (swept as ``initial_value``).
      step_size: α in [0, 1] (swept as ``step_size``).
      epsilon: exploration probability in [0, 1] (0: greedy).
    """

    max_exact_steps = FLOAT32_EXACT_STEPS  # float32 running sums (see Agent)

    def __init__(self, initial_value: float = 5.0, step_size: float = 0.1,
                 epsilon: float = 0.0):
        self.initial_value = check_float("OptimisticGreedy.initial_value", initial_value)
        self.step_size = check_float("OptimisticGreedy.step_size", step_size, low=0.0, high=1.0)
        self.epsilon = check_float("OptimisticGreedy.epsilon", epsilon, low=0.0, high=1.0)

    def hparams(self):
        return OptimisticHParams(jnp.float32(self.initial_value), jnp.float32(self.step_size),
                                 jnp.float32(self.epsilon))

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        return OptimisticState(self.hparams(), jnp.zeros(k, jnp.float32),
                               jnp.ones(k, jnp.float32), jnp.zeros(k, jnp.float32),
                               jnp.int32(0))

    @staticmethod
    def estimates(state: OptimisticState) -> jax.Array:
        return state.w * state.hparams.initial_value + state.q

    def act(self, key, state, obs, *, greedy=False):
        # As EpsilonGreedy.act: two uniforms from one threefry call.
        u = rng.uniform(key, (2,))
        q = self.estimates(state)
        k = q.shape[0]
        random_arm = jnp.minimum(jnp.floor(u[1] * k), k - 1).astype(jnp.int32)
        best = _uniform_among(q >= max_last(q), u[1])
        if greedy:
            return best, state, {}
        explore = u[0] < state.hparams.epsilon
        return jnp.where(explore, random_arm, best), state, {}

    def observe(self, key, state, transition):
        a, r = transition.action, _scalar_reward(transition.reward)
        counts = state.counts.at[a].add(1.0)
        alpha = state.hparams.step_size
        beta = jnp.where(alpha > 0, alpha, 1.0 / counts[a])
        w = state.w.at[a].multiply(1.0 - beta)
        q = state.q.at[a].set((1.0 - beta) * state.q[a] + beta * r)
        return state.replace(counts=counts, w=w, q=q, t=state.t + 1)


# -- index policies -----------------------------------------------------------------


class _IndexPolicy(_BanditAgent):
    """Pulls the arm of largest ``self.indices(state)`` (ties: lowest index); sample means."""

    pseudo: tuple[float, int] = (0.0, 0)  # (successes, pulls) every arm starts with

    def init(self, key, obs_spec, action_spec):
        return _arm_stats_init(self.hparams(), num_actions(action_spec), self.pseudo)

    def act(self, key, state, obs, *, greedy=False):
        if greedy:  # the evaluation policy: exploit the sample means
            return jnp.argmax(state.values).astype(jnp.int32), state, {}
        return jnp.argmax(self.indices(state)).astype(jnp.int32), state, {}

    def observe(self, key, state, transition):
        return update_arm_stats(state, transition.action, _scalar_reward(transition.reward))


# -- UCB1 --------------------------------------------------------------------------


@flax.struct.dataclass
class UCBHParams:
    c: jax.Array


@gin.configurable
class UCB1(_IndexPolicy):
    """Upper confidence bound :math:`Q_a + c\\sqrt{\\ln t / N_a}`.

    With c = √2 this is UCB1 of Auer, Cesa-Bianchi & Fischer (2002, Fig. 1),
    whose regret satisfies Theorem 1:
    :math:`\\mathbb E R_T \\le \\sum_{\\Delta_a>0} 8\\ln T/\\Delta_a + (1 + \\pi^2/3)\\sum_a \\Delta_a`
    (see :func:`mtrlrec.eval.regret.ucb1_regret_bound`). Unpulled arms come
    first (infinite index); ties go to the lowest index.

    Args:
      c: exploration constant >= 0 (swept as ``c``); default √2.
      pseudo_successes, pseudo_pulls: every arm starts with this many pulls and
        successes (Duan et al. 2016: 1 in 2); ``t`` counts real pulls only.
    """

    def __init__(self, c: float = math.sqrt(2.0), pseudo_successes: float = 0.0,
                 pseudo_pulls: int = 0):
        self.c = check_float("UCB1.c", c, low=0.0)
        self.pseudo = _check_pseudo("UCB1", pseudo_successes, pseudo_pulls)

    def hparams(self):
        return UCBHParams(c=jnp.float32(self.c))

    def indices(self, state: ArmStatsState) -> jax.Array:
        """``[K]`` UCB indices (``inf`` for unpulled arms)."""
        log_t = jnp.log(jnp.maximum(state.t, 1).astype(jnp.float32))
        bonus = state.hparams.c * jnp.sqrt(log_t / jnp.maximum(state.counts, 1.0))
        return jnp.where(state.counts > 0, state.values + bonus, jnp.inf)



# -- KL-UCB ------------------------------------------------------------------------


def bernoulli_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """:math:`\\mathrm{kl}(p, q) = p\\ln\\frac pq + (1-p)\\ln\\frac{1-p}{1-q}` with 0 ln 0 = 0."""
    p = jnp.asarray(p, jnp.float32)
    q = jnp.asarray(q, jnp.float32)
    t1 = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0) / q), 0.0)
    t2 = jnp.where(p < 1, (1 - p) * jnp.log(jnp.where(p < 1, 1 - p, 1.0) / (1 - q)), 0.0)
    return t1 + t2


def kl_ucb_index(mean: jax.Array, count: jax.Array, level: jax.Array,
                 num_iters: int = 3) -> jax.Array:
    """:math:`\\max\\{q \\in [\\hat\\mu, 1] : N\\,\\mathrm{kl}(\\hat\\mu, q) \\le L\\}`, elementwise.

    Newton's method in :math:`s = -\\ln(1 - q)`, where
    :math:`f(s) = \\mathrm{kl}(\\hat\\mu, q(s)) - L/N` is convex and increasing
    (:math:`f'(s) = 1 - \\hat\\mu/q`) and has no singularity at q = 1. In s the
    second term of kl is linear, :math:`(1-\\hat\\mu)(s - s_{\\hat\\mu})`, so an
    iteration costs one ``exp``, one ``log`` and one division, and stays
    finite when q rounds to 1 in float32. Newton starts from the smaller of two
    upper bounds of the root, so the iterates decrease monotonically to it:

    * a Bernstein-type bound: :math:`\\mathrm{kl}(p, q) \\ge (q-p)^2 / (2V)` with
      V the largest :math:`x(1-x)` on [p, q]; V is taken on [p, Pinsker's
      bound :math:`p + \\sqrt{L/2N}`], so the root is below
      :math:`q_0 = p + \\sqrt{2VL/N}`, close to it when L/N is small, and
      :math:`s \\le s_{\\hat\\mu} + (q_0 - p)/(1 - q_0)`;
    * :math:`(1-\\hat\\mu)(\\ln(1-\\hat\\mu) + s) + \\hat\\mu\\ln\\hat\\mu \\le L/N`, for
      roots near 1.

    The last Newton step is applied to q to first order
    (:math:`1 - e^{-s}(1 + \\delta s)`, never below the exact update), which saves
    an ``exp``. With 3 iterations the index is within 8e-6 of a float64
    bisection for counts up to 10^6 and within 2.5e-5 (float32 rounding) up to
    10^7 (tests/agents/test_bandits.py).

    Args:
      mean: ``[...]`` empirical means in [0, 1].
      count: ``[...]`` pull counts > 0.
      level: ``[...]`` or scalar L >= 0 (e.g. ln t + c ln ln t).
      num_iters: Newton iterations (static, >= 1).

    Returns:
      ``[...]`` indices in [mean, 1].
    """
    mean = jnp.asarray(mean, jnp.float32)
    count = jnp.broadcast_to(jnp.asarray(count, jnp.float32), mean.shape)
    level = jnp.broadcast_to(jnp.asarray(level, jnp.float32), mean.shape)
    return _kl_ucb_index_flat(num_iters)(mean, count, level)


@functools.lru_cache(maxsize=None)
def _kl_ucb_index_flat(num_iters: int):
    """The elementwise index computation, batched by flattening (see :mod:`mtrlrec.core.layout`)."""
    if num_iters < 1:
        raise ConfigError(f"KLUCB.num_iters must be >= 1, got {num_iters}.")
    return flat_vmap(functools.partial(_kl_ucb_index, num_iters=num_iters))


def _kl_ucb_index(mean, count, level, num_iters):
    # Plain log(1 - x) and log(q) - log(p) instead of log1p: log1p cost XLA's CPU
    # backend 1.8x a log. Their rounding errors enter kl as absolute errors of
    # about 1e-7 (times p or 1 - p), like q's own rounding, so the bisection
    # agreement stays within 8e-6 (tests/agents/test_bandits.py).
    p = jnp.clip(mean, 0.0, 1.0)
    target = level / jnp.maximum(count, 1e-12)
    p_lt1 = jnp.minimum(p, 1.0 - 1e-7)
    s_p = -jnp.log(1.0 - p_lt1)
    log_p = jnp.log(jnp.where(p > 0, p, 1.0))
    # Bernstein-type start: V = max x(1-x) over [p, Pinsker's bound].
    q_pinsker = p + jnp.sqrt(0.5 * target)
    x = jnp.where(p >= 0.5, p, jnp.minimum(q_pinsker, 0.5))
    q_start = p + jnp.sqrt(2.0 * target * (x * (1.0 - x)))
    # -ln(1 - x) <= x / (1 - x): a division instead of a log, still above the root.
    s_start = jnp.where(q_start < 1.0, s_p + (q_start - p) / jnp.maximum(1.0 - q_start, 1e-30),
                        jnp.inf)
    s_tail = (target - p * log_p) / (1.0 - p_lt1) + s_p
    s = jnp.maximum(jnp.minimum(s_start, s_tail), s_p)
    one_minus_p = 1.0 - p

    def body(_, carry):
        s, _, _ = carry
        # 1 - q = e^{-s}; exp is cheaper than expm1 on XLA's CPU backend.
        e = jnp.exp(-s)
        q = 1.0 - e
        delta = q - p
        # kl(p, q) - L/N (p ln(p/q) is 0 at p = 0, where log_p = 0).
        f = p * (log_p - jnp.log(jnp.maximum(q, 1e-30))) + one_minus_p * (s - s_p) - target
        # Newton step f / f'(s) with f'(s) = delta / q; zero at the lower end s = s_p.
        step = jnp.where(delta > 0, f * q / jnp.where(delta > 0, delta, 1.0), 0.0)
        step = jnp.maximum(step, 0.0)
        return jnp.maximum(s - step, s_p), e, step

    _, e, step = jax.lax.fori_loop(0, num_iters, body, (s, s, s))
    q = 1.0 - e * (1.0 + step)
    return jnp.where(p >= 1.0, 1.0, jnp.clip(q, p, 1.0))


@flax.struct.dataclass
class KLUCBHParams:
    c: jax.Array


@gin.configurable
class KLUCB(_IndexPolicy):
    """KL-UCB for Bernoulli rewards (Garivier & Cappé 2011, §2, eq. 4).

    Index :math:`\\max\\{q : N_a\\,\\mathrm{kl}(\\hat\\mu_a, q) \\le \\ln t + c\\ln\\ln t\\}`;
    c = 0 is the variant the paper recommends in practice (§5). Unpulled
    arms come first.

    Args:
      c: >= 0 (swept as ``c``).
      num_iters: Newton iterations for the index (static, >= 1; see
        :func:`kl_ucb_index`).
    """

    def __init__(self, c: float = 0.0, num_iters: int = 3):
        self.c = check_float("KLUCB.c", c, low=0.0)
        self.num_iters = check_int("KLUCB.num_iters", num_iters, min_value=1)

    def hparams(self):
        return KLUCBHParams(c=jnp.float32(self.c))

    def indices(self, state: ArmStatsState) -> jax.Array:
        t = jnp.maximum(state.t, 1).astype(jnp.float32)
        log_t = jnp.log(t)
        level = log_t + state.hparams.c * jnp.log(jnp.maximum(log_t, 1.0))
        idx = kl_ucb_index(state.values, jnp.maximum(state.counts, 1.0), level, self.num_iters)
        return jnp.where(state.counts > 0, idx, jnp.inf)



# -- Thompson sampling -------------------------------------------------------------


def _prior_vector(name: str, value: Any, k: int) -> np.ndarray:
    """A scalar or length-K prior parameter as a ``[K]`` array (checked, > 0)."""
    if np.ndim(value) == 0:
        v = check_float(name, value, low=0.0, low_open=True)
        return np.full(k, v, np.float32)
    vals = check_floats(name, value, length=k)
    for i, v in enumerate(vals):
        if not v > 0:
            raise ConfigError(f"{name}[{i}] must be > 0, got {v}.")
    return np.asarray(vals, np.float32)


@flax.struct.dataclass
class OptimisticTSHParams:
    num_samples: jax.Array  # posterior samples per step, <= optimistic_samples


@flax.struct.dataclass
class BetaState:
    hparams: Any
    alpha: jax.Array  # [K] prior alpha + successes
    beta: jax.Array   # [K] prior beta + failures
    alpha_comp: jax.Array  # [K] Kahan compensations (kahan_add_at): exact past 2^24 pulls
    beta_comp: jax.Array
    t: jax.Array


@gin.configurable
class ThompsonSampling(_BanditAgent):
    """Beta–Bernoulli Thompson sampling (Chapelle & Li 2011, Algorithm 2).

    Posterior :math:`\\mathrm{Beta}(\\alpha_a + S_a, \\beta_a + F_a)`; draw
    :math:`\\theta_a` from each and pull :math:`\\arg\\max_a \\theta_a`. Rewards in
    [0, 1] update :math:`S_a \\mathrel{+}= r`, :math:`F_a \\mathrel{+}= 1 - r`.

    Args:
      prior_alpha: scalar or K pseudo-successes > 0 (1: uniform prior; a list
        is an expert prior, see :mod:`mtrlrec.agents.initial`).
      prior_beta: scalar or K pseudo-failures > 0.
      bit_source: random words of the Beta sampler, 'hash' (fast) or
        'threefry' (``jax.random.bits``), see :func:`sampling.random_bits`.
      prior: optional initial strategy with ``pseudo_counts(K) -> (alpha,
        beta)`` (``@UniformPrior()``, ``@ExpertPrior()`` of
        :mod:`mtrlrec.agents.initial`); overrides ``prior_alpha/prior_beta``.
      optimistic_samples: M > 1 gives optimistic TS as in Duan et al. (2016)'s
        baselines: draw ``num_samples`` <= M joint posterior samples, keep the one
        of highest posterior density, pull its argmax; ``num_samples`` (default
        M) is a swept hyperparameter (M samples are drawn, the rest masked).
    """

    def __init__(self, prior_alpha: Any = 1.0, prior_beta: Any = 1.0,
                 bit_source: str = "hash", prior: Any = None, optimistic_samples: int = 1):
        self.optimistic_samples = check_int("ThompsonSampling.optimistic_samples",
                                            optimistic_samples, min_value=1)
        if bit_source not in sampling.SOURCES:
            raise ConfigError(
                f"ThompsonSampling.bit_source must be one of {sampling.SOURCES}, got {bit_source!r}."
            )
        self.bit_source = bit_source
        if prior is not None and not hasattr(prior, "pseudo_counts"):
            raise ConfigError(
                f"ThompsonSampling.prior must be an initial strategy such as @ExpertPrior(), "
                f"got {prior!r}."
            )
        self.prior = prior
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        # Scalars are checked now; lists once K is known (check_compatible).
        if np.ndim(prior_alpha) == 0:
            check_float("ThompsonSampling.prior_alpha", prior_alpha, low=0.0, low_open=True)
        if np.ndim(prior_beta) == 0:
            check_float("ThompsonSampling.prior_beta", prior_beta, low=0.0, low_open=True)

    def _priors(self, k: int):
        if self.prior is not None:
            a, b = self.prior.pseudo_counts(k)
            return np.asarray(a, np.float32), np.asarray(b, np.float32)
        a = _prior_vector("ThompsonSampling.prior_alpha", self.prior_alpha, k)
        b = _prior_vector("ThompsonSampling.prior_beta", self.prior_beta, k)
        return a, b

    def check_compatible(self, obs_spec, action_spec) -> None:
        super().check_compatible(obs_spec, action_spec)
        self._priors(num_actions(action_spec))

    def hparams(self):
        if self.optimistic_samples > 1:
            return OptimisticTSHParams(num_samples=jnp.float32(self.optimistic_samples))
        return NoHParams()

    def check_hparam(self, name, value):
        if name == "num_samples" and not 1 <= value <= self.optimistic_samples:
            raise ConfigError(f"ThompsonSampling num_samples must lie in [1, "
                              f"optimistic_samples={self.optimistic_samples}], got {value}.")
        super().check_hparam(name, value)

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        a, b = self._priors(k)
        zeros = jnp.zeros(k, jnp.float32)
        return BetaState(self.hparams(), jnp.asarray(a), jnp.asarray(b), zeros, zeros,
                         jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        if greedy:  # the posterior means
            return jnp.argmax(state.alpha / (state.alpha + state.beta)).astype(jnp.int32), state, {}
        a, b = self._priors(state.alpha.shape[0])  # static: K is known at trace time
        shape_ge_one = bool(np.all(a >= 1) and np.all(b >= 1))  # counts only grow
        m = self.optimistic_samples
        if m == 1:
            theta = sampling.beta(key, state.alpha, state.beta, self.bit_source, shape_ge_one)
            return jnp.argmax(theta).astype(jnp.int32), state, {}
        shape = (m,) + state.alpha.shape
        theta = sampling.beta(key, jnp.broadcast_to(state.alpha, shape),
                              jnp.broadcast_to(state.beta, shape), self.bit_source, shape_ge_one)
        theta = jnp.clip(theta, 1e-6, 1.0 - 1e-6)
        density = jax.scipy.stats.beta.logpdf(theta, state.alpha, state.beta).sum(-1)  # [M]
        density = jnp.where(jnp.arange(m) < state.hparams.num_samples, density, -jnp.inf)
        return jnp.argmax(theta[jnp.argmax(density)]).astype(jnp.int32), state, {}

    def observe(self, key, state, transition):
        a, r = transition.action, _scalar_reward(transition.reward)
        alpha, alpha_comp = kahan_add_at(state.alpha, state.alpha_comp, a, r)
        beta, beta_comp = kahan_add_at(state.beta, state.beta_comp, a, 1.0 - r)
        return state.replace(alpha=alpha, beta=beta, alpha_comp=alpha_comp, beta_comp=beta_comp,
                             t=state.t + 1)


@flax.struct.dataclass
class GaussianTSState:
    hparams: NoHParams
    precision: jax.Array  # [K] posterior precision τ_a
    weighted: jax.Array   # [K] τ_a m_a (precision-weighted mean)
    t: jax.Array


@gin.configurable
class GaussianThompson(_BanditAgent):
    """Thompson sampling with a Normal prior and known Gaussian noise.

    Prior :math:`\\mu_a \\sim \\mathcal N(m_0, s_0^2)`, rewards
    :math:`\\mathcal N(\\mu_a, \\sigma^2)`; posterior precision
    :math:`\\tau_a = 1/s_0^2 + N_a/\\sigma^2` and mean
    :math:`m_a = (m_0/s_0^2 + \\sum r/\\sigma^2)/\\tau_a` (Russo et al. 2018, §3).

    Args:
      prior_mean: m₀.
      prior_std: s₀ > 0.
      noise_std: σ > 0.
    """

    max_exact_steps = FLOAT32_EXACT_STEPS  # float32 running sums (see Agent)

    def __init__(self, prior_mean: float = 0.0, prior_std: float = 1.0,
                 noise_std: float = 1.0):
        self.prior_mean = check_float("GaussianThompson.prior_mean", prior_mean)
        self.prior_std = check_float("GaussianThompson.prior_std", prior_std, low=0.0,
                                     low_open=True)
        self.noise_std = check_float("GaussianThompson.noise_std", noise_std, low=0.0,
                                     low_open=True)

    def hparams(self):
        return NoHParams()

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        tau0 = 1.0 / self.prior_std ** 2
        return GaussianTSState(self.hparams(), jnp.full(k, tau0, jnp.float32),
                               jnp.full(k, tau0 * self.prior_mean, jnp.float32), jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        mean = state.weighted / state.precision
        if greedy:
            return jnp.argmax(mean).astype(jnp.int32), state, {}
        theta = mean + jax.random.normal(key, mean.shape) / jnp.sqrt(state.precision)
        return jnp.argmax(theta).astype(jnp.int32), state, {}

    def observe(self, key, state, transition):
        a, r = transition.action, _scalar_reward(transition.reward)
        inv_var = 1.0 / self.noise_std ** 2
        return state.replace(precision=state.precision.at[a].add(inv_var),
                             weighted=state.weighted.at[a].add(r * inv_var),
                             t=state.t + 1)


# -- softmax / EXP3 / gradient bandit -----------------------------------------------


@flax.struct.dataclass
class SoftmaxHParams:
    temperature: jax.Array


@gin.configurable
class Softmax(_BanditAgent):
    """Boltzmann exploration over sample means: :math:`\\pi_a \\propto \\exp(Q_a/\\tau)`.

    Args:
      temperature: τ > 0 (swept as ``temperature``).
    """

    def __init__(self, temperature: float = 0.1):
        self.temperature = check_float("Softmax.temperature", temperature, low=0.0,
                                       low_open=True)

    def hparams(self):
        return SoftmaxHParams(jnp.float32(self.temperature))

    def init(self, key, obs_spec, action_spec):
        return _arm_stats_init(self.hparams(), num_actions(action_spec))

    def act(self, key, state, obs, *, greedy=False):
        if greedy:
            return jnp.argmax(state.values).astype(jnp.int32), state, {}
        probs = jax.nn.softmax(state.values / state.hparams.temperature)
        return _categorical(key, probs), state, {}

    def observe(self, key, state, transition):
        return update_arm_stats(state, transition.action, _scalar_reward(transition.reward))


@flax.struct.dataclass
class EXP3HParams:
    gamma: jax.Array


@flax.struct.dataclass
class EXP3State:
    hparams: EXP3HParams
    log_weights: jax.Array  # [K]
    t: jax.Array


@gin.configurable
class EXP3(_BanditAgent):
    """EXP3 (Auer, Cesa-Bianchi, Freund & Schapire 2002, Fig. 1), rewards in [0, 1].

    :math:`p_a = (1-\\gamma) w_a / \\sum_b w_b + \\gamma / K`;
    :math:`\\hat x_a = r / p_a` for the pulled arm;
    :math:`w_a \\leftarrow w_a \\exp(\\gamma \\hat x_a / K)` (kept in log space).

    Args:
      gamma: γ in (0, 1] (swept as ``gamma``).
    """

    max_exact_steps = FLOAT32_EXACT_STEPS  # float32 running sums (see Agent)

    def __init__(self, gamma: float = 0.1):
        self.gamma = check_float("EXP3.gamma", gamma, low=0.0, high=1.0, low_open=True)

    def hparams(self):
        return EXP3HParams(jnp.float32(self.gamma))

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        return EXP3State(self.hparams(), jnp.zeros(k, jnp.float32), jnp.int32(0))

    @staticmethod
    def probs(state: EXP3State) -> jax.Array:
        g = state.hparams.gamma
        k = state.log_weights.shape[0]
        return (1.0 - g) * jax.nn.softmax(state.log_weights) + g / k

    def act(self, key, state, obs, *, greedy=False):
        p = self.probs(state)
        a = jnp.argmax(p).astype(jnp.int32) if greedy else _categorical(key, p)
        return a, state, {"prob": p[a]}

    def observe(self, key, state, transition):
        a, r = transition.action, _scalar_reward(transition.reward)
        p = self.probs(state)
        k = p.shape[0]
        lw = state.log_weights.at[a].add(state.hparams.gamma * r / (p[a] * k))
        lw = lw - jnp.max(lw)  # keep the log-weights bounded
        return state.replace(log_weights=lw, t=state.t + 1)


@flax.struct.dataclass
class GradientHParams:
    step_size: jax.Array


@flax.struct.dataclass
class GradientState:
    hparams: GradientHParams
    preferences: jax.Array  # [K] H_a
    baseline: jax.Array     # average reward so far
    t: jax.Array


@gin.configurable
class GradientBandit(_BanditAgent):
    """Gradient bandit (Sutton & Barto 2018, §2.8, eq. 2.12).

    :math:`\\pi = \\mathrm{softmax}(H)`;
    :math:`H \\leftarrow H + \\alpha (R_t - \\bar R_t)(\\mathbb 1_{A_t} - \\pi)`, where
    :math:`\\bar R_t` is the average of the rewards before t
    (:math:`\\bar R_1 = R_1`), or 0 without baseline.

    Args:
      step_size: α > 0 (swept as ``step_size``).
      baseline: use the average-reward baseline.
    """

    max_exact_steps = FLOAT32_EXACT_STEPS  # float32 running sums (see Agent)

    def __init__(self, step_size: float = 0.1, baseline: bool = True):
        self.step_size = check_float("GradientBandit.step_size", step_size, low=0.0,
                                     low_open=True)
        self.baseline = bool(baseline)

    def hparams(self):
        return GradientHParams(jnp.float32(self.step_size))

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        return GradientState(self.hparams(), jnp.zeros(k, jnp.float32), jnp.float32(0.0),
                             jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        if greedy:
            return jnp.argmax(state.preferences).astype(jnp.int32), state, {}
        return _categorical(key, jax.nn.softmax(state.preferences)), state, {}

    def observe(self, key, state, transition):
        a, r = transition.action, _scalar_reward(transition.reward)
        pi = jax.nn.softmax(state.preferences)
        if self.baseline:
            base = jnp.where(state.t == 0, r, state.baseline)
        else:
            base = jnp.float32(0.0)
        onehot = jax.nn.one_hot(a, pi.shape[0], dtype=jnp.float32)
        h = state.preferences + state.hparams.step_size * (r - base) * (onehot - pi)
        t = state.t + 1
        avg = state.baseline + (r - state.baseline) / t.astype(jnp.float32)
        return state.replace(preferences=h, baseline=avg, t=t)


__all__ = [
    "ArmStatsState", "EXP3", "EpsilonGreedy", "GaussianThompson", "GradientBandit", "KLUCB",
    "OptimisticGreedy", "Softmax", "ThompsonSampling", "UCB1", "UniformAgent",
    "argmax_random_tiebreak", "bernoulli_kl", "kl_ucb_index", "update_arm_stats",
]
