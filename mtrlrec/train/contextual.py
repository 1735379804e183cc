r"""Contextual-bandit runs as per-window sums, for tests and ``benchmarks/perf/linear.py``.

:func:`run_contextual` is a configuration of the one engine
(:func:`mtrlrec.train.loop.run`): windows of ``block`` steps (the agent's
``learn_every`` for periodic learners), returned as per-window sums, with an
optional batch of environment-parameter points run side by side as an
env-param sweep (``env.<field>``, common random numbers across points), e.g.
the five δ of the wheel bandit. Every seed and every point is one compiled
call.

Experiments run on ``OnlineRunner``; the wheel, ads and pricing tables' own
numbers are the summary functions of :mod:`mtrlrec.runners.summaries`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.train import loop


def run_contextual(env: Environment, agent: Agent, *, num_steps: int, num_seeds: int,
                   seed: int = 0, env_sweep: Mapping[str, Sequence[float]] | None = None,
                   block: int | None = None) -> dict[str, np.ndarray]:
    """Runs ``agent`` on ``env`` on the loop; returns per-window sums of every metric.

    Args:
      env: the environment.
      agent: the agent; periodic learners' windows are ``learn_every`` long.
      num_steps: steps per seed, a multiple of the block length.
      num_seeds: independent runs (vmapped).
      seed: base seed; seed i uses ``fold_in(PRNGKey(seed), i)``.
      env_sweep: optional ``{field: [P values]}`` of env params run side by
        side (an env-param sweep of the loop); the sums then have a leading ``[P]``.
      block: window length for agents that do not learn periodically
        (default: ``num_steps // 50`` or the largest divisor below it).

    Returns:
      name -> ``[S, B]`` (or ``[P, S, B]``) sums over each of ``B`` windows
      (``agent/*``: the mean per ``learn`` call), plus ``'_block'``,
      ``'_compile_seconds'`` and ``'_seconds'`` (execution after compilation).
    """
    num_steps = check_int("num_steps", num_steps, min_value=1)
    if agent.learn_every > 1:
        block = agent.learn_every
    elif block is None:
        block = loop.choose_num_chunks(num_steps, max(num_steps // 50, 1))
    if num_steps % block:
        raise ConfigError(
            f"num_steps={num_steps} must be a multiple of the block length {block} "
            f"(the agent's train_every).")
    hparams = {f"env.{k}": v for k, v in (env_sweep or {}).items()}
    out = loop.run(env, agent, num_steps=num_steps, num_seeds=num_seeds, seed=seed,
                   log_every=block, hparams=hparams or None, num_chunks=1)
    sums = {k: v if k.startswith("agent/") else v * block for k, v in out.metrics.items()}
    sums["_block"] = np.asarray(block)
    sums["_compile_seconds"] = np.asarray(out.compile_seconds)
    sums["_seconds"] = np.asarray(out.seconds)
    return sums
