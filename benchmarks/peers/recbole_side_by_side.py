"""RecBole 1.2.1 and mtrlrec side by side on MovieLens-100k (the movielens_next_item protocol).

Runs RecBole's own BPR, GRU4Rec, SASRec and Pop in their virtualenv
(``_recbole_worker.py``; install with ``setup_recbole_venv.sh``; the data is the
ml-100k copy that ``mtrlrec data movielens`` extracted from the recbole wheel),
``--seeds`` seeds each, and prints their test HR/NDCG/MRR@10 beside the rows of
our table (``--ours``, the harness's ``movielens_next_item.csv``). It also

* times an epoch of RecBole's SASRec and GRU4Rec (``Trainer._train_epoch``, one
  torch thread with ``--threads 1``) beside an epoch of ours (the jitted training
  step of ``mtrlrec.runners.next_item`` on one XLA thread, times the steps of one
  epoch at the table's settings: causal windows of 50, batch 64), and prints
  the ratio;
* checks RecBole's Pop counts against the true training counts and ours
  (RecBole's ``item_cnt[item, :] += 1`` counts an item once per batch however
  often the batch holds it: RecBole issues #1844 and #2198).

Worker results are cached as JSON in ``--json-dir`` (rerunning reuses them).

Usage:
  bash benchmarks/peers/setup_recbole_venv.sh && mtrlrec data movielens
  python benchmarks/peers/recbole_side_by_side.py --models BPR,GRU4Rec,SASRec,Pop --seeds 3 \\
      --ours benchmarks/results/movielens_next_item.csv [--timing-only] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
OURS_ROW = {"Pop": "pop", "BPR": "mf", "GRU4Rec": "gru", "SASRec": "sasrec"}
METRICS = ("hit@10", "ndcg@10", "mrr@10")


def run_worker(python, model, seed, max_epochs, threads, data_dir, json_dir):
    out = pathlib.Path(json_dir) / f"{model}_s{seed}_e{max_epochs}.json"
    if not out.exists():
        env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS=str(threads))
        subprocess.run([python, str(HERE / "_recbole_worker.py"), model, str(seed), str(max_epochs),
                        str(threads), data_dir, str(out)], check=True, env=env, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def mean_se(xs):
    xs = [float(x) for x in xs]
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return m, sd / math.sqrt(len(xs))


def our_epoch_seconds(kind, steps=5):
    """Seconds per training epoch of our sequence model (table settings), from timed jitted steps."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from mtrlrec.runners import next_item

    runner = next_item.NextItemRunner(model="sasrec" if kind == "transformer" else "gru4rec")
    _, split = runner.load_split()
    n_items = int(split.train_seen.shape[1] - 1)
    if kind == "transformer":
        init_fn, loss_fn, _ = next_item._seq_programs(kind, n_items, 64, 128, 2, 2, 50, 0.5, 10, False, 50)
    else:
        init_fn, loss_fn, _ = next_item._seq_programs(kind, n_items, 64, 128, 1, 1, 50, 0.3, 10, False, 50)
    opt = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, batch, key):
        (l, _), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        u, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, u), opt_state, l

    x, y, w = next_item.stride_windows(split.train.history, split.train.target, split.train.user, 50)
    bs = 64
    params = init_fn(jax.random.PRNGKey(0))
    opt_state = opt.init(params)
    idx = np.arange(bs) % x.shape[0]
    batch = (jnp.asarray(x[idx]), jnp.asarray(y[idx]), jnp.asarray(w[idx]))
    key = jax.random.PRNGKey(1)
    params, opt_state, l = step(params, opt_state, batch, key)
    l.block_until_ready()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        params, opt_state, l = step(params, opt_state, batch, key)
    l.block_until_ready()
    n_steps = math.ceil(x.shape[0] / bs)
    per_step = (time.perf_counter() - t0) / steps
    per_step_cpu = (time.process_time() - c0) / steps
    return per_step_cpu * n_steps, per_step * n_steps, per_step_cpu, n_steps


