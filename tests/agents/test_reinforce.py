"""REINFORCE with the top-K off-policy correction (mtrlrec/agents/reinforce.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.reinforce import TopKReinforce, expected_gradient, topk_objective
from mtrlrec.agents.slate_baselines import RandomSlate
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.wrappers import EpisodeStatistics
from mtrlrec.envs.bandits import GaussianBandit
from mtrlrec.envs.slate import SlateEnv
from mtrlrec.models.policies import SlatePolicyNet
from mtrlrec.train import loop

R = jnp.array([10.0, 9.0] + [1.0] * 8)


def toy():
    return GaussianBandit(num_arms=10, means=[float(r) for r in R], noise_std=0.0)


def test_expected_gradient_is_the_gradient_of_the_objective():
    logits = jnp.array([0.3, -0.2, 0.1, 0.0, 0.5, -1.0, 0.2, 0.0, 0.0, 0.4])
    auto = jax.grad(lambda z: topk_objective(jax.nn.softmax(z), R, 2))(logits)
    np.testing.assert_allclose(expected_gradient(logits, R, 2, "topk"), auto, rtol=1e-5,
                               atol=1e-6)
    std = jax.grad(lambda z: jnp.sum(jax.nn.softmax(z) * R))(logits)
    np.testing.assert_allclose(expected_gradient(logits, R, 2, "standard"), std, rtol=1e-5,
                               atol=1e-6)


def test_optimum_is_10_19_and_9_19():
    opt = jnp.array([10 / 19, 9 / 19] + [0.0] * 8)
    j_opt = float(topk_objective(opt, R, 2))
    # no point of the simplex does better (random points and perturbations of the optimum)
    pts = jax.random.dirichlet(jax.random.PRNGKey(0), jnp.full(10, 0.3), (20_000,))
    assert float(jnp.max(jax.vmap(lambda p: topk_objective(p, R, 2))(pts))) < j_opt
    for eps in (1e-3, -1e-3):
        assert float(topk_objective(opt + eps * jnp.array([1, -1] + [0] * 8), R, 2)) < j_opt
    moved = opt.at[1].add(-1e-3).at[2].add(1e-3)
    assert float(topk_objective(moved, R, 2)) < j_opt


@pytest.mark.parametrize("correction", ["topk", "standard"])
def test_stratified_batch_gradient_is_the_expected_gradient(correction):
    """One engine step with every item logged once: the SGD step is lr x the expected gradient."""
    agent = TopKReinforce(top_k=2, correction=correction, behaviour="stratified",
                          rollout_length=1, gamma=0.0, optimizer="sgd", learning_rate=0.1,
                          max_grad_norm=1e3)
    out = loop.run(toy(), agent, num_steps=1, num_seeds=1, num_envs=10, log_every=1)
    logits = np.asarray(out.carry.agent_state.params["params"]["logits"])[0]
    want = 0.1 * np.asarray(expected_gradient(jnp.zeros(10), R, 2, correction))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    assert out.metrics["agent/pi_0"][0, 0] == pytest.approx(0.1)  # π before the step


def test_toy_converges_exact_and_sampled():
    common = dict(top_k=2, rollout_length=1, gamma=0.0, optimizer="sgd", max_grad_norm=1e3)
    exact = TopKReinforce(behaviour="stratified", learning_rate=0.3, **common)
    out = loop.run(toy(), exact, num_steps=500, num_seeds=1, num_envs=10, log_every=100)
    assert abs(out.metrics["agent/pi_0"][0, -1] - 10 / 19) < 0.02
    assert abs(out.metrics["agent/pi_1"][0, -1] - 9 / 19) < 0.02
    std = TopKReinforce(behaviour="uniform", correction="standard", learning_rate=0.05, **common)
    out = loop.run(toy(), std, num_steps=1000, num_seeds=2, num_envs=100, log_every=100)
    assert np.all(out.metrics["agent/pi_0"][:, -1] > 0.95)


def test_bad_input_names_the_binding():
    with pytest.raises(ConfigError, match=r"TopKReinforce\.top_k must be >= 1"):
        TopKReinforce(top_k=0)
    with pytest.raises(ConfigError, match=r"TopKReinforce\.top_k K=11 exceeds the 10 candidates"):
        TopKReinforce(top_k=11).check_compatible(toy().observation_spec(), toy().action_spec())
    with pytest.raises(ConfigError, match=r"TopKReinforce\.top_k K=6 exceeds the 5 candidates"):
        loop.run(SlateEnv(num_candidates=5, slate_size=2), TopKReinforce(top_k=6),
                 num_steps=8, num_envs=2, log_every=8)
    with pytest.raises(ConfigError, match=r"TopKReinforce\.learning_rate"):
        TopKReinforce(learning_rate=-0.1)
    with pytest.raises(ConfigError, match=r"TopKReinforce\.weight_cap"):
        TopKReinforce(weight_cap=-1.0)
    with pytest.raises(ConfigError, match=r"multiple of the 10 items"):
        loop.run(toy(), TopKReinforce(behaviour="stratified", rollout_length=1), num_steps=1,
                 num_envs=7, log_every=1)


def test_underflowing_behaviour_probabilities_are_clipped_and_counted():
    """β = 1/10 below min_behaviour_prob = 0.5: every event is clipped, counted, finite."""
    agent = TopKReinforce(behaviour="uniform", rollout_length=2, gamma=0.0,
                          min_behaviour_prob=0.5, learning_rate=0.1)
    out = loop.run(toy(), agent, num_steps=4, num_seeds=1, num_envs=5, log_every=2)
    np.testing.assert_array_equal(out.metrics["agent/behaviour_clipped"], 10.0)  # 2 x 5 events
    assert np.isfinite(out.metrics["agent/loss"]).all()
    # a behaviour head whose estimate underflows to 0: clipped, no NaN
    agent = TopKReinforce(behaviour="uniform", behaviour_probs="head", rollout_length=2,
                          gamma=0.0, min_behaviour_prob=1e-6)
    st = agent.init(jax.random.PRNGKey(0), toy().observation_spec(), toy().action_spec())
    st = st.replace(params=jax.tree.map(lambda x: x, st.params))
    st.params["params"]["behaviour_logits"] = jnp.array([-200.0] + [0.0] * 9)
    agent.check_num_envs(1)
    ro = st.rollout.replace(item=jnp.zeros_like(st.rollout.item),
                            rewards=jnp.ones_like(st.rollout.rewards))
    st, m = agent.learn(jax.random.PRNGKey(1), st.replace(rollout=ro))
    assert float(m["behaviour_clipped"]) == 2.0
    assert np.isfinite(float(m["loss"]))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(st.params))


def test_behaviour_head_does_not_train_the_shared_encoder():
    net = SlatePolicyNet(hidden=(8,), behaviour_head=True)
    obs = {"user": jnp.ones(4) * 0.3, "doc": jnp.eye(5, 4)}
    params = net.init(jax.random.PRNGKey(0), obs)
    g = jax.grad(lambda p: jnp.sum(net.apply(p, obs)["behaviour_log_probs"][:2]))(params)
    enc = jax.tree.leaves(g["params"]["item_encoder"])
    assert all(float(jnp.abs(x).max()) == 0.0 for x in enc)
    assert float(jnp.abs(g["params"]["behaviour"]["w"]["kernel"]).max()) > 0


def test_learns_from_a_log_written_by_another_policy_on_slates():
    """Logged by RandomSlate: the estimated β approaches the logger's (uniform) marginals."""
    env = EpisodeStatistics(SlateEnv(num_candidates=5, slate_size=2, num_topics=4,
                                     max_episode_steps=50))
    agent = TopKReinforce(top_k=2, behaviour=RandomSlate(), rollout_length=4, hidden_sizes=(8,),
                          learning_rate=0.01, weight_cap=5.0)
    out = loop.run(env, agent, num_steps=160, num_seeds=1, num_envs=8, log_every=40,
                   evaluation=loop.Evaluation(160, 1, 50))
    bl = out.metrics["agent/behaviour_loss"][0]
    assert bl[-1] < bl[0]
    assert np.isfinite(out.metrics["agent/loss"]).all()
    assert np.isfinite(out.eval_metrics["eval/reward"]).all()


def test_learning_rate_sweep_is_checked_and_vmapped():
    """A swept learning rate lives in state.hparams: one compiled call; a negative one is refused."""
    common = dict(top_k=2, behaviour="stratified", rollout_length=1, gamma=0.0,
                  optimizer="sgd", max_grad_norm=1e3)
    with pytest.raises(ConfigError, match=r"TopKReinforce\.learning_rate must be > 0"):
        loop.run(toy(), TopKReinforce(**common), num_steps=1, num_envs=10, log_every=1,
                 hparams={"learning_rate": [0.1, -0.1]})
    out = loop.run(toy(), TopKReinforce(**common), num_steps=1, num_envs=10, log_every=1,
                   hparams={"learning_rate": [0.1, 0.2]})
    logits = np.asarray(out.carry.agent_state.params["params"]["logits"])  # [H, S, A]
    np.testing.assert_allclose(logits[1], 2 * logits[0], rtol=1e-5, atol=1e-6)
