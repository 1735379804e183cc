"""Bad input stops before compilation with a message naming the binding/file."""

import pytest

from mtrlrec.bench.runner import run_table
from mtrlrec.core.errors import ConfigError
from mtrlrec.experiment import build, new_run_dir, run_experiment

QS = "experiments/quickstart.gin"


@pytest.mark.parametrize("binding, message", [
    ("EpsilonGredy.epsilon = 0.2", r"Unknown configurable 'EpsilonGredy'\. Did you mean 'EpsilonGreedy'"),
    ("EpsilonGreedy.epsilom = 0.2", r"parameter named 'epsilom'\. Did you mean 'epsilon'"),
    ("BernoulliBandit.num_arms = 1", r"BernoulliBandit\.num_arms must be >= 2, got 1"),
    ("BernoulliBandit.num_arms = 'ten'", r"BernoulliBandit\.num_arms must be an integer"),
    ("EpsilonGreedy.epsilon = 1.5", r"EpsilonGreedy\.epsilon must be <= 1\.0, got 1\.5"),
    ("EpsilonGreedy.epsilon = -0.1", r"EpsilonGreedy\.epsilon must be >= 0\.0"),
    ("BernoulliBandit.means = [0.5, 0.2]", r"BernoulliBandit\.means must have 10 entries, got 2"),
    ("BernoulliBandit.means = [1.5, 0, 0, 0, 0, 0, 0, 0, 0, 0]", r"BernoulliBandit\.means\[0\] must be <= 1\.0"),
    ("OnlineRunner.log_every = 300", r"OnlineRunner\.num_steps=10000 must be a multiple of OnlineRunner\.log_every=300"),
    ("OnlineRunner.hparams = {'epsilon': []}", r"OnlineRunner\.hparams\['epsilon'\] must be a non-empty list"),
    ("Experiment.num_seeds = 0", r"Experiment\.num_seeds must be >= 1"),
    ("BernoulliBandit.means = [0.5, 'x', 0, 0, 0, 0, 0, 0, 0, 0]",
     r"^BernoulliBandit\.means\[1\] must be a number, got 'x'\.$"),
])
def test_bad_binding(binding, message):
    with pytest.raises(ConfigError, match=message) as e:
        build([QS], [binding])
    assert "\n" not in str(e.value)  # one line: gin's "In call to configurable" is folded in


def test_missing_include_names_file_and_line(tmp_path):
    exp = tmp_path / "exp.gin"
    exp.write_text("# comment\ninclude 'envs/no_such_env.gin'\n")
    with pytest.raises(ConfigError, match=r"Missing include.*no_such_env\.gin(.|\n)*exp\.gin\", line 2"):
        build([str(exp)])


def test_syntax_error_names_file(tmp_path):
    exp = tmp_path / "broken.gin"
    exp.write_text("OnlineRunner.num_steps = [1, 2\n")
    with pytest.raises(ConfigError, match=r"syntax error in file .*broken\.gin"):
        build([str(exp)])


def test_missing_experiment_file():
    with pytest.raises(ConfigError, match="experiment file not found: experiments/nope.gin"):
        build(["experiments/nope.gin"])


def test_seeds_must_be_positive():
    with pytest.raises(ConfigError, match="--seeds must be >= 1, got 0"):
        run_experiment(QS, seeds=0, progress=False)


def test_existing_out_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.md").write_text("earlier result")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        new_run_dir(str(tmp_path / "x"), "q")
    assert (tmp_path / "x" / "summary.md").read_text() == "earlier result"


def test_unknown_table():
    with pytest.raises(ConfigError, match="unknown table 'no_such_table'; known tables: .*bandit_analytic"):
        run_table("no_such_table")


def test_resume_of_a_non_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="no run.json there"):
        run_experiment(resume=str(tmp_path), progress=False)
