"""Multi-objective and constrained LinTS: per-objective models, multiplier, behaviour, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.runners.online import OnlineRunner
from mtrlrec.runners.summaries import ads_summary, pricing_summary
from mtrlrec.agents.linear import LinTS
from mtrlrec.agents.multiobjective import ConstrainedLinTS, MultiObjectiveLinTS
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Box, Discrete
from mtrlrec.core.types import Transition
from mtrlrec.envs.ads import AdPlacement
from mtrlrec.envs.pricing import DynamicPricing
from mtrlrec.train.result import RunContext

OBS, ACT = Box(-jnp.inf, jnp.inf, (3,)), Discrete(4)


def _tr(x, a, r):
    return Transition(jnp.asarray(x, jnp.float32), jnp.int32(a), jnp.asarray(r, jnp.float32),
                      jnp.asarray(x, jnp.float32), False, False, {}, {})


def test_one_model_per_objective_equals_separate_lints():
    mo = MultiObjectiveLinTS(objective_weights=[1.0, 2.0], fit_intercept=False)
    single = LinTS(fit_intercept=False)
    s_mo = mo.init(jax.random.PRNGKey(0), OBS, ACT)
    s_1 = [single.init(jax.random.PRNGKey(0), OBS, ACT) for _ in range(2)]
    rng = np.random.default_rng(0)
    xs = (jnp.asarray(rng.normal(size=(6, 3)), jnp.float32), jnp.asarray(rng.integers(0, 4, 6)),
          jnp.asarray(rng.normal(size=(6, 2)), jnp.float32))

    def run(agent, state, pick):
        body = lambda st, d: (agent.observe(None, st, _tr(d[0], d[1], pick(d[2]))), None)
        return jax.jit(lambda s0: jax.lax.scan(body, s0, xs)[0])(state)

    s_mo = run(mo, s_mo, lambda r: r)
    s_1 = [run(single, s, lambda r, m=m: r[m]) for m, s in enumerate(s_1)]
    for m in range(2):
        np.testing.assert_allclose(s_mo.post.xy[m], s_1[m].post.xy, rtol=1e-5)
        np.testing.assert_allclose(s_mo.post.cov[m], s_1[m].post.cov, rtol=1e-5)
    samples = mo.sampled_rewards(jax.random.PRNGKey(1), s_mo, jnp.ones(3))
    assert samples.shape == (2, 4)


def test_lagrange_multiplier_update_by_hand():
    agent = ConstrainedLinTS(objective_weights=[1.0, 0.0], constraint_weights=[0.0, 1.0],
                             constraint_level=0.2, lagrange_lr=0.5, max_multiplier=1.0,
                             fit_intercept=False)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT)
    state = agent.observe(None, state, _tr(np.ones(3), 1, [3.0, 0.6]))
    state, m = agent.learn(None, state)  # learn_every = 1: the multiplier's metrics
    assert float(state.lam) == pytest.approx(0.5 * (0.6 - 0.2))
    assert float(m["constraint_gap"]) == pytest.approx(0.4)
    state = agent.observe(None, state, _tr(np.ones(3), 1, [3.0, 0.0]))
    assert float(state.lam) == pytest.approx(0.2 - 0.5 * 0.2)
    state = agent.observe(None, state, _tr(np.ones(3), 1, [3.0, 0.0]))
    assert float(state.lam) == pytest.approx(0.0, abs=1e-6)  # 0.1 - 0.1, float32
    state = agent.observe(None, state, _tr(np.ones(3), 1, [3.0, 0.0]))
    assert float(state.lam) == 0.0  # projected at 0
    for _ in range(3):
        state = agent.observe(None, state, _tr(np.ones(3), 1, [0.0, 5.0]))
    assert float(state.lam) == pytest.approx(1.0)  # clipped at max_multiplier


def test_scores_use_the_lagrangian():
    agent = ConstrainedLinTS(objective_weights=[1.0, 0.0], constraint_weights=[0.0, 1.0])
    samples = jnp.array([[1.0, 2.0], [0.0, 3.0]])  # [M, K]
    state = agent.init(jax.random.PRNGKey(0), OBS, Discrete(2)).replace(lam=jnp.float32(0.5))
    np.testing.assert_allclose(agent._scores(samples, state), [1.0, 0.5])


@pytest.fixture(scope="module")
def pricing_runs():
    """Constrained LinTS on the budgeted pricing env: 8 seeds x 4000 customers."""
    env = DynamicPricing(vector_reward=True, max_discount_spend=0.2)
    agent = ConstrainedLinTS(constraint_level=0.2, lagrange_lr=0.01, fit_intercept=False)
    return env, OnlineRunner(env, agent, num_steps=4000, log_every=80,
                             summary=pricing_summary)(RunContext(num_seeds=8))


def test_constrained_agent_keeps_the_budget(pricing_runs):
    env, res = pricing_runs
    opt = env.optimum()
    spend = res.final["spend"]
    se = spend.std() / np.sqrt(len(spend))
    # the unconstrained optimum would spend ~0.64; the agent stays near the budget
    assert spend.mean() - 4 * se < 0.2 + 0.03
    assert spend.mean() + 4 * se < opt["spend_at_optimum"]
    # and learns: the per-customer regret of the last tenth is below the first tenth's
    per_block = np.diff(res.curves["cumulative_regret"], axis=-1, prepend=0.0)
    n = per_block.shape[-1] // 10
    gain = per_block[:, :n].mean(-1) - per_block[:, -n:].mean(-1)
    assert gain.mean() - 4 * gain.std() / np.sqrt(len(gain)) > 0
    assert np.all(np.isfinite(res.final["constrained_regret"]))


def test_bad_input():
    with pytest.raises(ConfigError, match="ConstrainedLinTS.constraint_weights must have 2"):
        ConstrainedLinTS(objective_weights=[1.0, 0.0], constraint_weights=[1.0])
    with pytest.raises(ConfigError, match="ConstrainedLinTS.lagrange_lr must be > 0"):
        ConstrainedLinTS(lagrange_lr=0.0)
    with pytest.raises(ConfigError, match="ConstrainedLinTS.max_multiplier must be > 0"):
        ConstrainedLinTS(max_multiplier=-1.0)
    with pytest.raises(ConfigError, match="MultiObjectiveLinTS.objective_weights must not"):
        MultiObjectiveLinTS(objective_weights=[])
    with pytest.raises(ConfigError, match="MultiObjectiveLinTS.a0 must be > 0"):
        MultiObjectiveLinTS(a0=0.0)
    mo = MultiObjectiveLinTS(objective_weights=[1.0, 1.0, 1.0])
    state = mo.init(jax.random.PRNGKey(0), OBS, ACT)
    with pytest.raises(ConfigError, match="the reward must be a vector of 3 components"):
        mo.observe(None, state, _tr(np.ones(3), 0, [1.0, 0.0]))
    with pytest.raises(ConfigError, match="pricing_summary needs a DynamicPricing env"):
        OnlineRunner(AdPlacement(), mo, summary=pricing_summary)


def test_ads_runner_metrics_are_consistent():
    """CTR/CVR/conversions from counts agree with the model's probabilities."""
    env = AdPlacement(weights=(1.0, 5.0))
    res = OnlineRunner(env, MultiObjectiveLinTS(objective_weights=[1.0, 5.0]), num_steps=2000,
                       log_every=40, summary=ads_summary)(RunContext(num_seeds=8))
    f = res.final
    for k in ("ctr", "cvr", "conversions", "regret"):
        assert f[k].shape == (8,) and np.all(np.isfinite(f[k]))
    assert np.all(np.isnan(f["revenue"]))  # pricing columns do not apply
    d = f["ctr"] - f["expected_ctr"]  # realised vs expected clicks, same impressions
    assert abs(d.mean()) < 4 * max(d.std(), 1e-6) / np.sqrt(8) + 4 * np.sqrt(0.25 / 2000 / 8)
    np.testing.assert_allclose(f["conversions"], f["cvr"] * f["ctr"], rtol=1e-5)
