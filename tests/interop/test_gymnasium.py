"""Gymnasium adapters: Gymnasium's own checker and vector wrappers, SAME_STEP autoreset,
vector = N single envs with the same seeds, slate spaces, jax/DLPack output, bad input."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402
from gymnasium.vector import AutoresetMode  # noqa: E402

from mtrlrec.core.errors import ConfigError  # noqa: E402
from mtrlrec.envs import ads, bandits, contextual, logged, pricing  # noqa: E402
from mtrlrec.envs.slate import SlateEnv  # noqa: E402
from mtrlrec.interop import gymnasium as G  # noqa: E402
from mtrlrec.interop import to_gymnasium, to_gymnasium_vector  # noqa: E402

N = 3  # users of the vector env


def small_slate(**kw):
    """m=4 candidates, k=2, 5 topics; a budget of 2 and a 3-step cap end episodes fast."""
    return SlateEnv(num_candidates=4, slate_size=2, num_topics=5,
                    topic_means=[-1.0, 0.0, 0.5, 1.0, 2.0], initial_budget=2.0,
                    max_episode_steps=3, **kw)


@pytest.fixture(scope="module")
def slate():
    return small_slate()


@pytest.fixture(scope="module")
def single(slate):
    return to_gymnasium(slate, seed=0)


@pytest.fixture(scope="module")
def vec(slate):
    return to_gymnasium_vector(slate, N, seed=0)


@pytest.fixture(scope="module")
def vec_jax(slate):
    return to_gymnasium_vector(slate, N, seed=0, array_type="jax")


def _actions(space, t, seed=0):
    space.seed(seed)
    return [space.sample() for _ in range(t)]


# -- Gymnasium's env checker on every environment ------------------------------------------
def _log(rng, n=40, k=3, d=2):
    a = rng.integers(0, k, n)
    return rng.normal(size=(n, d)), a, (rng.random(n) < 0.3).astype(np.float32)


ENVS = {
    "bernoulli": lambda: (bandits.BernoulliBandit(3), None),
    "click_conversion": lambda: (bandits.ClickConversionBandit(3), [1.0, 2.0]),
    "linear": lambda: (contextual.LinearGaussianBandit(dim=3, num_arms=3), None),
    "wheel": lambda: (contextual.WheelBandit(), None),
    "ads": lambda: (ads.AdPlacement(num_ads=3, dim=2), [1.0, 5.0]),
    "pricing": lambda: (pricing.DynamicPricing(), None),
    "replay": lambda: (logged.ReplayBandit(*_log(np.random.default_rng(0))[1:], 3), None),
    "contextual_replay": lambda: (logged.ContextualReplayBandit(
        *_log(np.random.default_rng(1)), 3), None),
}


@pytest.mark.filterwarnings("ignore:.*Box observation space maximum and minimum")
@pytest.mark.filterwarnings("ignore:.*Box.*(low|high|bound|infinite|inf)")
@pytest.mark.parametrize("name", [*ENVS, "slate"])
def test_check_env_on_every_environment(name, single):
    if name == "slate":
        genv = single
    else:
        env, weights = ENVS[name]()
        genv = to_gymnasium(env, reward_weights=weights)
    check_env(genv, skip_render_check=True)
    genv.action_space.seed(1)
    obs, info = genv.reset(seed=3)
    assert genv.observation_space.contains(obs) and info == {}
    for _ in range(4):
        obs, r, term, trunc, info = genv.step(genv.action_space.sample())
        assert isinstance(r, float) and isinstance(term, bool) and isinstance(trunc, bool)
        assert genv.observation_space.contains(obs)
        if term or trunc:
            obs, _ = genv.reset()
    if name in ("click_conversion", "ads"):  # per-task rewards in info, scalarised reward
        w = [1.0, 2.0] if name == "click_conversion" else [1.0, 5.0]
        comps = [info["reward/click"], info["reward/conversion"]]
        assert r == pytest.approx(w[0] * comps[0] + w[1] * comps[1])


# -- the vector adapter: SAME_STEP autoreset, equal to single envs with the same seeds ----
def test_vector_is_same_step_autoreset_and_replays_single_envs(vec, single):
    """Users of the vector env (seeds [5, 6, 7]) are the single env reset with seed 5, 6, 7.

    SAME_STEP: where an episode ends, ``obs`` is the next user's first observation (the
    single env's ``reset()`` after the end), ``info['final_obs']`` the ended one's last
    (the single env's ``step`` observation), and the reward/flags are the ending step's.
    """
    assert vec.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert G.AUTORESET_MODE == AutoresetMode.SAME_STEP.value
    seeds, T = [5, 6, 7], 8
    actions = _actions(vec.action_space, T)
    obs0, _ = vec.reset(seed=seeds)
    steps = [vec.step(a) for a in actions]
    ended = sum(int((s[2] | s[3]).sum()) for s in steps)
    assert ended >= N and any(s[2].any() for s in steps) and any(s[3].any() for s in steps)

    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    for i, s in enumerate(seeds):
        o, _ = single.reset(seed=s)
        jax.tree.map(lambda a, b: close(a, b[i]), o, obs0)
        for t in range(T):
            vo, vr, vterm, vtrunc, vinfo = steps[t]
            o, r, term, trunc, info = single.step(actions[t][i])
            assert (term, trunc) == (bool(vterm[i]), bool(vtrunc[i]))
            close(r, vr[i])
            close(info["click"], vinfo["click"][i])
            close(info["slate_click"], vinfo["slate_click"][i])  # a [k] entry per user
            assert vinfo["_click"][i]
            if term or trunc:
                assert vinfo["_final_obs"][i] and vinfo["final_info"]["_click"][i]
                jax.tree.map(close, o, vinfo["final_obs"][i])
                o, _ = single.reset()  # the user the compiled step already drew
            else:
                assert "_final_obs" not in vinfo or not vinfo["_final_obs"][i]
            jax.tree.map(lambda a, b: close(a, b[i]), o, vo)
    assert vec.observation_space.contains(steps[-1][0])


def test_final_observation_rows_grow_when_many_episodes_end_at_once(slate, vec):
    """The NumPy path returns the ended users' last observations in a buffer of a few
    rows; a step where more users end than it holds is stepped again with more rows."""
    small = to_gymnasium_vector(slate, N, seed=0)
    small._capacity = 1
    actions = _actions(vec.action_space, 8, seed=3)
    vec.reset(seed=11)
    small.reset(seed=11)
    most = 0
    for a in actions:
        o_ref, r_ref, te_ref, tr_ref, i_ref = vec.step(a)
        o, r, te, tr, info = small.step(a)
        jax.tree.map(np.testing.assert_array_equal, o, o_ref)
        np.testing.assert_array_equal(r, r_ref)
        done = te | tr
        most = max(most, int(done.sum()))
        for i in np.flatnonzero(done):
            jax.tree.map(np.testing.assert_array_equal, info["final_obs"][i],
                         i_ref["final_obs"][i])
    assert most >= 2 and small._capacity >= most


def test_gymnasium_vector_wrappers_record_episode_statistics(slate):
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    env = RecordEpisodeStatistics(to_gymnasium_vector(slate, N, seed=1))
    env.reset(seed=1)
    env.action_space.seed(0)
    ret, length, seen = np.zeros(N), np.zeros(N, int), 0
    for _ in range(10):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        ret += r
        length += 1
        done = term | trunc
        if done.any():
            np.testing.assert_array_equal(info["_episode"], done)
            np.testing.assert_allclose(info["episode"]["r"][done], ret[done], rtol=1e-5)
            np.testing.assert_array_equal(info["episode"]["l"][done], length[done])
            assert (length[done] <= 3).all()  # max_episode_steps
            seen += int(done.sum())
            ret[done], length[done] = 0.0, 0
    assert seen >= N and len(env.return_queue) == seen


def test_reset_mask_resets_only_the_masked_users(vec):
    obs, _ = vec.reset(seed=0)
    a = np.array([[0, 1]] * N)
    obs1, *_ = vec.step(a)
    mask = np.array([False, True, False])
    obs2, _ = vec.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs2["user"][~mask], obs1["user"][~mask])
    assert not np.array_equal(obs2["user"][1], obs1["user"][1])
    # the unmasked users continue their episodes: same as stepping without the reset
    vec.reset(seed=0)
    vec.step(a)
    ref, r_ref, *_ = vec.step(a)
    vec.reset(seed=0)
    vec.step(a)
    vec.reset(options={"reset_mask": mask})
    got, r_got, *_ = vec.step(a)
    np.testing.assert_array_equal(got["doc"][~mask], ref["doc"][~mask])
    np.testing.assert_array_equal(r_got[~mask], r_ref[~mask])


# -- jax / DLPack output ----------------------------------------------------------------------
def test_jax_output_matches_numpy_and_takes_jax_actions(vec, vec_jax):
    """array_type='jax': the same values as jax.Arrays (DLPack-exportable), jax actions in."""
    assert vec_jax.metadata["jax"] and vec_jax.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    actions = _actions(vec.action_space, 5, seed=2)
    o_np, _ = vec.reset(seed=9)
    o_jx, _ = vec_jax.reset(seed=9)
    assert isinstance(o_jx["user"], jax.Array)
    np.testing.assert_array_equal(np.from_dlpack(o_jx["user"]), o_np["user"])  # DLPack
    for a in actions:
        o_np, r_np, term_np, trunc_np, info_np = vec.step(a)
        o_jx, r_jx, term_jx, trunc_jx, info_jx = vec_jax.step(jnp.asarray(a))
        assert isinstance(r_jx, jax.Array) and isinstance(info_jx["watch_time"], jax.Array)
        np.testing.assert_array_equal(np.asarray(o_jx["doc"]), o_np["doc"])
        np.testing.assert_array_equal(np.asarray(r_jx), r_np)
        np.testing.assert_array_equal(np.asarray(term_jx | trunc_jx), term_np | trunc_np)
        np.testing.assert_array_equal(np.asarray(info_jx["watch_time"]), info_np["watch_time"])
        done = term_np | trunc_np
        np.testing.assert_array_equal(np.asarray(info_jx["_final_obs"]), done)
        for i in np.flatnonzero(done):
            np.testing.assert_array_equal(np.asarray(info_jx["final_obs"]["user"][i]),
                                          info_np["final_obs"][i]["user"])


# -- slate action spaces ------------------------------------------------------------------------
def test_slate_space_samples_valid_uniform_slates():
    space = G.SlateSpace(5, 2, batch_shape=(20_000,), seed=0)
    x = space.sample()
    assert x.shape == (20_000, 2) and space.contains(x)
    counts = np.bincount(x[:, 0] * 5 + x[:, 1], minlength=25).reshape(5, 5)
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(5, dtype=bool)]  # 20 ordered pairs, 1,000 expected each
    se = np.sqrt(20_000 * (1 / 20) * (19 / 20))
    assert np.abs(off - 1000).max() < 5 * se
    one = G.SlateSpace(10, 3, seed=1)
    assert all(one.contains(one.sample()) for _ in range(200))
    assert not one.contains(np.array([1, 1, 2])) and not one.contains(np.array([1, 2, 10]))
    full = G.SlateSpace(4, 4, batch_shape=(3,), seed=0)  # k = m: permutations
    assert full.contains(full.sample())
    again = pickle.loads(pickle.dumps(one))
    assert again == one and again != gymnasium.spaces.MultiDiscrete([10] * 3)
    assert repr(one) == "SlateSpace(num_candidates=10, slate_size=3)"


def test_spaces_of_the_adapters(single, vec):
    assert single.action_space == G.SlateSpace(4, 2)
    assert vec.action_space == G.SlateSpace(4, 2, batch_shape=(N,))
    assert vec.single_action_space == single.action_space
    assert vec.observation_space["doc"].shape == (N, 4, 5)


# -- bad input ----------------------------------------------------------------------------------
def test_bad_actions_are_rejected_and_leave_the_env_unchanged(single, vec, vec_jax):
    single.reset(seed=4)
    for bad, match in [
        (np.array([1, 1]), r"action = \[1, 1\] repeats item 1; a slate needs 2 distinct items"),
        (np.array([0, 4]), r"action = \[0, 4\] has item 4 outside 0..3 \(num_candidates = 4\)"),
        (np.array([-1, 2]), r"item -1 outside 0..3"),
        (np.array([0, 2**33]), r"item 8589934592 outside"),
        (np.array([0.0, 1.0]), r"action must be integers \(2 distinct items in 0..3\), got "
                               r"dtype float64"),
        (np.array([0, 1, 2]), r"action must have shape \(2,\) \(slate_size,\), got \(3,\)"),
        ([[0, 1], [2]], r"action must be an integer array of shape \(2,\)"),
    ]:
        with pytest.raises(ConfigError, match=match):
            single.step(bad)
    after_errors = single.step(np.array([0, 1]))
    single.reset(seed=4)
    clean = single.step(np.array([0, 1]))
    jax.tree.map(np.testing.assert_array_equal, after_errors[0], clean[0])
    assert after_errors[1] == clean[1]

    for env in (vec, vec_jax):
        env.reset(seed=4)
        good = np.array([[0, 1]] * N)
        bad = good.copy()
        bad[2] = [3, 3]
        with pytest.raises(ConfigError, match=r"actions\[2\] = \[3, 3\] repeats item 3"):
            env.step(bad if env is vec else jnp.asarray(bad))  # jax actions: checked in-jit
        with pytest.raises(ConfigError, match=r"actions must have shape \(3, 2\) "
                                              r"\(num_envs, slate_size\), got \(2, 2\)"):
            env.step(good[:2])
        with pytest.raises(ConfigError, match=r"actions\[0\] = \[0, 7\] has item 7"):
            env.step(np.array([[0, 7]] + [[0, 1]] * (N - 1)))
        r_after = np.asarray(env.step(good)[1])
        env.reset(seed=4)
        np.testing.assert_array_equal(r_after, np.asarray(env.step(good)[1]))


def test_bad_construction_and_reset_arguments(slate, vec):
    with pytest.raises(ConfigError, match="to_gymnasium_vector.num_envs must be >= 1, got 0"):
        to_gymnasium_vector(slate, 0)
    with pytest.raises(ConfigError, match="to_gymnasium_vector.array_type must be one of"):
        to_gymnasium_vector(slate, 2, array_type="torch")
    multi = small_slate(reward_weights=None)
    with pytest.raises(ConfigError, match=r"returns 4 per-task rewards \['click', 'purchase', "
                                          r"'watch_time', 'return'\]; pass reward_weights"):
        to_gymnasium(multi)
    with pytest.raises(ConfigError, match=r"reward_weights must have 4 entries, got 2"):
        to_gymnasium_vector(multi, 2, reward_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="reward_weights is only for vector rewards"):
        to_gymnasium(bandits.BernoulliBandit(3), reward_weights=[1.0])
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        to_gymnasium(slate, seed=-1)
    with pytest.raises(ConfigError, match="env must be an mtrlrec Environment"):
        to_gymnasium("CartPole-v1")
    with pytest.raises(ConfigError, match=r"seed is a list of 2 seeds; expected num_envs = 3"):
        vec.reset(seed=[1, 2])
    with pytest.raises(ConfigError, match=r"options\['reset_mask'\] must be a bool array "
                                          r"of shape \(3,\)"):
        vec.reset(options={"reset_mask": np.array([1, 0, 1])})
    with pytest.raises(ConfigError, match=r"options has unknown keys \['foo'\]"):
        vec.reset(options={"foo": 1})


def test_step_before_reset_and_the_core_install_does_not_import_gymnasium(slate):
    with pytest.raises(gymnasium.error.ResetNeeded):
        to_gymnasium(bandits.BernoulliBandit(3)).step(0)
    import subprocess
    import sys

    code = "import sys, mtrlrec.config as c; c.import_all(); print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


# -- docs/gymnasium.md: its training loop and its Stable-Baselines3 shim run ------------------
DOC = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "gymnasium.md"


def _doc_block(marker):
    text = DOC.read_text()
    start = text.index("```python\n" + marker) + len("```python\n")
    return text[start:text.index("```", start)]


def test_docs_training_loop_runs(capsys):
    code = _doc_block("# cleanrl-style loop")
    sizes = "NUM_USERS, ROLLOUT, ITERS, GAMMA, LR, SEED = 256, 16, 50, 0.9, 20.0, 0"
    assert sizes in code
    exec(compile(code.replace(sizes, "NUM_USERS, ROLLOUT, ITERS, GAMMA, LR, SEED = "
                                     "4, 3, 2, 0.9, 20.0, 0"), str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert "iteration  1: watch time/step" in out and "24 user-steps in" in out


def test_docs_sb3_shim_against_a_stand_in_vec_env_base(vec, monkeypatch):
    import abc
    import sys
    import types

    class VecEnv(abc.ABC):  # the parts of SB3 2.x's VecEnv base that the shim relies on
        def __init__(self, num_envs, observation_space, action_space):
            self.num_envs, self.observation_space = num_envs, observation_space
            self.action_space = action_space
            self._seeds = [None] * num_envs
            self.render_mode = self.get_attr("render_mode")[0]

        def _reset_seeds(self):
            self._seeds = [None] * self.num_envs

        def seed(self, seed=None):
            self._seeds = [seed + i for i in range(self.num_envs)]

        def _get_indices(self, indices):
            return range(self.num_envs) if indices is None else (
                [indices] if isinstance(indices, int) else indices)

        def step(self, actions):
            self.step_async(actions)
            return self.step_wait()

        for name in ("reset", "step_async", "step_wait", "close", "get_attr", "set_attr",
                     "env_method", "env_is_wrapped"):
            locals()[name] = abc.abstractmethod(lambda self, *a, **k: None)

    mod = types.ModuleType("stable_baselines3.common.vec_env")
    mod.VecEnv = VecEnv
    for name in ("stable_baselines3", "stable_baselines3.common"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "stable_baselines3.common.vec_env", mod)
    ns = {}
    exec(compile(_doc_block("# sb3 shim"), str(DOC), "exec"), ns)
    sb3 = ns["MtrlrecVecEnv"](vec)
    assert sb3.get_attr("num_envs") == [N] * N and sb3.env_is_wrapped(object, 1) == [False]
    sb3.seed(20)
    actions = _actions(vec.action_space, 6, seed=5)
    first = sb3.reset()["user"].copy()
    got = [sb3.step(a) for a in actions]
    ref_obs, _ = vec.reset(seed=[20, 21, 22])  # the same users, straight through the adapter
    np.testing.assert_array_equal(first, ref_obs["user"])
    ended = 0
    for a, (obs, rewards, dones, infos) in zip(actions, got):
        o, r, te, tr, info = vec.step(a)
        np.testing.assert_array_equal(rewards, r)
        np.testing.assert_array_equal(dones, te | tr)
        for i in range(N):
            assert infos[i]["TimeLimit.truncated"] == bool(tr[i] and not te[i])
            assert ("terminal_observation" in infos[i]) == bool(dones[i])
            if dones[i]:
                np.testing.assert_array_equal(infos[i]["terminal_observation"]["doc"],
                                              info["final_obs"][i]["doc"])
                ended += 1
    assert ended >= 1
