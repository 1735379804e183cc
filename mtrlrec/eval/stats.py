r"""Statistics for comparing policies: mean ± SE, Welch's test, sample sizes and power.

* :func:`mean_se` and :func:`confidence_interval` — the summary every table uses.
* :func:`welch_test` — difference in means of two independent samples with
  Welch's unequal-variance t interval and two-sided p-value (Welch 1947):

  .. math::
     \Delta = \bar y_B - \bar y_A, \quad
     \mathrm{SE} = \sqrt{s_A^2/n_A + s_B^2/n_B}, \quad
     \nu = \frac{\mathrm{SE}^4}{\frac{(s_A^2/n_A)^2}{n_A-1} + \frac{(s_B^2/n_B)^2}{n_B-1}}, \quad
     p = 2\,(1 - F_{t_\nu}(|\Delta| / \mathrm{SE})).

* :func:`sample_size` — users per group to detect a minimum detectable effect
  :math:`\delta` with a two-sided level-α test of power :math:`1-\beta`
  (Kohavi, Tang & Xu, *Trustworthy Online Controlled Experiments*, 2020, §17;
  normal approximation):
  :math:`n = (z_{1-\alpha/2} + z_{1-\beta})^2 (\sigma_A^2 + \sigma_B^2) / \delta^2`.

The simulated A/B test that uses them, :class:`~mtrlrec.runners.ab_test.ABTestRunner`,
is in :mod:`mtrlrec.runners.ab_test`.

All functions are pure JAX (jit/vmap friendly); argument checks happen on the host.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc
from jax.scipy.stats import norm

from mtrlrec.core.errors import ConfigError, check_float


def mean_se(x: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array]:
    """Mean and standard error :math:`s / \\sqrt{n}` (``ddof=1``) along ``axis``."""
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[axis]
    return jnp.mean(x, axis), jnp.std(x, axis, ddof=1) / jnp.sqrt(n)


def t_cdf(t: jax.Array, df: jax.Array) -> jax.Array:
    """CDF of Student's t with ``df`` degrees of freedom, via the regularised incomplete beta.

    :math:`F(t) = 1 - \\tfrac12 I_{\\nu/(\\nu+t^2)}(\\nu/2, 1/2)` for :math:`t \\ge 0`.
    """
    t = jnp.asarray(t, jnp.float32)
    df = jnp.asarray(df, jnp.float32)
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return jnp.where(t >= 0, 1.0 - tail, tail)


def t_ppf(q: float | jax.Array, df: jax.Array, iters: int = 60) -> jax.Array:
    """Quantile of Student's t (bisection on :func:`t_cdf`; exact to float32 precision)."""
    q = jnp.asarray(q, jnp.float32)
    df = jnp.asarray(df, jnp.float32)
    lo = jnp.full(jnp.broadcast_shapes(q.shape, df.shape), -1e3, jnp.float32)
    hi = -lo

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        below = t_cdf(mid, df) < q
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)


def confidence_interval(x: jax.Array, alpha: float = 0.05, axis: int = -1):
    """Student-t interval ``(mean, low, high)`` of the mean of ``x`` at level ``1 - alpha``."""
    m, se = mean_se(x, axis)
    n = jnp.asarray(x).shape[axis]
    h = t_ppf(1 - alpha / 2, jnp.float32(n - 1)) * se
    return m, m - h, m + h


class TestResult(NamedTuple):
    """Outcome of :func:`welch_test` (B minus A); every field has the batch shape."""

    mean_a: jax.Array
    mean_b: jax.Array
    diff: jax.Array
    se: jax.Array
    df: jax.Array
    low: jax.Array
    high: jax.Array
    p_value: jax.Array
    reject: jax.Array  # p_value < alpha


