"""Bandit agents: agreement with independent NumPy implementations, KL-UCB
indices, regret behaviour, sweeps, initial strategies, runners and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents import bandits as A
from mtrlrec.agents import initial
from mtrlrec.runners.bandit_tables import LaiRobbinsRunner, ParameterStudyRunner
from mtrlrec.runners.online import OnlineRunner
from mtrlrec.runners.summaries import regret_summary
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Box, Discrete
from mtrlrec.envs.bandits import BernoulliBandit, GaussianBandit
from mtrlrec.eval import regret as R
from mtrlrec.train import loop
from mtrlrec.train.result import RunContext

MEANS = np.array([0.2, 0.35, 0.5, 0.65, 0.8])
K = MEANS.size
T = 300          # steps per run
S = 300          # runs (ours and the reference each)
LOG = 30         # log window: 10 points per curve


# -- independent NumPy references (vectorised over runs) ----------------------------


def _np_kl(p, q):
    with np.errstate(all="ignore"):
        return (np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0)
                + np.where(p < 1, (1 - p) * np.log(np.where(p < 1, 1 - p, 1) / (1 - q)), 0))


def _np_klucb(p, n, level):
    lo, hi = p.copy(), np.ones_like(p)
    for _ in range(60):
        m = (lo + hi) / 2
        ok = n * _np_kl(p, m) <= level
        lo, hi = np.where(ok, m, lo), np.where(ok, hi, m)
    return lo


def _argmax_ties(rng, v):
    noise = rng.random(v.shape)
    return np.argmax(np.where(v >= v.max(1, keepdims=True), noise, -1), 1)


def _sample(rng, p):
    u = rng.random((p.shape[0], 1)) * p.sum(1, keepdims=True)
    return np.minimum((np.cumsum(p, 1) <= u).sum(1), p.shape[1] - 1)


def numpy_regret(name, seed=123):
    """``[S]`` cumulative pseudo-regret at T of a NumPy implementation."""
    rng = np.random.default_rng(seed)
    rows = np.arange(S)
    n = np.zeros((S, K))
    q = np.zeros((S, K))
    succ, fail = np.ones((S, K)), np.ones((S, K))
    h, base = np.zeros((S, K)), np.zeros(S)
    w = np.ones((S, K))
    logw = np.zeros((S, K))
    prec, wsum = np.full((S, K), 1 / 0.5 ** 2), np.full((S, K), 0.5 / 0.5 ** 2)
    reg = np.zeros(S)
    for t in range(T):
        if name == "uniform":
            a = rng.integers(0, K, S)
        elif name in ("eps", "eps_decay"):
            eps = 0.1 if name == "eps" else min(1.0, 2.0 * K / max(t, 1))
            a = np.where(rng.random(S) < eps, rng.integers(0, K, S), _argmax_ties(rng, q))
        elif name == "optimistic":
            a = _argmax_ties(rng, w * 1.0 + q)
        elif name == "ucb1":
            idx = q + math.sqrt(2) * np.sqrt(math.log(max(t, 1)) / np.maximum(n, 1))
            a = np.argmax(np.where(n > 0, idx, np.inf), 1)
        elif name == "klucb":
            idx = _np_klucb(q, np.maximum(n, 1), math.log(max(t, 1)))
            a = np.argmax(np.where(n > 0, idx, np.inf), 1)
        elif name == "ts":
            a = np.argmax(rng.beta(succ, fail), 1)
        elif name == "gts":
            a = np.argmax(wsum / prec + rng.standard_normal((S, K)) / np.sqrt(prec), 1)
        elif name == "softmax":
            z = np.exp((q - q.max(1, keepdims=True)) / 0.1)
            a = _sample(rng, z / z.sum(1, keepdims=True))
        elif name == "exp3":
            z = np.exp(logw - logw.max(1, keepdims=True))
            p = 0.9 * z / z.sum(1, keepdims=True) + 0.1 / K
            a = _sample(rng, p)
        elif name == "gradient":
            z = np.exp(h - h.max(1, keepdims=True))
            a = _sample(rng, z / z.sum(1, keepdims=True))
        r = (rng.random(S) < MEANS[a]).astype(float)
        reg += MEANS.max() - MEANS[a]
        n[rows, a] += 1
        if name == "optimistic":
            w[rows, a] *= 0.9
            q[rows, a] = 0.9 * q[rows, a] + 0.1 * r
        else:
            q[rows, a] += (r - q[rows, a]) / n[rows, a]
        succ[rows, a] += r
        fail[rows, a] += 1 - r
        prec[rows, a] += 1 / 0.5 ** 2
        wsum[rows, a] += r / 0.5 ** 2
        if name == "exp3":
            logw[rows, a] += 0.1 * r / (p[rows, a] * K)
        if name == "gradient":
            z = np.exp(h - h.max(1, keepdims=True))
            pi = z / z.sum(1, keepdims=True)
            b = base if t > 0 else r
            onehot = np.eye(K)[a]
            h += 0.1 * (r - b)[:, None] * (onehot - pi)
            base += (r - base) / (t + 1)
    return reg


AGENTS = {
    "uniform": lambda: A.UniformAgent(),
    "eps": lambda: A.EpsilonGreedy(0.1),
    "eps_decay": lambda: A.EpsilonGreedy(2.0, decay="inverse_t"),
    "optimistic": lambda: A.OptimisticGreedy(initial_value=1.0, step_size=0.1),
    "ucb1": lambda: A.UCB1(),
    "klucb": lambda: A.KLUCB(),
    "ts": lambda: A.ThompsonSampling(),
    "gts": lambda: A.GaussianThompson(prior_mean=0.5, prior_std=0.5, noise_std=0.5),
    "softmax": lambda: A.Softmax(0.1),
    "exp3": lambda: A.EXP3(0.1),
    "gradient": lambda: A.GradientBandit(0.1),
}


@pytest.fixture(scope="module")
def runs():
    env = BernoulliBandit(K, means=MEANS.tolist())
    out = {}
    for name, make in AGENTS.items():
        o = loop.run(env, make(), num_steps=T, num_seeds=S, log_every=LOG, num_chunks=1, seed=7)
        out[name] = (o.steps, o.metrics["cumulative_regret"])
    return out


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_regret_matches_numpy_reference(runs, name):
    ours = runs[name][1][:, -1].astype(np.float64)
    ref = numpy_regret(name)
    se = math.sqrt(ours.var(ddof=1) / S + ref.var(ddof=1) / S)
    assert abs(ours.mean() - ref.mean()) <= 4 * se + 1e-9, (ours.mean(), ref.mean(), se)


@pytest.mark.parametrize("name", ["ts", "klucb"])
def test_regret_is_sublinear(runs, name):
    steps, reg = runs[name]
    early = reg[:, 0] / steps[0]
    late = reg[:, -1] / steps[-1]
    diff = early - late
    assert diff.mean() > 4 * diff.std(ddof=1) / math.sqrt(S)


def test_ucb1_satisfies_finite_time_bound(runs):
    steps, reg = runs["ucb1"]
    for j, t in enumerate(steps):
        m, se = reg[:, j].mean(), reg[:, j].std(ddof=1) / math.sqrt(S)
        assert m - 3 * se <= R.ucb1_regret_bound(MEANS, int(t))


def test_index_policies_beat_uniform(runs):
    uni = runs["uniform"][1][:, -1].mean()
    for name in ("ucb1", "klucb", "ts", "eps"):
        assert runs[name][1][:, -1].mean() < uni


def test_kl_ucb_index_matches_high_precision_bisection():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 1, 5000), [0.0, 1.0, 0.5, 1e-4, 0.9999, 0.3]])
    n = np.concatenate([rng.integers(1, 10 ** 6, 5000), [1, 1, 3, 10 ** 6, 10 ** 6, 7]]).astype(float)
    level = np.log(rng.integers(2, 10 ** 7, p.size).astype(float))
    p32, n32, l32 = (np.float32(x) for x in (p, n, level))
    ours = np.asarray(A.kl_ucb_index(jnp.asarray(p32), jnp.asarray(n32), jnp.asarray(l32)))
    ref = _np_klucb(p32.astype(float), n32.astype(float), l32.astype(float))
    assert np.max(np.abs(ours - ref)) <= 1e-5


def test_kl_ucb_index_near_one_does_not_collapse():
    # Roots within a float32 ulp of 1: few pulls at a late step (ln t ~ 14-18).
    # An earlier Newton form took log1p(-1) = -inf there and returned the mean.
    p = np.float32([0.0, 0.0, 0.8, 0.5, 0.25, 0.9])
    n = np.float32([1, 2, 5, 2, 3, 20])
    level = np.float32([18.0, 16.5, 16.0, 15.0, 17.0, 18.0])
    ours = np.asarray(A.kl_ucb_index(jnp.asarray(p), jnp.asarray(n), jnp.asarray(level)))
    ref = _np_klucb(p.astype(float), n.astype(float), level.astype(float))
    assert np.all(ref > 0.999)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_sweep_is_one_vmapped_call_and_optimistic_q0_takes_effect():
    env = BernoulliBandit(K, means=MEANS.tolist())
    out = loop.run(env, A.OptimisticGreedy(1.0, 0.1), num_steps=LOG, num_seeds=4,
                   log_every=LOG, hparams={"initial_value": [0.0, 5.0]})
    assert out.metrics["cumulative_regret"].shape == (2, 4, 1)
    counts = np.asarray(out.carry.agent_state.counts)  # [H, S, K]
    # Q0 = 5 forces trying every arm early; Q0 = 0 locks onto the first success.
    assert np.all(counts[1] >= 1)
    assert np.mean(counts[0] == 0) > 0


def test_initial_strategies():
    obs, act = Box(0.0, 0.0, ()), Discrete(3)
    expert = initial.ExpertPrior(means=[0.9, 0.1, 0.1], strength=1000.0)
    ts = A.ThompsonSampling(prior=expert)
    st = ts.init(jax.random.PRNGKey(0), obs, act)
    np.testing.assert_allclose(st.alpha, [901, 101, 101])
    acts = jax.vmap(lambda k: ts.act(k, st, None)[0])(jax.random.split(jax.random.PRNGKey(1), 200))
    assert np.all(np.asarray(acts) == 0)
    a, b = initial.ExpertPrior(logits=[0.0, 0.0], strength=2.0).pseudo_counts(2)
    np.testing.assert_allclose(a, [2, 2])
    np.testing.assert_allclose(initial.UniformPrior().pseudo_counts(2)[0], [1, 1])
    # Warm start: the softmax policy acts first (logits strongly favour arm 2).
    warm = initial.SoftmaxWarmStart(A.UCB1(), logits=[0.0, 0.0, 20.0], num_steps=5)
    ws = warm.init(jax.random.PRNGKey(0), obs, act)
    a0, _, info = warm.act(jax.random.PRNGKey(2), ws, None)
    assert int(a0) == 2 and bool(info["warm_start"])
    env = BernoulliBandit(3, means=[0.2, 0.5, 0.8])
    out = loop.run(env, initial.SoftmaxWarmStart(A.UCB1(), num_steps=10, step_size=0.5),
                   num_steps=20, num_seeds=2, log_every=20)
    assert np.asarray(out.carry.agent_state.inner.counts).sum() == 40


def test_runners():
    env = BernoulliBandit(3, gap=0.2)
    res = OnlineRunner(env, A.EpsilonGreedy(1.0, decay="inverse_t"), num_steps=100,
                       log_every=10, hparams={"epsilon": [0.5, 2.0]},
                       summary=regret_summary)(RunContext(num_seeds=3))
    assert res.final["cumulative_regret"].shape == (3,)
    assert res.final["tuned/epsilon"][0] in (0.5, 2.0)
    assert "tuning (in-sample, over the sweep)" in res.tables
    lr = LaiRobbinsRunner(env, num_steps=1000)(RunContext())
    c = R.lai_robbins_constant([0.3, 0.3, 0.5])
    np.testing.assert_allclose(lr.final["regret_slope"], [c])
    np.testing.assert_allclose(lr.final["cumulative_regret"], [c * math.log(1000)])
    fams = {"eps": (A.EpsilonGreedy(0.1), "epsilon", [0.0, 0.1]),
            "ucb": (A.UCB1(1.0), "c", [1.0])}
    study = ParameterStudyRunner(GaussianBandit(4), num_steps=50, families=fams)
    res = study(RunContext(num_seeds=16))
    assert res.final["avg_reward/eps/epsilon=0.1"].shape == (16,)
    assert res.images["parameter_study"][:4] == b"\x89PNG"


@pytest.mark.parametrize("make, match", [
    (lambda: BernoulliBandit(1), "num_arms must be >= 2"),
    (lambda: BernoulliBandit(2, means=[0.5, 1.5]), r"means\[1\] must be <= 1"),
    (lambda: A.EpsilonGreedy(float("nan")), "EpsilonGreedy.epsilon must be a number, got NaN"),
    (lambda: A.EpsilonGreedy(-0.1), "EpsilonGreedy.epsilon must be >= 0"),
    (lambda: A.UCB1(-1.0), "UCB1.c must be >= 0"),
    (lambda: A.KLUCB(float("nan")), "KLUCB.c must be a number"),
    (lambda: A.GradientBandit(-0.5), "GradientBandit.step_size must be > 0"),
    (lambda: A.OptimisticGreedy(step_size=2.0), "OptimisticGreedy.step_size must be <= 1"),
    (lambda: A.Softmax(0.0), "Softmax.temperature must be > 0"),
    (lambda: A.EXP3(0.0), "EXP3.gamma must be > 0"),
    (lambda: A.ThompsonSampling(prior_alpha=-1.0), "ThompsonSampling.prior_alpha must be > 0"),
    (lambda: A.ThompsonSampling(bit_source="mt"), "ThompsonSampling.bit_source"),
    (lambda: A.EpsilonGreedy(0.1, decay="exp"), "EpsilonGreedy.decay"),
    (lambda: initial.ExpertPrior(), "exactly one of"),
    (lambda: ParameterStudyRunner(GaussianBandit(4), families={"e": (A.EpsilonGreedy(), "epsilon", [2.0])}),
     r"ParameterStudyRunner.families\['e'\]\['epsilon'\]\[0\] = 2: EpsilonGreedy.epsilon must be <= 1"),
    (lambda: LaiRobbinsRunner(BernoulliBandit(2), num_steps=0),
     "LaiRobbinsRunner.num_steps must be >= 1"),
])
def test_bad_input(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_prior_of_wrong_length_fails_before_compilation():
    env = BernoulliBandit(3)
    with pytest.raises(ConfigError, match=r"ThompsonSampling.prior_alpha must have 3 entries"):
        loop.run(env, A.ThompsonSampling(prior_alpha=[1.0, 1.0]), num_steps=1)
    with pytest.raises(ConfigError, match="ExpertPrior has 2 entries but the bandit has 3"):
        loop.run(env, A.ThompsonSampling(prior=initial.ExpertPrior(means=[0.1, 0.2])),
                 num_steps=1)
    with pytest.raises(ConfigError, match="SoftmaxWarmStart.logits has 2 entries"):
        loop.run(env, initial.SoftmaxWarmStart(A.UCB1(), logits=[0.0, 1.0]), num_steps=1)


def test_sample_means_stay_exact_past_float32_counts():
    """An arm pulled 2^24 times: a float32 mean loses the increments below half an ulp
    (it drifted from 0.9 to 0.72); the compensated mean and int counts do not."""
    agent = A.EpsilonGreedy(0.1)
    state = agent.init(jax.random.PRNGKey(0), None, Discrete(2))
    state = state.replace(counts=state.counts.at[0].set(2**24),
                          values=state.values.at[0].set(0.9))
    rewards = (np.random.default_rng(0).random(1_000_000) < 0.9).astype(np.float32)

    def body(st, r):
        return A.update_arm_stats(st, jnp.int32(0), r), None

    st, _ = jax.jit(lambda s: jax.lax.scan(body, s, jnp.asarray(rewards)))(state)
    n0, n = 2**24, 2**24 + rewards.size
    exact = (0.9 * n0 + rewards.astype(np.float64).sum()) / n
    assert int(st.counts[0]) == n
    assert abs(float(st.values[0] - st.comp[0]) - exact) < 1e-6


def test_float32_statistics_refuse_runs_they_cannot_count():
    env = GaussianBandit(4)
    with pytest.raises(ConfigError, match="GaussianThompson keeps float32 running statistics, "
                                          "exact for 16,777,216 pulls"):
        loop.run(env, A.GaussianThompson(), num_steps=2**25, log_every=2**25)
