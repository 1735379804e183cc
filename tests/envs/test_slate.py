"""Tests of the slate simulator (mtrlrec/envs/slate.py, choice.py) and its episode evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.slate_baselines import RandomSlate
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs import choice
from mtrlrec.envs.slate import REWARD_NAMES, SlateEnv, recsim_interest_evolution
from mtrlrec.runners.episodes import episode_summary, evaluate_episodes, summarize
from mtrlrec.runners.online import OnlineRunner
from mtrlrec.train.result import RunContext

ALPHA_B = 0.9 / 3.4


@pytest.fixture(scope="module")
def env():
    return recsim_interest_evolution(num_candidates=10, slate_size=2)


@pytest.fixture(scope="module")
def jitted(env):
    return jax.jit(env.reset_env), jax.jit(env.step_env), jax.jit(env.step)


# -- shapes, specs ---------------------------------------------------------------
def test_shapes_and_specs(env, jitted):
    reset, step_env, step = jitted
    params = env.default_params()
    obs, state = reset(jax.random.PRNGKey(0), params)
    assert obs["user"].shape == (20,) and obs["doc"].shape == (10, 20)
    assert bool(env.observation_spec().contains(obs))
    np.testing.assert_allclose(np.asarray(obs["doc"]).sum(1), 1.0)  # one-hot topics
    assert float(state.budget) == 200.0
    action = jnp.array([3, 7], jnp.int32)
    assert bool(env.action_spec().contains(action))
    obs2, state2, r, term, trunc, info = step_env(jax.random.PRNGKey(1), state, action, params)
    assert r.shape == () and r.dtype == jnp.float32
    assert info["slate_click"].shape == (2,) and info["slate_quality"].shape == (2,)
    assert float(r) == float(info["watch_time"]) == 4.0 * float(info["click"])
    assert int(state2.t) == 1 and not bool(trunc)


def test_recsim_constants(env):
    p = env.default_params()
    expected = np.concatenate([np.linspace(-3, 0, 14), np.linspace(0, 3, 6)])
    np.testing.assert_allclose(p.topic_means, expected, atol=1e-6)
    assert float(p.budget_alpha) == pytest.approx(ALPHA_B)
    assert float(p.step_penalty) == 0.5 and float(p.doc_length) == 4.0
    assert env.max_episode_steps == 27_000 and env.reward_names == ("reward",)


# -- choice models (hand-computed) ---------------------------------------------------
def test_proportional_probabilities():
    m = choice.MultinomialProportional()
    p = SlateEnv(choice_model=m).default_params()
    probs = m.probabilities(jnp.array([0.5, -0.5]), p)
    np.testing.assert_allclose(probs, [1.5 / 4, 0.5 / 4, 2.0 / 4], rtol=1e-6)


def test_logit_probabilities():
    m = choice.MultinomialLogit(no_click_mass=0.0, temperature=0.5)
    p = SlateEnv(choice_model=m).default_params()
    probs = np.asarray(m.probabilities(jnp.array([1.0, -1.0]), p))
    e = np.exp(np.array([2.0, -2.0, 0.0]))
    np.testing.assert_allclose(probs, e / e.sum(), rtol=1e-5)


def test_cascade_probabilities_depend_on_position():
    m = choice.ExponentialCascade(attention_prob=0.65, score_scaling=0.05)
    p = SlateEnv(choice_model=m).default_params()
    s = np.array([1.0, -1.0, 0.0])
    c = 0.65 * 0.05 * np.exp(s)
    want = [c[0], (1 - c[0]) * c[1], (1 - c[0]) * (1 - c[1]) * c[2], np.prod(1 - c)]
    np.testing.assert_allclose(m.probabilities(jnp.asarray(s), p), want, rtol=1e-5)
    swapped = np.asarray(m.probabilities(jnp.asarray(s[::-1].copy()), p))
    assert not np.allclose(swapped[:3][::-1], want[:3])


def test_choice_draw_frequencies(env):
    """Empirical click frequencies of the slate match the proportional model (5 SE)."""
    params = env.default_params()
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    user = jnp.linspace(-0.9, 0.9, 20)
    state = state.replace(user=user, doc_id=jnp.arange(10, dtype=jnp.int32) * 2)
    action = jnp.array([9, 1], jnp.int32)  # topics 18 and 2
    n = 20_000
    keys = jax.random.split(jax.random.PRNGKey(5), n)
    info = jax.jit(jax.vmap(lambda k: env.step_env(k, state, action, params)[5]))(keys)
    freq = np.asarray(info["slate_click"]).mean(0)
    w = np.array([user[18], user[2]]) + 1.0
    p = w / (w.sum() + 2.0)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * se), (freq, p)


# -- transition (hand-computed) ---------------------------------------------------
def _forced_env(click: bool, **kw):
    # no-click weight 0 -> always a click; huge no-click logit -> never a click
    model = (choice.MultinomialProportional(no_click_mass=-1.0, min_normalizer=-1.0) if click
             else choice.MultinomialLogit(no_click_mass=100.0))
    return SlateEnv(num_candidates=3, slate_size=1, choice_model=model,
                    reward_weights=(0.0, 0.0, 1.0, 0.0), **kw)


def test_click_updates_interest_and_budget():
    env = _forced_env(True)
    params = env.default_params()
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    u = jnp.full((20,), 0.2).at[5].set(-0.4)
    state = state.replace(user=u, budget=jnp.float32(100.0), doc_id=jnp.array([5, 1, 2]),
                          doc_quality=jnp.array([1.5, 0.0, 0.0]))
    step = jax.jit(env.step_env)
    ups = 0
    for i in range(40):
        _, s2, r, term, _, info = step(jax.random.PRNGKey(i), state, jnp.array([0]), params)
        assert float(r) == 4.0 and float(info["click"]) == 1.0
        delta = (0.3 - 0.3 * 0.4) * (1.0 - (-0.4))
        new_c = float(s2.user[5])
        assert new_c == pytest.approx(-0.4 + delta, abs=1e-6) or new_c == pytest.approx(
            -0.4 - delta, abs=1e-6)
        ups += new_c > -0.4
        np.testing.assert_allclose(np.delete(np.asarray(s2.user), 5), 0.2)
        assert float(s2.budget) == pytest.approx(100.0 - 4.0 + ALPHA_B * 4.0 * 1.5, rel=1e-6)
        assert float(info["clicked_quality"]) == pytest.approx(1.5)
    # up-move probability (u_c + 1) / 2 = 0.3: 40 draws, mean 12, sd 2.9
    assert 2 <= ups <= 22


def test_no_click_costs_step_penalty_and_budget_terminates():
    env = _forced_env(False)
    params = env.default_params()
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    _, s2, r, term, trunc, info = env.step_env(jax.random.PRNGKey(1), state, jnp.array([0]),
                                               params)
    assert float(r) == 0.0 and float(s2.budget) == pytest.approx(199.5)
    np.testing.assert_array_equal(s2.user, state.user)
    _, s3, _, term, _, _ = env.step_env(jax.random.PRNGKey(1), state.replace(budget=0.5),
                                        jnp.array([0]), params)
    assert bool(term) and float(s3.budget) == 0.0


def test_truncated_watch_time_and_step_cap():
    env = _forced_env(True, max_episode_steps=3)
    params = env.default_params()
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    state = state.replace(budget=jnp.float32(2.5), doc_quality=jnp.zeros(3))
    _, s2, r, term, trunc, _ = env.step_env(jax.random.PRNGKey(1), state, jnp.array([0]), params)
    assert float(r) == pytest.approx(2.5) and bool(term) and not bool(trunc)
    state = state.replace(budget=jnp.float32(100.0), t=jnp.int32(2))
    _, _, _, term, trunc, _ = env.step_env(jax.random.PRNGKey(1), state, jnp.array([0]), params)
    assert bool(trunc) and not bool(term)


def test_auto_reset_after_termination(env, jitted):
    _, _, step = jitted
    params = env.default_params()
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    state = state.replace(budget=jnp.float32(0.1))
    obs, s2, _, term, _, info = step(jax.random.PRNGKey(3), state, jnp.array([0, 1]), params)
    assert bool(term)
    assert float(s2.budget) == 200.0 and int(s2.t) == 0
    assert not np.allclose(obs["user"], info["final_observation"]["user"])


def test_vmap_over_users_matches_single(env, jitted):
    _, step_env, _ = jitted
    params = env.default_params()
    keys = jax.random.split(jax.random.PRNGKey(7), 4)
    obs, states = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(keys, params)
    actions = jnp.tile(jnp.array([[0, 1]], jnp.int32), (4, 1))
    batched = jax.jit(jax.vmap(env.step_env, in_axes=(0, 0, 0, None)))(keys, states, actions,
                                                                        params)
    s1 = jax.tree.map(lambda a: a[2], states)
    single = step_env(keys[2], s1, actions[2], params)
    np.testing.assert_allclose(batched[1].user[2], single[1].user, rtol=1e-6)
    assert float(batched[2][2]) == float(single[2])


# -- multi-task rewards, catalogue mode ---------------------------------------------
def test_vector_reward_and_scalarisation():
    vec = SlateEnv(reward_weights=None)
    assert vec.reward_names == REWARD_NAMES
    params = vec.default_params()
    _, state = vec.reset_env(jax.random.PRNGKey(0), params)
    keys = jax.random.split(jax.random.PRNGKey(1), 256)
    out = jax.jit(jax.vmap(lambda k: vec.step_env(k, state, jnp.array([0, 1]), params)))(keys)
    r, info = out[2], out[5]
    assert r.shape == (256, 4)
    np.testing.assert_array_equal(r[:, 0], info["click"])
    assert np.all(np.asarray(r[:, 1]) <= np.asarray(r[:, 0]))  # purchase only after a click
    assert float(jnp.sum(r[:, 1])) > 0
    scalar = SlateEnv()  # default weights: click + 5 purchase
    out2 = jax.jit(jax.vmap(lambda k: scalar.step_env(k, state, jnp.array([0, 1]), params)))(
        keys)
    np.testing.assert_allclose(out2[2], r[:, 0] + 5.0 * r[:, 1])


def _catalogue():
    feats = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]] * 0.5
    quality = np.array([1.0, -1.0, 0.5, 0.0, 2.0, -2.0], np.float32)
    return feats, quality


@pytest.mark.parametrize("mode", ["additive", "smoothing"])
def test_catalogue_interest_updates(mode):
    feats, quality = _catalogue()
    env = SlateEnv(num_candidates=6, slate_size=1, catalogue_features=feats.tolist(),
                   catalogue_quality=quality.tolist(), interest_update=mode,
                   choice_model=choice.MultinomialProportional(-1.0, -1.0))
    assert env.fixed_catalogue and env.user_dim == 4
    params = env.default_params()
    obs, state = env.reset_env(jax.random.PRNGKey(0), params)
    np.testing.assert_allclose(obs["doc"], feats)
    u = jnp.array([0.1, -0.2, 0.3, 0.0])
    _, s2, _, _, _, info = env.step_env(jax.random.PRNGKey(1), state.replace(user=u),
                                        jnp.array([2]), params)
    d = feats[2]
    want = u + 0.1 * d if mode == "additive" else 0.9 * u + 0.1 * d
    np.testing.assert_allclose(s2.user, want, rtol=1e-6)
    assert float(info["clicked_quality"]) == pytest.approx(0.5)


def test_catalogue_sampling_without_replacement():
    feats, quality = _catalogue()
    env = SlateEnv(num_candidates=4, slate_size=2, catalogue_features=feats,
                   catalogue_quality=quality)
    params = env.default_params()
    _, state = env.reset_env(jax.random.PRNGKey(2), params)
    ids = np.asarray(state.doc_id)
    assert len(set(ids.tolist())) == 4
    np.testing.assert_allclose(state.doc_quality, quality[ids])


# -- bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, needle", [
    (dict(num_candidates=3, slate_size=4), "SlateEnv.slate_size k=4 exceeds"),
    (dict(slate_size=0), "SlateEnv.slate_size must be >= 1"),
    (dict(initial_budget=0.0), "SlateEnv.initial_budget must be >"),
    (dict(initial_budget=-5.0), "SlateEnv.initial_budget must be >"),
    (dict(smoothing_alpha=1.5), "SlateEnv.smoothing_alpha must be <= 1.0"),
    (dict(reward_weights=[1.0, 5.0]), "SlateEnv.reward_weights has 2 entries; expected 4"),
    (dict(interest_update="magic"), "SlateEnv.interest_update must be one of"),
    (dict(num_candidates=4, catalogue_features=np.ones((5, 3)), user_dim=4),
     "SlateEnv.user_dim=4 does not match the catalogue's feature dimension 3"),
    (dict(num_candidates=4, catalogue_features=np.ones((5, 3)), catalogue_quality=[1.0, 2.0]),
     "SlateEnv.catalogue_quality must be a finite array of 5"),
    (dict(num_candidates=8, catalogue_features=np.ones((5, 3))), "exceeds the catalogue's 5"),
    (dict(catalogue_file="/nonexistent.npz"), "SlateEnv.catalogue_file"),
])
def test_bad_env_config(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        SlateEnv(**kwargs)


@pytest.mark.parametrize("make, needle", [
    (lambda: choice.ExponentialCascade(attention_prob=1.2), "attention_prob must be <= 1.0"),
    (lambda: choice.ExponentialCascade(attention_prob=-0.1), "attention_prob must be >= 0.0"),
    (lambda: choice.MultinomialLogit(temperature=0.0), "temperature must be > 0.0"),
    (lambda: choice.MultinomialProportional(min_normalizer=0.5), "min_normalizer must be <= 0"),
    (lambda: SlateEnv(choice_model=choice.ExponentialCascade(score_scaling=0.5)),
     "score_scaling=0.5 times exp"),
])
def test_bad_choice_config(make, needle):
    with pytest.raises(ConfigError, match=needle):
        make()


def test_bad_params_are_rejected_before_compilation(env):
    p = env.default_params()
    with pytest.raises(ConfigError, match="attention_prob must be a probability"):
        env.check_params(p.replace(attention_prob=jnp.float32(2.0)))
    with pytest.raises(ConfigError, match="initial_budget must be > 0"):
        env.check_params(p.replace(initial_budget=jnp.float32(-1.0)))
    with pytest.raises(ConfigError, match="catalogue_features has dimension 3"):
        env.check_params(p.replace(catalogue_features=jnp.ones((4, 3))))


# -- fidelity vs RecSim and the runner ---------------------------------------------------
@pytest.fixture(scope="module")
def episode_setup():
    """One env/agent pair so every episode evaluation below reuses one compiled program."""
    return recsim_interest_evolution(10, 2), RandomSlate()


def test_random_policy_matches_recsim(episode_setup):
    """Random slates, m=10, k=2: mean return vs RecSim 0.2.4 within 4 combined SEs.

    Reference: RecSim 0.2.4 measured by the project (benchmarks/perf/slate_sim.py
    --recsim-worker, 5,000 episodes, seed 0): 154.46 ± 0.16, episode length
    83.96 ± 0.16, clicks 39.09 ± 0.04.
    """
    env, agent = episode_setup
    s = summarize(evaluate_episodes(env, agent, num_users=1000, seed=11))
    for key, ref, ref_se in (("episode_return", 154.46, 0.163), ("episode_length", 83.96, 0.162),
                             ("clicks", 39.086, 0.042)):
        mean, se = s[key]
        assert abs(mean - ref) <= 4 * np.hypot(se, ref_se), (key, mean, se, ref)
    assert s["truncated"][0] == 0.0


def test_episode_runner_result(episode_setup):
    env, agent = episode_setup
    runner = OnlineRunner(env, agent, num_steps=0, num_envs=500, eval_episodes=1,
                          summary=episode_summary)
    res = runner(RunContext(num_seeds=2, seed=0))  # 2 x 500 users
    assert res.final["episode_return"].shape == (2,)
    assert set(res.stderr) >= {"episode_return", "ctr", "avg_quality"}
    assert np.all(res.final["ctr"] > 0) and np.all(res.final["ctr"] < 1)
    assert "episodes" in res.stderr_over
    with pytest.raises(ConfigError, match="OnlineRunner.num_envs must be >= 1"):
        OnlineRunner(env, RandomSlate(), num_steps=0, num_envs=0)


def test_episode_step_cap(episode_setup):
    env, agent = episode_setup
    stats = evaluate_episodes(env, agent, num_users=8, max_steps=5)
    np.testing.assert_array_equal(stats["episode_length"], 5.0)
    np.testing.assert_array_equal(stats["truncated"], 1.0)


# -- Gin: every slate experiment builds (no run) ------------------------------------------
@pytest.mark.parametrize("name", ["random_k2", "random_k3", "random_k3_cascade", "oracle_k2",
                                  "oracle_k3", "fixed_topic_k2", "multitask_random_online"])
def test_experiments_build(name):
    import pathlib

    from mtrlrec import experiment

    path = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "slate" / f"{name}.gin"
    exp = experiment.build([str(path)])
    runner = exp.runner
    assert runner.env.slate_size in (2, 3) and runner.env.num_candidates == 10
    if name == "random_k3_cascade":
        assert isinstance(runner.env.choice_model, choice.ExponentialCascade)


def test_bad_gin_binding_names_the_parameter():
    import pathlib

    from mtrlrec import experiment

    path = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "slate" / "random_k2.gin"
    with pytest.raises(ConfigError, match="slate_size k=11 exceeds"):
        experiment.build([str(path)], ["recsim_interest_evolution.slate_size = 11"])


def test_fixed_candidates_per_episode():
    env = SlateEnv(resample_documents=False, slate_size=3)
    p = env.default_params()
    _, s = env.reset(jax.random.PRNGKey(0), p)
    _, s2, _, term, _, _ = env.step(jax.random.PRNGKey(1), s, jnp.array([0, 1, 2]), p)
    assert not bool(term)
    np.testing.assert_array_equal(s.doc_id, s2.doc_id)
    np.testing.assert_array_equal(s.doc_quality, s2.doc_quality)


@pytest.mark.slow
def test_recsim_fidelity_table_passes(tmp_path):
    """The full fidelity table (7 rows × 5,000 episodes; about a minute on 2 cores)."""
    from mtrlrec.bench.runner import run_table

    _, table = run_table("recsim_fidelity", out=str(tmp_path / "bench"), progress=False)
    assert table.passed, table.markdown
