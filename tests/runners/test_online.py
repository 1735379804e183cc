"""A new agent is one file and one Gin fragment: a toy learner, defined outside the
package, trained and evaluated through ``mtrlrec run`` on the one engine."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from mtrlrec.experiment import load_result

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOY_AGENT = '''
"""A toy learner: pull counts and sample means; greedy on the means, else round robin."""
import flax.struct
import gin
import jax.numpy as jnp

from mtrlrec.core.agent import Agent


@flax.struct.dataclass
class ToyState:
    hparams: dict
    counts: jnp.ndarray
    sums: jnp.ndarray
    t: jnp.ndarray


@gin.configurable
class RoundRobinThenGreedy(Agent):
    def __init__(self, explore_steps: int = 20):
        self.explore_steps = explore_steps

    def init(self, key, obs_spec, action_spec):
        k = action_spec.n
        return ToyState({}, jnp.zeros(k), jnp.zeros(k), jnp.int32(0))

    def act(self, key, state, obs, *, greedy=False):
        means = state.sums / jnp.maximum(state.counts, 1.0)
        best = jnp.argmax(means).astype(jnp.int32)
        if greedy:
            return best, state, {}
        k = state.counts.shape[0]
        rr = (state.t % k).astype(jnp.int32)
        return jnp.where(state.t < self.explore_steps, rr, best), state, {}

    def observe(self, key, state, transition):
        a = transition.action
        return state.replace(counts=state.counts.at[a].add(1.0),
                             sums=state.sums.at[a].add(transition.reward), t=state.t + 1)

    def learn(self, key, state):
        return state, {"pulls": state.counts.sum()}
'''

FRAGMENT = """
import toy_agent
AGENT = @RoundRobinThenGreedy()
RoundRobinThenGreedy.explore_steps = 50
"""

EXPERIMENT = """
include 'envs/bernoulli.gin'
include 'toy.gin'
Experiment.runner = @OnlineRunner()
OnlineRunner.env = %ENV
OnlineRunner.agent = %AGENT
OnlineRunner.num_steps = 200
OnlineRunner.log_every = 50
OnlineRunner.eval_every = 100
OnlineRunner.eval_max_steps = 20
"""


def test_toy_agent_runs_and_is_evaluated_through_the_cli(tmp_path):
    (tmp_path / "toy_agent.py").write_text(textwrap.dedent(TOY_AGENT))
    (tmp_path / "toy.gin").write_text(FRAGMENT)
    (tmp_path / "toy_experiment.gin").write_text(EXPERIMENT)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "mtrlrec", "run", str(tmp_path / "toy_experiment.gin"),
         "--seeds", "2", "--out", str(out), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    result = load_result(out / "result.npz")
    # learn's metric: pulls so far, averaged over the window's learn calls (every step)
    np.testing.assert_allclose(result.curves["agent/pulls"][:, 0], np.mean(np.arange(1, 51)))
    # the greedy evaluation after 100 and 200 steps plays the best of 10 arms
    assert result.final["eval/optimal_action"].tolist() == [1.0, 1.0]
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [l for l in lines if "eval/optimal_action" in l]
    assert [l["step"] for l in evals] == [100, 200]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert "eval/reward" in acc.Tags()["scalars"] and "reward" in acc.Tags()["scalars"]


def _mtrlrec(*args):
    return subprocess.run([sys.executable, "-m", "mtrlrec", *args], cwd=REPO, capture_output=True,
                          text=True)


def test_trials_experiment_runs_from_gin(tmp_path):
    out = tmp_path / "trials"
    proc = _mtrlrec("run", "experiments/bandits/trials_ucb.gin", "--seeds", "2", "--no-progress",
                    "--gin_param", "OnlineRunner.num_steps = 1_000", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = load_result(out / "result.npz")
    # one trial ends per 200-step window: the task changed 5 times per seed
    np.testing.assert_allclose(result.curves["trial_done"], 1 / 200)


def test_evaluate_a_trained_learner_from_its_run_directory(tmp_path):
    trained = tmp_path / "trained"
    proc = _mtrlrec("run", "experiments/quickstart.gin", "--seeds", "2", "--no-progress",
                    "--gin_param", "OnlineRunner.num_steps = 2_000", "--out", str(trained))
    assert proc.returncode == 0, proc.stderr
    evaluated = tmp_path / "evaluated"
    proc = _mtrlrec("run", "experiments/quickstart.gin", "--seeds", "2", "--no-progress",
                    "--gin_param", "OnlineRunner.num_steps = 0",
                    "--gin_param", "OnlineRunner.eval_max_steps = 100",
                    "--gin_param", f"OnlineRunner.init_from = '{trained}'",
                    "--out", str(evaluated))
    assert proc.returncode == 0, proc.stderr
    final = load_result(evaluated / "result.npz").final
    # 2,000 pulls of ε-greedy find the best of 10 arms; its greedy policy plays it
    np.testing.assert_array_equal(final["eval/optimal_action"], 1.0)
    # the untrained learner (all means 0) plays a uniformly random tied arm
    fresh = tmp_path / "fresh"
    proc = _mtrlrec("run", "experiments/quickstart.gin", "--seeds", "2", "--no-progress",
                    "--gin_param", "OnlineRunner.num_steps = 0",
                    "--gin_param", "OnlineRunner.eval_max_steps = 100", "--out", str(fresh))
    assert proc.returncode == 0, proc.stderr
    assert load_result(fresh / "result.npz").final["eval/optimal_action"].max() < 0.5
    proc = _mtrlrec("run", "experiments/quickstart.gin", "--no-progress",
                    "--gin_param", "OnlineRunner.num_steps = 0",
                    "--gin_param", f"OnlineRunner.init_from = '{tmp_path / 'nothing'}'",
                    "--out", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "OnlineRunner.init_from" in proc.stderr
    assert "Traceback" not in proc.stderr
