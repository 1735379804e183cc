r"""Linear contextual bandit agents, and the Bayesian linear regression the neural ones share.

All agents read the observation as a context vector ``x`` of shape ``[d]``
(``Box`` spec) and pick one of ``K`` arms. Each keeps one model per arm
("disjoint" models, Li et al. 2010 §3.1) and updates the pulled arm's model
with a rank-one step, so an update costs :math:`O(d^2)`:

* :class:`LinUCB` (Li, Chu, Langford & Schapire, WWW 2010, Algorithm 1):
  :math:`A_a = \lambda I + \sum x x^\top`, :math:`b_a = \sum r x`,
  :math:`\hat\theta_a = A_a^{-1} b_a`, and the arm maximising
  :math:`\hat\theta_a^\top x + \alpha \sqrt{x^\top A_a^{-1} x}`.
  :math:`A_a^{-1}` is kept up to date with the Sherman–Morrison identity
  :math:`(A + xx^\top)^{-1} = A^{-1} - \frac{A^{-1}x x^\top A^{-1}}{1 + x^\top A^{-1} x}`.
* :class:`LinTS` ("LinFullPost", Riquelme, Tucker & Snoek, ICLR 2018, §3
  "Linear methods"): Bayesian linear regression with a normal-inverse-gamma
  prior :math:`\sigma^2 \sim IG(a_0, b_0)`,
  :math:`\beta \mid \sigma^2 \sim N(0, \sigma^2 \Lambda_0^{-1})`,
  :math:`\Lambda_0 = \lambda I`. After :math:`n_a` pulls of arm :math:`a`:
  :math:`\Lambda_a = \Lambda_0 + X^\top X`, :math:`\mu_a = \Lambda_a^{-1} X^\top y`,
  :math:`a_a = a_0 + n_a/2`, :math:`b_a = b_0 + \tfrac12(y^\top y - \mu_a^\top \Lambda_a \mu_a)`.
  Thompson sampling draws :math:`\sigma_a^2 \sim IG(a_a, b_a)`,
  :math:`\beta_a \sim N(\mu_a, \sigma_a^2 \Lambda_a^{-1})` and plays
  :math:`\arg\max_a \beta_a^\top x`. Only the scalar :math:`\beta_a^\top x` is
  used, and given :math:`\sigma_a^2` it is exactly
  :math:`N(\mu_a^\top x, \sigma_a^2\, x^\top \Lambda_a^{-1} x)`, so it is drawn
  directly from that law (same distribution as drawing the full vector, no
  Cholesky factor needed). The covariance :math:`\Lambda_a^{-1}` is kept by
  Sherman–Morrison, so a step costs :math:`O(K d^2)` matrix-vector work.
The neural agents (NeuralLinear, NeuralEpsilonGreedy) are in :mod:`mtrlrec.agents.neural`.

Vector rewards (several objectives) are scalarised with ``reward_weights``;
:mod:`mtrlrec.agents.multiobjective` keeps one model per objective instead.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.core.sampling import fast_normals, standard_gamma
from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import Box, num_actions


# --------------------------------------------------------------------------
# Linear algebra helpers (pure, vmappable)
# --------------------------------------------------------------------------


def sherman_morrison(a_inv: jax.Array, x: jax.Array) -> jax.Array:
    r"""Rank-one update of an inverse: :math:`(A + xx^\top)^{-1}` from :math:`A^{-1}` ``[p, p]``."""
    ax = a_inv @ x
    return a_inv - jnp.outer(ax, ax) / (1.0 + x @ ax)


def cholesky_rank1_update(chol: jax.Array, x: jax.Array) -> jax.Array:
    r"""Lower Cholesky factor of :math:`LL^\top + xx^\top` in :math:`O(p^2)`.

    The classical rotation algorithm (Golub & Van Loan, *Matrix
    Computations*, §6.5.4): for each column k, a Givens-like rotation mixes
    column k of L with the running vector x.

    Args:
      chol: ``[p, p]`` lower-triangular L with positive diagonal.
      x: ``[p]`` update vector.

    Returns:
      ``[p, p]`` lower-triangular L'.
    """
    p = x.shape[0]
    idx = jnp.arange(p)

    def body(k, carry):
        L, v = carry
        lkk = L[k, k]
        vk = v[k]
        r = jnp.sqrt(lkk * lkk + vk * vk)
        c = r / lkk
        s = vk / lkk
        col = L[:, k]
        below = idx > k
        new_col = jnp.where(below, (col + s * v) / c, jnp.where(idx == k, r, col))
        v = jnp.where(below, c * v - s * new_col, v)
        return L.at[:, k].set(new_col), v

    L, _ = jax.lax.fori_loop(0, p, body, (chol, x))
    return L


def _tri_solve(chol, b, trans):
    return jax.scipy.linalg.solve_triangular(chol, b, lower=True, trans=trans)


def _cho_solve(chol: jax.Array, b: jax.Array) -> jax.Array:
    r""":math:`(LL^\top)^{-1} b` by two triangular solves."""
    return _tri_solve(chol, _tri_solve(chol, b, 0), 1)


def argmax_random_tiebreak(key: jax.Array, values: jax.Array) -> jax.Array:
    """Index of a maximum of ``values`` ``[K]``, ties broken uniformly."""
    ties = values >= jnp.max(values)
    noise = jax.random.uniform(key, values.shape)
    return jnp.argmax(jnp.where(ties, noise, -1.0)).astype(jnp.int32)


def scalar_reward(reward: jax.Array, weights: tuple[float, ...] | None, owner: str) -> jax.Array:
    """``reward`` as a float32 scalar; vector rewards are weighted by ``weights``."""
    reward = jnp.asarray(reward, jnp.float32)
    if reward.ndim == 0:
        return reward
    if weights is None:
        raise ConfigError(
            f"{owner} received a vector reward with {reward.shape[-1]} components; set "
            f"{owner}.reward_weights (one weight per component) or use a multi-objective agent."
        )
    if len(weights) != reward.shape[-1]:
        raise ConfigError(
            f"{owner}.reward_weights has {len(weights)} entries but the reward has "
            f"{reward.shape[-1]} components."
        )
    return jnp.dot(jnp.asarray(weights, jnp.float32), reward)


def context_dim(obs_spec: Any, owner: str) -> int:
    """The context dimension d of a ``Box`` observation spec of shape ``[d]``."""
    if not isinstance(obs_spec, Box) or len(tuple(obs_spec.shape)) != 1:
        raise ConfigError(
            f"{owner} needs a context vector observation (Box of shape [d]), got {obs_spec}."
        )
    return int(obs_spec.shape[0])


def _check_weights(owner: str, weights):
    if weights is None:
        return None
    return check_floats(f"{owner}.reward_weights", weights)


def _features(x: jax.Array, fit_intercept: bool) -> jax.Array:
    x = jnp.asarray(x, jnp.float32).reshape(-1)
    if fit_intercept:
        x = jnp.concatenate([x, jnp.ones((1,), jnp.float32)])
    return x


# --------------------------------------------------------------------------
# LinUCB
# --------------------------------------------------------------------------


UNROLL_MAX_DIM = 32  # feature sizes up to this use the unrolled products of _ucb_parts


def _ucb_parts(a_inv: jax.Array, b: jax.Array, x: jax.Array):
    r""":math:`x^\top A_a^{-1} b_a`, :math:`x^\top A_a^{-1} x` ``[K]`` and :math:`A_a^{-1} x` ``[K, p]``.

    :math:`A_a^{-1}` is symmetric (bit for bit: every Sherman–Morrison step
    subtracts an outer product :math:`mm^\top`), so :math:`A_a^{-1} x` is the
    sum of its rows weighted by x. For small p these products are written as
    p multiply-adds of ``[K, p]`` slices, which XLA fuses with the scores and
    argmax into loops over the batch of runs; under ``vmap`` the ``einsum``
    was a batched matrix-vector ``dot`` per run, ~1.8× slower on CPU (LinUCB's
    whole step on ``LinearGaussianBandit``, 1,000 runs, d = K = 10:
    0.68 -> 0.51 ms). The sums are the same up to float32 rounding (another
    summation order).
    """
    p = x.shape[0]
    if p > UNROLL_MAX_DIM:
        ax = jnp.einsum("kij,j->ki", a_inv, x)  # [K, p]
        return jnp.einsum("ki,ki->k", ax, b), ax @ x, ax

    def weighted(terms):
        return functools.reduce(jnp.add, terms)

    ax = weighted(a_inv[:, j, :] * x[j] for j in range(p))  # [K, p]
    theta_x = weighted(ax[:, i] * b[:, i] for i in range(p))  # x^T A^-1 b
    quad = weighted(ax[:, i] * x[i] for i in range(p))  # x^T A^-1 x
    return theta_x, quad, ax


@flax.struct.dataclass
class LinUCBHParams:
    alpha: jax.Array  # [] width of the confidence bonus


@flax.struct.dataclass
class LinUCBState:
    hparams: LinUCBHParams
    a_inv: jax.Array  # [K, p, p] inverse design matrices
    b: jax.Array  # [K, p] reward-weighted feature sums
    t: jax.Array


@gin.configurable
class LinUCB(Agent):
    r"""Disjoint LinUCB (Li et al., WWW 2010, Algorithm 1).

    Args:
      alpha: bonus width α >= 0 (swept as ``hparams.alpha``).
      regularization: ridge λ > 0 (:math:`A_a = \lambda I` initially).
      fit_intercept: append a constant 1 to the context.
      reward_weights: scalarisation of vector rewards (one weight per component).
    """

    def __init__(self, alpha: float = 1.0, regularization: float = 1.0,
                 fit_intercept: bool = True,
                 reward_weights: Sequence[float] | None = None):
        self.alpha = check_float("LinUCB.alpha", alpha, low=0.0)
        self.regularization = check_float("LinUCB.regularization", regularization,
                                          low=0.0, low_open=True)
        self.fit_intercept = bool(fit_intercept)
        self.reward_weights = _check_weights("LinUCB", reward_weights)

    def hparams(self):
        return LinUCBHParams(alpha=jnp.float32(self.alpha))

    def check_compatible(self, obs_spec, action_spec):
        context_dim(obs_spec, "LinUCB")
        num_actions(action_spec)

    def init(self, key, obs_spec, action_spec):
        d = context_dim(obs_spec, "LinUCB") + int(self.fit_intercept)
        k = num_actions(action_spec)
        eye = jnp.eye(d, dtype=jnp.float32) / self.regularization
        return LinUCBState(
            hparams=self.hparams(),
            a_inv=jnp.broadcast_to(eye, (k, d, d)),
            b=jnp.zeros((k, d), jnp.float32),
            t=jnp.int32(0),
        )

    def scores(self, state: LinUCBState, obs) -> jax.Array:
        r"""Upper confidence bounds ``[K]``: :math:`\hat\theta_a^\top x + \alpha\sqrt{x^\top A_a^{-1}x}`."""
        return self._scores_and_ax(state, _features(obs, self.fit_intercept))[0]

    def _scores_and_ax(self, state, x):
        theta_x, quad, ax = _ucb_parts(state.a_inv, state.b, x)
        return theta_x + state.hparams.alpha * jnp.sqrt(jnp.maximum(quad, 0.0)), ax

    def act(self, key, state, obs, *, greedy=False):
        x = _features(obs, self.fit_intercept)
        theta_x, quad, ax = _ucb_parts(state.a_inv, state.b, x)
        # greedy: the ridge estimate without its confidence width
        scores = theta_x if greedy else (
            theta_x + state.hparams.alpha * jnp.sqrt(jnp.maximum(quad, 0.0)))
        # ties (only before any data) go to the lowest index, as "arbitrarily" in Li et al.
        a = jnp.argmax(scores).astype(jnp.int32)
        return a, state, {"a_inv_x": ax[a]}

    def observe(self, key, state, transition):
        x = _features(transition.obs, self.fit_intercept)
        r = scalar_reward(transition.reward, self.reward_weights, "LinUCB")
        a = transition.action
        a_inv = rank_one_arm_update(state.a_inv, a, x, transition.act_info.get("a_inv_x"))
        return state.replace(a_inv=a_inv, b=state.b.at[a].add(r * x), t=state.t + 1)


# --------------------------------------------------------------------------
# Normal-inverse-gamma posterior shared by LinTS and NeuralLinear
# --------------------------------------------------------------------------


@flax.struct.dataclass
class NIGPosterior:
    """Sufficient statistics of K per-arm NIG regressions (Riquelme et al. 2018, §3)."""

    cov: jax.Array  # [K, p, p] Λ_a^{-1}, the inverse precision
    xy: jax.Array  # [K, p] X^T y
    yy: jax.Array  # [K] y^T y
    n: jax.Array  # [K] observations


def nig_prior(num_arms: int, dim: int, lambda_prior: float) -> NIGPosterior:
    r"""The prior :math:`\Lambda_0 = \lambda I`, no data."""
    cov = jnp.eye(dim, dtype=jnp.float32) / jnp.float32(lambda_prior)
    return NIGPosterior(
        cov=jnp.broadcast_to(cov, (num_arms, dim, dim)),
        xy=jnp.zeros((num_arms, dim), jnp.float32),
        yy=jnp.zeros((num_arms,), jnp.float32),
        n=jnp.zeros((num_arms,), jnp.float32),
    )


def rank_one_arm_update(mats: jax.Array, arm: jax.Array, x: jax.Array,
                        mx: jax.Array | None = None) -> jax.Array:
    """Sherman–Morrison step of ``mats[arm]`` (``mats`` ``[K, p, p]`` inverses).

    ``mx = mats[arm] @ x`` may be passed when the caller already has it (the
    agents compute :math:`A_a^{-1}x` for every arm in ``act`` and hand the
    pulled arm's over in ``act_info``), which saves reading the matrix again;
    only the pulled arm's matrix is written.
    """
    if mx is None:
        mx = mats[arm] @ x
    delta = jnp.outer(mx, mx) / (1.0 + x @ mx)
    return mats.at[arm].add(-delta)


def nig_observe(post: NIGPosterior, arm: jax.Array, z: jax.Array, r: jax.Array,
                cov_z: jax.Array | None = None) -> NIGPosterior:
    r"""Adds one observation ``(z [p], r [])`` to arm ``arm`` in :math:`O(p^2)`.

    ``cov_z``: optionally :math:`\Lambda_a^{-1} z` of that arm, already computed.
    """
    return NIGPosterior(
        cov=rank_one_arm_update(post.cov, arm, z, cov_z),
        xy=post.xy.at[arm].add(r * z),
        yy=post.yy.at[arm].add(r * r),
        n=post.n.at[arm].add(1.0),
    )


def nig_from_data(z: jax.Array, arms: jax.Array, r: jax.Array, valid: jax.Array,
                  num_arms: int, lambda_prior: float) -> NIGPosterior:
    r"""Posterior statistics from a buffer: ``z [N, p]``, ``arms [N]``, ``r [N]``, ``valid [N]``.

    :math:`\Lambda_a = \lambda I + \sum_{n: a_n = a} z_n z_n^\top` (K masked
    Gram products, :math:`O(K N p^2)`), inverted through its Cholesky factor.
    """
    onehot = jax.nn.one_hot(arms, num_arms, dtype=jnp.float32) * valid[:, None]  # [N, K]
    gram = jnp.einsum("nk,ni,nj->kij", onehot, z, z)  # K matmuls, no [N, p, p] temporary
    p = z.shape[1]
    prec = gram + lambda_prior * jnp.eye(p, dtype=jnp.float32)
    chol = jnp.linalg.cholesky(prec)
    eye = jnp.broadcast_to(jnp.eye(p, dtype=jnp.float32), prec.shape)
    cov = jax.vmap(_cho_solve)(chol, eye)
    return NIGPosterior(
        cov=0.5 * (cov + jnp.swapaxes(cov, 1, 2)),
        xy=jnp.einsum("nk,ni->ki", onehot * r[:, None], z),
        yy=onehot.T @ (r * r),
        n=jnp.sum(onehot, axis=0),
    )


def nig_sample_values(key: jax.Array, post: NIGPosterior, z: jax.Array, a0: jax.Array,
                      b0: jax.Array, return_cov_z: bool = False):
    r"""Thompson samples :math:`\beta_a^\top z` for every arm, ``[K]``.

    :math:`\sigma_a^2 = b_a / G`, :math:`G \sim \mathrm{Gamma}(a_a)` (i.e.
    :math:`IG(a_a, b_a)`), then
    :math:`\beta_a^\top z = \mu_a^\top z + \sigma_a \sqrt{z^\top\Lambda_a^{-1}z}\,\epsilon_a`,
    :math:`\epsilon_a \sim N(0, 1)`: the exact law of :math:`\beta_a^\top z` for
    :math:`\beta_a \sim N(\mu_a, \sigma_a^2\Lambda_a^{-1})`.
    With ``return_cov_z`` also returns :math:`\Lambda_a^{-1} z` ``[K, p]``.
    """
    k_g, k_z = jax.random.split(key)
    num_arms = post.xy.shape[0]
    cz = jnp.einsum("kij,j->ki", post.cov, z)  # Λ^-1 z  [K, p]
    mean = jnp.einsum("ki,ki->k", cz, post.xy)  # μ·z (Λ^-1 symmetric)
    var = jnp.maximum(cz @ z, 0.0)
    mu = jnp.einsum("kij,kj->ki", post.cov, post.xy)
    a = a0 + 0.5 * post.n
    b = b0 + 0.5 * (post.yy - jnp.einsum("ki,ki->k", post.xy, mu))
    b = jnp.maximum(b, 1e-6 * b0)
    sigma2 = b / standard_gamma(k_g, a)
    eps = fast_normals(k_z, num_arms)
    values = mean + jnp.sqrt(sigma2 * var) * eps
    return (values, cz) if return_cov_z else values


def nig_mean_values(post: NIGPosterior, z: jax.Array) -> jax.Array:
    """Posterior-mean predictions ``[K]``."""
    return jnp.einsum("kij,j,ki->k", post.cov, z, post.xy)


def _round_robin(state_t, initial_pulls: int, num_arms: int, action):
    """Plays arm ``t mod K`` during the first ``initial_pulls * K`` steps."""
    forced = state_t < initial_pulls * num_arms
    return jnp.where(forced, (state_t % num_arms).astype(jnp.int32), action)


# --------------------------------------------------------------------------
# LinTS (LinFullPost)
# --------------------------------------------------------------------------


@flax.struct.dataclass
class NIGHParams:
    a0: jax.Array  # [] prior shape of σ²
    b0: jax.Array  # [] prior scale of σ²


@flax.struct.dataclass
class LinTSState:
    hparams: NIGHParams
    post: NIGPosterior
    t: jax.Array


def _check_nig(owner, a0, b0, lambda_prior, initial_pulls):
    return (
        check_float(f"{owner}.a0", a0, low=0.0, low_open=True),
        check_float(f"{owner}.b0", b0, low=0.0, low_open=True),
        check_float(f"{owner}.lambda_prior", lambda_prior, low=0.0, low_open=True),
        check_int(f"{owner}.initial_pulls", initial_pulls, min_value=0),
    )


@gin.configurable
class LinTS(Agent):
    r"""Linear Thompson sampling with a NIG posterior ("LinFullPost").

    Defaults ``a0 = b0 = 6``, ``lambda_prior = 0.25``, ``initial_pulls = 2``
    are those of the ``LinFullPost`` configuration in the authors' released
    code (tensorflow/models, ``research/deep_contextual_bandits/example_main.py``).

    Args:
      a0, b0: prior of the noise variance, :math:`\sigma^2 \sim IG(a_0, b_0)`;
        > 0 (swept as ``hparams.a0``/``hparams.b0``).
      lambda_prior: prior precision λ > 0 of the weights.
      initial_pulls: round-robin pulls of every arm before sampling.
      fit_intercept: append a constant 1 to the context.
      reward_weights: scalarisation of vector rewards.
    """

    def __init__(self, a0: float = 6.0, b0: float = 6.0, lambda_prior: float = 0.25,
                 initial_pulls: int = 2, fit_intercept: bool = False,
                 reward_weights: Sequence[float] | None = None):
        self.a0, self.b0, self.lambda_prior, self.initial_pulls = _check_nig(
            "LinTS", a0, b0, lambda_prior, initial_pulls)
        self.fit_intercept = bool(fit_intercept)
        self.reward_weights = _check_weights("LinTS", reward_weights)

    def hparams(self):
        return NIGHParams(a0=jnp.float32(self.a0), b0=jnp.float32(self.b0))

    def check_compatible(self, obs_spec, action_spec):
        context_dim(obs_spec, "LinTS")
        num_actions(action_spec)

    def init(self, key, obs_spec, action_spec):
        d = context_dim(obs_spec, "LinTS") + int(self.fit_intercept)
        k = num_actions(action_spec)
        return LinTSState(self.hparams(), nig_prior(k, d, self.lambda_prior), jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        x = _features(obs, self.fit_intercept)
        values, cov_x = nig_sample_values(key, state.post, x, state.hparams.a0,
                                          state.hparams.b0, return_cov_z=True)
        if greedy:  # the posterior means
            values = nig_mean_values(state.post, x)
        action = jnp.argmax(values).astype(jnp.int32)  # continuous samples: no ties
        action = _round_robin(state.t, self.initial_pulls, values.shape[0], action)
        return action, state, {"cov_x": cov_x[action]}

    def observe(self, key, state, transition):
        x = _features(transition.obs, self.fit_intercept)
        r = scalar_reward(transition.reward, self.reward_weights, "LinTS")
        post = nig_observe(state.post, transition.action, x, r, transition.act_info.get("cov_x"))
        return state.replace(post=post, t=state.t + 1)


# --------------------------------------------------------------------------
# Neural agents
# --------------------------------------------------------------------------


@flax.struct.dataclass
class UniformState:
    hparams: Any
    arms: jax.Array  # [K] zeros; its static shape carries K
    t: jax.Array


@gin.configurable
class ContextualUniform(Agent):
    """Uniformly random arms (the normaliser of Riquelme et al.'s tables)."""

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        return UniformState(hparams={}, arms=jnp.zeros(k, jnp.float32), t=jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        k = state.arms.shape[0]  # greedy too: nothing to exploit
        return jax.random.randint(key, (), 0, k, dtype=jnp.int32), state, {}

    def observe(self, key, state, transition):
        return state.replace(t=state.t + 1)
