"""Weak and strong scaling of the online loop from 1 to 2 JAX processes on this machine.

Each measurement starts local processes on 127.0.0.1 (``jax.distributed`` with gloo
CPU collectives, as ``mtrlrec run --num-processes`` does), each with ``--devices``
CPU devices (default 1: one core per process, so the comparison is about processes).
The workload is UCB1 on a 10-armed Bernoulli bandit through ``mtrlrec.train.loop.run``
(seeds sharded over the global mesh, metrics gathered to every process after every
call); the time is the loop's own ``seconds`` (compiled calls, gathers included,
compilation excluded), the slowest process's, best of ``--repeats``.

* strong scaling: the same ``--seeds`` on 1 and on 2 processes;
  ratio = time(1) / time(2), ideal 2;
* weak scaling: ``--seeds`` per process (``--seeds`` on 1, 2x``--seeds`` on 2);
  ratio = time(1) / time(2), ideal 1.

Run::

    python benchmarks/perf/scaling.py            # 256 seeds x 20,000 steps
    python benchmarks/perf/scaling.py --quick    # 16 seeds x 1,000 steps (seconds; the CI path)

On a shared 2-core machine the ratios move with the other work on it; the table
prints the per-run rates so that a reader can see it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def worker(args) -> None:
    from mtrlrec import config
    from mtrlrec.train import sharding

    config.use_cpu_cores(args.devices)
    if args.num_processes > 1:
        sharding.initialize(args.coordinator, args.num_processes, args.process_id, timeout=60)
    from mtrlrec.agents.bandits import UCB1
    from mtrlrec.envs.bandits import BernoulliBandit
    from mtrlrec.train import loop

    env, agent = BernoulliBandit(10), UCB1()
    best, regret = float("inf"), None
    for _ in range(args.repeats + 1):  # the first call compiles
        out = loop.run(env, agent, num_steps=args.steps, num_seeds=args.seeds,
                       log_every=args.steps // 10, num_chunks=1)
        best = min(best, out.seconds)
        regret = float(out.metrics["cumulative_regret"][:, -1].mean())
    print(json.dumps({"seconds": best, "regret": regret, "process": sharding.process_index()}),
          flush=True)


def measure(processes: int, seeds: int, args) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--num-processes", str(processes),
         "--process-id", str(i), "--coordinator", f"127.0.0.1:{port}", "--seeds", str(seeds),
         "--steps", str(args.steps), "--devices", str(args.devices),
         "--repeats", str(args.repeats)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=args.timeout)
        if p.returncode != 0:
            raise SystemExit(f"scaling.py: a worker failed:\n{err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(r["seconds"] for r in results)
    return {"processes": processes, "seeds": seeds, "seconds": seconds,
            "rate": seeds * args.steps / seconds, "regret": results[0]["regret"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16 seeds x 1,000 steps")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--devices", type=int, default=1, help="CPU devices per process")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seeds is None:
        args.seeds = 16 if args.quick else 256
    if args.steps is None:
        args.steps = 1_000 if args.quick else 20_000
    if args.worker:
        return worker(args)
    if args.quick:
        args.repeats = 1
    t0 = time.perf_counter()
    one = measure(1, args.seeds, args)
    two = measure(2, args.seeds, args)
    one_weak = one
    two_weak = measure(2, 2 * args.seeds, args)
    assert one["regret"] == two["regret"], "the numbers changed with the process count"
    print(f"UCB1, K = 10, {args.steps:,} steps, {args.devices} CPU device(s) per process, "
          f"best of {args.repeats} ({time.perf_counter() - t0:.0f} s in all)\n")
    print("| scaling | processes | seeds | seconds | user-steps/s | ratio (ideal) |")
    print("|---|---|---|---|---|---|")
    for name, a, b, ideal in (("strong", one, two, 2.0), ("weak", one_weak, two_weak, 1.0)):
        ratio = a["seconds"] / b["seconds"]
        for i, r in enumerate((a, b)):
            shown = f"{ratio:.2f} ({ideal:g})" if i else ""
            print(f"| {name} | {r['processes']} | {r['seeds']} | {r['seconds']:.3f} | "
                  f"{r['rate']:,.0f} | {shown} |")


if __name__ == "__main__":
    main()
