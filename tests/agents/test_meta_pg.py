"""The meta policy-gradient over item representations (mtrlrec/agents/meta.py), the user
population (mtrlrec/envs/population.py) and the cold-start summary."""

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.meta import MetaPGHParams, MetaPolicyGradient, UserState, inner_step
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.types import Transition
from mtrlrec.core.wrappers import Trials
from mtrlrec.envs.meta import RL2Inputs
from mtrlrec.envs.population import MarketPopulation, UserPopulation, population_prior_logits


def _hp(inner_lr=0.5, alpha=0.8):
    f = jnp.float32
    return MetaPGHParams(f(inner_lr), f(0.01), f(alpha), f(0.0), f(0.0), f(0.9), f(1.0))


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, binding", [
    ({"alpha": 1.5}, "MetaPolicyGradient.alpha"),
    ({"alpha": -0.1}, "MetaPolicyGradient.alpha"),
    ({"inner_lr": 0.0}, "MetaPolicyGradient.inner_lr"),
    ({"inner_lr": -1.0}, "MetaPolicyGradient.inner_lr"),
    ({"meta_gradient": "second"}, "MetaPolicyGradient.meta_gradient"),
    ({"patience": 5}, "MetaPolicyGradient.val_users"),
    ({"maml_window": -1}, "MetaPolicyGradient.maml_window"),
    ({"user_state": "lstm"}, "MetaPolicyGradient.user_state"),
])
def test_bad_hyperparameters_name_the_binding(kwargs, binding):
    with pytest.raises(ConfigError, match=binding):
        MetaPolicyGradient(**kwargs)


def test_swept_alpha_is_checked_like_the_binding():
    agent = MetaPolicyGradient()
    agent.check_hparam("alpha", 0.3)
    with pytest.raises(ConfigError, match="MetaPolicyGradient.alpha"):
        agent.check_hparam("alpha", 1.2)


def test_bad_population_and_trials():
    with pytest.raises(ConfigError, match="UserPopulation.user_std"):
        UserPopulation(user_std=-1.0)
    with pytest.raises(ConfigError, match="MarketPopulation.std"):
        MarketPopulation(std=(1.0, -0.2, 0.1))
    with pytest.raises(ConfigError, match="horizons"):
        UserPopulation(horizons=(50, 10))
    env = UserPopulation(num_items=4, dim=2)
    with pytest.raises(ConfigError, match="Trials.length"):
        Trials(env, env, 0)


def test_needs_items_and_last_interaction():
    agent = MetaPolicyGradient()
    env = UserPopulation(num_items=4, dim=2)  # constant observation, no RL2Inputs
    with pytest.raises(ConfigError, match="RL2Inputs"):
        agent.check_compatible(env.observation_spec(), env.action_spec())


# -- the population -------------------------------------------------------------------
def test_population_shared_structure_and_horizon_metrics():
    env = UserPopulation(num_items=6, dim=3, mean_norm=1.0, user_std=0.5)
    users = env.sample(jax.random.PRNGKey(0), 4000)
    assert users.u.shape == (4000, 3)
    np.testing.assert_allclose(users.u.mean(0), env.mean, atol=0.03)
    np.testing.assert_allclose(users.u.std(0), 0.5, atol=0.03)
    u0 = jax.tree.map(lambda a: a[0], users)
    _, state = env.reset_env(jax.random.PRNGKey(1), u0)
    obs, state, r, _, _, info = env.step_env(jax.random.PRNGKey(2), state, 1, u0)
    assert set(info) >= {"click", "regret", "first10", "first50", "first200"}
    assert float(info["first10"]) == float(r) and int(state.t) == 1
    expert = population_prior_logits(env, num_users=500)
    assert len(expert) == 6 and np.all(np.isfinite(expert))
    market = MarketPopulation()
    assert market.num_arms == 16 and market.values.max() == 8.0


