r"""The cold-start table's own numbers: a summary function (``LoopOutput -> Result``).

``OnlineRunner.summary = @cold_start_summary`` turns a run on a
``Trials``-wrapped population (:mod:`mtrlrec.envs.population`, one trial per
user) into, for each horizon H of the env's ``horizons`` (10, 50, 200), the
cumulative reward per interaction over each held-out user's first H
interactions (CTR for clicks, revenue per step for pricing),

.. math:: \mathrm{CTR@H}(u) = \frac1H \sum_{t < H} r^u_t ,

mean ± SE over held-out users. Two kinds of rows, as in
:mod:`mtrlrec.runners.meta`:

* meta-learners with an evaluation phase (``OnlineRunner.eval_every``): the last
  evaluation serves ``num_envs`` slots with fresh users of the evaluation's own
  key stream (never seen in training) for ``eval_max_steps = m·n`` steps, i.e.
  m users per slot (n = the trial length); a slot's value is the mean over its m
  users and the SE is over slots (independent).
* per-user learners without one (Thompson sampling, LinTS: they learn inside
  the trial): each seed is one user (``num_envs = 1``, ``num_steps`` = the
  trial length), users are seeds.

``final``: ``ctr@<H>`` per user (or slot) and ``regret`` (mean pseudo-regret per
step over the trial).
"""

from __future__ import annotations

import gin
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError
from mtrlrec.train.loop import LoopOutput
from mtrlrec.train.result import Result


def _horizons(env: Environment) -> tuple[int, ...]:
    hs = getattr(env, "horizons", None)
    if not getattr(env, "has_trials", False) or hs is None:
        raise ConfigError("cold_start_summary needs a user population (e.g. @UserPopulation()) "
                          "inside trials: OnlineRunner.trials = @Trials, Trials.sampler = %ENV.")
    return tuple(int(h) for h in hs)


def _check_env(env: Environment) -> None:
    hs = _horizons(env)
    if int(env.length) < max(hs):
        raise ConfigError(f"cold_start_summary: Trials.length = {env.length} is shorter than "
                          f"the longest horizon {max(hs)}.")


@gin.configurable
def cold_start_summary(out: LoopOutput, env: Environment) -> Result:
    """Cumulative CTR over each held-out user's first H interactions (module docstring)."""
    hs = _horizons(env)
    n = int(env.length)
    final = {}
    if out.eval_users:
        steps = np.asarray(out.eval_users["steps"], np.float64)
        if steps.ndim != 2:
            raise ConfigError("cold_start_summary: evaluate one setting per run (no sweep).")
        users = steps / n
        if np.any(np.abs(users - np.round(users)) > 1e-9) or np.any(users < 1):
            raise ConfigError(f"cold_start_summary: OnlineRunner.eval_max_steps must be a "
                              f"multiple of the trial length {n}.")
        for h in hs:
            s = np.asarray(out.eval_users[f"first{h}"], np.float64)
            final[f"ctr@{h}"] = (s / (users * h)).reshape(-1)
        final["regret"] = (np.asarray(out.eval_users["regret"], np.float64)
                           / steps).reshape(-1)
        over = (f"held-out user slots ({steps.size} slots x {int(round(users.mean()))} "
                "fresh users each, from the evaluation's own key stream)")
    else:
        if int(out.steps[-1]) != n:
            raise ConfigError(f"cold_start_summary: without an evaluation phase each seed is "
                              f"one user: OnlineRunner.num_steps must equal Trials.length = {n}.")
        if out.hparams:
            raise ConfigError("cold_start_summary: run one setting per row (no sweep).")
        widths = np.diff(np.concatenate([[0], np.asarray(out.steps, np.float64)]))
        for h in hs:
            m = np.asarray(out.metrics[f"first{h}"], np.float64)   # [S, L] window means
            final[f"ctr@{h}"] = (m * widths).sum(-1) / h
        final["regret"] = (np.asarray(out.metrics["regret"], np.float64) * widths).sum(-1) / n
        over = f"held-out users ({final['regret'].size} seeds, one user each)"
    return Result(final=final, primary=None, stderr_over=over)


cold_start_summary.check_env = _check_env

__all__ = ["cold_start_summary"]
