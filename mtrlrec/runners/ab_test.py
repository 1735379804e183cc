r"""``ABTestRunner``: a simulated A/B test as an experiment (``Experiment.runner = @ABTestRunner()``).

Users are randomised to policy A or B, each user interacts with a simulator
(any :class:`~mtrlrec.core.env.Environment`, users drawn by a task sampler) for
``num_steps`` steps through :func:`mtrlrec.train.loop.run`, and the per-user
metric is compared with Welch's test (:func:`mtrlrec.eval.stats.welch_from_moments`).
With ``--seeds S`` the whole experiment is replicated S times in the same
compiled call, so the share of replicates that reject is the test's empirical
power (or its type-I error when A = B). The statistics themselves (Welch's
test, sample sizes) are in :mod:`mtrlrec.eval.stats`.
"""

from __future__ import annotations

from typing import Any, Callable

import gin
import jax
import numpy as np
from jax.scipy.stats import norm

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.eval.stats import TestResult, welch_from_moments
from mtrlrec.train.result import Result, RunContext


@gin.configurable
class ABTestRunner:
    """A simulated A/B test of two agents on a simulator with randomised users.

    Each replicate (one per ``--seeds``) draws ``num_users`` users, assigns
    each to A or B by a fair coin (complete randomisation; a group gets at
    least 2 users), lets every user interact with its group's policy for
    ``num_steps`` steps, and tests the difference of the per-user ``metric``
    with :func:`~mtrlrec.eval.stats.welch_test`. All users of all replicates
    run in one compiled call per policy (``loop.run`` vmaps them).

    Args:
      env: the simulator.
      agent_a, agent_b: the two policies (A = control).
      num_users: users per replicate, >= 4.
      num_steps: interactions per user.
      metric: per-user loop metric compared, a ``cumulative_*`` sum or
        any logged metric (its last window).
      task_sampler: optional ``sampler(key) -> env params`` drawing a user
        (heterogeneous users), or an object with ``sample(key, num) -> params``
        such as ``BanditTaskDistribution``; default: every user has the env's
        default params.
      alpha: test level.
      mde: minimum detectable effect for the reported sample size (default:
        the observed difference).

    Result.final (one value per replicate): ``mean_a``, ``mean_b``, ``diff``,
    ``se``, ``ci_low``, ``ci_high``, ``p_value``, ``reject`` (0/1; its mean is
    the empirical power), ``n_a``, ``n_b``, ``required_users`` (per group for
    ``mde`` at power 0.8).
    """

    def __init__(
        self,
        env: Environment = gin.REQUIRED,
        agent_a: Agent = gin.REQUIRED,
        agent_b: Agent = gin.REQUIRED,
        num_users: int = 1000,
        num_steps: int = 100,
        metric: str = "cumulative_reward",
        task_sampler: Callable[[jax.Array], Any] | None = None,
        alpha: float = 0.05,
        mde: float | None = None,
    ):
        self.env, self.agent_a, self.agent_b = env, agent_a, agent_b
        self.num_users = check_int("ABTestRunner.num_users", num_users, min_value=4)
        self.num_steps = check_int("ABTestRunner.num_steps", num_steps, min_value=1)
        self.metric = metric
        self.task_sampler = task_sampler
        self.alpha = check_float("ABTestRunner.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
        self.mde = None if mde is None else check_float("ABTestRunner.mde", mde)

    def _user_metric(self, agent, num, seed, offset):
        from mtrlrec.train import loop  # local: loop imports heavy modules

        env_params, per_seed = None, False
        if self.task_sampler is not None:
            key = jax.random.fold_in(jax.random.key(seed), 7 + offset)
            if hasattr(self.task_sampler, "sample"):  # e.g. BanditTaskDistribution
                env_params = self.task_sampler.sample(key, num)
            else:
                env_params = jax.vmap(self.task_sampler)(jax.random.split(key, num))
            per_seed = True
        out = loop.run(self.env, agent, num_steps=self.num_steps, num_seeds=num,
                       env_params=env_params, env_params_per_seed=per_seed, seed=seed,
                       seed_offset=offset, log_every=self.num_steps)
        if self.metric not in out.metrics:
            raise ConfigError(
                f"ABTestRunner.metric {self.metric!r} is not logged; available: {sorted(out.metrics)}."
            )
        return np.asarray(out.metrics[self.metric])[:, -1]

    def __call__(self, ctx: RunContext) -> Result:
        reps, n = ctx.num_seeds, self.num_users
        rng = np.random.default_rng(ctx.seed)
        # complete randomisation per replicate: a fair coin per user
        assign = rng.random((reps, n)) < 0.5
        assign[:, 0], assign[:, 1], assign[:, 2], assign[:, 3] = True, True, False, False
        n_b = assign.sum(axis=1)
        # Simulate every user under both arms' seeds once; each user only
        # contributes the outcome of its assigned arm. Users of arm A and B use
        # disjoint seed streams, so outcomes are independent.
        ya = self._user_metric(self.agent_a, reps * n, ctx.seed, 0).reshape(reps, n)
        yb = self._user_metric(self.agent_b, reps * n, ctx.seed, reps * n).reshape(reps, n)
        # group moments of every replicate at once (masks), then one vectorised test
        ma_, mb_ = ~assign, assign
        n_a = ma_.sum(1)
        mean_a = (ya * ma_).sum(1) / n_a
        mean_b = (yb * mb_).sum(1) / n_b
        var_a = (((ya - mean_a[:, None]) ** 2) * ma_).sum(1) / (n_a - 1)
        var_b = (((yb - mean_b[:, None]) ** 2) * mb_).sum(1) / (n_b - 1)
        res = welch_from_moments(mean_a, var_a, n_a, mean_b, var_b, n_b, self.alpha)
        stack = {k: np.asarray(getattr(res, k), np.float64) for k in TestResult._fields}
        final = {
            "mean_a": stack["mean_a"], "mean_b": stack["mean_b"], "diff": stack["diff"],
            "se": stack["se"], "ci_low": stack["low"], "ci_high": stack["high"],
            "p_value": stack["p_value"], "reject": stack["reject"].astype(np.float64),
            "n_a": (n - n_b).astype(np.float64), "n_b": n_b.astype(np.float64),
        }
        effect = (mean_b - mean_a) if self.mde is None else np.full(reps, self.mde)
        z = float(norm.ppf(1 - self.alpha / 2)) + float(norm.ppf(0.8))
        with np.errstate(divide="ignore", invalid="ignore"):
            req = np.ceil(z * z * (var_a + var_b) / effect ** 2)
        final["required_users"] = np.where(np.isfinite(req) & (effect != 0), req, np.nan)
        return Result(final=final)


__all__ = ["ABTestRunner"]