def welch_test(a: jax.Array, b: jax.Array, alpha: float = 0.05, axis: int = -1) -> TestResult:
    """Welch's two-sample t-test of :math:`\\bar y_B - \\bar y_A` (equations in the module docstring).

    Args:
      a: ``[..., n_A]`` metric of the users of group A.
      b: ``[..., n_B]`` group B (n_A, n_B >= 2).
      alpha: level of the two-sided test and ``1 - alpha`` interval.
      axis: the user axis.

    Returns:
      A :class:`TestResult` with the batch shape of ``a`` and ``b`` without ``axis``.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    na, nb = a.shape[axis], b.shape[axis]
    return welch_from_moments(jnp.mean(a, axis), jnp.var(a, axis, ddof=1), na,
                              jnp.mean(b, axis), jnp.var(b, axis, ddof=1), nb, alpha)


def welch_from_moments(ma, var_a, na, mb, var_b, nb, alpha: float = 0.05) -> TestResult:
    """:func:`welch_test` from group means, unbiased variances and sizes (any broadcastable shapes).

    Lets a batch of tests with different group sizes run as one vectorised call.
    """
    ma, mb = jnp.asarray(ma, jnp.float32), jnp.asarray(mb, jnp.float32)
    na, nb = jnp.asarray(na, jnp.float32), jnp.asarray(nb, jnp.float32)
    va = jnp.asarray(var_a, jnp.float32) / na
    vb = jnp.asarray(var_b, jnp.float32) / nb
    se = jnp.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1) + 1e-30)
    df = jnp.maximum(df, 1.0)
    diff = mb - ma
    tstat = jnp.where(se > 0, diff / jnp.where(se > 0, se, 1.0), 0.0)
    p = 2.0 * (1.0 - t_cdf(jnp.abs(tstat), df))
    p = jnp.where(se > 0, p, jnp.where(diff == 0, 1.0, 0.0))
    h = t_ppf(1 - alpha / 2, df) * se
    return TestResult(ma, mb, diff, se, df, diff - h, diff + h, p, p < alpha)


def sample_size(
    mde: float,
    *,
    std: float | None = None,
    std_b: float | None = None,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Users per group needed to detect an absolute effect ``mde`` (module docstring formula).

    Give either ``std`` (standard deviation of the per-user metric in A, and
    ``std_b`` in B if different) or ``baseline``, a conversion rate p for a 0/1
    metric, in which case :math:`\\sigma_A^2 = p(1-p)` and
    :math:`\\sigma_B^2 = (p+\\delta)(1-p-\\delta)`.

    Raises:
      ConfigError: for a non-positive effect, a missing or invalid spread, or
        alpha/power outside (0, 1).
    """
    mde = check_float("sample_size.mde", mde)
    if mde == 0:
        raise ConfigError("sample_size.mde must be non-zero.")
    alpha = check_float("sample_size.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    power = check_float("sample_size.power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    if (std is None) == (baseline is None):
        raise ConfigError("sample_size needs exactly one of std= or baseline=.")
    if baseline is not None:
        p = check_float("sample_size.baseline", baseline, low=0.0, high=1.0, low_open=True, high_open=True)
        q = p + mde
        if not 0 < q < 1:
            raise ConfigError(f"sample_size: baseline + mde = {q} must lie in (0, 1).")
        var = p * (1 - p) + q * (1 - q)
    else:
        s_a = check_float("sample_size.std", std, low=0.0, low_open=True)
        s_b = s_a if std_b is None else check_float("sample_size.std_b", std_b, low=0.0, low_open=True)
        var = s_a ** 2 + s_b ** 2
    z = float(norm.ppf(1 - alpha / 2)) + float(norm.ppf(power))
    return int(math.ceil(z * z * var / (mde * mde)))


def power(n: int, mde: float, std: float, alpha: float = 0.05) -> float:
    """Power of the two-sided z-test with ``n`` users per group, equal std (inverse of :func:`sample_size`)."""
    se = std * math.sqrt(2.0 / n)
    z = float(norm.ppf(1 - alpha / 2))
    return float(norm.cdf(abs(mde) / se - z) + norm.cdf(-abs(mde) / se - z))


__all__ = [
    "TestResult", "confidence_interval", "mean_se", "power", "sample_size",
    "t_cdf", "t_ppf", "welch_from_moments", "welch_test",
]
