"""Throughput of LinUCB and LinTS: ours against vectorised NumPy and MABWiser.

A linear-Gaussian contextual bandit with d = 10, K = 10 (``LinearGaussianBandit``:
x ~ N(0, I), r = θ_a·x + 0.1 ε), R runs × T steps. For each algorithm it measures
run·steps per second (compilation excluded, reported separately) of

* ``ours``: :func:`mtrlrec.train.contextual.run_contextual`, one
  ``jit(vmap(scan))`` over all runs; LinUCB keeps :math:`A_a^{-1}` by
  Sherman–Morrison, LinTS the Cholesky factor of the precision by rank-one
  updates (O(d²) per step and arm);
* ``numpy``: the same algorithms vectorised over runs in NumPy in this script
  (one Python iteration per step; LinUCB by Sherman–Morrison, LinTS sampling
  with a batched ``np.linalg.cholesky`` of the posterior covariances);
* ``mabwiser``: MABWiser's ``LinUCB``/``LinTS`` (``pip install mabwiser``), one
  run, ``predict`` + ``partial_fit`` per step, as practitioners use it.

NumPy and MABWiser throughputs are constant per step (no state grows), so they
are measured on fewer steps (``--numpy-steps``, ``--mabwiser-steps``) and
compared as rates. Run::

    python benchmarks/perf/linear.py            # 1,000 runs × 10,000 steps
    python benchmarks/perf/linear.py --quick    # 200 runs × 1,000 steps

Targets (issue 8): >= 3× NumPy and >= 1,000× MABWiser on CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

D, K, NOISE = 10, 10, 0.1


def _theta():
    import jax

    from mtrlrec.envs.contextual import LinearGaussianBandit

    env = LinearGaussianBandit(dim=D, num_arms=K, noise_std=NOISE)
    return env, np.asarray(jax.device_get(env.default_params().theta), np.float64)


# -- NumPy, vectorised over runs ---------------------------------------------------------


def _sherman_morrison(m, x):
    """``(M^{-1} + x xᵀ)^{-1}`` from ``M = [runs, D, D]`` (symmetric) and ``x [runs, D]``."""
    mx = np.einsum("rij,rj->ri", m, x)
    return m - np.einsum("ri,rj->rij", mx, mx) / (1 + np.einsum("ri,ri->r", x, mx))[:, None, None]


def numpy_linucb(theta, runs, steps, alpha=1.0, lam=1.0, seed=0):
    rng = np.random.default_rng(seed)
    a_inv = np.broadcast_to(np.eye(D) / lam, (runs, K, D, D)).copy()
    b = np.zeros((runs, K, D))
    idx = np.arange(runs)
    regret = 0.0
    for _ in range(steps):
        x = rng.standard_normal((runs, D))
        ax = np.einsum("rkij,rj->rki", a_inv, x)
        ucb = np.einsum("rki,rki->rk", ax, b) + alpha * np.sqrt(np.einsum("rki,ri->rk", ax, x))
        a = ucb.argmax(1)
        means = x @ theta.T
        r = means[idx, a] + NOISE * rng.standard_normal(runs)
        regret += float(np.sum(means.max(1) - means[idx, a]))
        a_inv[idx, a] = _sherman_morrison(a_inv[idx, a], x)
        b[idx, a] += r[:, None] * x
    return regret / runs


def numpy_lints(theta, runs, steps, a0=6.0, b0=6.0, lam=0.25, seed=0):
    rng = np.random.default_rng(seed)
    cov = np.broadcast_to(np.eye(D) / lam, (runs, K, D, D)).copy()  # Λ_a^{-1}
    xy = np.zeros((runs, K, D))
    yy = np.zeros((runs, K))
    n = np.zeros((runs, K))
    idx = np.arange(runs)
    regret = 0.0
    for _ in range(steps):
        x = rng.standard_normal((runs, D))
        mu = np.einsum("rkij,rkj->rki", cov, xy)
        a_post = a0 + 0.5 * n
        b_post = np.maximum(b0 + 0.5 * (yy - np.einsum("rki,rki->rk", xy, mu)), 1e-6 * b0)
        sigma2 = b_post / rng.gamma(a_post)
        chol = np.linalg.cholesky(cov)
        beta = mu + np.sqrt(sigma2)[..., None] * np.einsum("rkij,rkj->rki", chol,
                                                           rng.standard_normal((runs, K, D)))
        a = np.einsum("rki,ri->rk", beta, x).argmax(1)
        means = x @ theta.T
        r = means[idx, a] + NOISE * rng.standard_normal(runs)
        regret += float(np.sum(means.max(1) - means[idx, a]))
        cov[idx, a] = _sherman_morrison(cov[idx, a], x)
        xy[idx, a] += r[:, None] * x
        yy[idx, a] += r * r
        n[idx, a] += 1
    return regret / runs


# -- MABWiser ----------------------------------------------------------------------------


def mabwiser_run(name, theta, steps, seed=0):
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    policy = {"LinUCB": LearningPolicy.LinUCB(alpha=1.0, l2_lambda=1.0),
              "LinTS": LearningPolicy.LinTS(alpha=1.0, l2_lambda=1.0)}[name]
    rng = np.random.default_rng(seed)
    mab = MAB(arms=list(range(K)), learning_policy=policy, seed=seed)
    x0 = rng.standard_normal((K, D))
    mab.fit(decisions=list(range(K)), rewards=list((x0 * theta).sum(1)), contexts=x0)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = rng.standard_normal((1, D))
        a = mab.predict(x)
        r = float(theta[a] @ x[0]) + NOISE * rng.standard_normal()
        mab.partial_fit(decisions=[a], rewards=[r], contexts=x)
    return time.perf_counter() - t0


# -- ours --------------------------------------------------------------------------------


def ours(name, env, runs, steps):
    from mtrlrec.train.contextual import run_contextual
    from mtrlrec.agents.linear import LinTS, LinUCB

    agent = LinUCB(alpha=1.0, regularization=1.0, fit_intercept=False) if name == "LinUCB" \
        else LinTS(fit_intercept=False, initial_pulls=0)
    block = max(d for d in range(1, min(steps, 1000) + 1) if steps % d == 0)
    out = run_contextual(env, agent, num_steps=steps, num_seeds=runs, block=block)
    return float(out["_seconds"]), float(out["_compile_seconds"]), float(out["regret"].sum(-1).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--numpy-steps", type=int, default=500)
    ap.add_argument("--mabwiser-steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--algorithms", default="LinUCB,LinTS")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.steps, args.numpy_steps, args.mabwiser_steps = 200, 1000, 200, 100
    import jax

    env, theta = _theta()
    print(f"d={D}, K={K}, runs={args.runs}, steps={args.steps} (NumPy {args.numpy_steps} "
          f"steps, MABWiser 1 run × {args.mabwiser_steps} steps); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"JAX {jax.__version__} on {jax.devices()[0].platform}")
    print(f"{'algorithm':9s} {'ours':>14s} {'numpy':>14s} {'mabwiser':>12s} "
          f"{'ours/numpy':>11s} {'ours/mabwiser':>14s} {'compile s':>10s}  regret/run (ours, numpy)")
    for name in args.algorithms.split(","):
        sec, comp, reg = ours(name, env, args.runs, args.steps)
        v_ours = args.runs * args.steps / sec
        fn = numpy_linucb if name == "LinUCB" else numpy_lints
        t0 = time.perf_counter()
        reg_np = fn(theta, args.runs, args.numpy_steps)
        v_np = args.runs * args.numpy_steps / (time.perf_counter() - t0)
        mw = mabwiser_run(name, theta, args.mabwiser_steps)
        v_mw = args.mabwiser_steps / mw if mw else float("nan")
        print(f"{name:9s} {v_ours:14,.0f} {v_np:14,.0f} {v_mw:12,.0f} {v_ours / v_np:11.1f} "
              f"{v_ours / v_mw:14,.0f} {comp:10.1f}  {reg:.1f} (T={args.steps}), "
              f"{reg_np:.1f} (T={args.numpy_steps})")
    print("rates are run·steps per second; compilation excluded from 'ours'.")


if __name__ == "__main__":
    main()
