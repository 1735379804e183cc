"""The CLI end to end in a subprocess, run directories and resume."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mtrlrec.experiment import load_result

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--gin_param", "OnlineRunner.num_steps = 400", "--seeds", "3", "--no-progress"]


def mtrlrec(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "mtrlrec", *args], cwd=cwd, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "qs"
    proc = mtrlrec("run", "experiments/quickstart.gin", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_run_directory_contents(quick_run):
    out, proc = quick_run
    for name in ("config.gin", "resume.gin", "metrics.jsonl", "metrics.csv", "summary.md",
                 "plot.png", "result.npz", "run.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert list((out / "checkpoints").glob("ckpt_*.msgpack"))
    config = (out / "config.gin").read_text()
    assert "OnlineRunner.num_steps = 400" in config and "EpsilonGreedy.epsilon = 0.1" in config
    assert "cumulative_regret" in (out / "summary.md").read_text()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [100, 200, 300, 400]
    assert "cumulative_regret" in proc.stdout
    assert proc.stdout.splitlines()[0] == f"run directory: {out}"  # named before the run
    code = json.loads((out / "run.json").read_text())["code"]
    assert code["jax"] and code["backend"] and "commit" in code


def test_existing_output_directory_is_refused(quick_run):
    out, _ = quick_run
    before = sorted(p.name for p in out.iterdir())
    proc = mtrlrec("run", "experiments/quickstart.gin", *TINY, "--out", str(out))
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_reaches_the_uninterrupted_result(quick_run, tmp_path):
    out, _ = quick_run
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    # Simulate a crash during chunk 4 of 4: the newest checkpoint is that of chunk 3.
    for p in (crashed / "checkpoints").glob("ckpt_000004*"):
        p.unlink()
    assert list((crashed / "checkpoints").glob("ckpt_000003.msgpack"))
    for name in ("summary.md", "result.npz", "result.json", "plot.png", "metrics.csv"):
        (crashed / name).unlink()
    with open(crashed / "metrics.jsonl", "a") as f:
        f.write('{"step": 300, "reward": 0.')  # a torn line written mid-crash
    proc = mtrlrec("run", "--resume", str(crashed), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    a, b = load_result(out / "result.npz"), load_result(crashed / "result.npz")
    for k in a.final:
        np.testing.assert_array_equal(a.final[k], b.final[k])
    assert (out / "metrics.jsonl").read_text() == (crashed / "metrics.jsonl").read_text()


def test_list_shows_experiments_and_tables():
    proc = mtrlrec("list")
    assert proc.returncode == 0, proc.stderr
    assert "experiments/quickstart.gin" in proc.stdout and "bandit_analytic" in proc.stdout


def test_cli_error_is_one_clear_line():
    proc = mtrlrec("run", "experiments/quickstart.gin", "--gin_param",
                   "EpsilonGredy.epsilon = 0.2", "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Unknown configurable 'EpsilonGredy'" in proc.stderr
    assert "Did you mean 'EpsilonGreedy'" in proc.stderr


def test_cpu_devices_must_be_positive():
    proc = mtrlrec("run", "experiments/quickstart.gin", "--cpu-devices", "0", "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--cpu-devices must be >= 1, got 0." in proc.stderr
