r"""Matrix factorisation: ``r̂_ui = p_uᵀ q_i (+ b_u + b_i + μ)``.

Two ways to fit it:

* **ALS** (:func:`als`): closed-form alternating ridge solves on a dense
  ``[U, I]`` matrix, in JAX (batched ``D×D`` solves, one ``lax.fori_loop``).
  For weights ``W`` and targets ``R``:
  ``p_u = (Qᵀ diag(W_u) Q + λ I)⁻¹ Qᵀ diag(W_u) R_u`` and symmetrically for ``q_i``.
  Explicit ratings: ``W = 1[observed]``, ``R`` = ratings (Zhou et al. 2008,
  ALS-WR without the count scaling). Implicit feedback (Hu, Koren & Volinsky,
  ICDM 2008, §4, Eq. 3–4): ``R = 1[r_ui > 0]``, ``W = 1 + α r_ui``.
* **BPR** (:func:`bpr_loss`, Rendle et al., UAI 2009, §4, Eq. 4–5) with optax
  through :func:`mtrlrec.train.supervised.fit`:
  ``−Σ log σ(x̂_ui − x̂_uj) + λ(‖p_u‖² + ‖q_i‖² + ‖q_j‖²)`` for an observed
  item i and a uniformly sampled item j.

Item ids follow the package convention (0 = padding, items 1..N), so the item
table has ``N + 1`` rows; scores of item 0 are meaningless and must be masked.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError
from mtrlrec.models.encoders import IdEmbedding, check_ids


class MatrixFactorization(nn.Module):
    """Users ``[U, D]`` and items ``[N + 1, D]`` embeddings with optional biases.

    ``__call__(users [B], items [B] or [B, K])`` -> scores ``[B]`` / ``[B, K]``;
    :meth:`score_all` -> ``[B, N + 1]``.
    """

    num_users: int
    num_items: int
    features: int = 64
    use_bias: bool = False

    def setup(self):
        init = nn.initializers.normal(0.1)
        self.user = IdEmbedding(self.num_users, self.features, None, init, "MatrixFactorization.users")
        self.item = IdEmbedding(self.num_items + 1, self.features, 0, init, "MatrixFactorization.items")
        if self.use_bias:
            self.item_bias = self.param("item_bias", nn.initializers.zeros, (self.num_items + 1,))

    def __call__(self, users: jax.Array, items: jax.Array) -> jax.Array:
        p = self.user(users)
        q = self.item(items)
        if items.ndim == users.ndim + 1:
            s = jnp.einsum("bd,bkd->bk", p, q)
        else:
            s = (p * q).sum(-1)
        if self.use_bias:
            s = s + self.item_bias[items]
        return s

    def score_all(self, users: jax.Array) -> jax.Array:
        s = self.user(users) @ self.item.all().T
        if self.use_bias:
            s = s + self.item_bias
        return s


def bpr_loss(pos_scores: jax.Array, neg_scores: jax.Array) -> jax.Array:
    """``mean(−log σ(x̂_ui − x̂_uj))`` (Rendle et al. 2009, Eq. 4; L2 via weight decay)."""
    return -jnp.mean(jax.nn.log_sigmoid(pos_scores - neg_scores))


def _solve_side(other: jax.Array, R: jax.Array, W: jax.Array, lam: float) -> jax.Array:
    """Ridge solves for every row: ``x_u = (Oᵀ diag(W_u) O + λI)⁻¹ Oᵀ diag(W_u) R_u``.

    ``other [M, D]``, ``R, W [K, M]`` -> ``[K, D]``.
    """
    D = other.shape[1]
    A = jnp.einsum("km,md,me->kde", W, other, other) + lam * jnp.eye(D)
    b = jnp.einsum("km,md->kd", W * R, other)
    return jnp.linalg.solve(A, b[..., None])[..., 0]


def als(
    key: jax.Array,
    R: jax.Array,
    W: jax.Array,
    *,
    rank: int = 32,
    reg: float = 0.1,
    iterations: int = 10,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Alternating least squares on a dense weighted matrix.

    Minimises ``Σ_ui W_ui (R_ui − p_uᵀ q_i)² + λ(Σ‖p_u‖² + Σ‖q_i‖²)``.

    Args:
      key: PRNG key for the initial item factors.
      R: ``[U, I]`` targets. W: ``[U, I]`` non-negative weights (0 = unobserved).
      rank: D. reg: λ > 0. iterations: alternations (each solves P then Q).

    Returns:
      ``(P [U, D], Q [I, D], loss [iterations])`` — the weighted objective after each alternation.
    """
    if R.shape != W.shape or R.ndim != 2:
        raise ConfigError(f"als: R and W must be [U, I] of equal shape, got {R.shape} and {W.shape}.")
    if reg <= 0:
        raise ConfigError(f"als.reg must be > 0, got {reg}.")
    return _als(key, R, W, rank, float(reg), int(iterations))


@jax.jit
def _als_objective(P, Q, R, W, lam):
    return jnp.sum(W * (R - P @ Q.T) ** 2) + lam * (jnp.sum(P**2) + jnp.sum(Q**2))


def _als_impl(key, R, W, rank, lam, iterations):
    U, I = R.shape
    Q = 0.1 * jax.random.normal(key, (I, rank))
    P = jnp.zeros((U, rank))

    def body(carry, _):
        P, Q = carry
        P = _solve_side(Q, R, W, lam)
        Q = _solve_side(P, R.T, W.T, lam)
        return (P, Q), _als_objective(P, Q, R, W, lam)

    (P, Q), losses = jax.lax.scan(body, (P, Q), None, length=iterations)
    return P, Q, losses


_als = jax.jit(_als_impl, static_argnums=(3, 5))


def implicit_weights(counts: jax.Array, alpha: float = 10.0) -> tuple[jax.Array, jax.Array]:
    """Hu et al. (2008) §4: preference ``R = 1[c > 0]`` and confidence ``W = 1 + α c``."""
    return (counts > 0).astype(jnp.float32), 1.0 + alpha * counts.astype(jnp.float32)


def interaction_matrix(users, items, num_users: int, num_items: int) -> jax.Array:
    """Dense ``[U, N + 1]`` count matrix from interaction arrays (item 0 = padding column)."""
    check_ids("interaction_matrix.items", items, num_items + 1)
    check_ids("interaction_matrix.users", users, num_users)
    return jnp.zeros((num_users, num_items + 1), jnp.float32).at[users, items].add(1.0)


def sample_negatives(key: jax.Array, shape, num_items: int) -> jax.Array:
    """Uniform item ids in ``1..num_items`` (the BPR sampler of Rendle et al. §4.3, without rejection)."""
    return jax.random.randint(key, shape, 1, num_items + 1)


__all__ = [
    "MatrixFactorization",
    "bpr_loss",
    "als",
    "implicit_weights",
    "interaction_matrix",
    "sample_negatives",
]
