"""Runs on several JAX processes (issue 20): local CPU processes on 127.0.0.1 with gloo
collectives, 2 devices each, against one process.

Every process is ``python -m mtrlrec`` (or the small fault-injecting wrapper below) in a
subprocess with a strict timeout, so a hang fails the test instead of the suite. The
shapes are the tiny ones of tests/test_reliability.py (400 steps, 4 seeds) so that the
compilations are shared through the tests' compilation cache.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mtrlrec.experiment import load_result

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENT = """\
Experiment.runner = @OnlineRunner()
Experiment.num_seeds = 4
OnlineRunner.env = @BernoulliBandit()
OnlineRunner.agent = @EpsilonGreedy()
OnlineRunner.num_steps = 400
OnlineRunner.log_every = 100
BernoulliBandit.num_arms = 10
EpsilonGreedy.epsilon = 0.1
"""
TIMEOUT = 180  # seconds for any one process: a hang fails here

# Ctrl-C injected after the second checkpoint (in every process, as a terminal's Ctrl-C
# reaches the whole process group): the run must stop at the next slice, all together.
INTERRUPT_AFTER_SECOND_CHECKPOINT = """\
import os, signal, sys
from mtrlrec import cli
from mtrlrec.train import checkpoint
save, calls = checkpoint.save, []
def save_then_interrupt(*args, **kwargs):
    path = save(*args, **kwargs)
    calls.append(path)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return path
