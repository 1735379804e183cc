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
* DR-os, DR with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy & Dudík,
  ICML 2020 §3): DR with :math:`w_i` replaced by :math:`\lambda w_i / (w_i^2 + \lambda)`
  (:math:`\lambda = 0`: DM; :math:`\lambda \to \infty`: DR);
* DR with pessimistic shrinkage (Su et al. 2020 §3, clipping): DR with
  :math:`\min(w_i, \lambda)`.

obp 0.4.1's defaults are :math:`\tau = 1` (``SwitchDoublyRobust``) and
:math:`\lambda = 0` (``DoublyRobustWithShrinkage``); :func:`obp_estimators`
lists those and a grid of larger values (one name per setting, estimated by
:func:`estimate_specs`).

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

import math
import warnings
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError, check_float, check_int

ESTIMATORS = ("ipw", "snipw", "dm", "dr", "sndr", "switch_dr", "dr_os")
"""Names of the estimators returned by :func:`estimate` (in this order)."""


@flax.struct.dataclass
class OPEInputs:
    """Per-round terms every estimator is built from (n rounds, reward shape ``R...``).

    Attributes:
      weight: ``[n]`` unclipped importance weights :math:`\\pi_e(a_i|x_i,k_i)/p_i`.
      reward: ``[n, R...]`` observed rewards.
      q_logged: ``[n, R...]`` reward model at the logged action, :math:`\\hat q_i`.
      q_policy: ``[n, R...]`` reward model averaged over :math:`\\pi_e`, :math:`\\hat q^\\pi_i`.
      position: ``[n]`` int32 positions.
      weight_lo: optional ``[n]`` float32 remainder ``w64 - float32(w64)`` of weights
        computed in float64 on the host (:func:`make_inputs` with NumPy inputs), so
        switch-DR's test :math:`w_i \le \tau` is decided as in float64: weights equal
        to τ up to float32 rounding (uniform over 46 items against logged
        propensities of 1/46) otherwise land on either side. None: no remainder.
    """

    weight: jax.Array
    reward: jax.Array
    q_logged: jax.Array
    q_policy: jax.Array
    position: jax.Array
    weight_lo: jax.Array | None = None


# validation (host side, before compilation) lives in ope_checks.py
from mtrlrec.eval.ope_checks import (  # noqa: E402,F401
    OPESupportWarning, check_action_dist, check_logged, check_slate_log, check_support,
    unsupported_mass)


# ---------------------------------------------------------------------------
# pure JAX terms and estimators


def _expand(w, like):
    return jnp.reshape(w, w.shape + (1,) * (like.ndim - w.ndim))


