"""Training time per epoch of the SASRec-style model on MovieLens-100k.

Measures the jitted training step of :mod:`mtrlrec.runners.next_item` (2 layers,
2 heads, hidden 64, max history 50, softmax cross-entropy over all 1,682 items,
Adam) and extrapolates to one epoch:

* ``stride 1``: RecBole's work per epoch: every training prefix is its own
  sample (one causal pass per prefix, loss on its last position), batch 2048
  as in RecBole's default ``train_batch_size``;
* ``stride 50``: the default of our table: causal windows of 50, each prefix
  trained once per epoch at its window position (≈ 50× fewer passes).

The ratio between the two is measured in the same process. RecBole's own
SASRec was quoted in the issue at about 326 s per epoch on one CPU thread; we
did not measure it (no PyTorch here), so it is printed as a quoted figure only.

Usage::

    python benchmarks/perf/sasrec_epoch.py --threads 1 --steps 5
    python benchmarks/perf/sasrec_epoch.py --threads 0      # all cores
    python benchmarks/perf/sasrec_epoch.py --device gpu     # per-step time on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for XLA (0 = default, all cores)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    ap.add_argument("--strides", default="1,50", help="comma-separated train strides")
    ap.add_argument("--batch", default="2048,64", help="batch size per stride (comma-separated)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    args = ap.parse_args()
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        if args.threads > 0:
            os.environ["XLA_FLAGS"] = (
                os.environ.get("XLA_FLAGS", "")
                + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()
            if args.threads != 1:
                print("note: XLA has no portable knob for N>1 threads; use --threads 1 or 0", file=sys.stderr)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from mtrlrec.runners import next_item

    runner = next_item.NextItemRunner(model="sasrec")
    _, split = runner.load_split()
    N = int(split.train_seen.shape[1] - 1)
    opt = optax.adam(1e-3)

    strides = [int(s) for s in args.strides.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    results = []
    for stride, bs in zip(strides, batches):
        init_fn, loss_fn, _ = next_item._seq_programs("transformer", N, 64, 128, 2, 2, 50, 0.2, 10, False, stride)

        @jax.jit
        def step(params, opt_state, batch, key):
            (l, _), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
            u, opt_state = opt.update(g, opt_state, params)
            return optax.apply_updates(params, u), opt_state, l

        x, y, w = next_item.stride_windows(split.train.history, split.train.target, split.train.user, stride)
        n = x.shape[0]
        steps_per_epoch = int(np.ceil(n / bs))
        params = init_fn(jax.random.PRNGKey(0))
        opt_state = opt.init(params)
        idx = np.arange(bs) % n
        batch = (jnp.asarray(x[idx]), jnp.asarray(y[idx]), jnp.asarray(w[idx]))
        key = jax.random.PRNGKey(1)
        t0 = time.perf_counter()
        params, opt_state, l = step(params, opt_state, batch, key)
        l.block_until_ready()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            params, opt_state, l = step(params, opt_state, batch, key)
        l.block_until_ready()
        per_step = (time.perf_counter() - t0) / args.steps
        res = dict(stride=stride, batch=bs, windows=n, steps_per_epoch=steps_per_epoch,
                   seconds_per_step=per_step, seconds_per_epoch=per_step * steps_per_epoch,
                   compile_seconds=compile_s)
        results.append(res)
        print(json.dumps(res), flush=True)
    dev = jax.devices()[0]
    threads = args.threads if args.device == "cpu" else None
    print(f"device: {dev.platform} ({dev.device_kind}), threads: {threads or 'all'} of {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} (other processes share the CPU)")
    if len(results) > 1:
        r = results[0]["seconds_per_epoch"] / results[-1]["seconds_per_epoch"]
        print(f"epoch time ratio stride {results[0]['stride']} / stride {results[-1]['stride']}: {r:.1f}x")
    print("quoted (not measured here): RecBole 1.2 SASRec ≈ 326 s/epoch on one CPU thread")
    for res in results:
        print(f"ours, stride {res['stride']}: {res['seconds_per_epoch']:.1f} s/epoch "
              f"(326 / ours = {326.0 / res['seconds_per_epoch']:.2f})")


if __name__ == "__main__":
    main()
