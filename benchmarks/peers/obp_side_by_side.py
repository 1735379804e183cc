"""Open Bandit Pipeline 0.4.1 and mtrlrec side by side on the same OBD logs.

For each (campaign, evaluation policy) this runs obp's own OBD protocol in its
own virtualenv (``_obp_worker.py``; install it with ``setup_obp_venv.sh``) and
mtrlrec's estimators on the same rows, and prints one table:

* ``obp``: obp's ``OffPolicyEvaluation.estimate_policy_values`` (its BTS action
  distribution by Monte Carlo, its cross-fitted ``RegressionModel``);
* ``ours, obp's inputs``: mtrlrec's estimators (``mtrlrec.eval.ope``) fed obp's
  action distribution and obp's fitted ``q̂``: the estimators alone, so they must
  agree to 1e-6 (deterministic arithmetic, float32 against float64);
* ``ours, own π``: our Monte-Carlo BTS distribution (``bts_action_dist``, a
  different random stream) with obp's ``q̂``: agrees within the Monte-Carlo SE,
  measured as the SD of our estimate over ``--mc-reps`` independent MC draws
  (√2 × that SD is the SE of the difference);
* ``ours, own model``: also our reward model (``fit_obp_logistic`` on obp's
  folds): differences here are the two logistic-regression solvers;
* ``rel-ee``: obp's statistic on bootstrap resamples (obp: its
  ``sample_bootstrap_bandit_feedback`` with seeds 0..B-1 and model refits; ours:
  the *same* resamples, as row counts, with our model refitted on each).

Usage:
  bash benchmarks/peers/setup_obp_venv.sh
  python benchmarks/peers/obp_side_by_side.py --obp-python ~/.cache/mtrlrec/obp-venv/bin/python \\
      [--campaigns all,men,women] [--evaluations bts,random] [--boot 10] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.data import obd
from mtrlrec.eval import ope, reward_models
from mtrlrec.runners.ope import bts_action_dist

HERE = pathlib.Path(__file__).resolve().parent
TAUS = (1.0, 10.0, 100.0, 1000.0)
LAMBDAS = (0.0, 1.0, 100.0, 10_000.0)


def run_obp(python: str, campaign: str, evaluation: str, n_sim: int, n_boot: int, tmp: str) -> dict:
    out = os.path.join(tmp, f"{campaign}_{evaluation}.npz")
    cmd = [python, str(HERE / "_obp_worker.py"), campaign, evaluation, str(n_sim), str(n_boot), out,
           ",".join(f"{t:g}" for t in TAUS), ",".join(f"{t:g}" for t in LAMBDAS)]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def ours(specs, policy, o, q):
    inputs = ope.make_inputs(np.broadcast_to(policy, q.shape), o["action"], o["position"],
                             o["pscore"], o["reward"], q)
    est = ope.estimate_specs(inputs, specs)
    return np.array([float(est[sp.name]) for sp in specs])


def compare(python, campaign, evaluation, n_sim, n_boot, mc_reps, tmp):
    t0 = time.time()
    o = run_obp(python, campaign, evaluation, n_sim, n_boot, tmp)
    t_obp = time.time() - t0
    names = [str(n) for n in o["names"]]
    specs = [sp for sp in ope.obp_estimators(TAUS, LAMBDAS, ()) if sp.name in names]
    assert [sp.name for sp in specs] == names, (names, [sp.name for sp in specs])
    behavior = "random" if evaluation == "bts" else "bts"
    log = obd.load(behavior, campaign)
    same_rows = {  # obp's rows are in file order, ours sorted by time: compare as multisets
        "action": np.array_equal(np.sort(log.action), np.sort(o["action"])),
        "pscore": np.allclose(np.sort(log.pscore), np.sort(o["pscore"]), rtol=1e-6),
        "reward": int(log.reward.sum()) == int(o["reward"].sum()),
        "n": log.num_rounds == o["action"].shape[0],
    }
    ctx_same = np.array_equal(np.sort(log.context(), axis=0), np.sort(o["context"], axis=0))
    ac_same = np.allclose(log.action_context(), o["action_context"], atol=1e-6)
    q = o["q"]
    # (1) our estimators on obp's inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v_same = ours(specs, o["action_dist"], o, q)
    # (2) our Monte-Carlo BTS distribution, obp's q̂ (MC SE over mc_reps independent draws)
    if evaluation == "bts":
        alpha_, beta_ = obd.load_bts_prior(campaign)
        reps = np.stack([ours(specs, np.asarray(bts_action_dist(jax.random.key(100 + r), alpha_, beta_,
                                                                  num_positions=3, num_samples=n_sim)), o, q)
                         for r in range(mc_reps)])
        v_mc, mc_sd = reps[0], reps.std(axis=0, ddof=1)
        policy = np.asarray(bts_action_dist(jax.random.key(100), alpha_, beta_, num_positions=3,
                                            num_samples=n_sim))
    else:
        policy = np.full_like(o["action_dist"], 1.0 / o["action_dist"].shape[0])
        v_mc, mc_sd = ours(specs, policy, o, q), np.zeros(len(specs))
    # (3) our reward model on obp's folds and rows
    x, ac = o["context"].astype(np.float32), o["action_context"].astype(np.float32)
    params = reward_models.fit_obp_logistic(x, ac, o["action"], o["position"], o["reward"],
                                            num_positions=3, fold=o["fold"], num_folds=3)
    q_ours = np.asarray(reward_models.predict_obp_logistic(params, x, ac, o["fold"]), np.float64)
    q_diff = float(np.abs(q_ours - q).max())
    v_model = ours(specs, policy, o, q_ours)
    # (4) obp's statistic on the same bootstrap resamples (counts), our model refitted on each
    truth = float(o["truth"])
    rel_boot = []
    for idx in o["boot_idx"]:
        counts = np.bincount(idx, minlength=o["action"].shape[0]).astype(np.float32)
        pb = reward_models.fit_obp_logistic(x, ac, o["action"], o["position"], o["reward"],
                                            num_positions=3, fold=o["fold"], num_folds=3,
                                            sample_weight=counts, init=params, iters=4)
        inp = reward_models.obp_logistic_inputs(pb, x, ac, policy, o["action"], o["position"],
                                                o["pscore"], o["reward"], o["fold"])
        est = ope.estimate_specs(inp, specs, sample_weight=jnp.asarray(counts))
        rel_boot.append([abs(float(est[sp.name]) - truth) / truth for sp in specs])
    rel_boot = np.asarray(rel_boot)
    ob = o["boot_rel_ee"]
    lines = [
        f"### {evaluation} from the {behavior} log, campaign {campaign}",
        "",
        f"Rows: {o['action'].shape[0]}; same rows as mtrlrec's loader: {all(same_rows.values())} "
        f"({same_rows}); same context: {ctx_same}; same action_context: {ac_same}. "
        f"Truth (on-policy CTR of the {evaluation} log): {100 * truth:.4f} %. "
        f"Reward models: max |q̂_ours − q̂_obp| = {q_diff:.2e} (mean q̂ {q.mean():.2e}). "
        f"obp worker: {t_obp:.0f} s.",
        "",
        "| estimator | obp (%) | ours, obp's inputs (%) | abs. diff | ours, own π (%) | MC SE of diff | "
        "ours, own model (%) | rel-ee obp (boot) | rel-ee ours (same resamples) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for j, sp in enumerate(specs):
        diff = abs(v_same[j] - o["estimate"][j])
        se_diff = math.sqrt(2) * mc_sd[j]
        rows.append((sp.name, o["estimate"][j], v_same[j], diff, v_mc[j], se_diff))
        lines.append(
            f"| {sp.label} | {100 * o['estimate'][j]:.5f} | {100 * v_same[j]:.5f} | {diff:.1e} | "
            f"{100 * v_mc[j]:.5f} | {100 * se_diff:.5f} | {100 * v_model[j]:.5f} | "
            f"{np.nanmean(ob[:, j]):.3f} ± {np.nanstd(ob[:, j], ddof=1):.3f} | "
            f"{np.mean(rel_boot[:, j]):.3f} ± {np.std(rel_boot[:, j], ddof=1):.3f} |")
    lines.append("")
    return "\n".join(lines), rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obp-python", default=os.path.expanduser(
        os.path.join(os.environ.get("MTRLREC_CACHE", "~/.cache/mtrlrec"), "obp-venv/bin/python")))
    p.add_argument("--campaigns", default="all,men,women")
    p.add_argument("--evaluations", default="bts,random")
    p.add_argument("--n-sim", type=int, default=100_000, help="Monte-Carlo draws of the BTS ranking")
    p.add_argument("--boot", type=int, default=10, help="bootstrap resamples for rel-ee")
    p.add_argument("--mc-reps", type=int, default=5, help="independent MC draws for the MC SE")
    p.add_argument("--out", default=None, help="also write the markdown here")
    a = p.parse_args(argv)
    if not os.path.exists(a.obp_python):
        sys.exit(f"--obp-python {a.obp_python} not found; run benchmarks/peers/setup_obp_venv.sh first.")
    parts = ["# obp 0.4.1 and mtrlrec side by side on the OBD sample", "",
             f"`python benchmarks/peers/obp_side_by_side.py --campaigns {a.campaigns} --evaluations "
             f"{a.evaluations} --n-sim {a.n_sim} --boot {a.boot} --mc-reps {a.mc_reps}`", ""]
    worst_det, worst_mc = 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for c in a.campaigns.split(","):
            for e in a.evaluations.split(","):
                md, rows = compare(a.obp_python, c, e, a.n_sim, a.boot, a.mc_reps, tmp)
                print(md, flush=True)
                parts.append(md)
                if a.out:  # written after every cell, so a long run leaves what it finished
                    pathlib.Path(a.out).write_text("\n".join(parts) + "\n")
                for name, v_obp, v_same, diff, v_mc, se in rows:
                    if math.isfinite(v_obp):
                        worst_det = max(worst_det, diff)
                        if se > 0:
                            worst_mc = max(worst_mc, abs(v_mc - v_obp) / se)
    summary = (f"Largest |ours − obp| on obp's inputs: {worst_det:.1e} (must be ≤ 1e-6). "
               f"Largest |ours (own π) − obp| in MC SEs: {worst_mc:.2f}.")
    print(summary)
    parts.append(summary)
    if a.out:
        pathlib.Path(a.out).write_text("\n".join(parts) + "\n")
    return 0 if worst_det <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