def importance_weights(action_dist, action, position, pscore) -> jax.Array:
    r""":math:`w_i = \\pi_e(a_i \\mid x_i, k_i) / p_i`.

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
    action_dist_in = action_dist
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
    weight = importance_weights(action_dist, action, position, pscore)
    weight_lo = None
    if isinstance(action_dist_in, np.ndarray) and isinstance(pscore, np.ndarray):
        # NumPy inputs: the weights in float64 on the host; keep what float32 lost
        w64 = (action_dist_in.astype(np.float64)[np.arange(n), np.asarray(action), np.asarray(position)]
               / pscore.astype(np.float64))
        weight_lo = jnp.asarray(w64 - np.asarray(weight, np.float64), jnp.float32)
    return OPEInputs(
        weight_lo=weight_lo,
        weight=weight,
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
    shrink_lambda: float | jax.Array = jnp.inf,
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
    # (w_hi - tau) is exact near tau (Sterbenz), so adding the float64 remainder
    # decides w <= tau as float64 arithmetic would
    lo = 0.0 if inputs.weight_lo is None else inputs.weight_lo
    switch = _expand(c * w * ((inputs.weight - switch_tau) + lo <= 0), r)
    return {
        "ipw": jnp.sum(cw * r, axis=0) / total,
        "snipw": jnp.sum(cw * r, axis=0) / total_w,
        "dm": dm,
        "dr": dm + jnp.sum(cw * resid, axis=0) / total,
        "sndr": dm + jnp.sum(cw * resid, axis=0) / total_w,
        "switch_dr": dm + jnp.sum(switch * resid, axis=0) / total,
        "dr_os": dm + jnp.sum(_expand(c * shrink_weights(w, shrink_lambda), r) * resid, axis=0) / total,
    }


def shrink_weights(w, lam):
    r"""Optimistic shrinkage :math:`\lambda w / (w^2 + \lambda)` (Su et al. 2020 §3).

    :math:`\lambda = 0` gives 0 for every weight, the limit of the formula (obp
    0.4.1 computes 0/0 = NaN there when some :math:`w_i = 0`); :math:`\lambda =
    \infty` gives :math:`w`.
    """
    w = jnp.asarray(w, jnp.float32)
    lam = jnp.asarray(lam, jnp.float32)
    safe = jnp.where(jnp.isinf(lam) | (lam <= 0), 1.0, lam)
    shrunk = safe * w / (w * w + safe)
    return jnp.where(jnp.isinf(lam), w, jnp.where(lam <= 0, 0.0, shrunk))


class EstimatorSpec(NamedTuple):
    """One estimator setting of a table: ``kind`` in :data:`ESTIMATORS` or ``'dr_clip'``, ``param`` its τ or λ."""

    name: str
    kind: str
    param: float
    label: str


def obp_estimators(
    switch_taus=(1.0, 10.0, 100.0, 1000.0),
    os_lambdas=(0.0, 1.0, 100.0, 10_000.0),
    clip_lambdas=(10.0, 100.0, 1000.0),
) -> tuple[EstimatorSpec, ...]:
    """The estimators of obp 0.4.1 with its defaults first (switch-DR τ = 1, DR-os λ = 0), then a grid.

    Names are ``ipw, snipw, dm, dr, sndr``, ``switch_dr_t<τ>``, ``dr_os_l<λ>`` and
    ``dr_clip_l<λ>`` (integers as written; DR with clipped weights is Su et al.'s
    pessimistic shrinkage, obp's ``DoublyRobust`` has no clipping in 0.4.1).
    """
    def fmt(v):
        return f"{v:g}".replace("+", "")

    out = [EstimatorSpec("ipw", "ipw", math.inf, "IPW"),
           EstimatorSpec("snipw", "snipw", math.inf, "SNIPW"),
           EstimatorSpec("dm", "dm", math.inf, "DM"),
           EstimatorSpec("dr", "dr", math.inf, "DR"),
           EstimatorSpec("sndr", "sndr", math.inf, "SNDR")]
    for t in switch_taus:
        t = check_float("switch_tau", t, low=0.0)
        out.append(EstimatorSpec(f"switch_dr_t{fmt(t)}", "switch_dr", t,
                                 f"Switch-DR (τ={fmt(t)}{', obp default' if t == 1.0 else ''})"))
    for lam in os_lambdas:
        lam = check_float("shrink_lambda", lam, low=0.0)
        out.append(EstimatorSpec(f"dr_os_l{fmt(lam)}", "dr_os", lam,
                                 f"DR-os (λ={fmt(lam)}{', obp default' if lam == 0.0 else ''})"))
    for lam in clip_lambdas:
        lam = check_float("clip", lam, low=0.0, low_open=True)
        out.append(EstimatorSpec(f"dr_clip_l{fmt(lam)}", "dr_clip", lam, f"DR, weights clipped at λ={fmt(lam)}"))
    return tuple(out)


def estimate_specs(inputs: OPEInputs, specs, *, sample_weight: jax.Array | None = None) -> dict[str, jax.Array]:
    """Estimates for every :class:`EstimatorSpec` (name -> ``R...``); traceable (bootstrap-friendly)."""
    base = estimate(inputs, sample_weight=sample_weight)
    out = {}
    for sp in specs:
        if sp.kind in ("ipw", "snipw", "dm", "dr", "sndr"):
            out[sp.name] = base[sp.kind]
        elif sp.kind == "switch_dr":
            out[sp.name] = estimate(inputs, sample_weight=sample_weight, switch_tau=sp.param)["switch_dr"]
        elif sp.kind == "dr_os":
            out[sp.name] = estimate(inputs, sample_weight=sample_weight, shrink_lambda=sp.param)["dr_os"]
        elif sp.kind == "dr_clip":
            out[sp.name] = estimate(inputs, sample_weight=sample_weight, clip=sp.param)["dr"]
        else:
            raise ConfigError(f"estimator kind must be one of {ESTIMATORS + ('dr_clip',)}, got {sp.kind!r}.")
    return out


def estimate_by_position(
    inputs: OPEInputs, num_positions: int, *, clip=jnp.inf, switch_tau=jnp.inf,
    sample_weight: jax.Array | None = None,
) -> dict[str, jax.Array]:
    r"""Per-position estimates :math:`\\hat V_k` (rows with :math:`k_i = k` only).

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


__all__ = [
    "ESTIMATORS", "BootstrapResult", "OPEInputs", "OPESupportWarning", "bootstrap",
    "bootstrap_counts", "bootstrap_map", "check_action_dist", "summarize_bootstrap", "check_logged", "check_support",
    "estimate", "estimate_by_position", "importance_weights",
    "make_inputs", "make_inputs_context_free", "unsupported_mass", "EstimatorSpec",
    "obp_estimators", "estimate_specs", "shrink_weights",
]

