r"""Synthetic two-task regression data with controlled task correlation.

The generator of Ma et al. (KDD 2018, §3.2):

1. draw orthonormal ``u_1, u_2 ∈ R^d`` (Gram–Schmidt on Gaussian vectors);
2. ``w_1 = c u_1``, ``w_2 = c (p u_1 + sqrt(1 − p²) u_2)`` (task correlation ``p``);
3. ``x ~ N(0, I_d)``;
4. ``y_t = w_tᵀx + Σ_{i=1..m} sin(α_i w_tᵀx + β_i) + ε_t``, ``ε_t ~ N(0, σ²)``.

The paper does not give ``c, m, α, β``; the defaults ``c = 1``, ``m = 10``,
``α_i = i``, ``β_i = (i − 1)²`` and ``σ² = 0.01`` (stated in the paper) are
configurable. Everything is pure JAX, so whole data sets for many independent
runs are generated inside one ``vmap``.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int


@flax.struct.dataclass
class SyntheticTaskParams:
    """Constants of the label functions (arrays so they can be traced).

    Attributes:
      alphas: ``[m]`` frequencies α_i.
      betas: ``[m]`` phases β_i.
      c: scale of the weight vectors.
      noise_std: σ of the label noise.
    """

    alphas: jax.Array
    betas: jax.Array
    c: jax.Array
    noise_std: jax.Array


def default_task_params(
    num_sines: int = 10,
    c: float = 1.0,
    noise_var: float = 0.01,
    alphas: Sequence[float] | None = None,
    betas: Sequence[float] | None = None,
    where: str = "MMoESynthetic",
) -> SyntheticTaskParams:
    """Builds and validates :class:`SyntheticTaskParams` (``α_i = i``, ``β_i = (i−1)²`` by default)."""
    m = check_int(f"{where}.num_sines", num_sines, min_value=0)
    c = check_float(f"{where}.c", c, low=0.0, low_open=True)
    noise_var = check_float(f"{where}.noise_var", noise_var, low=0.0)
    a = check_floats(f"{where}.alphas", alphas, length=m) if alphas is not None else tuple(range(1, m + 1))
    b = (
        check_floats(f"{where}.betas", betas, length=m)
        if betas is not None
        else tuple(float((i - 1) ** 2) for i in range(1, m + 1))
    )
    return SyntheticTaskParams(
        alphas=jnp.asarray(a, jnp.float32).reshape(m),
        betas=jnp.asarray(b, jnp.float32).reshape(m),
        c=jnp.float32(c),
        noise_std=jnp.float32(noise_var**0.5),
    )


def check_correlation(where: str, p) -> float:
    """Validates a task correlation ``-1 <= p <= 1``."""
    return check_float(where, p, low=-1.0, high=1.0)


def sample_weights(key: jax.Array, p: jax.Array, dim: int, c: jax.Array) -> jax.Array:
    """``W [2, d]``: rows ``w_1 = c u_1`` and ``w_2 = c (p u_1 + sqrt(1−p²) u_2)``."""
    g = jax.random.normal(key, (2, dim))
    u1 = g[0] / jnp.linalg.norm(g[0])
    v = g[1] - (g[1] @ u1) * u1
    u2 = v / jnp.linalg.norm(v)
    w1 = c * u1
    w2 = c * (p * u1 + jnp.sqrt(jnp.maximum(1.0 - p**2, 0.0)) * u2)
    return jnp.stack([w1, w2])


def sample_data(key: jax.Array, w: jax.Array, num: int, tp: SyntheticTaskParams) -> tuple[jax.Array, jax.Array]:
    """Samples ``x [num, d]`` and labels ``y [num, 2]`` for weights ``w [2, d]``."""
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (num, w.shape[1]))
    z = x @ w.T  # [num, 2] = w_tᵀx
    s = jnp.sin(z[..., None] * tp.alphas + tp.betas).sum(-1)
    y = z + s + tp.noise_std * jax.random.normal(ke, z.shape)
    return x, y


def make_dataset(
    key: jax.Array, p: jax.Array, *, dim: int, num_train: int, num_valid: int, num_test: int, tp: SyntheticTaskParams
) -> dict[str, jax.Array]:
    """One run's data: ``{'x_train' [N, d], 'y_train' [N, 2], 'x_valid', ..., 'x_test', 'y_test'}``.

    All splits share the weights ``w`` drawn from ``key``; vmap over keys for
    independent runs.
    """
    if isinstance(dim, int) and dim < 2:
        raise ConfigError(f"MMoESynthetic.dim must be >= 2, got {dim}.")
    kw, k1, k2, k3 = jax.random.split(key, 4)
    w = sample_weights(kw, p, dim, tp.c)
    out = {}
    for name, k, n in (("train", k1, num_train), ("valid", k2, num_valid), ("test", k3, num_test)):
        out[f"x_{name}"], out[f"y_{name}"] = sample_data(k, w, n, tp)
    return out
