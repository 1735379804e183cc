"""Matrix factorisation: ALS recovers a low-rank matrix, BPR ranks observed items first."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.models import factorization as F


def test_als_recovers_low_rank_and_is_deterministic():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    R = jax.random.normal(k1, (30, 3)) @ jax.random.normal(k2, (3, 20))
    W = (jax.random.uniform(k3, R.shape) < 0.7).astype(jnp.float32)  # 70 % observed
    P, Q, losses = F.als(jax.random.PRNGKey(1), R, W, rank=3, reg=1e-3, iterations=15)
    assert P.shape == (30, 3) and Q.shape == (20, 3) and losses.shape == (15,)
    # Each alternation solves a ridge problem exactly, so the objective never rises.
    assert np.all(np.diff(np.asarray(losses)) <= 1e-3 * float(losses[0]))
    err_unobserved = float(jnp.sum((1 - W) * (P @ Q.T - R) ** 2) / jnp.sum((1 - W) * R**2))
    assert err_unobserved < 0.05
    P2, Q2, _ = F.als(jax.random.PRNGKey(1), R, W, rank=3, reg=1e-3, iterations=15)
    np.testing.assert_array_equal(P, P2)
    pref, conf = F.implicit_weights(jnp.array([[0.0, 2.0]]), alpha=10.0)
    np.testing.assert_array_equal(pref, [[0.0, 1.0]])
    np.testing.assert_array_equal(conf, [[1.0, 21.0]])
    with pytest.raises(ConfigError, match="als: R and W must be"):
        F.als(jax.random.PRNGKey(0), R, W[:5])
    with pytest.raises(ConfigError, match="als.reg must be > 0"):
        F.als(jax.random.PRNGKey(0), R, W, reg=0.0)


def test_mf_shapes_padding_and_bpr_overfit():
    mf = F.MatrixFactorization(num_users=4, num_items=6, features=8)
    users = jnp.array([0, 1, 2, 3])
    p = jax.jit(mf.init)(jax.random.PRNGKey(0), users, jnp.array([1, 2, 3, 4]))
    assert mf.apply(p, users, jnp.ones((4, 3), jnp.int32)).shape == (4, 3)
    s = mf.apply(p, users, method=mf.score_all)
    assert s.shape == (4, 7)
    np.testing.assert_array_equal(s[:, 0], 0.0)  # padding item scores 0 (its embedding is zero)
    # BPR: user u likes items u+1 and u+2; after training they rank first.
    pos_u = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
    pos_i = pos_u + jnp.array([1, 2] * 4)
    opt = optax.adam(0.05)

    def loss(p, key):
        j = F.sample_negatives(key, (8, 4), 6)
        sc = mf.apply(p, pos_u, jnp.concatenate([pos_i[:, None], j], 1))
        return F.bpr_loss(sc[:, :1], sc[:, 1:])

    def step(c, key):
        p, o = c
        l, g = jax.value_and_grad(loss)(p, key)
        u, o = opt.update(g, o)
        return (optax.apply_updates(p, u), o), l

    (p, _), losses = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))(
        (p, opt.init(p)), jax.random.split(jax.random.PRNGKey(3), 300)
    )
    assert float(losses[-20:].mean()) < 0.5 * float(losses[0])  # floor > 0: negatives may be positives
    top2 = np.argsort(-np.asarray(mf.apply(p, users, method=mf.score_all))[:, 1:], axis=1)[:, :2] + 1
    for u in range(4):
        assert set(top2[u]) == {u + 1, u + 2}
    with pytest.raises(ConfigError, match="MatrixFactorization.items.ids: id 7 is out of the vocabulary"):
        mf.apply(p, users, jnp.array([1, 2, 3, 7]))
    with pytest.raises(ConfigError, match="interaction_matrix.items"):
        F.interaction_matrix(np.array([0]), np.array([9]), 2, 6)
    np.testing.assert_array_equal(F.interaction_matrix(np.array([0, 0]), np.array([2, 2]), 2, 3)[0], [0, 0, 2, 0])
