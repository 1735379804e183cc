"""Runs a researcher can trust (issue 19): every mistake is one line and exit status 2,
resume runs the run's own configuration, interrupts name the directory, failed starts
leave nothing behind, HParams keep runs and sweep points apart, output is clean.

Everything goes through ``mtrlrec.cli.main`` in this process (``.ci/run`` through bash).
The runs share one small shape (400 steps, 3 seeds) so that they compile alike.
"""

import importlib.metadata
import json
import os
import pathlib
import subprocess
import warnings

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from mtrlrec import cli
from mtrlrec.experiment import load_result, summary_markdown
from mtrlrec.train import checkpoint as ckpt
from mtrlrec.train import loop
from mtrlrec.train.result import Result

REPO = pathlib.Path(__file__).resolve().parents[1]
QS = str(REPO / "experiments" / "quickstart.gin")
TINY = ["--gin_param", "OnlineRunner.num_steps = 400", "--seeds", "3", "--no-progress"]
# A self-contained experiment (no includes), so a test can copy and edit it.
EXPERIMENT = """\
Experiment.runner = @OnlineRunner()
Experiment.num_seeds = 3
OnlineRunner.env = @BernoulliBandit()
OnlineRunner.agent = @EpsilonGreedy()
OnlineRunner.num_steps = 400
OnlineRunner.log_every = 100
BernoulliBandit.num_arms = 10
EpsilonGreedy.epsilon = 0.1
"""


def _keep_jax_setup(monkeypatch):
    """``cli.main`` in this process: keep JAX's device count and the tests' compilation cache."""
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", os.environ.get(
        "MTRLREC_TEST_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "mtrlrec" / "jax-tests")))


@pytest.fixture(autouse=True)
def _in_process(monkeypatch):
    _keep_jax_setup(monkeypatch)