# -- the inner step, by hand ------------------------------------------------------------
def test_inner_step_hand_computed():
    h = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    theta = {"W": jnp.zeros((2, 2)), "v": jnp.zeros(2), "b": jnp.zeros(3)}
    u = UserState(theta, jnp.zeros(2), jnp.float32(0.0), jnp.float32(0.0))
    out = inner_step(h, theta, u, 1, jnp.float32(1.0), jnp.bool_(True), _hp(0.5, 0.8))
    # d log softmax / db = onehot(a) - 1/3; d/dv = h_a - mean h; dW = (h_a - mean h) s^T = 0.
    np.testing.assert_allclose(out.theta["b"], 0.5 * (np.eye(3)[1] - 1 / 3), rtol=1e-6)
    np.testing.assert_allclose(out.theta["v"], 0.5 * (np.asarray([0, 1]) - np.asarray([2, 2]) / 3),
                               rtol=1e-6)
    np.testing.assert_allclose(out.theta["W"], 0.0)
    np.testing.assert_allclose(out.s, 0.2 * np.asarray([0.0, 1.0]), rtol=1e-6)  # (1 - α) h_a
    assert float(out.rbar) == 1.0 and float(out.n) == 1.0
    # No click: the state keeps s; no interaction (after a reset): nothing moves.
    out0 = inner_step(h, theta, u, 1, jnp.float32(0.0), jnp.bool_(True), _hp())
    np.testing.assert_allclose(out0.s, 0.0)
    none = inner_step(h, theta, u, 1, jnp.float32(1.0), jnp.bool_(False), _hp())
    np.testing.assert_allclose(none.theta["b"], 0.0)


# -- act / observe / replay / learn on a tiny population --------------------------------
@pytest.fixture(scope="module")
def tiny():
    k, d, n, t = 5, 3, 4, 6
    pop = UserPopulation(num_items=k, dim=d, observation="items", horizons=(2, 6))
    env = Trials(RL2Inputs(pop), pop, t)
    out = {}
    for mode in ("maml", "first_order", "maml2", "gru"):
        window = 2 if mode == "maml2" else 0
        agent = MetaPolicyGradient(hidden=(8,), embed_dim=4,
                                   meta_gradient=mode if mode == "first_order" else "maml",
                                   rollout_length=t, outer_lr=0.05, inner_lr=1.0,
                                   maml_window=window,
                                   user_state="gru" if mode == "gru" else "smoothing")
        agent.check_compatible(env.observation_spec(), env.action_spec())
        agent.check_num_envs(n)
        state = agent.init(jax.random.PRNGKey(0), env.observation_spec(), env.action_spec())
        keys = jax.random.split(jax.random.PRNGKey(1), n)
        obs, env_state = jax.vmap(env.reset_env, in_axes=(0, None))(keys, None)
        logps = []
        for i in range(t):
            a, state, _ = agent.act(jax.random.PRNGKey(10 + i), state, obs)
            h = agent.represent(state.meta["enc"], state.items)
            lp = jax.vmap(lambda u: jax.nn.log_softmax(
                h @ (u.theta["W"] @ u.s + u.theta["v"]) + u.theta["b"]))(state.users)
            logps.append(np.asarray(lp[jnp.arange(n), a]))
            ks = jax.random.split(jax.random.PRNGKey(100 + i), n)
            nobs, env_state, r, term, trunc, info = jax.vmap(env.step)(ks, env_state, a)
            state = agent.observe(jax.random.PRNGKey(0), state, Transition(
                obs, a, r, nobs, term, trunc, {}, info))
            state = agent.reset_trial(jax.random.PRNGKey(0), state, info["trial_done"])
            obs = nobs
        new, metrics = jax.jit(agent.learn)(jax.random.PRNGKey(3), state)
        out[mode] = (agent, state, np.stack(logps), new, metrics)
    return out


@pytest.mark.parametrize("mode", ["maml", "gru"])
def test_replay_reproduces_the_online_inner_loop(tiny, mode):
    agent, state, logps, _, _ = tiny[mode]
    ro = state.rollout
    assert bool(ro.resets[-1].all()) and not bool(ro.resets[:-1].any())
    lp, ent = agent.replay(state.meta, state.items, ro, state.hparams, ro.start.theta, False)
    assert lp.shape == ent.shape == ro.rewards.shape
    np.testing.assert_allclose(np.asarray(lp), logps, atol=1e-5)


def test_outer_step_updates_meta_parameters_and_resets_users(tiny):
    for mode in ("maml", "first_order", "gru"):
        agent, state, _, new, metrics = tiny[mode]
        for name in ("outer_loss", "policy_loss", "entropy", "grad_norm",
                     "post_adaptation_reward", "pre_adaptation_reward"):
            assert np.isfinite(float(metrics[name])), (mode, name)
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                             new.meta["theta0"], state.meta["theta0"])
        assert max(jax.tree.leaves(moved)) > 0
        if mode == "gru":  # the GRU's weights are meta-learned too
            assert max(jax.tree.leaves(jax.tree.map(
                lambda a, b: float(jnp.max(jnp.abs(a - b))), new.meta["gru"],
                state.meta["gru"]))) > 0
        # The trial ended: every user starts the next one from the new θ0.
        jax.tree.map(lambda f, t0: np.testing.assert_allclose(f, np.broadcast_to(t0, f.shape),
                                                               atol=1e-6),
                     new.users.theta, new.meta["theta0"])
        assert int(new.rollout.ptr) == 0


