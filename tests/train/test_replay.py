"""The ring buffer: wrap-around, per-user n-step windows across episode ends, sampling, vmap/jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.types import Transition
from mtrlrec.train import replay

# One transition: dict observation, a slate action, two per-task rewards.
EXAMPLE = replay.Experience(
    obs={"step": jnp.int32(0), "user": jnp.zeros(2)},
    action=jnp.zeros(2, jnp.int32),
    reward=jnp.zeros(2),
    next_obs={"step": jnp.int32(0), "user": jnp.zeros(2)},
    terminated=False,
    truncated=False,
)


def step_items(t, num_envs=2, rewards=None, term=None, trunc=None):
    """Step ``t`` of ``num_envs`` users: obs 'step' = 10 t + user, next obs 10 t + 5 + user."""
    users = jnp.arange(num_envs)
    r = jnp.full((num_envs,), float(t)) if rewards is None else jnp.asarray(rewards, jnp.float32)
    return replay.Experience(
        obs={"step": 10 * t + users, "user": jnp.zeros((num_envs, 2))},
        action=jnp.stack([users, users + t], -1),
        reward=jnp.stack([r, 2.0 * r], -1),
        next_obs={"step": 10 * t + 5 + users, "user": jnp.ones((num_envs, 2))},
        terminated=jnp.zeros(num_envs, bool) if term is None else jnp.asarray(term),
        truncated=jnp.zeros(num_envs, bool) if trunc is None else jnp.asarray(trunc),
    )


def test_init_shapes_and_dtypes():
    buf = replay.init(4, EXAMPLE, num_envs=3)
    assert buf.capacity == 4 and buf.num_envs == 3
    assert buf.data.obs["user"].shape == (4, 3, 2)
    assert buf.data.action.shape == (4, 3, 2) and buf.data.action.dtype == jnp.int32
    assert buf.data.reward.shape == (4, 3, 2) and buf.data.reward.dtype == jnp.float32
    assert buf.data.terminated.dtype == jnp.bool_
    assert not replay.can_sample(buf, 1)


def test_wrap_around_keeps_the_newest_capacity_steps():
    buf = replay.init(4, EXAMPLE, num_envs=2)
    for t in range(6):
        buf = replay.add_batch(buf, step_items(t))
    assert int(buf.size) == 4 and int(buf.index) == 2
    # Physical slots 0, 1 were overwritten by steps 4, 5.
    np.testing.assert_array_equal(buf.data.obs["step"][:, 0], [40, 50, 20, 30])
    slots = jnp.array([0, 1, 2, 3, 0, 3])
    envs = jnp.array([0, 0, 0, 0, 1, 1])
    got = replay.transitions_at(buf, slots, envs)  # logical slots, 0 = oldest = step 2
    np.testing.assert_array_equal(got.obs["step"], [20, 30, 40, 50, 21, 51])
    np.testing.assert_array_equal(got.next_obs["step"], [25, 35, 45, 55, 26, 56])
    np.testing.assert_array_equal(got.action[:, 1], [2, 3, 4, 5, 3, 6])
    # add_steps writes the same ring in one call.
    many = jax.tree.map(lambda *xs: jnp.stack(xs), *[step_items(t) for t in range(4, 6)])
    buf2 = replay.init(4, EXAMPLE, num_envs=2)
    for t in range(4):
        buf2 = replay.add_batch(buf2, step_items(t))
    buf2 = replay.add_steps(buf2, many)
    jax.tree.map(np.testing.assert_array_equal, buf2, buf)


# n-step windows, gamma = 0.5, n = 3, six steps written.
# User 0: rewards 1..6, terminated at step 2, truncated at step 4.
#   start 0: steps 0,1,2 (term at 2)  R = 1 + .5*2 + .25*3 = 2.75, discount 0,   m 3, next_obs[2]
#   start 1: steps 1,2   (term at 2)  R = 2 + .5*3        = 3.5,  discount 0,   m 2, next_obs[2]
#   start 2: step 2      (term)       R = 3,                      discount 0,   m 1, next_obs[2]
#   start 3: steps 3,4   (trunc at 4) R = 4 + .5*5        = 6.5,  discount .25, m 2, next_obs[4]
# User 1: rewards 1..6, no episode end:
#   R = r_i + .5 r_{i+1} + .25 r_{i+2}, discount .125, bootstrap next_obs[i+2]
#   starts 0..3: R = 2.75, 4.5, 6.25, 8.0
# Starts 4 and 5 (the newest n - 1 slots) are not complete and never sampled.
def n_step_buffer(capacity, num_steps=6, first=0):
    buf = replay.init(capacity, EXAMPLE, num_envs=2)
    for t in range(first, num_steps):
        buf = replay.add_batch(
            buf,
            step_items(t, rewards=[t + 1.0, t + 1.0], term=[t == 2, False], trunc=[t == 4, False]),
        )
    return buf


def test_n_step_returns_across_episode_ends_hardcoded():
    buf = n_step_buffer(capacity=8)
    assert int(replay.num_valid(buf, 3)) == 8 and int(replay.num_valid(buf, 1)) == 12
    slots = jnp.array([0, 1, 2, 3, 0, 1, 2, 3])
    envs = jnp.array([0, 0, 0, 0, 1, 1, 1, 1])
    b = replay.n_step_at(buf, slots, envs, 3, 0.5)
    np.testing.assert_array_equal(b.reward[:, 0], [2.75, 3.5, 3.0, 6.5, 2.75, 4.5, 6.25, 8.0])
    np.testing.assert_array_equal(b.reward[:, 1], 2 * b.reward[:, 0])  # per-task rewards
    np.testing.assert_array_equal(b.discount, [0, 0, 0, 0.25, 0.125, 0.125, 0.125, 0.125])
    np.testing.assert_array_equal(b.steps, [3, 2, 1, 2, 3, 3, 3, 3])
    np.testing.assert_array_equal(b.obs["step"], [0, 10, 20, 30, 1, 11, 21, 31])
    np.testing.assert_array_equal(b.next_obs["step"], [25, 25, 25, 45, 26, 36, 46, 56])
    np.testing.assert_array_equal(b.action[:, 1], [0, 1, 2, 3, 1, 2, 3, 4])  # user + step
    # n = 1 is the one-step target: discount = gamma (1 - terminated).
    b1 = replay.n_step_at(buf, jnp.array([2, 4, 5]), jnp.array([0, 0, 1]), 1, 0.5)
    np.testing.assert_array_equal(b1.reward[:, 0], [3.0, 5.0, 6.0])
    np.testing.assert_array_equal(b1.discount, [0.0, 0.5, 0.5])


def test_n_step_windows_across_the_ring_end():
    # Capacity 5 holding steps 1..5 (step 5 in physical slot 0); the windows at
    # logical starts 0..2 (steps 1..3) equal those of the unwrapped buffer.
    wrapped, flat = n_step_buffer(capacity=5), n_step_buffer(capacity=8)
    assert int(wrapped.index) == 1 and int(replay.num_valid(wrapped, 3)) == 6
    slots, envs = jnp.array([0, 1, 2, 0, 1, 2]), jnp.array([0, 0, 0, 1, 1, 1])
    got = replay.n_step_at(wrapped, slots, envs, 3, 0.5)
    want = replay.n_step_at(flat, slots + 1, envs, 3, 0.5)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    np.testing.assert_array_equal(got.reward[:, 0], [3.5, 3.0, 6.5, 4.5, 6.25, 8.0])


def test_sampling_covers_exactly_the_filled_slots_uniformly():
    buf = replay.init(8, EXAMPLE, num_envs=2)
    for t in range(5):
        buf = replay.add_batch(buf, step_items(t))
    b = replay.sample(buf, jax.random.PRNGKey(0), 1000)
    steps = np.asarray(b.obs["step"])
    want = [10 * t + u for t in range(5) for u in range(2)]
    assert sorted(set(steps.tolist())) == want  # every filled pair, nothing else
    counts = np.array([(steps == s).sum() for s in want])
    se = np.sqrt(1000 * 0.1 * 0.9)  # binomial standard error of one count
    assert np.all(np.abs(counts - 100) < 4 * se), counts
    # Transitions stay whole: next_obs and reward belong to the sampled step.
    np.testing.assert_array_equal(b.next_obs["step"], steps + 5)
    np.testing.assert_array_equal(b.reward[:, 0], steps // 10)
    # n = 3: the newest two slots are not starts.
    bn = replay.sample_n_step(buf, jax.random.PRNGKey(1), 500, 3, 0.9)
    assert sorted(set(np.asarray(bn.obs["step"]).tolist())) == [0, 1, 10, 11, 20, 21]
    # After wrapping: only the newest `capacity` steps.
    for t in range(5, 11):
        buf = replay.add_batch(buf, step_items(t))
    steps = np.asarray(replay.sample(buf, jax.random.PRNGKey(2), 500).obs["step"])
    assert sorted(set((steps // 10).tolist())) == list(range(3, 11))


def test_can_sample():
    buf = replay.init(4, EXAMPLE, num_envs=2)
    buf = replay.add_batch(buf, step_items(0))
    assert replay.can_sample(buf, 2) and not replay.can_sample(buf, 3)
    assert not replay.can_sample(buf, 1, n=2)
    buf = replay.add_batch(buf, step_items(1))
    assert replay.can_sample(buf, 4, n=2)


def test_vmap_over_seeds_equals_one_by_one_under_jit():
    def run(key):
        k_step, k_rew, k_term, k_sample = jax.random.split(key, 4)
        items = replay.Experience(
            obs={"step": jax.random.randint(k_step, (6, 2), 0, 99), "user": jnp.zeros((6, 2, 2))},
            action=jnp.zeros((6, 2, 2), jnp.int32),
            reward=jax.random.uniform(k_rew, (6, 2, 2)),
            next_obs={"step": jnp.zeros((6, 2), jnp.int32), "user": jnp.zeros((6, 2, 2))},
            terminated=jax.random.bernoulli(k_term, 0.3, (6, 2)),
            truncated=jnp.zeros((6, 2), bool),
        )
        first, rest = jax.tree.map(lambda x: x[:3], items), jax.tree.map(lambda x: x[3:], items)
        buf = replay.add_steps(replay.init(4, EXAMPLE, num_envs=2), first)
        buf, _ = jax.lax.scan(  # the rest one step at a time, as an agent's observe does
            lambda b, item: (replay.add_batch(b, item), None), buf, rest
        )
        return buf, replay.sample_n_step(buf, k_sample, 5, 2, 0.9)

    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    run_jit = jax.jit(run)
    batched = jax.jit(jax.vmap(run))(keys)
    for i in range(3):
        one = run_jit(keys[i])
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[i], b), batched, one)
    assert batched[1].reward.shape == (3, 5, 2)
    assert len(set(np.asarray(batched[1].obs["step"]).ravel().tolist())) > 5  # seeds differ


def test_single_user_add_and_from_transition():
    buf = replay.init(3, EXAMPLE)
    t = Transition(
        obs=EXAMPLE.obs, action=jnp.array([1, 2], jnp.int32), reward=jnp.ones(2),
        next_obs={"step": jnp.int32(-1), "user": jnp.zeros(2)},  # first obs of the next episode
        terminated=jnp.bool_(False), truncated=jnp.bool_(True), act_info={},
        info={"final_observation": {"step": jnp.int32(7), "user": jnp.ones(2)}},
    )
    buf = replay.add(buf, replay.Experience.from_transition(t))
    b = replay.sample_n_step(buf, jax.random.PRNGKey(0), 2, 1, 0.5)
    np.testing.assert_array_equal(b.next_obs["step"], [7, 7])  # the truncated episode's last obs
    np.testing.assert_array_equal(b.discount, [0.5, 0.5])  # truncation bootstraps


def test_scalar_reward_single_user():
    example = replay.Experience(
        obs=0, action=0, reward=0.0, next_obs=0, terminated=False, truncated=False
    )
    buf = replay.init(2, example)
    for t in range(3):  # wraps: keeps steps 1, 2
        buf = replay.add(buf, replay.Experience(t, t, float(t), t + 1, False, False))
    b = replay.sample_n_step(buf, jax.random.PRNGKey(0), 4, 2, 0.5)
    np.testing.assert_array_equal(b.reward, [2.0] * 4)  # 1 + .5 * 2
    np.testing.assert_array_equal(b.next_obs, [3] * 4)
    np.testing.assert_array_equal(b.discount, [0.25] * 4)
    with pytest.raises(ValueError, match="exceeds the replay capacity"):
        replay.sample_n_step(buf, jax.random.PRNGKey(0), 4, 3, 0.5)


def test_bad_items_are_named():
    buf = replay.init(3, EXAMPLE, num_envs=2)
    with pytest.raises(ValueError, match="num_envs=2"):
        replay.add(buf, EXAMPLE)
    with pytest.raises(ValueError, match=r"\.action.*shape"):
        replay.add_batch(buf, step_items(0)._replace(action=jnp.zeros((2, 3), jnp.int32)))
    with pytest.raises(TypeError, match=r"\.action.*float32"):
        replay.add_batch(buf, step_items(0)._replace(action=jnp.zeros((2, 2))))


def test_sample_windows_are_consecutive_steps_of_one_user_across_the_ring_end():
    buf = replay.init(4, EXAMPLE, num_envs=2)
    for t in range(6):  # steps 2..5 kept, step 4 in physical slot 0
        buf = replay.add_batch(buf, step_items(t))
    w = replay.sample_windows(buf, jax.random.PRNGKey(0), 200, 2)
    steps = np.asarray(w.obs["step"])  # [200, 2]
    assert steps.shape == (200, 2)
    np.testing.assert_array_equal(steps[:, 1], steps[:, 0] + 10)  # next step, same user
    # Starts: steps 2..4 of either user (step 5 has no successor yet).
    assert sorted(set(steps[:, 0].tolist())) == [20, 21, 30, 31, 40, 41]
    np.testing.assert_array_equal(w.action[:, 1, 1], steps[:, 1] // 10 + steps[:, 1] % 10)