def run(capsys, *args):
    """``mtrlrec ARGS`` -> (exit status, stdout, stderr)."""
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse: --help, --version, usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("mtrlrec: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    (d / "exp.gin").write_text(EXPERIMENT)
    return d


@pytest.fixture(scope="module")
def reference(exp_dir, tmp_path_factory):
    """An uninterrupted run of ``exp.gin``."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    with pytest.MonkeyPatch.context() as mp:
        _keep_jax_setup(mp)
        assert cli.main(["run", str(exp_dir / "exp.gin"), "--no-progress", "--out", str(out)]) == 0
    return out


# --------------------------------------------------------------------------------------
# I/O mistakes: one line naming the path, exit status 2, nothing created.


def test_out_under_a_file(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", tmp_path / "notes.txt" / "run")
    one_line_error(rc, err, f"{tmp_path / 'notes.txt'} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_out_that_cannot_be_created(capsys):
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", "/proc/mtrlrec-test/run")
    one_line_error(rc, err, "cannot create output directory /proc/mtrlrec-test/run")
    assert not pathlib.Path("/proc/mtrlrec-test").exists()


def test_out_that_is_a_file(capsys, tmp_path):
    (tmp_path / "x").write_text("a file")
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", tmp_path / "x")
    one_line_error(rc, err, "is an existing file")


@pytest.mark.parametrize("variable", ["MTRLREC_CACHE", "JAX_COMPILATION_CACHE_DIR"])
def test_unusable_compilation_cache(capsys, tmp_path, monkeypatch, variable):
    (tmp_path / "f").write_text("a file")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv(variable, str(tmp_path / "f" / "cache"))
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", tmp_path / "run")
    one_line_error(rc, err, f"(from ${variable}) is not usable", f"{tmp_path / 'f'} is a file")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("binding, message", [
    ("BernoulliBandit.means = [0.5, 'x', 0, 0, 0, 0, 0, 0, 0, 0]",
     "BernoulliBandit.means[1] must be a number, got 'x'"),
    ("BernoulliBandit.means = [0.5, None, 0, 0, 0, 0, 0, 0, 0, 0]",
     "BernoulliBandit.means[1] must be a number, got None"),
    ("OnlineRunner.num_steps = 1e4", "OnlineRunner.num_steps must be an integer"),
])
def test_wrong_element_type_names_the_binding(capsys, tmp_path, binding, message):
    rc, _, err = run(capsys, "run", QS, *TINY, "--gin_param", binding, "--out", tmp_path / "r")
    one_line_error(rc, err, message)  # one line: gin's "In call to configurable" is dropped
    assert not (tmp_path / "r").exists()


def test_data_source_without_data(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "data", "obd", "--source", tmp_path / "empty",
                     "--cache", tmp_path / "cache")
    one_line_error(rc, err, f"--source {tmp_path / 'empty'} holds no Open Bandit Dataset files")


def test_data_source_missing_and_cache_under_a_file(capsys, tmp_path):
    rc, _, err = run(capsys, "data", "movielens", "--source", tmp_path / "nope")
    one_line_error(rc, err, f"--source {tmp_path / 'nope'} does not exist")
    (tmp_path / "f").write_text("a file")
    rc, _, err = run(capsys, "data", "obd", "--cache", tmp_path / "f" / "obd")
    one_line_error(rc, err, f"{tmp_path / 'f'} is a file, not a folder")


def test_wrong_kind_of_file(capsys, tmp_path):
    rc, _, err = run(capsys, "run", REPO / "experiments")
    one_line_error(rc, err, "is a directory; give a Gin file in it")
    table = REPO / "benchmarks" / "tables" / "bandit_analytic.toml"
    rc, _, err = run(capsys, "run", table)
    one_line_error(rc, err, "is a table spec, not an experiment", "mtrlrec bench")
    rc, _, err = run(capsys, "bench", QS, "--out", tmp_path / "b")
    one_line_error(rc, err, "is an experiment, not a table", "mtrlrec run")
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------------------
# Silently ignored input becomes an error or a warning that names it.


def test_binding_for_an_agent_the_experiment_does_not_use(capsys, tmp_path):
    rc, _, err = run(capsys, "run", QS, *TINY, "--gin_param", "UCB1.c = 2.0",
                     "--out", tmp_path / "r")
    one_line_error(rc, err, "--gin_param 'UCB1.c = 2.0' has no effect: this experiment does "
                   "not use UCB1", "EpsilonGreedy")
    assert not (tmp_path / "r").exists()


def test_out_with_resume(capsys, reference, tmp_path):
    rc, _, err = run(capsys, "run", "--resume", reference, "--out", tmp_path / "elsewhere")
    one_line_error(rc, err, "--out cannot be used with --resume")
    assert not (tmp_path / "elsewhere").exists()


# --------------------------------------------------------------------------------------
# Resume runs the run's own saved configuration.


def test_resume_refuses_changes_naming_them(capsys, reference, exp_dir):
    rc, _, err = run(capsys, "run", "--resume", reference,
                     "--gin_param", "EpsilonGreedy.epsilon = 0.2")
    one_line_error(rc, err, "EpsilonGreedy.epsilon (run: 0.1, given: 0.2)")
    rc, _, err = run(capsys, "run", "--resume", reference, "--seeds", "5")
    one_line_error(rc, err, "continues a run of 3 seeds; --seeds 5")
    edited = exp_dir / "edited.gin"
    edited.write_text(EXPERIMENT.replace("num_steps = 400", "num_steps = 800"))
    rc, _, err = run(capsys, "run", edited, "--resume", reference)
    line = one_line_error(rc, err, "differs from it in: OnlineRunner.num_steps (run: 400, "
                          "given: 800). Start a new run")
    assert "EpsilonGreedy" not in line  # only what differs
    assert (reference / "resume.gin").is_file()
    assert "EpsilonGreedy.epsilon = 0.1" in (reference / "resume.gin").read_text()


def test_interrupt_names_the_directory_and_resume_ignores_edits(
        capsys, reference, exp_dir, tmp_path, monkeypatch):
    """Ctrl-C after chunk 2; the experiment file is edited; the run is resumed from another
    working directory: it finishes with the numbers of the uninterrupted run."""
    start = tmp_path / "start"
    start.mkdir()
    (start / "exp.gin").write_text(EXPERIMENT)
    monkeypatch.chdir(start)
    save = ckpt.save
    calls = []

    def save_then_interrupt(*args, **kwargs):
        path = save(*args, **kwargs)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(ckpt, "save", save_then_interrupt)
    rc, out, err = run(capsys, "run", "exp.gin", "--no-progress", "--out", "runs/x")
    assert rc == 130
    assert out.splitlines()[0] == "run directory: runs/x"
    assert "Continue with: mtrlrec run --resume runs/x" in err and "Traceback" not in err
    assert ckpt.latest(start / "runs" / "x" / "checkpoints").name == "ckpt_000002.msgpack"
    monkeypatch.setattr(ckpt, "save", save)
    # The researcher edits the experiment, then resumes from elsewhere.
    (start / "exp.gin").write_text(EXPERIMENT.replace("epsilon = 0.1", "epsilon = 0.9"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, out, err = run(capsys, "run", "--resume", start / "runs" / "x", "--no-progress")
    assert rc == 0, err
    assert os.getcwd() == str(elsewhere)
    a, b = load_result(reference / "result.npz"), load_result(start / "runs/x/result.npz")
    assert sorted(a.final) == sorted(b.final)
    for k in a.final:
        np.testing.assert_array_equal(a.final[k], b.final[k])
    assert "EpsilonGreedy.epsilon = 0.1" in (start / "runs/x/config.gin").read_text()
    # The same experiment and bindings again are accepted (nothing differs).
    rc, _, err = run(capsys, "run", exp_dir / "exp.gin",
                     "--resume", reference, "--no-progress")
    assert rc == 0, err


# --------------------------------------------------------------------------------------
# No orphan directories; results, once written, are never deleted.


def test_failed_start_leaves_no_run_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def broken(*args, **kwargs):
        raise ValueError("OnlineRunner: found wrong at compile time")

    monkeypatch.setattr(loop, "run", broken)
    with pytest.raises(ValueError, match="found wrong at compile time"):
        cli.main(["run", QS, *TINY])  # default directory runs/quickstart-<time>
    out, _ = capsys.readouterr()
    assert out.startswith("run directory: runs/quickstart-")
    assert not (tmp_path / "runs").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run", interrupted)
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", "r")
    assert rc == 130
    assert "interrupted before any result was written; r was removed" in err
    assert list(tmp_path.iterdir()) == []


def test_crash_after_a_chunk_keeps_the_results(capsys, tmp_path, monkeypatch):
    save = ckpt.save
    calls = []

    def save_then_fail(directory, index, *args, **kwargs):
        if calls:
            raise OSError(28, "No space left on device", str(directory))
        calls.append(index)
        return save(directory, index, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save", save_then_fail)
    out = tmp_path / "r"
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", out)
    one_line_error(rc, err, "No space left on device", str(out / "checkpoints"))
    assert (out / "checkpoints" / "ckpt_000001.msgpack").is_file()
    assert (out / "metrics.jsonl").read_text().strip()
    assert (out / "resume.gin").is_file()


def test_bench_checks_every_row_before_creating_anything(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "t.toml"
    spec.write_text("""
title = "two rows, the second one wrong"
seeds = 3
[[columns]]
key = "regret"
metric = "cumulative_regret"
[[rows]]
key = "good"
experiment = "experiments/analytic/uniform.gin"
bindings = ["OnlineRunner.num_steps = 400"]
[[rows]]
key = "bad"
experiment = "experiments/analytic/uniform.gin"
bindings = ["BernoulliBandit.num_arms = 1"]
""")
    rc, _, err = run(capsys, "bench", spec, "--out", tmp_path / "b", "--no-progress")
    one_line_error(rc, err, "BernoulliBandit.num_arms must be >= 2")
    assert not (tmp_path / "b").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run", interrupted)
    rc, out, err = run(capsys, "bench", spec, "--rows", "good", "--out", tmp_path / "b",
                       "--no-progress")
    assert rc == 130 and f"output directory: {tmp_path / 'b'}" in out
    assert "was removed" in err
    assert not (tmp_path / "b").exists()
    (tmp_path / "f").write_text("a file")
    rc, _, err = run(capsys, "bench", spec, "--out", tmp_path / "f" / "b")
    one_line_error(rc, err, f"{tmp_path / 'f'} is a file, not a folder")


# --------------------------------------------------------------------------------------
# TensorBoard HParams: one session per run and per sweep point.


def _session(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={
        event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    try:
        content = acc.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
    except KeyError:
        return None, acc
    return hparams_metadata.parse_session_start_info_plugin_data(content), acc


def _value(v):
    return v.string_value if v.HasField("string_value") else v.number_value


def test_hparams_keep_two_runs_apart(capsys, reference, exp_dir, tmp_path):
    other = tmp_path / "eps02"
    rc, _, err = run(capsys, "run", exp_dir / "exp.gin", "--no-progress", "--out", other,
                     "--gin_param", "EpsilonGreedy.epsilon = 0.2")
    assert rc == 0, err
    a, acc_a = _session(reference / "tb")
    b, acc_b = _session(other / "tb")
    ha = {k: _value(v) for k, v in a.hparams.items()}
    hb = {k: _value(v) for k, v in b.hparams.items()}
    assert a.group_name != b.group_name  # never merged into one averaged row
    assert "EpsilonGreedy.epsilon" not in ha  # 0.1 is the default
    assert hb["EpsilonGreedy.epsilon"] == pytest.approx(0.2)
    assert ha["OnlineRunner.num_steps"] == 400 and ha["seeds"] == 3
    assert ha["OnlineRunner.agent"] == "@EpsilonGreedy()"
    final = acc_a.Scalars("final/cumulative_regret")
    expected = load_result(reference / "result.npz").final["cumulative_regret"].mean()
    assert final[-1].value == pytest.approx(expected, rel=1e-6) and final[-1].step == 400


def test_hparams_one_session_per_sweep_point(capsys, exp_dir, tmp_path):
    out = tmp_path / "sweep"
    rc, _, err = run(capsys, "run", exp_dir / "exp.gin", "--no-progress", "--out", out,
                     "--gin_param", "OnlineRunner.hparams = {'epsilon': [0.05, 0.2]}",
                     "--gin_param", "MultiTaskModel.num_experts = 4")
    assert rc == 0, err
    # A binding of a factory that the run never called is reported when the run ends.
    assert ("warning: --gin_param 'MultiTaskModel.num_experts = 4' had no effect: the run "
            "never used MultiTaskModel") in err
    assert "had no effect" in (out / "summary.md").read_text()
    top, _ = _session(out / "tb")
    assert top is None  # the curves' run; the sessions are the points
    result = load_result(out / "result.npz")
    for i, eps in enumerate((0.05, 0.2)):
        info, acc = _session(out / "tb" / "sweep" / f"epsilon={eps:g}")
        h = {k: _value(v) for k, v in info.hparams.items()}
        assert h["sweep/epsilon"] == eps  # exactly: not float32's 0.0500000007
        assert h["OnlineRunner.num_steps"] == 400
        final = acc.Scalars("final/cumulative_regret")[-1].value
        assert final == pytest.approx(result.final["cumulative_regret"][i].mean(), rel=1e-6)


# --------------------------------------------------------------------------------------
# Output hygiene.


def test_summary_has_no_warnings_and_explains_missing_values():
    result = Result(final={"revenue": np.array([1.0, 2.0, 3.0]),
                           "ctr": np.full(3, np.nan),  # another domain's metric
                           "watch_time": np.array([5.0, 6.0, 7.0])},
                    stderr={"watch_time": np.array(0.01)}, stderr_over="users (seeds × users)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's RuntimeWarnings would fail here
        md = summary_markdown(result, title="t", description="d", num_seeds=3)
    assert "n/a" not in md and "| ctr" not in md
    assert "Not reported (no finite value in any seed" in md and "ctr" in md
    assert "standard error over seeds" in md
    assert "| watch_time † |" in md and "†: standard error over users (seeds × users)" in md


def test_help_and_version(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for text in ("run ", "bench ", "list ", "data ", "examples:",
                 "mtrlrec run experiments/quickstart.gin", "--resume", "--version"):
        assert text in out, text
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"mtrlrec {importlib.metadata.version('mtrlrec')}"


def test_ci_script_removes_its_virtualenv_and_keeps_pytest_status(tmp_path):
    """.ci/run with stub python3/python: pytest's status comes out, the venv does not stay."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python3").write_text(
        "#!/bin/bash\n"
        "# python3 -m venv DIR: a fake venv whose python exits $STUB_PYTEST_RC for pytest\n"
        'mkdir -p "$3/bin"\n'
        "cat > \"$3/bin/activate\" <<EOF\nexport PATH=\"$3/bin:\\$PATH\"\nEOF\n"
        "cat > \"$3/bin/python\" <<'EOF'\n#!/bin/bash\n"
        '[[ "$2" == pytest ]] && exit "$STUB_PYTEST_RC"\nexit 0\nEOF\n'
        'chmod +x "$3/bin/python"\n')
    (bin_ / "python3").chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "TMPDIR": str(tmp),
           "STUB_PYTEST_RC": "3"}
    env.pop("CI_VENV", None)
    proc = subprocess.run(["bash", str(REPO / ".ci" / "run")], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 3, proc.stderr
    assert list(tmp.iterdir()) == []
    proc = subprocess.run(["bash", str(REPO / ".ci" / "run")], env={**env, "STUB_PYTEST_RC": "0"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert list(tmp.iterdir()) == []


def test_run_json_records_absolute_paths(reference, exp_dir):
    meta = json.loads((reference / "run.json").read_text())
    assert meta["experiment"] == str(exp_dir / "exp.gin")
    assert pathlib.Path(meta["cwd"]).is_absolute()


@pytest.mark.parametrize("args, needle", [
    (["experiments/contextual/wheel_linucb.gin", "--gin_param",
      "OnlineRunner.hparams = {'env.delta': [0.5, 1.5]}"],
     "OnlineRunner.hparams['env.delta'][1] = 1.5: WheelBandit.delta must be < 1.0"),
    (["experiments/quickstart.gin", "--gin_param", "OnlineRunner.num_steps = 3_000_000_000"],
     "OnlineRunner.num_steps=3,000,000,000 is more than 2^31 - 1 steps per seed"),
    (["experiments/bandits/trials_ucb.gin", "--gin_param", "Trials.length = 0"],
     "Trials.length must be an integer >= 1"),
    (["experiments/quickstart.gin", "--gin_param", "OnlineRunner.num_steps = 0",
      "--gin_param", "OnlineRunner.init_from = 'runs/nope'"],
     "OnlineRunner.init_from='runs/nope': no such run directory or checkpoint file."),
    (["experiments/ads/click_only.gin", "--gin_param", "OnlineRunner.summary = @pricing_summary"],
     "OnlineRunner.summary = @pricing_summary needs a DynamicPricing env, got AdPlacement."),
    (["experiments/quickstart.gin", "--gin_param",
      "OnlineRunner.task_sampler = @BanditTaskDistribution"],
     "OnlineRunner.task_sampler must be a function key -> env params, or a task distribution "
     "with sample(key, num) such as @BanditTaskDistribution(); got the class "
     "BanditTaskDistribution (write @BanditTaskDistribution() to build one)."),
])
def test_engine_mistakes_are_one_line_before_anything_is_written(capsys, tmp_path, args, needle):
    out = tmp_path / "r"
    rc, _, err = run(capsys, "run", *[str(REPO / a) if a.endswith(".gin") else a for a in args],
                     "--no-progress", "--out", out)
    one_line_error(rc, err, needle)
    assert not out.exists()


def test_divergence_stops_with_one_line_and_keeps_earlier_results(capsys, tmp_path):
    exp = tmp_path / "div.gin"
    exp.write_text("include 'envs/bandit_gaussian.gin'\ninclude 'agents/epsilon_greedy.gin'\n"
                   "Experiment.runner = @OnlineRunner()\nOnlineRunner.env = %ENV\n"
                   "OnlineRunner.agent = %AGENT\nOnlineRunner.num_steps = 400\n"
                   "OnlineRunner.log_every = 100\nOnlineRunner.num_chunks = 4\n")
    ok = tmp_path / "ok"
    rc, _, err = run(capsys, "run", exp, "--no-progress", "--out", ok)
    assert rc == 0, err
    bad = tmp_path / "bad"
    rc, _, err = run(capsys, "run", exp, "--no-progress", "--out", bad,
                     "--gin_param", "GaussianBandit.noise_std = 1e38")
    one_line_error(rc, err, "became NaN in the window ending at step 100 for seed(s) 0",
                   "the run stopped there")
    assert not bad.exists()  # nothing had been written: no orphan directory


# --------------------------------------------------------------------------------------
# Every runner resumes (issue 19, left over): supervised runners from their epoch
# checkpoint, runners without checkpoints by recomputing; metrics.jsonl never doubles.


def _jsonl_steps(run_dir):
    return [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_supervised_run_resumes_after_its_last_epoch_without_duplicate_rows(
        capsys, tmp_path, monkeypatch):
    """MMoE (train/supervised.fit): Ctrl-C while epoch 2's checkpoint is written, after
    its row was logged; --resume redoes epoch 2 from epoch 1's checkpoint and reaches the
    uninterrupted numbers, with one row per epoch."""
    smoke = REPO / "experiments" / "mmoe" / "smoke.gin"
    ref = tmp_path / "ref"
    rc, _, err = run(capsys, "run", smoke, "--no-progress", "--out", ref)
    assert rc == 0, err
    from flax import serialization
    from mtrlrec.train import supervised

    real = serialization.msgpack_serialize
    calls = []

    def serialize_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(supervised.flax.serialization, "msgpack_serialize",
                        serialize_then_interrupt)
    x = tmp_path / "x"
    rc, _, err = run(capsys, "run", smoke, "--no-progress", "--out", x)
    assert rc == 130 and f"Continue with: mtrlrec run --resume {x}" in err, err
    assert _jsonl_steps(x) == [1, 2]  # epoch 2 logged, its checkpoint not written
    monkeypatch.setattr(supervised.flax.serialization, "msgpack_serialize", real)
    rc, _, err = run(capsys, "run", "--resume", x, "--no-progress")
    assert rc == 0, err
    assert _jsonl_steps(x) == _jsonl_steps(ref) == [1, 2]
    a, b = load_result(ref / "result.npz"), load_result(x / "result.npz")
    assert sorted(a.final) == sorted(b.final)
    for k in a.final:
        np.testing.assert_array_equal(a.final[k], b.final[k])


def test_runner_without_checkpoint_resumes_by_recomputing(capsys, tmp_path, monkeypatch):
    """An evaluation-only run (no chunk, no checkpoint) that crashed after logging: --resume
    recomputes it and metrics.jsonl holds its one row once, not twice."""
    import mtrlrec.experiment as experiment

    write = experiment.write_outputs

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device", "summary.md")

    monkeypatch.setattr(experiment, "write_outputs", crash)
    x = tmp_path / "x"
    args = ["--gin_param", "OnlineRunner.num_steps = 0", "--gin_param",
            "OnlineRunner.eval_max_steps = 50", "--seeds", "2", "--no-progress"]
    rc, _, err = run(capsys, "run", QS, *args, "--out", x)
    one_line_error(rc, err, "No space left on device")
    assert _jsonl_steps(x) == [0]
    monkeypatch.setattr(experiment, "write_outputs", write)
    rc, _, err = run(capsys, "run", "--resume", x, "--no-progress")
    assert rc == 0, err
    assert _jsonl_steps(x) == [0]
    assert (x / "summary.md").is_file()


def test_primary_is_checked_before_compiling(capsys, tmp_path, exp_dir, monkeypatch):
    """A primary metric the run does not log is refused before the chunk compiles, so no
    run directory is left behind (it was found only after the whole run)."""
    import jax

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before the check")

    monkeypatch.setattr(jax.stages.Lowered, "compile", no_compile)
    out = tmp_path / "r"
    rc, _, err = run(capsys, "run", exp_dir / "exp.gin", "--no-progress", "--out", out,
                     "--gin_param", "OnlineRunner.primary = 'regert'")
    one_line_error(rc, err, "OnlineRunner.primary='regert' is not a metric of this run",
                   "'cumulative_regret'")
    assert not out.exists()


def test_task_distribution_as_online_task_sampler(capsys, tmp_path):
    """``OnlineRunner.task_sampler = @BanditTaskDistribution()`` (as ABTestRunner takes it):
    each seed runs on its own arm means (it was a TypeError traceback)."""
    rc, _, err = run(capsys, "run", QS, *TINY, "--out", tmp_path / "r", "--gin_param",
                     "OnlineRunner.task_sampler = @BanditTaskDistribution()", "--gin_param",
                     "BanditTaskDistribution.num_arms = 10")
    assert rc == 0, err
    regret = load_result(tmp_path / "r" / "result.npz").final["cumulative_regret"]
    assert regret.shape == (3,) and len(set(regret.tolist())) == 3