def test_maml_truncated_and_first_order_gradients_differ(tiny):
    metas = {m: tiny[m][3].meta for m in ("maml", "first_order", "maml2")}
    for a, b in (("maml", "first_order"), ("maml", "maml2"), ("maml2", "first_order")):
        diff = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), metas[a], metas[b])
        assert max(jax.tree.leaves(diff)) > 1e-6, (a, b)


# -- through the engine, from Gin -------------------------------------------------------
def test_gin_experiment_through_the_engine(tmp_path):
    from mtrlrec.experiment import run_experiment

    gin.clear_config()
    try:
        run_experiment("experiments/meta/cold_start_meta_pg.gin", [
            "TRIAL = 10", "USERS = 6", "TRAIN_STEPS = 40", "EVAL_STEPS = 20",
            "MetaPolicyGradient.val_users = 2", "MetaPolicyGradient.hidden = (4,)",
            "MetaPolicyGradient.embed_dim = 3", "UserPopulation.num_items = 6",
            "UserPopulation.horizons = (5, 10)"], out=str(tmp_path / "run"), progress=False)
    finally:
        gin.clear_config()
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "agent/outer_loss" in text and "agent/post_adaptation_reward" in text
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "ctr@5" in summary and "ctr@10" in summary


def test_early_stopping_restores_the_best_meta_parameters():
    k, d, n, t = 3, 2, 3, 4
    env = RL2Inputs(UserPopulation(num_items=k, dim=d, observation="items"))
    agent = MetaPolicyGradient(encoder="identity", rollout_length=t, outer_lr=0.1,
                               val_users=1, patience=2, val_smoothing=0.0)
    agent.check_num_envs(n)
    state = agent.init(jax.random.PRNGKey(0), env.observation_spec(), env.action_spec())
    state = state.replace(items=jnp.asarray(env.features))
    learn = jax.jit(agent.learn)
    metas = []
    for val in (1.0, 0.0, 0.0, 0.0):  # the validation user's reward per update
        rewards = jnp.zeros((t, n)).at[:, 0].set(val).at[:, 1].set(jnp.asarray([1, 0, 1, 0.]))
        ro = state.rollout.replace(actions=jnp.tile(jnp.arange(n) % k, (t, 1)),
                                   rewards=rewards, resets=jnp.zeros((t, n), bool).at[-1].set(True),
                                   ptr=jnp.int32(t))
        metas.append(state.meta)
        state, m = learn(jax.random.PRNGKey(1), state.replace(rollout=ro))
    # Best validation at the first update (served by the initial θ0); two updates without
    # improvement stop the outer loop and restore it, and it stays stopped.
    assert bool(state.stopped) and float(m["stopped"]) == 1.0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b), state.meta["theta0"],
                 metas[0]["theta0"])


def test_ad_population_two_rewards_and_objective():
    from mtrlrec.envs.population import AdPopulation

    with pytest.raises(ConfigError, match="AdPopulation.weights"):
        AdPopulation(weights=(1.0,))
    env = AdPopulation(num_ads=4, dim=2, weights=(1.0, 5.0), observation="items")
    assert env.reward_names == ("click", "conversion")
    assert env.observation_spec().shape == (4 * 2 * 2,)
    users = env.sample(jax.random.PRNGKey(0), 3)
    u0 = jax.tree.map(lambda a: a[0], users)
    _, st = env.reset_env(jax.random.PRNGKey(1), u0)
    _, _, r, _, _, info = env.step_env(jax.random.PRNGKey(2), st, 0, u0)
    assert r.shape == (2,) and float(r[1]) <= float(r[0])  # a conversion needs a click
    assert float(info["objective"]) == float(r[0] + 5 * r[1]) == float(info["first10"])
    exp = env.expected_rewards(u0)
    np.testing.assert_allclose(exp, env.click_probs(u0) * (1 + 5 * env.conversion_probs(u0)),
                               rtol=1e-6)
