r"""Off-policy estimators of a policy's value from logged bandit feedback, pure JAX.

Setting (Dudík, Langford & Li, ICML 2011 §2; Saito et al. 2021 §3): a log of
:math:`n` rounds :math:`(x_i, k_i, a_i, r_i, p_i)` — context, position, action
chosen by the behaviour policy :math:`\pi_b`, reward, and propensity
:math:`p_i = \pi_b(a_i \mid x_i, k_i)`. The value of an evaluation policy
:math:`\pi_e` is :math:`V(\pi_e) = \mathbb{E}_x \mathbb{E}_{a \sim \pi_e}[r]`.
Positions follow the item-position model used for the Open Bandit Dataset
(Li et al. WSDM 2018 §3; Saito et al. §3): the action space is items ×
positions, so :math:`\pi_e(\cdot \mid x_i, k_i)` is the distribution over items
at the logged position. Contexts without positions use :math:`k_i = 0` and
``action_dist`` of shape ``[n, A, 1]``.

With importance weights :math:`w_i = \pi_e(a_i \mid x_i, k_i) / p_i`
(optionally clipped, :math:`\min(w_i, \lambda)`, Strehl et al. NeurIPS 2010), a
reward model :math:`\hat q(x, a, k)`, :math:`\hat q_i = \hat q(x_i, a_i, k_i)`
and :math:`\hat q^{\pi}_i = \sum_a \pi_e(a \mid x_i, k_i)\, \hat q(x_i, a, k_i)`:

* IPS (Horvitz & Thompson 1952; Precup et al. 2000):
  :math:`\hat V_{IPS} = \frac1n \sum_i w_i r_i`
* SNIPS (Swaminathan & Joachims NeurIPS 2015):
  :math:`\hat V_{SNIPS} = \sum_i w_i r_i / \sum_i w_i`
* DM (direct method): :math:`\hat V_{DM} = \frac1n \sum_i \hat q^{\pi}_i`
* DR (Dudík et al. 2011 §3): :math:`\hat V_{DR} = \frac1n \sum_i [\hat q^{\pi}_i + w_i (r_i - \hat q_i)]`
* SNDR: :math:`\hat V_{DM} + \sum_i w_i (r_i - \hat q_i) / \sum_i w_i`
* Switch-DR (Wang, Agarwal & Dudík ICML 2017 §4.1):
  :math:`\frac1n \sum_i [\hat q^{\pi}_i + w_i \mathbb{1}[w_i \le \tau] (r_i - \hat q_i)]`

IPS and DR are unbiased when :math:`\pi_b` covers :math:`\pi_e` (every action
with :math:`\pi_e > 0` has :math:`\pi_b > 0`) and no clipping is applied; DR
stays unbiased with a wrong :math:`\hat q`, DM is unbiased only if
:math:`\hat q` is. SNIPS/SNDR are consistent with a small O(1/n) bias and much
lower variance; clipping and switching trade bias for variance.

Vector rewards (click, conversion, ...) of shape ``[n, R]`` give per-objective
estimates of shape ``[R]``: every formula is applied along the trailing axes.

All estimators accept ``sample_weight`` (counts), so a bootstrap is one
``vmap`` over resampled counts (:func:`bootstrap`), and per-position values
(:func:`estimate_by_position`) are masked weights.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError, check_float, check_int

ESTIMATORS = ("ipw", "snipw", "dm", "dr", "sndr", "switch_dr")
"""Names of the estimators returned by :func:`estimate` (in this order)."""


class OPESupportWarning(UserWarning):
    """The evaluation policy puts mass on actions the behaviour policy never takes."""


@flax.struct.dataclass
class OPEInputs:
    """Per-round terms every estimator is built from (n rounds, reward shape ``R...``).

    Attributes:
      weight: ``[n]`` unclipped importance weights :math:`\\pi_e(a_i|x_i,k_i)/p_i`.
      reward: ``[n, R...]`` observed rewards.
      q_logged: ``[n, R...]`` reward model at the logged action, :math:`\\hat q_i`.
      q_policy: ``[n, R...]`` reward model averaged over :math:`\\pi_e`, :math:`\\hat q^\\pi_i`.
      position: ``[n]`` int32 positions.
    """

    weight: jax.Array
    reward: jax.Array
    q_logged: jax.Array
    q_policy: jax.Array
    position: jax.Array


# ---------------------------------------------------------------------------
# validation (host side, before compilation)


def check_logged(
    action,
    reward,
    pscore,
    position=None,
    *,
    num_actions: int,
    num_positions: int = 1,
    name: str = "logged data",
) -> None:
    """Validates a log on the host; raises :class:`ConfigError` naming the first bad row.

    Checks: equal lengths, actions in ``0 .. num_actions-1``, positions in
    ``0 .. num_positions-1``, propensities in (0, 1], finite rewards.
    """
    action = np.asarray(action)
    pscore = np.asarray(pscore)
    reward = np.asarray(reward)
    n = action.shape[0] if action.ndim else 0
    if action.ndim != 1 or pscore.shape != (n,) or reward.shape[:1] != (n,):
        raise ConfigError(
            f"{name}: action [n], pscore [n] and reward [n, ...] must share n, got shapes "
            f"{action.shape}, {pscore.shape}, {reward.shape}."
        )
    bad = np.flatnonzero((action < 0) | (action >= num_actions))
    if bad.size:
        raise ConfigError(
            f"{name}: row {bad[0]}: action {action[bad[0]]} outside the item range 0..{num_actions - 1}."
        )
    bad = np.flatnonzero(~(pscore > 0) | ~(pscore <= 1))
    if bad.size:
        raise ConfigError(
            f"{name}: row {bad[0]}: propensity {pscore[bad[0]]} must be in (0, 1] "
            "(0 or negative propensities make importance weights undefined)."
        )
    if not np.all(np.isfinite(reward)):
        bad = np.flatnonzero(~np.all(np.isfinite(reward.reshape(n, -1)), axis=1))
        raise ConfigError(f"{name}: row {bad[0]}: reward must be finite.")
    if position is not None:
        position = np.asarray(position)
        if position.shape != (n,):
            raise ConfigError(f"{name}: position must have shape ({n},), got {position.shape}.")
        bad = np.flatnonzero((position < 0) | (position >= num_positions))
        if bad.size:
            raise ConfigError(
                f"{name}: row {bad[0]}: position {position[bad[0]]} outside 0..{num_positions - 1}."
            )


def check_action_dist(action_dist, *, name: str = "evaluation policy", atol: float = 1e-4) -> None:
    """Checks ``action_dist [n, A, P]``: non-negative, sums to 1 over actions for every (row, position).

    Raises:
      ConfigError: naming the first row/position whose distribution is invalid.
    """
    d = np.asarray(action_dist, np.float64)
    if d.ndim != 3:
        raise ConfigError(f"{name}: action_dist must have shape [n, num_actions, num_positions], got {d.shape}.")
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        i = np.argwhere(~np.isfinite(d) | (d < 0))[0]
        raise ConfigError(f"{name}: action_dist[{i[0]}, {i[1]}, {i[2]}] = {d[tuple(i)]} is not a probability.")
    s = d.sum(axis=1)
    bad = np.argwhere(np.abs(s - 1.0) > atol)
    if bad.size:
        i, k = bad[0]
        raise ConfigError(
            f"{name}: action distribution at row {i}, position {k} sums to {s[i, k]:.6f}, not 1."
        )


def unsupported_mass(action_dist, behavior_dist) -> float:
    """Share of :math:`\\pi_e`'s mass on actions with :math:`\\pi_b = 0`, averaged over rows and positions.

    Args:
      action_dist: ``[n, A, P]`` (or ``[A, P]``) evaluation policy.
      behavior_dist: same shape (broadcastable), behaviour policy.
    """
    e = np.asarray(action_dist, np.float64)
    b = np.asarray(behavior_dist, np.float64)
    return float(np.mean(np.sum(np.where(np.broadcast_to(b, e.shape) <= 0, e, 0.0), axis=-2)))


def check_support(action_dist, behavior_dist, *, name: str = "evaluation policy", tol: float = 1e-9) -> float:
    """Warns (:class:`OPESupportWarning`) when :math:`\\pi_e` puts mass where :math:`\\pi_b` has none.

    Without support, IPS, SNIPS, DR, SNDR and switch-DR are biased: the
    unsupported actions are never logged, so their reward never enters the
    weighted terms (IPS and DR miss exactly :math:`\\mathbb{E}[\\sum_{a:\\pi_b=0}
    \\pi_e(a) q(x,a)]`; the self-normalised ones renormalise over the supported
    part). Only DM, whose reward model extrapolates, can account for them, and
    only as well as the model does.

    Returns:
      The unsupported share (0 when fully supported).
    """
    share = unsupported_mass(action_dist, behavior_dist)
    if share > tol:
        warnings.warn(
            f"{name} puts {100 * share:.2f}% of its mass on actions the behaviour policy never "
            "takes: IPS, SNIPS, DR, SNDR and switch-DR are biased (they cannot see those "
            "actions' rewards); DM is unbiased only if its reward model is right there.",
            OPESupportWarning,
            stacklevel=2,
        )
    return share


# ---------------------------------------------------------------------------
# pure JAX terms and estimators


def _expand(w, like):
    return jnp.reshape(w, w.shape + (1,) * (like.ndim - w.ndim))


def importance_weights(action_dist, action, position, pscore) -> jax.Array:
    """:math:`w_i = \\pi_e(a_i \\mid x_i, k_i) / p_i`.

    Args:
      action_dist: ``[n, A, P]``; action, position: ``[n]`` int; pscore: ``[n]``.

    Returns:
      ``[n]`` float32.
    """
    action_dist = jnp.asarray(action_dist, jnp.float32)
    pi = action_dist[jnp.arange(action_dist.shape[0]), action, position]
    return pi / jnp.asarray(pscore, jnp.float32)


def make_inputs(action_dist, action, position, pscore, reward, q_hat=None) -> OPEInputs:
    """Builds :class:`OPEInputs` from a log, an evaluation policy and a reward model.

    Args:
      action_dist: ``[n, A, P]`` evaluation policy :math:`\\pi_e(a \\mid x_i, k)`.
      action, position: ``[n]`` int.
      pscore: ``[n]`` behaviour propensities.
      reward: ``[n]`` or ``[n, R]``.
      q_hat: ``[n, A, P]`` or ``[n, A, P, R]`` reward model (None: zeros, so DM = 0
        and DR = IPS).

    Returns:
      :class:`OPEInputs`.
    """
    action_dist = jnp.asarray(action_dist, jnp.float32)
    action = jnp.asarray(action, jnp.int32)
    position = jnp.asarray(position, jnp.int32)
    reward = jnp.asarray(reward, jnp.float32)
    n = action.shape[0]
    rows = jnp.arange(n)
    if q_hat is None:
        q_hat = jnp.zeros(action_dist.shape + reward.shape[1:], jnp.float32)
    q_hat = jnp.asarray(q_hat, jnp.float32)
    q_logged = q_hat[rows, action, position]  # [n, R...]
    q_pos = q_hat[rows, :, position]  # [n, A, R...]
    pi_pos = action_dist[rows, :, position]  # [n, A]
    q_policy = jnp.sum(_expand(pi_pos, q_pos) * q_pos, axis=1)
    return OPEInputs(
        weight=importance_weights(action_dist, action, position, pscore),
        reward=reward,
        q_logged=q_logged,
        q_policy=q_policy,
        position=position,
    )


def estimate(
    inputs: OPEInputs,
    *,
    sample_weight: jax.Array | None = None,
    clip: float | jax.Array = jnp.inf,
    switch_tau: float | jax.Array = jnp.inf,
) -> dict[str, jax.Array]:
    """Every estimator of :data:`ESTIMATORS` (equations in the module docstring).

    Args:
      inputs: per-round terms.
      sample_weight: optional ``[n]`` non-negative row weights (bootstrap counts,
        position masks); the means become weighted means.
      clip: clipping threshold :math:`\\lambda` applied to the weights of every
        weighted estimator (``inf``: none).
      switch_tau: :math:`\\tau` of switch-DR.

    Returns:
      name -> estimate of shape ``R...`` (scalar for scalar rewards).
    """
    n = inputs.weight.shape[0]
    c = jnp.ones(n, jnp.float32) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
    w = jnp.minimum(inputs.weight, clip)
    r, ql, qp = inputs.reward, inputs.q_logged, inputs.q_policy
    cw = _expand(c * w, r)
    ce = _expand(c, r)
    total = jnp.sum(c)
    total_w = jnp.sum(c * w)
    resid = r - ql
    dm = jnp.sum(ce * qp, axis=0) / total
    switch = _expand(c * w * (inputs.weight <= switch_tau), r)
    return {
        "ipw": jnp.sum(cw * r, axis=0) / total,
        "snipw": jnp.sum(cw * r, axis=0) / total_w,
        "dm": dm,
        "dr": dm + jnp.sum(cw * resid, axis=0) / total,
        "sndr": dm + jnp.sum(cw * resid, axis=0) / total_w,
        "switch_dr": dm + jnp.sum(switch * resid, axis=0) / total,
    }


def estimate_by_position(
    inputs: OPEInputs, num_positions: int, *, clip=jnp.inf, switch_tau=jnp.inf,
    sample_weight: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Per-position estimates :math:`\\hat V_k` (rows with :math:`k_i = k` only).

    Under the item-position model the value of a slate is the sum of its
    positions' values, :math:`V(\\text{slate}) = \\sum_k V_k` (Li et al. 2018 §3),
    and the per-row value reported by :func:`estimate` is their (row-weighted) mean.

    Returns:
      name -> ``[P, R...]``.
    """
    c = jnp.ones_like(inputs.weight) if sample_weight is None else sample_weight
    masks = (inputs.position[None, :] == jnp.arange(num_positions)[:, None]).astype(jnp.float32)
    return jax.vmap(
        lambda m: estimate(inputs, sample_weight=c * m, clip=clip, switch_tau=switch_tau)
    )(masks)