def read_ours(path):
    """Our cells from the harness's CSV (``row,column,metric,mean,se,...``): row -> column -> 'mean ± se'."""
    rows = {}
    if not path or not os.path.exists(path):
        return rows
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("mean"):
                se = f" ± {float(r['se']):.4f}" if r.get("se") else ""
                rows.setdefault(r["row"], {})[r["column"]] = f"{float(r['mean']):.4f}{se}"
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache = os.path.expanduser(os.environ.get("MTRLREC_CACHE", "~/.cache/mtrlrec"))
    p.add_argument("--recbole-python", default=os.path.join(cache, "recbole-venv/bin/python"))
    p.add_argument("--models", default="BPR,GRU4Rec,SASRec,Pop")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json-dir", default=os.path.join(cache, "recbole-runs"))
    p.add_argument("--ours", default=str(HERE.parent / "results" / "movielens_next_item.csv"))
    p.add_argument("--timing-only", action="store_true", help="only the epoch timing of SASRec and GRU4Rec")
    p.add_argument("--timing-batches", type=int, default=5,
                   help="RecBole batches timed per model (CPU time extrapolated to the epoch's batches)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.threads == 1:  # one XLA thread for our timing, before jax is imported
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if not os.path.exists(a.recbole_python):
        sys.exit(f"--recbole-python {a.recbole_python} not found; run benchmarks/peers/setup_recbole_venv.sh.")
    from mtrlrec.data import movielens
    ml_dir = movielens.prepare()
    data_dir = tempfile.mkdtemp()
    os.symlink(ml_dir, os.path.join(data_dir, "ml-100k"))
    os.makedirs(a.json_dir, exist_ok=True)
    parts = ["# RecBole 1.2.1 and mtrlrec side by side on MovieLens-100k", "",
             f"`python benchmarks/peers/recbole_side_by_side.py {' '.join(argv or sys.argv[1:])}`", ""]

    # -- epoch timing ----------------------------------------------------------
    parts += ["## Seconds per training epoch (one thread each)", "",
              "CPU seconds of the process per training epoch (one torch thread, one XLA thread: the compute "
              "itself, robust to other processes on a shared machine), each extrapolated from timed steps "
              "(RecBole: its first batches through Trainer._train_epoch; ours: jitted steps after "
              "compilation); wall seconds in parentheses.", "",
              "| model | RecBole 1.2.1 (CPU s/epoch) | ours (CPU s/epoch) | ratio RecBole / ours | ours: CPU per step × steps |",
              "|---|---|---|---|---|"]
    for model, kind in (("SASRec", "transformer"), ("GRU4Rec", "gru")):
        r = run_worker(a.recbole_python, model, 0, -a.timing_batches, a.threads, data_dir, a.json_dir)
        theirs, theirs_wall = r["epoch_cpu_seconds"][0], r["epoch_seconds"][0]
        ours_s, ours_wall, per_step, steps = our_epoch_seconds(kind)
        parts.append(f"| {model} | {theirs:.1f} ({theirs_wall:.1f}) | {ours_s:.2f} ({ours_wall:.2f}) | "
                     f"{theirs / ours_s:.1f}× | {per_step * 1e3:.1f} ms × {steps} |")
        print(parts[-1], flush=True)
    parts += ["", f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
                  "(both timed in the same conditions).", ""]
    if a.timing_only:
        text = "\n".join(parts) + "\n"
        print(text)
        if a.out:
            pathlib.Path(a.out).write_text(text)
        return 0

    # -- accuracy, seeds -----------------------------------------------------------
    ours = read_ours(a.ours)
    parts += ["## Test metrics (mean ± SE over seeds)", "",
              "| model | RecBole HR@10 | ours HR@10 | RecBole NDCG@10 | ours NDCG@10 | RecBole MRR@10 | "
              "ours MRR@10 | RecBole epochs |", "|---|---|---|---|---|---|---|---|"]
    pop = None
    for model in a.models.split(","):
        seeds = 1 if model == "Pop" else a.seeds
        res = [run_worker(a.recbole_python, model, s, 1 if model == "Pop" else a.max_epochs, a.threads,
                          data_dir, a.json_dir) for s in range(seeds)]
        if model == "Pop":
            pop = res[0]
        cells = []
        for m in METRICS:
            mu, se = mean_se([r["test"][m] for r in res])
            o = ours.get(OURS_ROW[model], {})
            col = {"hit@10": "hr", "ndcg@10": "ndcg", "mrr@10": "mrr"}[m]
            cells += [f"{mu:.4f} ± {se:.4f}" if seeds > 1 else f"{mu:.4f}", o.get(col, "—")]
        ep = mean_se([r["epochs"] for r in res])[0]
        parts.append(f"| {model} ({seeds} seeds) | " + " | ".join(cells) + f" | {ep:.0f} |")
        print(parts[-1], flush=True)

    # -- Pop's counting -----------------------------------------------------------------
    if pop is not None:
        import numpy as np

        from mtrlrec.runners import next_item

        theirs = np.array(pop["pop"]["recbole_count"])
        true = np.array(pop["pop"]["true_count"])
        mask = np.array([r != "[PAD]" for r in pop["pop"]["raw_item"]])
        # ours: NextItemRunner's Pop counts train_seen (column 0 is the padding id, set to 0 there)
        _, split = next_item.NextItemRunner(model="pop").load_split()
        our_counts = split.train_seen.astype(np.int64).sum(0)
        our_counts[0] = 0
        ml = movielens.load()
        order = np.lexsort((np.arange(ml.users.shape[0]), ml.timestamps, ml.users))  # stable by time per user
        u_sorted = ml.users[order]
        last = np.r_[u_sorted[1:] != u_sorted[:-1], True]
        second = np.r_[u_sorted[2:] != u_sorted[1:-1], True, False] & ~last
        direct = np.bincount(ml.items[order][~(last | second)], minlength=our_counts.shape[0])
        raw_to_ours = {str(r): i for i, r in enumerate(ml.item_raw_ids)}
        idx = np.array([raw_to_ours.get(r, 0) for r in pop["pop"]["raw_item"]])
        moved = our_counts[idx][mask] - true[mask]
        parts += ["", f"## RecBole's Pop counts (one epoch, batch {pop['pop']['batch_size']}, no negative sampling)", "",
                  f"True training interactions (RecBole's split): {int(true[mask].sum()):,}; RecBole's Pop counted "
                  f"{int(theirs[mask].sum()):,} ({100 * (1 - theirs[mask].sum() / true[mask].sum()):.1f} % lost); "
                  f"items whose count is wrong: {int((theirs[mask] != true[mask]).sum())} of {int(mask.sum())}; "
                  f"largest count {int(theirs[mask].max())} (at most one per batch); largest undercount "
                  f"{int((true - theirs)[mask].max())}.",
                  "",
                  f"Ours counts every interaction once: our Pop's counts ({int(our_counts.sum()):,} in all) equal "
                  f"the item frequencies of each user's interactions but the last two, counted directly from the "
                  f"data: {bool(np.array_equal(our_counts, direct))}. Against RecBole's split, {int((moved != 0).sum())} "
                  f"items' counts differ ({int(np.abs(moved).sum())} interactions moved, same total): the two "
                  "splits break ties between equal timestamps differently when choosing each user's last two items.",
                  ""]
        print("\n".join(parts[-5:]))
    text = "\n".join(parts) + "\n"
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