checkpoint.save = save_then_interrupt
sys.exit(cli.main(sys.argv[1:]))
"""


def _env():
    env = dict(os.environ)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env.pop("XLA_FLAGS", None)
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ.get(
        "MTRLREC_TEST_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "mtrlrec" / "jax-tests"))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, *, cwd, script=None):
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "mtrlrec",
                                                               *args]
    return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc):
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"a process hung for {TIMEOUT} s: {err[-2000:]}")
    return proc.returncode, out, err


def processes(args, n=2, *, cwd, script=None, devices=2):
    """``mtrlrec ARGS`` on ``n`` local processes of ``devices`` CPU devices each."""
    port = _free_port()
    procs = [_start([*args, "--cpu-devices", devices, "--coordinator", f"127.0.0.1:{port}",
                     "--num-processes", n, "--process-id", i, "--init-timeout", 60],
                    cwd=cwd, script=script) for i in range(n)]
    return [_finish(p) for p in procs]


def one(args, *, cwd, devices=1):
    return _finish(_start([*args, "--cpu-devices", devices], cwd=cwd))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp")
    (d / "exp.gin").write_text(EXPERIMENT)
    rc, _, err = one(["run", "exp.gin", "--no-progress", "--out", "ref"], cwd=d)
    assert rc == 0, err
    return d


def _same_results(a_dir, b_dir):
    a, b = load_result(a_dir / "result.npz"), load_result(b_dir / "result.npz")
    assert sorted(a.final) == sorted(b.final) and sorted(a.curves) == sorted(b.curves)
    for k in a.final:
        np.testing.assert_array_equal(a.final[k], b.final[k], err_msg=k)
    for k in a.curves:
        np.testing.assert_array_equal(a.curves[k], b.curves[k], err_msg=k)
    assert (a_dir / "metrics.jsonl").read_text() == (b_dir / "metrics.jsonl").read_text()


def test_two_processes_give_the_numbers_of_one_bit_for_bit(work):
    results = processes(["run", "exp.gin", "--no-progress", "--out", "two"], cwd=work)
    for rc, _, err in results:
        assert rc == 0, err
    assert "process 1: done; process 0 wrote two" in results[1][1]
    _same_results(work / "ref", work / "two")
    # Process 0 alone wrote: one set of start files, one summary, its checkpoints.
    assert (work / "two" / "summary.md").is_file()
    assert sorted(p.name for p in (work / "two" / "checkpoints").iterdir())[-1] == \
        "ckpt_000004.msgpack"


def test_interrupted_on_two_processes_resumes_on_one(work):
    results = processes(["run", "exp.gin", "--no-progress", "--out", "x"], cwd=work,
                        script=INTERRUPT_AFTER_SECOND_CHECKPOINT)
    for rc, _, err in results:
        assert rc == 130, err
    assert "Continue with: mtrlrec run --resume x" in results[0][2]
    assert not (work / "x" / "result.npz").exists()
    rc, _, err = one(["run", "--resume", "x", "--no-progress"], cwd=work)
    assert rc == 0, err
    _same_results(work / "ref", work / "x")


def test_a_process_that_never_joins_is_one_line_within_the_timeout(tmp_path):
    (tmp_path / "exp.gin").write_text(EXPERIMENT)
    port = _free_port()
    t0 = time.monotonic()
    rc, _, err = _finish(_start(["run", "exp.gin", "--out", "r", "--coordinator",
                                 f"127.0.0.1:{port}", "--num-processes", 2, "--process-id", 0,
                                 "--init-timeout", 3], cwd=tmp_path))
    assert time.monotonic() - t0 < 60
    assert rc == 2, err
    lines = [l for l in err.splitlines() if l.startswith("mtrlrec:")]
    assert lines == [lines[0]] and "did not start within 3 s" in lines[0], err
    assert "not every process joined" in lines[0] and "--init-timeout" in lines[0]
    assert "Check failure" not in err and not (tmp_path / "r").exists()


def test_a_process_that_dies_stops_the_others_with_one_line(tmp_path):
    """Process 1 is killed mid-run: process 0 stops within bounded time with one line
    (its next collective finds the peer gone), never a hang."""
    (tmp_path / "exp.gin").write_text(EXPERIMENT.replace("num_steps = 400",
                                                         "num_steps = 4_000_000").replace(
        "log_every = 100", "log_every = 1000"))
    port = _free_port()
    args = ["run", "exp.gin", "--no-progress", "--out", "r", "--cpu-devices", 2,
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", 2, "--init-timeout", 30]
    p0 = _start([*args, "--process-id", 0], cwd=tmp_path)
    p1 = _start([*args, "--process-id", 1], cwd=tmp_path)
    deadline = time.monotonic() + TIMEOUT
    while not (tmp_path / "r" / "checkpoints").is_dir():  # running, past compilation
        assert time.monotonic() < deadline and p0.poll() is None, p0.communicate()[1]
        time.sleep(0.2)
    p1.send_signal(signal.SIGKILL)
    p1.communicate()
    t0 = time.monotonic()
    rc, _, err = _finish(p0)
    assert time.monotonic() - t0 < 90
    assert rc == 2, err
    assert "another process of this 2-process run stopped, so process 0 stops too" in err
    assert "Traceback" not in err


@pytest.mark.slow  # ~20-40 s; the default suite has the bit-identity test of a run
def test_a_table_on_two_processes_equals_the_table_on_one(tmp_path):
    """``mtrlrec bench bandit_analytic --quick`` (one row, 4 seeds, so it stays seconds):
    the same table.csv, byte for byte; process 0 alone wrote the table."""
    bench = ["bench", "bandit_analytic", "--quick", "--rows", "oracle", "--seeds", 4,
             "--no-progress"]
    rc, _, err = one([*bench, "--out", tmp_path / "one"], cwd=REPO)
    assert rc == 0, err
    results = processes([*bench, "--out", tmp_path / "two"], cwd=REPO)
    for rc, _, err in results:
        assert rc == 0, err
    assert "process 1: done" in results[1][1]
    a = (tmp_path / "one" / "table.csv").read_text()
    assert a == (tmp_path / "two" / "table.csv").read_text()
    assert "oracle,regret,cumulative_regret" in a


@pytest.mark.parametrize("args, needle", [
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id=2 must be below --num-processes=2"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "--coordinator='localhost' must be HOST:PORT"),
    (["--num-processes", "2", "--process-id", "0"], "missing: --coordinator (or "
                                                    "MTRLREC_COORDINATOR)"),
])
def test_bad_distributed_flags_are_one_line(tmp_path, capsys, monkeypatch, args, needle):
    """Checked before jax.distributed starts, so in this process."""
    from mtrlrec import cli

    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", _env()["JAX_COMPILATION_CACHE_DIR"])
    (tmp_path / "exp.gin").write_text(EXPERIMENT)
    rc = cli.main(["run", str(tmp_path / "exp.gin"), "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "r").exists()


def test_seeds_that_do_not_divide_over_the_devices(work):
    results = processes(["run", "exp.gin", "--no-progress", "--out", "odd", "--seeds", 3],
                        cwd=work)
    for rc, _, err in results:
        assert rc == 2, err
        assert "--seeds 3 cannot be split evenly over the 4 devices of the 2 processes" in err
    assert not (work / "odd").exists()


# --------------------------------------------------------------------------------------
# benchmarks/perf/device.sh: the accelerator script degrades gracefully on a CPU.

DEVICE_SH = REPO / "benchmarks" / "perf" / "device.sh"


def test_device_script_without_an_accelerator_says_so():
    proc = subprocess.run(["bash", str(DEVICE_SH)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "no accelerator here (JAX backend: cpu)" in proc.stdout
    assert "--tiny" in proc.stdout


@pytest.mark.slow
def test_device_script_cpu_path(tmp_path):
    """The whole GPU path (every script, one table) at the smallest sizes on a CPU."""
    env = {**_env(), "OUT": str(tmp_path), "BUDGET": "900"}
    proc = subprocess.run(["bash", str(DEVICE_SH), "--tiny"], capture_output=True, text=True,
                          timeout=1000, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [l for l in proc.stdout.splitlines() if l.startswith("| ") and ".py" in l]
    scripts = sorted(p.name for p in DEVICE_SH.parent.glob("*.py") if p.name != "timing.py")
    assert sorted(r.split("|")[1].strip() for r in rows) == scripts
    assert all("| ok |" in r or "skipped" in r for r in rows), proc.stdout