class BootstrapResult(NamedTuple):
    """Bootstrap summary of an estimator (shapes ``R...``).

    Attributes:
      estimate: the estimate on the full data.
      mean: mean of the bootstrap replicates.
      se: their standard deviation (bootstrap standard error).
      low, high: percentile confidence interval at level ``1 - alpha``.
      samples: ``[B, R...]`` the replicates.
    """

    estimate: jax.Array
    mean: jax.Array
    se: jax.Array
    low: jax.Array
    high: jax.Array
    samples: jax.Array


def bootstrap_counts(key: jax.Array, n: int) -> jax.Array:
    """Multinomial resampling counts ``[n]`` (float32) of n rows drawn with replacement."""
    idx = jax.random.randint(key, (n,), 0, n)
    return jnp.zeros(n, jnp.float32).at[idx].add(1.0)


def bootstrap_map(fn, key: jax.Array, n: int, num_samples: int, batch_size: int | None = None):
    """Evaluates ``fn(counts [n]) -> pytree`` on ``num_samples`` bootstrap replicates.

    One jitted call: ``lax.map`` over chunks of ``batch_size`` replicates, each
    chunk a ``vmap``. Use it when the whole pipeline (reward model fitting
    included) must be redone per replicate.

    Returns:
      The pytree with a leading ``[num_samples]`` axis.
    """
    num_samples = check_int("bootstrap.num_samples", num_samples, min_value=2)
    if batch_size is None:
        batch_size = max(1, min(num_samples, (1 << 24) // max(n, 1)))
    num_chunks = -(-num_samples // batch_size)
    keys = jax.random.split(key, num_chunks * batch_size)
    keys = keys.reshape((num_chunks, batch_size) + keys.shape[1:])

    @jax.jit
    def run(keys):
        return jax.lax.map(jax.vmap(lambda k: fn(bootstrap_counts(k, n))), keys)

    out = run(keys)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:num_samples], out)


def summarize_bootstrap(full: dict, samples: dict, alpha: float = 0.05) -> dict[str, BootstrapResult]:
    """:class:`BootstrapResult` per estimator from full-data estimates and replicates ``[B, ...]``."""
    alpha = check_float("bootstrap.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    out = {}
    for name, s in samples.items():
        low, high = jnp.quantile(s, jnp.array([alpha / 2, 1 - alpha / 2]), axis=0)
        out[name] = BootstrapResult(full[name], jnp.mean(s, 0), jnp.std(s, 0, ddof=1), low, high, s)
    return out


def bootstrap(
    inputs: OPEInputs,
    key: jax.Array,
    *,
    num_samples: int = 1000,
    alpha: float = 0.05,
    clip=jnp.inf,
    switch_tau=jnp.inf,
    batch_size: int | None = None,
) -> dict[str, BootstrapResult]:
    """Nonparametric bootstrap (Efron & Tibshirani 1993, ch. 13) of every estimator.

    Resamples the n rounds with replacement ``num_samples`` times as counts and
    evaluates all estimators on each replicate in one jitted ``vmap`` (chunked
    with ``lax.map`` so memory stays at ``batch_size × n``).

    Args:
      inputs: per-round terms.
      key: PRNG key.
      num_samples: B >= 2.
      alpha: the interval is the ``[alpha/2, 1-alpha/2]`` percentile interval.
      clip, switch_tau: as in :func:`estimate`.
      batch_size: replicates per chunk (default: about 2^24 / n).

    Returns:
      name -> :class:`BootstrapResult`.
    """
    num_samples = check_int("bootstrap.num_samples", num_samples, min_value=2)
    alpha = check_float("bootstrap.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    n = int(inputs.weight.shape[0])
    if batch_size is None:
        batch_size = max(1, min(num_samples, (1 << 24) // max(n, 1)))
    num_chunks = -(-num_samples // batch_size)
    keys = jax.random.split(key, num_chunks * batch_size)
    keys = keys.reshape((num_chunks, batch_size) + keys.shape[1:])
    samples = _bootstrap_samples(inputs, keys, jnp.float32(clip), jnp.float32(switch_tau))
    full = _estimate_jit(inputs, jnp.float32(clip), jnp.float32(switch_tau))
    out = {}
    for name in ESTIMATORS:
        s = samples[name].reshape((-1,) + samples[name].shape[2:])[:num_samples]
        low, high = jnp.quantile(s, jnp.array([alpha / 2, 1 - alpha / 2]), axis=0)
        out[name] = BootstrapResult(full[name], jnp.mean(s, 0), jnp.std(s, 0, ddof=1), low, high, s)
    return out


@jax.jit
def _estimate_jit(inputs, clip, switch_tau):
    return estimate(inputs, clip=clip, switch_tau=switch_tau)


@jax.jit
def _bootstrap_samples(inputs, keys, clip, switch_tau):
    n = inputs.weight.shape[0]

    def one(k):
        return estimate(inputs, sample_weight=bootstrap_counts(k, n), clip=clip, switch_tau=switch_tau)

    return jax.lax.map(jax.vmap(one), keys)


def make_inputs_context_free(policy, action, position, pscore, reward, q_table=None, fold=None) -> OPEInputs:
    """:func:`make_inputs` for a context-free evaluation policy and reward model.

    Avoids materialising ``[n, A, P]`` arrays (1.2 GB for the full OBD).

    Args:
      policy: ``[A, P]`` evaluation policy :math:`\\pi_e(a \\mid k)`.
      action, position: ``[n]`` int; pscore: ``[n]``; reward: ``[n]`` or ``[n, R]``.
      q_table: ``[F, A, P, R...]`` reward model per fold (from
        :func:`empirical_reward_model` with ``return_table=True``), or None.
      fold: ``[n]`` fold of each row (default all 0).
    """
    policy = jnp.asarray(policy, jnp.float32)
    action = jnp.asarray(action, jnp.int32)
    position = jnp.asarray(position, jnp.int32)
    reward = jnp.asarray(reward, jnp.float32)
    n = action.shape[0]
    fold = jnp.zeros(n, jnp.int32) if fold is None else jnp.asarray(fold, jnp.int32)
    if q_table is None:
        q_table = jnp.zeros((1,) + policy.shape + reward.shape[1:], jnp.float32)
    q_table = jnp.asarray(q_table, jnp.float32)
    q_pi = jnp.sum(_expand(policy, q_table[0]) * q_table, axis=1)  # [F, P, R...]
    return OPEInputs(
        weight=policy[action, position] / jnp.asarray(pscore, jnp.float32),
        reward=reward,
        q_logged=q_table[fold, action, position],
        q_policy=q_pi[fold, position],
        position=position,
    )


# ---------------------------------------------------------------------------
# a simple reward model


def empirical_reward_model(
    action,
    position,
    reward,
    *,
    num_actions: int,
    num_positions: int = 1,
    prior_strength: float = 10.0,
    fold: jax.Array | None = None,
    num_folds: int = 1,
    return_table: bool = False,
    sample_weight: jax.Array | None = None,
) -> jax.Array:
    r"""Context-free reward model: smoothed mean reward of each (action, position).

    :math:`\hat q(a, k) = (S_{a,k} + m \bar r) / (N_{a,k} + m)` with
    :math:`S, N` the reward sum and count of (a, k) in the training rows,
    :math:`\bar r` their overall mean and :math:`m` = ``prior_strength``
    (empirical-Bayes shrinkage towards the mean, so rare cells do not get 0 or 1).

    With ``fold`` (``[n]`` ints in ``0 .. num_folds-1``) the model is
    *cross-fitted* (Chernozhukov et al. 2018; Narita et al. 2021): row i's
    prediction uses only rows of other folds, which keeps DR's residual term
    independent of the model as its unbiasedness argument assumes.

    Args:
      action, position: ``[n]`` int.
      reward: ``[n]`` or ``[n, R]``.
      num_actions, num_positions: A, P (static).
      prior_strength: m >= 0.
      fold: optional ``[n]`` fold ids; num_folds: their number (static).
      return_table: return the ``[F, A, P, R...]`` per-fold tables instead.
      sample_weight: optional ``[n]`` row weights (bootstrap counts), so a
        bootstrap can refit the model on every replicate.

    Returns:
      ``[n, A, P, R...]`` predictions (the same table for every row of a fold).
    """
    reward = jnp.asarray(reward, jnp.float32)
    action = jnp.asarray(action, jnp.int32)
    position = jnp.asarray(position, jnp.int32)
    n = action.shape[0]
    cell = action * num_positions + position
    if fold is None:
        fold = jnp.zeros(n, jnp.int32)
        num_folds = 1
    fold = jnp.asarray(fold, jnp.int32)
    seg = fold * (num_actions * num_positions) + cell
    size = num_folds * num_actions * num_positions
    cw = jnp.ones(n, jnp.float32) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
    s = jax.ops.segment_sum(_expand(cw, reward) * reward, seg, num_segments=size).reshape(
        (num_folds, num_actions, num_positions) + reward.shape[1:])
    c = jax.ops.segment_sum(cw, seg, num_segments=size).reshape(
        num_folds, num_actions, num_positions)
    if num_folds > 1:  # train on the other folds
        s = jnp.sum(s, axis=0, keepdims=True) - s
        c = jnp.sum(c, axis=0, keepdims=True) - c
    tot_s = jnp.sum(s, axis=(1, 2))  # [F, R...]
    tot_c = jnp.sum(c, axis=(1, 2))  # [F]
    mean = tot_s / _expand(jnp.maximum(tot_c, 1.0), tot_s)
    c_e = _expand(c, s)
    table = (s + prior_strength * mean[:, None, None]) / (c_e + prior_strength + 1e-12)
    return table if return_table else table[fold]


@flax.struct.dataclass
class LogisticRewardParams:
    r"""Parameters of :func:`fit_logistic_reward_model`, one set per fold (leading ``[F]`` axis).

    :math:`\mathrm{logit}\, \hat q(x, a, k) = b_0 + b_a + c_k + x^\top v + x^\top U_a`.
    """

    b0: jax.Array  # [F]
    b: jax.Array  # [F, A]
    c: jax.Array  # [F, P]
    v: jax.Array  # [F, d]
    u: jax.Array  # [F, A, d]


def _logistic_logits(p: LogisticRewardParams, x, position):
    """Logits ``[n, A]`` of every action at each row's position, for one fold's params."""
    return (p.b0 + p.c[position])[:, None] + p.b[None, :] + (x @ p.v)[:, None] + x @ p.u.T


def fit_logistic_reward_model(
    features,
    action,
    position,
    reward,
    *,
    num_actions: int,
    num_positions: int = 1,
    l2: float = 1.0,
    steps: int = 300,
    learning_rate: float = 0.05,
    fold: jax.Array | None = None,
    num_folds: int = 1,
) -> LogisticRewardParams:
    r"""A contextual click model for DM/DR: L2-regularised logistic regression.

    :math:`\mathrm{logit}\,\hat q(x, a, k) = b_0 + b_a + c_k + x^	op v + x^	op U_a`
    (item and position effects, a shared context effect and a per-item context
    effect), fitted by full-batch Adam on the mean binary cross-entropy plus
    :math:`rac{\lambda}{n}\lVert(b, c, v, U)
Vert^2`. With ``fold`` the model
    is cross-fitted: fold f's parameters are trained on the other folds (all
    folds in one vmapped call).

    Args:
      features: ``[n, d]`` contexts; action, position: ``[n]``; reward: ``[n]`` in [0, 1].
      num_actions, num_positions: A, P.
      l2: λ >= 0; steps: optimisation steps; learning_rate: Adam step size.
      fold, num_folds: cross-fitting folds (default: one model on all rows).

    Returns:
      :class:`LogisticRewardParams` with a leading ``[F]`` axis.
    """
    import optax

    x = jnp.asarray(features, jnp.float32)
    a = jnp.asarray(action, jnp.int32)
    k = jnp.asarray(position, jnp.int32)
    y = jnp.asarray(reward, jnp.float32)
    n, d = x.shape
    if fold is None:
        fold, num_folds = jnp.zeros(n, jnp.int32), 1
    fold = jnp.asarray(fold, jnp.int32)
    mean = jnp.clip(jnp.mean(y), 1e-4, 1 - 1e-4)
    init = LogisticRewardParams(
        b0=jnp.log(mean / (1 - mean)), b=jnp.zeros(num_actions), c=jnp.zeros(num_positions),
        v=jnp.zeros(d), u=jnp.zeros((num_actions, d)))
    opt = optax.adam(learning_rate)

    def fit_one(f):
        w = (fold != f) if num_folds > 1 else jnp.ones(n, bool)
        w = w.astype(jnp.float32)

        def loss(p):
            logit = (p.b0 + p.b[a] + p.c[k] + x @ p.v + jnp.sum(x * p.u[a], axis=1))
            bce = optax.sigmoid_binary_cross_entropy(logit, y)
            reg = sum(jnp.sum(t ** 2) for t in (p.b, p.c, p.v, p.u))
            return jnp.sum(w * bce) / jnp.sum(w) + l2 * reg / jnp.sum(w)

        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), None

        (p, _), _ = jax.lax.scan(step, (init, opt.init(init)), None, length=steps)
        return p

    return jax.jit(jax.vmap(fit_one))(jnp.arange(num_folds))


def logistic_inputs(params: LogisticRewardParams, features, policy, action, position, pscore,
                    reward, fold=None) -> OPEInputs:
    """:class:`OPEInputs` with a :func:`fit_logistic_reward_model` model and a context-free ``policy [A, P]``.

    Row i uses the parameters of its own fold (cross-fitting).
    """
    x = jnp.asarray(features, jnp.float32)
    a = jnp.asarray(action, jnp.int32)
    k = jnp.asarray(position, jnp.int32)
    policy = jnp.asarray(policy, jnp.float32)
    n = a.shape[0]
    fold = jnp.zeros(n, jnp.int32) if fold is None else jnp.asarray(fold, jnp.int32)
    all_folds = jax.vmap(lambda p: _logistic_logits(p, x, k))(params)  # [F, n, A]
    logits = all_folds[fold, jnp.arange(n)]  # [n, A], each row from its own fold
    q = jax.nn.sigmoid(logits)
    return OPEInputs(
        weight=policy[a, k] / jnp.asarray(pscore, jnp.float32),
        reward=jnp.asarray(reward, jnp.float32),
        q_logged=q[jnp.arange(n), a],
        q_policy=jnp.sum(policy[:, k].T * q, axis=1),
        position=k,
    )


__all__ = [
    "ESTIMATORS", "LogisticRewardParams", "fit_logistic_reward_model", "logistic_inputs", "BootstrapResult", "OPEInputs", "OPESupportWarning", "bootstrap",
    "bootstrap_counts", "bootstrap_map", "check_action_dist", "summarize_bootstrap", "check_logged", "check_support",
    "empirical_reward_model", "estimate", "estimate_by_position", "importance_weights",
    "make_inputs", "make_inputs_context_free", "unsupported_mass",
]
