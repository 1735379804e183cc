"""A2C and PPO (mtrlrec/agents/actor_critic.py) and the slate policy (models/policies.py)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.actor_critic import A2C, PPO
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.wrappers import EpisodeStatistics
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.envs.slate import SlateEnv
from mtrlrec.models import policies
from mtrlrec.train import loop


def test_slate_log_prob_is_sequential_sampling_without_replacement():
    lp = jax.nn.log_softmax(jnp.array([0.3, -1.0, 1.2, 0.0]))
    p = np.exp(np.asarray(lp))
    for slate in [(2, 0, 3), (1, 3, 0)]:
        want, left = 1.0, 1.0
        for a in slate:
            want *= p[a] / left
            left -= p[a]
        got = float(jnp.exp(policies.slate_log_prob(lp, jnp.array(slate))))
        assert got == pytest.approx(want, rel=1e-5)
    # the ordered slates of size 2 of 4 items form a distribution
    total = sum(math.exp(policies.slate_log_prob(lp, jnp.array(s)))
                for s in itertools.permutations(range(4), 2))
    assert total == pytest.approx(1.0, abs=1e-5)


def test_gumbel_top_k_samples_the_sequential_distribution():
    lp = jax.nn.log_softmax(jnp.array([1.0, 0.0, -0.5]))
    n = 40_000
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    slates = np.asarray(jax.vmap(lambda k: policies.sample_slate(k, lp, 2))(keys))
    assert np.all(slates[:, 0] != slates[:, 1])
    for s in itertools.permutations(range(3), 2):
        p = math.exp(policies.slate_log_prob(lp, jnp.array(s)))
        freq = np.mean(np.all(slates == np.array(s), axis=1))
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (s, freq, p)


@pytest.mark.parametrize("binding,value,name", [
    ("learning_rate", -1e-3, "PPO.learning_rate"),
    ("clip_epsilon", -0.1, "PPO.clip_epsilon"),
    ("clip_epsilon", 0.0, "PPO.clip_epsilon"),
    ("rollout_length", 0, "PPO.rollout_length"),
])
def test_bad_input_names_the_binding(binding, value, name):
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")) as e:
        PPO(**{binding: value})
    assert name in str(e.value).splitlines()[0]  # the CLI prints this one line


def test_a2c_bad_learning_rate_and_minibatches():
    with pytest.raises(ConfigError, match=r"A2C\.learning_rate"):
        A2C(learning_rate=-1.0)
    with pytest.raises(ConfigError, match=r"PPO\.num_minibatches=3 must divide"):
        PPO(rollout_length=4, num_minibatches=3).check_num_envs(2)
    with pytest.raises(ConfigError, match=r"PPO\.task_weights"):
        PPO(tasks=("click", "purchase"), task_weights=(1.0,))


@pytest.mark.parametrize("cls", [PPO, A2C])
def test_learns_the_best_item(cls):
    """Context-free items (tabular softmax): the greedy policy finds the best arm."""
    env = BernoulliBandit(num_arms=4, means=[0.1, 0.2, 0.9, 0.3])
    kw = dict(rollout_length=4, learning_rate=0.05, entropy_coef=0.0, gamma=0.0)
    agent = cls(**kw, num_epochs=2, num_minibatches=2) if cls is PPO else cls(**kw)
    out = loop.run(env, agent, num_steps=400, num_seeds=2, num_envs=8, log_every=40)
    logits = np.asarray(out.carry.agent_state.params["params"]["logits"])
    assert logits.shape == (2, 4)
    assert np.all(np.argmax(logits, -1) == 2)
    m = out.metrics
    for k in ["agent/loss", "agent/entropy", "agent/approx_kl", "agent/clip_fraction",
              "agent/explained_variance", "agent/value_loss", "agent/policy_loss"]:
        assert np.all(np.isfinite(m[k])), k
    assert m["agent/entropy"][:, -1].mean() < m["agent/entropy"][:, 0].mean()
    assert m["reward"][:, -1].mean() > 0.7


def test_ppo_multitask_slates_one_user_and_many():
    """Slates of k distinct items, per-task value heads from info, greedy evaluation."""
    env = EpisodeStatistics(SlateEnv(num_candidates=5, slate_size=2, num_topics=4,
                                     max_episode_steps=30))
    agent = PPO(rollout_length=4, num_epochs=1, num_minibatches=2, hidden_sizes=(8,),
                tasks=("click", "purchase"), task_weights=(1.0, 5.0))
    out = loop.run(env, agent, num_steps=16, num_seeds=1, num_envs=4, log_every=8,
                   evaluation=loop.Evaluation(8, 1, 30))
    st = out.carry.agent_state
    assert st.rollout.values.shape == (1, 4, 4, 2)  # [seeds, T, N, tasks]
    assert st.rollout.action.shape == (1, 4, 4, 2)
    acts = np.asarray(st.rollout.action).reshape(-1, 2)
    assert np.all(acts[:, 0] != acts[:, 1])
    assert np.isfinite(out.eval_metrics["eval/reward"]).all()
    one = loop.run(env, A2C(rollout_length=4, hidden_sizes=(8,)), num_steps=8, num_seeds=1,
                   num_envs=1, log_every=8)
    assert one.carry.agent_state.rollout.rewards.shape == (1, 4, 1, 1)
    assert np.isfinite(one.metrics["agent/loss"]).all()


def test_a_diverging_run_stops_naming_seed_and_step():
    """A learning rate of 1e30 sends the logits to inf: the engine stops with one line."""
    env = BernoulliBandit(num_arms=3, means=[0.1, 0.5, 0.9])
    agent = A2C(rollout_length=2, learning_rate=1e30, max_grad_norm=1e30, gamma=0.0)
    with pytest.raises(loop.Diverged) as e:
        loop.run(env, agent, num_steps=40, num_seeds=2, num_envs=2, log_every=4)
    msg = str(e.value).splitlines()[0]
    assert "seed" in msg and "step" in msg, msg


def test_supervised_warm_start_fits_the_clicked_items():
    from mtrlrec.agents.warm_start import SlateWarmStart
    from mtrlrec.models.policies import SlatePolicyNet

    env = SlateEnv(num_candidates=5, slate_size=2, num_topics=4, max_episode_steps=30)
    ws = SlateWarmStart(env=env, num_users=8, num_steps=16, train_steps=60, batch_size=32,
                        learning_rate=1e-2)
    obs, item, clicked = ws.log(jax.random.PRNGKey(0))
    assert item.shape == (128,) and obs["doc"].shape == (128, 5, 4) and clicked.any()
    net = SlatePolicyNet((8,))
    p0 = net.init(jax.random.PRNGKey(1), jax.tree.map(lambda x: x[0], obs))

    def ce(p):  # the same log: pretrain draws it from the same key split
        lp = jax.vmap(lambda o: net.apply(p, o)["log_probs"])(obs)
        picked = jnp.take_along_axis(lp, item[:, None], axis=1)[:, 0]
        return float(-jnp.sum(picked * clicked) / clicked.sum())

    k_log, _ = jax.random.split(jax.random.PRNGKey(2))
    obs, item, clicked = ws.log(k_log)
    p1 = ws.pretrain(jax.random.PRNGKey(2), net, p0)
    assert ce(p1) < ce(p0) - 0.05
    with pytest.raises(ConfigError, match=r"PPO\.warm_start needs a slate environment"):
        loop.run(BernoulliBandit(num_arms=3), PPO(warm_start=ws), num_steps=16, num_envs=4,
                 log_every=16)
    with pytest.raises(ConfigError, match=r"SlateWarmStart\.learning_rate"):
        SlateWarmStart(env=env, learning_rate=-1.0)


def test_quick_policy_gradient_slate_table_row(tmp_path):
    """The slate table's spec parses and a quick row (warm start then PPO) runs in the harness.

    The whole quick table (13 rows) compiles for minutes, so CI runs one row.
    """
    from mtrlrec.bench.runner import run_table

    _, table = run_table("policy_gradient_slate", quick=True, rows=["mt_ppo_warm"],
                         out=str(tmp_path / "pg"), progress=False)
    cell = table.cells[("mt_ppo_warm", "reward")]
    assert math.isfinite(cell.mean) and cell.mean > 0
    assert all(s in ("not judged (quick)", "not run") for _, s in table.checks)
