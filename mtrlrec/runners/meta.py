r"""The RL² bandit table's own numbers (Duan et al. 2016, §4.1, Table 1): a summary function.

``OnlineRunner.summary = @rl2_bandit_summary`` turns a run on a
``Trials``-wrapped k-armed Bernoulli bandit (tasks :math:`p_i \sim U[0,1]`,
trials of n pulls) into the table's cell: the total reward of a trial, mean ±
SE over held-out tasks, and the same as a fraction of the exact Bayes-optimal
value (:mod:`mtrlrec.eval.bayes_optimal`) where its state space is small enough.

Two kinds of rows:

* learners with an evaluation phase (RL²: ``OnlineRunner.eval_every``): the
  last evaluation serves every user ``eval_max_steps = m·n`` steps, i.e. m fresh
  tasks that training never saw (the evaluation's own key stream); a user's
  sum / m is its mean trial total, and the SE is over users.
* bandit baselines without one (they learn inside the trial, which the
  evaluation phase, with learning off, does not allow): each seed is one user
  (``num_envs = 1``) and each log window of ``log_every = n`` steps is one trial
  on a fresh task (statistics reset by ``reset_trial``); every (seed, window)
  is one task. With a sweep (``OnlineRunner.hparams``, e.g. UCB1's c), the
  value with the best mean is reported, tuned on the same tasks, as the
  authors' ``evaluate_bandits.py`` did.

``final``: ``total_reward`` ``[tasks]`` and, where the DP is feasible,
``bayes_optimal`` and ``fraction_of_bayes`` ``[tasks]`` (total / V*; its mean
is the ratio of means). Tuned values as ``tuned/<name>``.
"""

from __future__ import annotations

import gin
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import bayes_optimal
from mtrlrec.train.loop import LoopOutput
from mtrlrec.train.result import Result

# Largest belief MDP solved inside a summary (k = 2, n = 100 has 2.3M states, ~1 s).
MAX_DP_STATES = 5_000_000


def _trial_length(env: Environment) -> int:
    n = getattr(env, "length", None)
    if not getattr(env, "has_trials", False) or n is None:
        raise ConfigError("rl2_bandit_summary needs trials: OnlineRunner.trials = @Trials "
                          "with Trials.length = n pulls per task.")
    return int(n)


def _check_env(env: Environment) -> None:
    _trial_length(env)
    if not hasattr(env, "num_arms"):
        raise ConfigError("rl2_bandit_summary needs a k-armed bandit environment.")


def bayes_value(num_arms: int, horizon: int) -> float | None:
    """The exact Bayes-optimal value, or None where the state space is too large."""
    if bayes_optimal.state_count(num_arms, horizon) > MAX_DP_STATES:
        return None
    try:
        return bayes_optimal.bayes_optimal_value(num_arms, horizon)
    except ConfigError:
        return None


@gin.configurable
def rl2_bandit_summary(out: LoopOutput, env: Environment) -> Result:
    """Mean total reward per trial over held-out tasks (module docstring)."""
    n = _trial_length(env)
    k = int(env.num_arms)
    tuned, tables, stderr = {}, {}, {}
    if out.eval_users:
        per_user = np.asarray(out.eval_users["reward"], np.float64)  # [S, N] or [H, S, N]
        steps = np.asarray(out.eval_users["steps"], np.float64)
        if per_user.ndim != 2:
            raise ConfigError("rl2_bandit_summary: evaluate one setting per run (no sweep).")
        trials = steps / n
        if np.any(np.abs(trials - np.round(trials)) > 1e-9):
            raise ConfigError(f"rl2_bandit_summary: OnlineRunner.eval_max_steps must be a "
                              f"multiple of the trial length {n}.")
        totals = (per_user / trials).reshape(-1)
        num_tasks = int(np.round(trials.sum()))
        over = f"{totals.size} users x {num_tasks // totals.size} held-out tasks each"
        stderr_over = f"users ({over})"
    else:
        if int(out.steps[0]) != n:
            raise ConfigError(f"rl2_bandit_summary: OnlineRunner.log_every must equal the "
                              f"trial length {n} (one trial per log window).")
        tot = np.asarray(out.metrics["reward"], np.float64) * n  # [S, L] or [H, S, L]
        if out.hparams:
            means = tot.reshape(tot.shape[0], -1).mean(-1)
            best = int(np.argmax(means))
            names = list(out.hparams)
            rows = ["| " + " | ".join(names) + " | total reward (mean ± SE) |",
                    "|" + "---|" * (len(names) + 1)]
            for h in range(means.shape[0]):
                flat = tot[h].reshape(-1)
                se = flat.std(ddof=1) / np.sqrt(flat.size)
                vals = " | ".join(f"{out.hparams[name][h]:g}" for name in names)
                rows.append(f"| {vals} | {means[h]:.3f} ± {se:.3f}"
                            f"{' (best)' if h == best else ''} |")
            tables["tuning (in-sample, as the authors' evaluate_bandits.py)"] = "\n".join(rows)
            tuned = {name: float(v[best]) for name, v in out.hparams.items()}
            tot = tot[best]
        totals = tot.reshape(-1)
        stderr_over = "tasks (seeds x trials)"
    final = {"total_reward": totals}
    for name, v in tuned.items():
        final[f"tuned/{name}"] = np.full(totals.size, v)
    v_star = bayes_value(k, n)
    if v_star is not None:
        final["bayes_optimal"] = np.full(totals.size, v_star)
        final["fraction_of_bayes"] = totals / v_star
        stderr["bayes_optimal"] = np.asarray(0.0)
    final["oracle"] = np.full(totals.size, n * k / (k + 1.0))
    stderr["oracle"] = np.asarray(0.0)
    return Result(final=final, stderr=stderr, primary=None, tables=tables,
                  stderr_over=stderr_over)


rl2_bandit_summary.check_env = _check_env

__all__ = ["bayes_value", "rl2_bandit_summary"]
