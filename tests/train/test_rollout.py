"""GAE, λ-returns, discounted returns: hand-computed rollouts with a termination and a truncation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.train import rollout

# Two users, T = 5, gamma = lam = 0.5 (every number below is exact in float32).
# User 0:          t=0   t=1    t=2   t=3      t=4
#   reward         1     0      2     1        3
#   V(s_t)         2     4      1     2        4
#   flags          -     term   -     trunc    -      last_value = 8
#   final value                       6
# User 1: reward 1 everywhere, V = 0, no episode end, last_value = 0.
REWARDS = jnp.array([[1.0, 1.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
VALUES = jnp.array([[2.0, 0.0], [4.0, 0.0], [1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
LAST = jnp.array([8.0, 0.0])
TERM = jnp.zeros((5, 2), bool).at[1, 0].set(True)
TRUNC = jnp.zeros((5, 2), bool).at[3, 0].set(True)
# V(final_observation): only read where truncated; elsewhere a value that would show if misused.
FINAL = jnp.full((5, 2), 100.0).at[3, 0].set(6.0)
GAMMA, LAM = 0.5, 0.5

# User 0, by hand.  v'_t = V1=4, (term), V3=2, final=6, last=8.
#   delta = [1 + .5*4 - 2, 0 - 4, 2 + .5*2 - 1, 1 + .5*6 - 2, 3 + .5*8 - 4] = [1, -4, 2, 2, 3]
#   A4 = 3;  A3 = delta3 = 2 (truncation cuts the trace);  A2 = 2 + .25*2 = 2.5
#   A1 = delta1 = -4 (termination);  A0 = 1 + .25*(-4) = 0
# User 1: delta = 1 each step, A_t = 1 + .25 A_{t+1}.
ADV = np.array(
    [[0.0, 1.33203125], [-4.0, 1.328125], [2.5, 1.3125], [2.0, 1.25], [3.0, 1.0]], np.float32
)
RET = ADV + np.asarray(VALUES)  # user 0: [2, 0, 3.5, 4, 7]
# lam = 1, user 0: G4 = 3 + .5*8 = 7, G3 = 1 + .5*6 = 4, G2 = 2 + .5*4 = 4, G1 = 0, G0 = 1.
# User 1: G4 = 1, G3 = 1.5, G2 = 1.75, G1 = 1.875, G0 = 1.9375.
DISC = np.array([[1.0, 1.9375], [0.0, 1.875], [4.0, 1.75], [4.0, 1.5], [7.0, 1.0]], np.float32)

ARGS = (REWARDS, VALUES, LAST, TERM, TRUNC)


def test_gae_hardcoded():
    adv, ret = rollout.gae(*ARGS, final_values=FINAL, gamma=GAMMA, lam=LAM)
    assert adv.shape == ret.shape == (5, 2) and adv.dtype == jnp.float32
    np.testing.assert_array_equal(adv, ADV)
    np.testing.assert_array_equal(ret, RET)


def test_lambda_and_discounted_returns_hardcoded():
    g = rollout.lambda_returns(*ARGS, final_values=FINAL, gamma=GAMMA, lam=LAM)
    np.testing.assert_array_equal(g, RET)
    g1 = rollout.discounted_returns(REWARDS, LAST, TERM, TRUNC, final_values=FINAL, gamma=GAMMA)
    np.testing.assert_array_equal(g1, DISC)
    # lam = 0: one-step TD targets r + gamma (1 - term) v'.
    g0 = rollout.lambda_returns(*ARGS, final_values=FINAL, gamma=GAMMA, lam=0.0)
    np.testing.assert_array_equal(g0[:, 0], [3.0, 0.0, 3.0, 4.0, 7.0])


def test_without_final_values_truncation_is_a_termination():
    # delta3 = 1 - 2 = -1 (no bootstrap), A2 = 2 + .25*(-1) = 1.75; the rest as before.
    adv, _ = rollout.gae(*ARGS, final_values=None, gamma=GAMMA, lam=LAM)
    np.testing.assert_array_equal(adv[:, 0], [0.0, -4.0, 1.75, -1.0, 3.0])
    np.testing.assert_array_equal(adv[:, 1], ADV[:, 1])


def test_per_task_axis_is_vectorised():
    # Task 1 is task 0 scaled by 2 (rewards and values): GAE is linear, so outputs double.
    stack = lambda x: jnp.stack([x, 2.0 * x], axis=-1)  # noqa: E731
    adv, ret = rollout.gae(
        stack(REWARDS), stack(VALUES), stack(LAST), TERM, TRUNC,
        final_values=stack(FINAL), gamma=GAMMA, lam=LAM,
    )
    assert adv.shape == (5, 2, 2)
    np.testing.assert_array_equal(adv, np.stack([ADV, 2 * ADV], -1))
    np.testing.assert_array_equal(ret, np.stack([RET, 2 * RET], -1))
    g = rollout.lambda_returns(
        stack(REWARDS), stack(VALUES), stack(LAST), TERM, TRUNC,
        final_values=stack(FINAL), gamma=jnp.array([GAMMA, GAMMA]), lam=LAM,
    )
    np.testing.assert_array_equal(g, np.stack([RET, 2 * RET], -1))


def test_jit_with_traced_gamma_and_vmap_over_seeds():
    @jax.jit
    def f(rewards, gamma):
        return rollout.gae(
            rewards, VALUES, LAST, TERM, TRUNC, final_values=FINAL, gamma=gamma, lam=LAM
        )[0]

    np.testing.assert_array_equal(f(REWARDS, jnp.float32(GAMMA)), ADV)
    batch = jnp.stack([REWARDS, REWARDS + 1.0, REWARDS * 2.0])
    out = jax.vmap(f, in_axes=(0, None))(batch, jnp.float32(GAMMA))
    for i in range(3):
        np.testing.assert_allclose(out[i], f(batch[i], jnp.float32(GAMMA)), rtol=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match="last_value"):
        rollout.gae(REWARDS, VALUES, LAST[:1], TERM, TRUNC, final_values=None, gamma=0.9, lam=0.9)
    with pytest.raises(ValueError, match="terminated"):
        rollout.gae(
            REWARDS, VALUES, LAST, TERM[:, :1], TRUNC, final_values=None, gamma=0.9, lam=0.9
        )


def test_matches_rlax():
    """rlax (not a dependency) gives the same numbers once truncation is expressed in its terms."""
    rlax = pytest.importorskip("rlax")
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.PRNGKey(0), 5)
    t, n, gamma, lam = 7, 3, 0.9, 0.8
    r = jax.random.normal(k1, (t, n))
    v = jax.random.normal(k2, (t, n))
    last = jax.random.normal(k3, (n,))
    final = jax.random.normal(k4, (t, n))
    u = jax.random.uniform(k5, (t, n))
    term, trunc = u < 0.15, (u > 0.85)
    v_all = jnp.concatenate([v, last[None]])
    disc = gamma * (1.0 - term)
    over_users = lambda f: jax.vmap(f, in_axes=1, out_axes=1)  # noqa: E731
    # Terminations only: rlax's truncated GAE is exactly ours.
    no_trunc = jnp.zeros_like(trunc)
    ours, _ = rollout.gae(r, v, last, term, no_trunc, final_values=None, gamma=gamma, lam=lam)
    rlax_gae = rlax.truncated_generalized_advantage_estimation
    ref = over_users(lambda r_, d_, v_: rlax_gae(r_, d_, lam, v_))(r, disc, v_all)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # With truncations: rlax bootstraps from values[t+1] (the reset obs), so the
    # final value is folded into the reward and the trace cut by a per-step lambda.
    ours, ret = rollout.gae(r, v, last, term, trunc, final_values=final, gamma=gamma, lam=lam)
    r_fold = r + gamma * trunc * (final - v_all[1:])
    lam_t = lam * (1.0 - trunc)
    ref = over_users(rlax_gae)(r_fold, disc, lam_t, v_all)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # rlax.lambda_returns takes the next-state values directly: v'_t with final values.
    v_next = jnp.where(trunc, final, v_all[1:])
    ref_g = over_users(lambda r_, d_, v_, l_: rlax.lambda_returns(r_, d_, v_, l_))(
        r, disc, v_next, lam * (1.0 - (term | trunc))
    )
    g = rollout.lambda_returns(r, v, last, term, trunc, final_values=final, gamma=gamma, lam=lam)
    np.testing.assert_allclose(g, ref_g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_g, rtol=1e-5, atol=1e-5)
